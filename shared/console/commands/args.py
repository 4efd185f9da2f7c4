"""Reading a command's args/kwargs: one place for "missing", "too many" and "not a number".

Values may arrive as strings (a CLI passes ``"0.5"``), so numbers accept numeric strings. A
handler reads every value it needs first and calls ``done()``, which refuses leftovers: a
misspelt keyword is an error, never silently ignored. Nothing here touches the world.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from shared.console.envelope import ConsoleError, ErrorCode

_REQUIRED: Any = object()


class ArgReader:
    def __init__(self, usage: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        self.usage = usage
        self._args = list(args)
        self._kwargs = dict(kwargs)
        self._pos = 0
        self._used: set[str] = set()

    def usage_error(self, message: str) -> ConsoleError:
        return ConsoleError(ErrorCode.USAGE, f"{message}; usage: {self.usage}",
                            {"usage": self.usage})

    def has(self, name: str) -> bool:
        return name in self._kwargs or self._pos < len(self._args)

    def has_keyword(self, name: str) -> bool:
        return name in self._kwargs

    def value(self, name: str, default: Any = _REQUIRED) -> Any:
        """``kwargs[name]`` if given, else the next positional arg, else ``default``."""
        if name in self._kwargs:
            self._used.add(name)
            return self._kwargs[name]
        if self._pos < len(self._args):
            self._pos += 1
            return self._args[self._pos - 1]
        if default is _REQUIRED:
            raise self.usage_error(f"missing {name}")
        return default

    def done(self) -> None:
        if self._pos < len(self._args):
            raise self.usage_error(f"too many arguments ({len(self._args)} given)")
        unknown = sorted(set(self._kwargs) - self._used)
        if unknown:
            raise self.usage_error(f"unknown keyword(s) {unknown}")

    # -- typed reads ------------------------------------------------------------------------
    def text(self, name: str, default: Any = _REQUIRED) -> Any:
        value = self.value(name, default)
        if value is default and default is not _REQUIRED:
            return value
        if not isinstance(value, str) or not value:
            raise invalid(f"{name} must be a non-empty string")
        return value

    def number(self, name: str, default: Any = _REQUIRED) -> Any:
        value = self.value(name, default)
        if value is default and default is not _REQUIRED:
            return value
        return to_number(name, value)

    def integer(self, name: str, default: Any = _REQUIRED) -> Any:
        value = self.value(name, default)
        if value is default and default is not _REQUIRED:
            return value
        return to_integer(name, value)

    def choice(self, name: str, options: Sequence[str]) -> str:
        value = self.value(name)
        if value not in options:
            raise self.usage_error(f"{name} must be one of {list(options)}")
        return str(value)

    def position(self, name: str = "position") -> tuple[int, int]:
        """``position=[x, y]`` as a keyword, or ``x`` and ``y`` (positional or keyword)."""
        if name in self._kwargs:
            return to_pair(name, self.value(name))
        return to_integer("x", self.value("x")), to_integer("y", self.value("y"))


def invalid(message: str) -> ConsoleError:
    return ConsoleError(ErrorCode.INVALID_ARGS, message)


def to_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise invalid(f"{name} must be a number")
    try:
        number = float(value)
    except ValueError:
        raise invalid(f"{name} must be a number") from None
    if not math.isfinite(number):
        raise invalid(f"{name} must be a finite number")
    return number


def to_integer(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise invalid(f"{name} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        try:
            return int(value)
        except ValueError:  # more digits than Python will convert
            raise invalid(f"{name} is too large") from None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise invalid(f"{name} must be an integer")


def to_pair(name: str, value: Any) -> tuple[int, int]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise invalid(f"{name} must be a pair [x, y]")
    return to_integer(f"{name}.x", value[0]), to_integer(f"{name}.y", value[1])
