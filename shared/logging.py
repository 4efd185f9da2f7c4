"""structlog configuration, called only from entry points (never at import time).

Off a terminal every line is one JSON object (for log shippers); on a TTY the console renderer
is used. ``redact_secrets`` runs last before rendering, so nothing a caller binds (a command
with its ``auth`` block, a broker URL with a password, an exception text quoting either) can
reach the output with a credential in it. Records from the standard library (pika logs there)
go through the same chain.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO, cast

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

SECRET_KEYS = frozenset({"token", "auth", "password", "secret"})
REDACTED = "***"
# user[:password]@ right after any URL scheme (amqp://, amqps://, or a transport added later);
# stops at the first '/' so a '@' in a path or query cannot swallow the host.
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^@/\s]+@")
# "password=hunter2", "token: abc" inside free text (stdlib log messages, exception texts).
_INLINE_SECRET = re.compile(r"(?i)\b(token|auth|password|secret)(\s*[=:]\s*)[^\s,;&'\"]+")
_PLAIN = (int, float, bool, type(None))

Logger = FilteringBoundLogger  # what get_logger returns; callers never import structlog


def is_secret_key(key: object) -> bool:
    """``token``, ``AUTH``, ``broker_password``, ``api-token``... (any case, also as a suffix)."""
    if not isinstance(key, str):
        return False
    lowered = key.lower()
    if lowered in SECRET_KEYS:
        return True
    return any(lowered.endswith(sep + name) for name in SECRET_KEYS for sep in ("_", "-"))


def scrub_text(text: str) -> str:
    """Scrub credentials from free text.

    ``amqp://user:pass@host/vh`` -> ``amqp://***@host/vh`` and ``password=x`` -> ``password=***``.
    """
    text = _URL_CREDENTIALS.sub(rf"\g<1>{REDACTED}@", text)
    return _INLINE_SECRET.sub(rf"\g<1>\g<2>{REDACTED}", text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Mapping):
        return {k: _redact_value(v) for k, v in value.items() if not is_secret_key(k)}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v) for v in value]
    # Any other object is rendered through str()/repr() later; if that text holds a URL with
    # credentials (an exception quoting the broker URL), replace the object by scrubbed text.
    text = str(value)
    scrubbed = scrub_text(text)
    return scrubbed if scrubbed != text else value


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: drop secret-named keys (nested too) and scrub URL credentials."""
    return {
        key: _redact_value(value) for key, value in event_dict.items() if not is_secret_key(key)
    }


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(callable(isatty) and isatty())


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,  # shard_id / tick bound by the workers
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        # Exceptions become text *before* redaction so their messages are scrubbed as well;
        # the price is plain (not pretty) tracebacks on a terminal.
        structlog.processors.format_exc_info,
    ]


def _renderer(as_json: bool, colors: bool) -> Processor:
    if as_json:
        return structlog.processors.JSONRenderer(sort_keys=False, default=str)
    return structlog.dev.ConsoleRenderer(
        colors=colors, exception_formatter=structlog.dev.plain_traceback
    )


def _route_stdlib(level: int, stream: TextIO, renderer: Processor) -> None:
    """Send stdlib logging (pika, asyncio...) through the same redaction and renderer."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *_shared_processors()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact_secrets,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # pika narrates every frame at INFO/DEBUG; its warnings are what operators need.
    logging.getLogger("pika").setLevel(max(level, logging.WARNING))


def configure_logging(
    level: str = "info", json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Configure structlog (and stdlib logging) for this process.

    ``json=None`` picks JSON lines unless ``stream`` is a terminal. ``stream`` defaults to the
    current ``sys.stderr`` (looked up at call time so test capture works).
    """
    out = stream if stream is not None else sys.stderr
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    tty = _is_tty(out)
    renderer = _renderer(as_json=not tty if json is None else json, colors=tty)
    structlog.configure(
        processors=[*_shared_processors(), redact_secrets, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        # Not cached: tests and the CLI reconfigure, and loggers are created per component.
        cache_logger_on_first_use=False,
    )
    _route_stdlib(numeric, out, renderer)


def get_logger(name: str | None = None, **initial: Any) -> Logger:
    """A lazy structlog logger; ``name`` is bound as ``component`` so lines say who wrote them.

    (Not ``logger``: that name clashes with structlog's own parameter.) The logger resolves the
    configuration when first used, so module-level loggers honour a later configure_logging.
    """
    if name is not None:
        initial["component"] = name
    return cast(Logger, structlog.get_logger(**initial))
