"""Nothing secret reaches a log line, whatever the renderer and whoever logs (structlog, stdlib)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from shared.logging import configure_logging, get_logger, redact_secrets, scrub_text

TOKEN = "tok-5f2c9e1b"
PASSWORD = "pw-hunter2"
URL = f"amqp://townlet:{PASSWORD}@rabbit:5672/%2F"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)


def emit_everything() -> None:
    log = get_logger("test")
    structlog.contextvars.bind_contextvars(shard_id="s1", tick=42)
    log.info(
        "command_applied",
        token=TOKEN,
        Auth={"token": TOKEN},
        command={"name": "spawn", "auth": {"token": TOKEN}, "args": [{"PASSWORD": PASSWORD}]},
        broker=URL,
        api_token=TOKEN,
        secret=TOKEN,
    )
    try:
        raise ConnectionError(f"cannot reach {URL}")
    except ConnectionError:
        log.exception("broker_down")
    logging.getLogger("pika.adapters").warning("connecting to %s with token=%s", URL, TOKEN)


@pytest.mark.parametrize("as_json", [True, False])
def test_no_secret_in_output(as_json: bool) -> None:
    out = io.StringIO()
    configure_logging("debug", json=as_json, stream=out)
    emit_everything()
    text = out.getvalue()
    assert "command_applied" in text and "broker_down" in text and "connecting to" in text
    assert TOKEN not in text
    assert PASSWORD not in text
    assert "amqp://***@rabbit:5672/%2F" in text


def test_json_lines_carry_level_iso_time_and_bound_context() -> None:
    out = io.StringIO()
    configure_logging("info", json=True, stream=out)
    emit_everything()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 3
    first = lines[0]
    assert (first["level"], first["shard_id"], first["tick"]) == ("info", "s1", 42)
    assert first["timestamp"].endswith("Z") and "T" in first["timestamp"]
    assert first["command"] == {"name": "spawn", "args": [{}]}
    assert "ConnectionError" in lines[1]["exception"]


def test_json_is_chosen_off_a_terminal_and_level_filters() -> None:
    out = io.StringIO()  # not a TTY
    configure_logging("warning", stream=out)
    get_logger("x").info("quiet")
    get_logger("x").warning("loud")
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == ["loud"]


def test_logger_created_before_configuration_follows_it() -> None:
    early = get_logger("early")  # module-level loggers exist before the entry point runs
    out = io.StringIO()
    configure_logging("info", json=True, stream=out)
    early.info("hello", password=PASSWORD)
    assert json.loads(out.getvalue()) | {"timestamp": ""} == {
        "event": "hello",
        "component": "early",
        "level": "info",
        "timestamp": "",
    }


def test_redact_secrets_processor_directly() -> None:
    event = {"event": f"using {URL}", "TOKEN": TOKEN, "nested": {"x": [URL, {"secret": 1}]}}
    assert redact_secrets(None, "info", event) == {
        "event": "using amqp://***@rabbit:5672/%2F",
        "nested": {"x": ["amqp://***@rabbit:5672/%2F", {}]},
    }


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("amqp://u:p@h/", "amqp://***@h/"),
        ("toy+tls://u:p@h:1/v", "toy+tls://***@h:1/v"),  # any scheme, not only amqp
        ("AMQPS://user@h:5671", "AMQPS://***@h:5671"),
        ("amqp://h/vhost?x=a@b", "amqp://h/vhost?x=a@b"),  # no credentials: untouched
        ("password=abc, next", "password=***, next"),
        ("authority is not a secret", "authority is not a secret"),
    ],
)
def test_scrub_text(raw: str, clean: str) -> None:
    assert scrub_text(raw) == clean


def test_unknown_level_is_an_error() -> None:
    with pytest.raises(ValueError):
        configure_logging("loud", stream=io.StringIO())


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_console_renderer_on_a_terminal() -> None:
    out = FakeTerminal()
    configure_logging("info", stream=out)
    get_logger("x").info("hello", token=TOKEN, url=URL)
    text = out.getvalue()
    assert "hello" in text and not text.lstrip().startswith("{")
    assert TOKEN not in text and PASSWORD not in text
