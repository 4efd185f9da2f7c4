"""One vocabulary across `townlet` commands: help on every option, the shared flag names,
choices for enums, --version / -h / completion, and the exit codes documented in --help."""

from __future__ import annotations

import os
from typing import Any

import pytest
import typer

from ops.cli import app
from ops.vocabulary import EXIT_CODES_HELP, RENAMED_FLAGS, Exit, rewrite_renamed
from tests.integration.test_cli import townlet

UsageError = typer.BadParameter.__mro__[1]  # click's, whichever copy Typer runs on
CLIENT_COMMANDS = ("send", "tail", "status", "top", "dry-run")
OLD_NAMES = set(RENAMED_FLAGS) | {"--log"}


def commands() -> dict[str, Any]:
    group: Any = typer.main.get_command(app)
    return dict(group.commands)


def test_every_option_and_argument_has_help() -> None:
    missing = [f"{name} {param.name}" for name, command in commands().items()
               for param in command.params if not getattr(param, "help", None)]
    assert missing == []


def test_the_shared_flag_names_and_no_old_spelling() -> None:
    flags = {name: {opt for p in c.params for opt in getattr(p, "opts", [])}
             for name, c in commands().items()}
    for name, opts in flags.items():
        assert not opts & OLD_NAMES, (name, opts & OLD_NAMES)
        assert "--json" in opts, name  # --json on every command
    for name in CLIENT_COMMANDS:
        assert {"--timeout", "--broker"} <= flags[name], name
    for name in ("shard", "replay", "tail", "status", "top", "dry-run"):
        assert "--shard" in flags[name], name
    for name in ("audit", "replay", "dry-run"):
        assert "--audit-log" in flags[name], name
    for name in ("run", "shard", "up", "replay"):
        assert "--ticks" in flags[name], name


@pytest.mark.parametrize(("command", "choices"), [
    ("send", "viewer|admin"),
    ("tail", "snapshot|diff|health"),
    ("shard", "debug|info|warning|error"),
    ("audit", "debug|info|warning|error"),
])
def test_enums_are_choices_shown_in_help(tmp_path: Any, command: str, choices: str) -> None:
    done = townlet(command, "--help", cwd=tmp_path,
                   env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"})
    assert done.returncode == 0 and choices in done.stdout


def test_renamed_flags_are_rewritten() -> None:
    assert rewrite_renamed(["shard", "--shard-id", "a", "--max-ticks=5", "--log-level", "x"]) \
        == ["shard", "--shard", "a", "--ticks=5", "--log-level", "x"]
    assert rewrite_renamed(["replay", "--audit", "f"]) == ["replay", "--audit-log", "f"]


def test_exit_codes() -> None:
    assert [int(e) for e in Exit] == [0, 1, 2, 3, 4]


def test_help_documents_exit_codes_version_h_and_completion(tmp_path: Any) -> None:
    done = townlet("-h", cwd=tmp_path, env=None)
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert " ".join(EXIT_CODES_HELP.split()) in text
    assert "--install-completion" in text and "--version" in text
    version = townlet("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("townlet 0.")
    sub = townlet("send", "-h", cwd=tmp_path)
    assert sub.returncode == 0 and "--timeout" in sub.stdout


@pytest.mark.parametrize("args", [
    ["send", "a", "employment_status", "--kw", "notakv"],
    ["send", "a", "employment_status", "--mode", "superuser"],
    ["shard", "--shard", "a", "--config", "c.yaml", "--log-level", "bogus"],
    ["tail", "--kind", "bogus"],
    ["replay", "--config", "c.yaml", "--shard", "a", "--bisect"],
])
def test_usage_mistakes_exit_2_in_one_line(tmp_path: Any, args: list[str]) -> None:
    done = townlet(*args, "--broker", "amqp://guest:guest@127.0.0.1:1/%2F", cwd=tmp_path,
                   timeout=30) if args[0] != "replay" else townlet(*args, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr


def test_an_old_flag_still_works_with_a_note(tmp_path: Any) -> None:
    done = townlet("replay", "--config", "c.yaml", "--shard", "a", "--ticks", "1", "--audit",
                   "nope.jsonl", cwd=tmp_path)
    assert "note: --audit is now --audit-log" in done.stderr
    assert done.returncode == 1 and "config file not found: c.yaml" in done.stderr


@pytest.mark.parametrize("url", ["amqp://guest:guest@rabbit.prod.example:5672/%2F",
                                 "amqps://u:p@10.0.0.5/%2F"])
def test_the_tests_refuse_a_broker_that_is_not_local(monkeypatch: pytest.MonkeyPatch,
                                                     url: str) -> None:
    from tests.procs import TEST_URL_ENV, local_test_node_url

    monkeypatch.setenv(TEST_URL_ENV, url)
    with pytest.raises(pytest.fail.Exception, match="is not a local broker"):
        local_test_node_url()
    monkeypatch.setenv(TEST_URL_ENV, "amqp://guest:guest@127.0.0.1:5999/%2F")
    assert local_test_node_url().endswith(":5999/%2F")
    monkeypatch.delenv(TEST_URL_ENV)
    monkeypatch.setenv("TOWNLET_AMQP_URL", url)  # production's variable is never read
    assert "127.0.0.1:5672" in local_test_node_url()
