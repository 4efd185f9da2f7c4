"""Console auth: the token table from ``console_auth`` and the effective role of a command.

The rules are docs/CONSOLE.md, "Auth".

* Every configured token is compared, in constant time, whatever matches first: the time a
  check takes says nothing about which token (or how much of one) was right. Both sides are
  hashed first so the compare does not even leak the token length.
* A matching token's role replaces the requested mode and its label becomes the issuer;
  without one the issuer is ``anonymous`` whatever the command says (the echo keeps what it
  said as ``claimed_issuer``, clearly unverified).
* With auth disabled nobody is admin: admin commands are refused (``forbidden``).
* Failures are ``unauthorized`` and never quote the token. A command carrying a token anywhere
  but ``auth`` is refused (``invalid_args``), and ``redact`` scrubs any configured token out of
  whatever the router is about to publish or log, as a last line of defence.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.config import ConsoleAuthConfig, resolve_token

from .envelope import ConsoleCommand, ConsoleError, ErrorCode

REDACTED = "***"
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Identity:
    role: str  # "viewer" | "admin": what the command may do
    issuer: str  # who the result says ran it
    authenticated: bool


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class Authenticator:
    def __init__(self, config: ConsoleAuthConfig) -> None:
        self.config = config

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def authenticate(self, command: ConsoleCommand) -> Identity:
        """The identity a command runs as; raises ``unauthorized`` when auth says no."""
        token = command.auth.get("token") if command.auth else None
        # A self-declared issuer is never believed: the result keeps it as claimed_issuer.
        unverified = ANONYMOUS
        if not self.config.enabled:
            return Identity("viewer", unverified, authenticated=False)
        if token is None:
            if command.mode == "admin":
                raise ConsoleError(ErrorCode.UNAUTHORIZED, "admin mode requires a console token")
            if self.config.require_auth_for_viewer:
                raise ConsoleError(ErrorCode.UNAUTHORIZED, "this shard requires a console token")
            return Identity("viewer", unverified, authenticated=False)
        index = self._match(str(token))
        if index is None:
            raise ConsoleError(ErrorCode.UNAUTHORIZED, "console token not recognised")
        entry = self.config.tokens[index]
        # Unlabelled tokens are named by role and position: nothing derived from the secret.
        return Identity(entry.role, entry.label or f"{entry.role}#{index}", authenticated=True)

    def _match(self, token: str) -> int | None:
        """Index of the first matching token; every entry is compared (no early exit)."""
        offered = _digest(token)
        match: int | None = None
        for index, entry in enumerate(self.config.tokens):
            secret = resolve_token(entry)
            usable = bool(secret)  # an unset token_env never matches, but still costs a compare
            same = hmac.compare_digest(offered, _digest(secret or ""))
            if same and usable and match is None:
                match = index
        return match

    def secrets(self) -> list[str]:
        """Configured tokens, longest first (resolved now, so rotated env tokens are covered)."""
        found = {s for s in (resolve_token(entry) for entry in self.config.tokens) if s}
        return sorted(found, key=len, reverse=True)

    def check_no_token_outside_auth(self, command: ConsoleCommand) -> None:
        """Refuse a command that carries a configured token anywhere but ``auth``.

        Otherwise a pasted token would be echoed into results and the audit, or become world
        state (an agent named after it) that telemetry then publishes.
        """
        secrets = self.secrets()
        if not secrets:
            return
        carried = [command.name, command.cmd_id, command.issuer, list(command.args),
                   command.kwargs, command.metadata]
        if _redact(carried, secrets) != carried:
            raise ConsoleError(ErrorCode.INVALID_ARGS,
                               "a console token may only be sent in auth.token")

    def redact(self, value: Any) -> Any:
        """``value`` with every configured token replaced by ``***`` (strings, keys, nested)."""
        secrets = self.secrets()
        return _redact(value, secrets) if secrets else value

    def redactor(self) -> Callable[[Any], Any] | None:
        """``redact`` with the tokens resolved once (for scrubbing many values), or None when
        no token is configured (nothing to scrub)."""
        secrets = self.secrets()
        if not secrets:
            return None
        return lambda value: _redact(value, secrets)


def _redact(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {_redact(k, secrets): _redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, secrets) for v in value]
    return value
