"""Holes 2 to 6 of issue 9, attacked as a hostile broker client would (raw pika), each closed.

One least-privilege fleet serves the module (conftest.py); every test uses its own cmd_ids.
The last test checks what must hold whatever was tried: no token in any artifact.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pika
import pytest

from tests.procs import ADMIN_TOKEN, VIEWER_TOKEN, Captured, Recorder, pack, read_jsonl, wait_until
from tests.security.conftest import TOPO, SecureFleet, rabbitmqctl

pytestmark = pytest.mark.rabbitmq
SEPARATORS = "".join(chr(c) for c in range(32)) + "\x7f\x85\u2028\u2029"


@pytest.fixture(scope="module")
def results(secure: SecureFleet) -> Recorder:
    return secure.recorder(TOPO.results_exchange, "results")


@pytest.fixture(scope="module")
def dead(secure: SecureFleet) -> Recorder:
    return secure.recorder(TOPO.dead_exchange, "dead")


def send(fleet: SecureFleet, shard_id: str, body: dict[str, Any] | bytes, **props: Any) -> None:
    channel = fleet.channel("operator")
    channel.confirm_delivery()
    data = body if isinstance(body, bytes) else pack(body)
    channel.basic_publish(TOPO.commands_exchange, shard_id, data,
                          pika.BasicProperties(delivery_mode=2, **props))


def answers(rec: Recorder, shard_id: str, cmd_id: str, n: int = 1,
            timeout: float = 20) -> list[Captured]:
    def mine() -> list[Captured]:
        return [i for i in rec.items() if isinstance(i.data, dict)
                and i.data.get("shard_id") == shard_id and i.data.get("cmd_id") == cmd_id]
    wait_until(lambda: len(mine()) >= n, timeout, f"{n} result(s) for {cmd_id!r}")
    return mine()


def audit_lines(fleet: SecureFleet, pick: Callable[[dict[str, Any]], bool],
                n: int = 1) -> list[dict[str, Any]]:
    def found() -> list[dict[str, Any]]:
        return [r for r in read_jsonl(fleet.audit_log) if pick(r)]
    wait_until(lambda: len(found()) >= n, 20, "audit lines")
    return found()


def test_hole2_no_character_breaks_the_audit_log_or_replay(secure: SecureFleet,
                                                          results: Recorder) -> None:
    a = secure.shards[0]
    cmd_id = "sep" + "\u2028\u2029\x85\x0b\x0c\x1c\x1d\x1e\r" + uuid.uuid4().hex[:6]
    send(secure, a, {"v": 1, "cmd_id": cmd_id, "name": "help", "args": [SEPARATORS]})
    tick = answers(results, a, cmd_id)[0].data["tick"]
    line = audit_lines(secure, lambda r: r.get("cmd_id") == cmd_id)[0]
    assert line["command"]["args"] == [SEPARATORS]
    text = secure.audit_log.read_bytes().decode("utf-8")
    assert len(text.splitlines()) == text.count("\n")  # even str.splitlines() sees whole lines
    done = secure.cli("monitor", "replay", "--config", str(secure.config), "--shard", a,
                      "--ticks", str(tick + 2), "--audit", str(secure.audit_log),
                      TOWNLET_RESULT_KEY=secure.result_key)
    assert done.returncode == 0, done.stderr
    assert "not verified" not in done.stderr  # every line of the shard is a verified result
    verify = secure.cli("monitor", "verify", str(secure.audit_log),
                        TOWNLET_RESULT_KEY=secure.result_key)
    assert verify.returncode == 0 and "signatures valid" in verify.stdout, verify.stdout


def test_hole3_big_anonymous_arguments_cost_no_memory_or_checkpoint(
        secure: SecureFleet, results: Recorder) -> None:
    b = secure.shards[1]
    tag, blob = uuid.uuid4().hex[:6], "x" * 60_000
    for n in range(300):
        send(secure, b, {"v": 1, "cmd_id": f"big-{tag}-{n}", "name": "help", "args": [blob]})
    last = answers(results, b, f"big-{tag}-299", timeout=60)[0]
    mine = [i for i in results.items() if str((i.data or {}).get("cmd_id")).startswith(
        f"big-{tag}-")]
    assert len(mine) >= 300 and max(len(i.body) for i in mine) < 4096  # trimmed, not echoed
    assert last.data["command"]["trimmed"]["bytes"] > 60_000
    checkpoint = secure.harness.root / "state" / b / "checkpoint.tlsnap"
    answered_at = time.time()
    wait_until(lambda: checkpoint.exists() and checkpoint.stat().st_mtime > answered_at + 0.5,
               20, "a checkpoint holding every stored result of the flood")
    assert checkpoint.stat().st_size < 2_000_000, checkpoint.stat().st_size  # was 54 MB


def test_hole4_message_id_is_never_the_cmd_id(secure: SecureFleet, results: Recorder) -> None:
    """aio-pika sets a random message_id on every publish: it must not make a command
    idempotent (and so allowed), let alone twice."""
    a = secure.shards[0]
    pause_id, chat_ids = f"m-{uuid.uuid4().hex}", [f"m-{uuid.uuid4().hex}" for _ in range(2)]
    send(secure, a, {"v": 1, "name": "pause", "mode": "admin",
                     "auth": {"token": ADMIN_TOKEN}}, message_id=pause_id)
    chat = {"v": 1, "name": "force_chat", "args": ["agent_0", "agent_1", 0.5], "mode": "admin",
            "auth": {"token": ADMIN_TOKEN}}
    for message_id in chat_ids:
        send(secure, a, chat, message_id=message_id)
    refusals = lambda: [i.data for i in results.items() if isinstance(i.data, dict)  # noqa: E731
                        and i.data.get("shard_id") == a and i.data.get("name") in (
                            "pause", "force_chat") and str(i.data["cmd_id"]).startswith("auto-")]
    wait_until(lambda: len(refusals()) >= 3, 20, "three refusals")
    assert {(r["name"], r["error"]["code"], r["applied"]) for r in refusals()} == {
        ("pause", "usage", False), ("force_chat", "usage", False)}
    assert not [i for i in results.items() if isinstance(i.data, dict)
                and i.data.get("cmd_id") in (pause_id, *chat_ids)]
    status = secure.cli("monitor", "status", "--shard", a, "--listen", "1.5", "--json")
    assert json.loads(status.stdout)["shards"][a]["health"]["paused"] is False


def test_hole5_dead_letters_are_bounded_and_hold_no_token(secure: SecureFleet,
                                                         dead: Recorder) -> None:
    listed = rabbitmqctl("list_queues", "-p", secure.vhost, "name", "arguments")
    row = next(line for line in listed.stdout.splitlines() if line.startswith("townlet.dead"))
    assert "x-max-length" in row and "x-max-length-bytes" in row, row
    a = secure.shards[0]
    marker = uuid.uuid4().hex
    garbage = b"\xc1" + marker.encode() + ADMIN_TOKEN.encode() + b" never msgpack"
    send(secure, a, garbage, headers={"note": f"token {ADMIN_TOKEN}"})
    send(secure, a, b"\xc1" + marker.encode() + b"y" * 10_000_000)  # 10 MB, no message_id
    wait_until(lambda: len(_dead_of(dead, marker)) >= 2, 30, "two dead letters")
    small, big = sorted(_dead_of(dead, marker), key=lambda d: d.headers.get(
        "x-original-bytes", 0))
    assert ADMIN_TOKEN.encode() not in small.body and b"***" in small.body
    assert ADMIN_TOKEN not in json.dumps(small.headers, default=str)
    assert len(big.body) <= 16 * 1024 and big.headers["x-original-bytes"] > 10_000_000


def _dead_of(dead: Recorder, marker: str) -> list[Captured]:
    return [d for d in dead.items() if marker.encode() in d.body]


def test_hole6_issuer_ids_correlation_reply_to_and_nesting(
        secure: SecureFleet, results: Recorder) -> None:
    a, b = secure.shards
    tag = uuid.uuid4().hex[:6]
    # a self-declared issuer is never the issuer
    send(secure, a, {"v": 1, "cmd_id": f"who-{tag}", "name": "help", "issuer": "ops"})
    who = answers(results, a, f"who-{tag}")[0].data
    assert who["issuer"] == "anonymous" and who["command"]["claimed_issuer"] == "ops"
    # a crafted cmd_id cannot take the audit key of a later real refusal
    send(secure, a, {"v": 1, "cmd_id": f"X{tag}#refused:forbidden", "name": "help"})
    answers(results, a, f"X{tag}#refused:forbidden")
    send(secure, a, {"v": 1, "cmd_id": f"X{tag}", "name": "kill", "args": ["agent_1"],
                     "mode": "admin"})
    assert answers(results, a, f"X{tag}")[0].data["error"]["code"] == "unauthorized"
    send(secure, a, {"v": 1, "cmd_id": f"X{tag}", "name": "kill", "args": ["agent_1"],
                     "mode": "admin", "auth": {"token": VIEWER_TOKEN}})
    answers(results, a, f"X{tag}", n=2)
    keys = {(r["cmd_id"], (r.get("error") or {}).get("code")) for r in audit_lines(
        secure, lambda r: str(r.get("cmd_id")).startswith(f"X{tag}"), n=3)}
    assert keys == {(f"X{tag}#refused:forbidden", None), (f"X{tag}", "unauthorized"),
                    (f"X{tag}", "forbidden")}
    # a token in correlation_id is refused, never republished
    send(secure, a, {"v": 1, "cmd_id": f"corr-{tag}", "name": "help"},
         correlation_id=f"x{VIEWER_TOKEN}")
    corr = answers(results, a, f"corr-{tag}")[0]
    assert corr.data["error"]["code"] == "invalid_args" and corr.correlation_id is None
    # a reply_to in the project's namespace is refused: b never answers a's command; so is a
    # (forged) direct reply-to, which would make RabbitMQ drop the shard's connection over and
    # over (a redelivery loop found with aio-pika)
    forged = "amq.rabbitmq.reply-to.g1hkABFyYWJiaXRAbG9jYWxob3N0AAAAAAAAAAA=.x"
    for target in (TOPO.shard_queue(b), TOPO.audit_queue, forged):
        cmd_id = f"rt-{tag}-{target}"
        send(secure, a, {"v": 1, "cmd_id": cmd_id, "name": "help"}, reply_to=target)
        assert answers(results, a, cmd_id)[0].data["error"]["code"] == "usage"
    time.sleep(1.0)
    assert not [i for i in results.items() if isinstance(i.data, dict)
                and i.data.get("shard_id") == b and str(i.data.get("cmd_id")).startswith("rt-")]
    answered = [i for i in results.items() if isinstance(i.data, dict)
                and i.data.get("cmd_id") == f"rt-{tag}-{forged}"]
    assert len(answered) == 1  # answered once: no connection loss, no redelivery loop
    # a shard user may publish through the default exchange (its replies go that way), so it
    # could put a command straight into another shard's inbox: refused, not run
    channel = secure.channel(f"shard-{b}")
    channel.basic_publish("", TOPO.shard_queue(a), pack(
        {"v": 1, "cmd_id": f"inject-{tag}", "name": "help"}))
    assert answers(results, a, f"inject-{tag}")[0].data["error"]["code"] == "usage"
    # deep nesting with a readable cmd_id is answered
    deep: Any = "leaf"
    for _ in range(70):
        deep = [deep]
    send(secure, a, msgpack.packb({"v": 1, "cmd_id": f"deep-{tag}", "name": "help",
                                   "args": [deep]}))
    assert answers(results, a, f"deep-{tag}")[0].data["error"]["code"] == "bad_request"


def test_no_token_or_key_appears_in_any_artifact(secure: SecureFleet, results: Recorder,
                                                 dead: Recorder) -> None:
    """What holds whatever was tried above: tokens and keys appear nowhere."""
    telemetry = secure.recorder(TOPO.telemetry_exchange, "telemetry-scan")
    wait_until(lambda: len(telemetry.items()) > 5, 20, "some telemetry")
    secrets = [ADMIN_TOKEN, VIEWER_TOKEN, secure.result_key,
               *(secure.shard_key(s).split(":")[-1] for s in secure.shards),
               *secure.passwords.values()]
    blobs: list[bytes] = [i.body for i in results.items() + dead.items() + telemetry.items()]
    root: Path = secure.harness.root
    blobs += [p.read_bytes() for p in root.rglob("*") if p.is_file()
              and p.suffix in (".jsonl", ".log", ".tlsnap", ".bin") or p.name.endswith(".1")]
    for secret in secrets:
        leaks = [b[:80] for b in blobs if secret.encode() in b]
        assert not leaks, f"a secret leaked into {len(leaks)} artifact(s): {leaks[:2]}"
