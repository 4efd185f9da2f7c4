"""Console auth: token table, role from the token, constant-time compare, token_env, refusals."""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import Callable
from typing import Any

import pytest

from shared.config import ConsoleAuthConfig, ConsoleAuthTokenConfig
from shared.console.auth import Authenticator
from shared.console.envelope import ConsoleCommand, ConsoleError, ErrorCode

VIEWER, ADMIN = "viewer-secret-7d1f", "admin-secret-3a9b"


def auth(enabled: bool = True, require_viewer: bool = False,
         extra: list[ConsoleAuthTokenConfig] | None = None) -> Authenticator:
    tokens = [ConsoleAuthTokenConfig(token=VIEWER, role="viewer", label="ops-viewer"),
              ConsoleAuthTokenConfig(token=ADMIN, role="admin", label="ops-admin"),
              *(extra or [])]
    return Authenticator(ConsoleAuthConfig(enabled=enabled,
                                           require_auth_for_viewer=require_viewer,
                                           tokens=tokens))


def cmd(token: str | None = None, mode: str = "viewer",
        issuer: str | None = None) -> ConsoleCommand:
    return ConsoleCommand(name="help", mode=mode, issuer=issuer,
                          auth={"token": token} if token is not None else None)


def refusal(authn: Authenticator, command: ConsoleCommand) -> ConsoleError:
    with pytest.raises(ConsoleError) as info:
        authn.authenticate(command)
    return info.value


def test_admin_token_gives_admin_role_and_its_label_as_issuer() -> None:
    who = auth().authenticate(cmd(ADMIN, issuer="claims-to-be-bob"))
    assert (who.role, who.issuer, who.authenticated) == ("admin", "ops-admin", True)


def test_token_role_replaces_the_requested_mode() -> None:
    who = auth().authenticate(cmd(VIEWER, mode="admin"))
    assert who.role == "viewer"
    assert auth().authenticate(cmd(ADMIN, mode="viewer")).role == "admin"


def test_unknown_token_is_unauthorized_and_not_quoted() -> None:
    error = refusal(auth(), cmd("wrong-token-xyz"))
    assert error.code == ErrorCode.UNAUTHORIZED
    assert "wrong-token-xyz" not in error.message


def test_viewer_without_token_allowed_only_when_not_required() -> None:
    assert auth(require_viewer=False).authenticate(cmd()).role == "viewer"
    assert refusal(auth(require_viewer=True), cmd()).code == ErrorCode.UNAUTHORIZED


def test_admin_mode_without_token_is_unauthorized() -> None:
    assert refusal(auth(), cmd(mode="admin")).code == ErrorCode.UNAUTHORIZED


def test_auth_disabled_means_nobody_is_admin() -> None:
    who = auth(enabled=False).authenticate(cmd(ADMIN, mode="admin", issuer="bob"))
    # A self-declared issuer is never believed (issue 9): nobody vouched for "bob".
    assert (who.role, who.issuer, who.authenticated) == ("viewer", "anonymous", False)


def test_unlabelled_token_issuer_is_role_and_index() -> None:
    extra = [ConsoleAuthTokenConfig(token="third-token-value", role="admin")]
    assert auth(extra=extra).authenticate(cmd("third-token-value")).issuer == "admin#2"


def test_token_env_is_read_at_use_time(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = [ConsoleAuthTokenConfig(token_env="TOWNLET_TEST_CONSOLE_TOKEN", role="admin",
                                    label="env-admin")]
    authn = auth(extra=extra)
    monkeypatch.delenv("TOWNLET_TEST_CONSOLE_TOKEN", raising=False)
    assert refusal(authn, cmd("")).code == ErrorCode.UNAUTHORIZED  # unset env never matches
    monkeypatch.setenv("TOWNLET_TEST_CONSOLE_TOKEN", "rotated-1")
    assert authn.authenticate(cmd("rotated-1")).issuer == "env-admin"
    monkeypatch.setenv("TOWNLET_TEST_CONSOLE_TOKEN", "rotated-2")
    assert refusal(authn, cmd("rotated-1")).code == ErrorCode.UNAUTHORIZED
    assert authn.authenticate(cmd("rotated-2")).role == "admin"


def spy_compare(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    calls: list[tuple[bytes, bytes]] = []
    real: Callable[[Any, Any], bool] = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    return calls


@pytest.mark.parametrize("offered", [VIEWER, ADMIN, "nope"])
def test_every_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch,
                                                  offered: str) -> None:
    calls = spy_compare(monkeypatch)
    extra = [ConsoleAuthTokenConfig(token_env="TOWNLET_UNSET_TOKEN_ENV", role="admin")]
    with contextlib.suppress(ConsoleError):
        auth(extra=extra).authenticate(cmd(offered))
    assert len(calls) == 3  # no early exit, unset env tokens included
    assert all(len(a) == len(b) == 32 for a, b in calls)  # digests: length does not leak


def test_redact_replaces_every_configured_token() -> None:
    value = {"a": [f"x{ADMIN}y", {VIEWER: 1}], "n": 3}
    assert auth().redact(value) == {"a": ["x***y", {"***": 1}], "n": 3}


def test_the_shipped_config_takes_its_admin_token_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What README's fleet tour relies on: admin by TOWNLET_ADMIN_TOKEN, nobody while unset."""
    from tests.simtools import example_config

    authn = Authenticator(example_config().console_auth)
    monkeypatch.delenv("TOWNLET_ADMIN_TOKEN", raising=False)
    assert refusal(authn, cmd("", mode="admin")).code == ErrorCode.UNAUTHORIZED  # unset: no one
    assert authn.authenticate(cmd()).role == "viewer"  # viewers need no token
    monkeypatch.setenv("TOWNLET_ADMIN_TOKEN", ADMIN)
    identity = authn.authenticate(cmd(ADMIN, mode="admin"))
    assert (identity.role, identity.issuer) == ("admin", "ops-admin")
    assert refusal(authn, cmd("guess", mode="admin")).code == ErrorCode.UNAUTHORIZED
