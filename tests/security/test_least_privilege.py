"""Least privilege on the broker: every role can do its job and nothing else.

The users and permission regexes are ops/rabbitmq/definitions.json's (rendered by
ops/broker_users.py for a private vhost); every refusal here is the broker's own (403/406), so
it holds against any client, not only ours.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import msgpack
import pika
import pika.exceptions as pex
import pytest

from tests.procs import ADMIN_TOKEN, VIEWER_TOKEN, pack, wait_until
from tests.security.conftest import TOPO, SecureFleet

pytestmark = pytest.mark.rabbitmq


def refused(fleet: SecureFleet, role: str, action: Any) -> int:
    """Run ``action(channel)`` as ``role``; the AMQP reply code the broker refused it with."""
    channel = fleet.channel(role)
    with pytest.raises(pex.ChannelClosedByBroker) as err:
        action(channel)
    return int(err.value.reply_code)


def publish(exchange: str, key: str = "", **props: Any) -> Any:
    def act(channel: Any) -> None:
        channel.confirm_delivery()
        channel.basic_publish(exchange, key, pack({"v": 1, "cmd_id": "x"}),
                              pika.BasicProperties(**props))
    return act


def test_an_operator_sends_commands_and_gets_replies_but_cannot_forge_results(
        secure: SecureFleet) -> None:
    shard = secure.shards[0]
    done = secure.cli("operator", "send", shard, "help", "--cmd-id", f"op-{uuid.uuid4().hex}",
                      "--json", TOWNLET_CONSOLE_TOKEN=VIEWER_TOKEN)
    assert done.returncode == 0, done.stderr  # its reply came back on a server-named queue
    assert json.loads(done.stdout)["status"] == "ok"
    assert refused(secure, "operator", publish(TOPO.results_exchange)) == 403
    assert refused(secure, "operator", publish(TOPO.telemetry_exchange)) == 403
    assert refused(secure, "operator", publish("", TOPO.audit_queue)) == 403  # amq.default
    assert refused(secure, "operator", lambda ch: ch.queue_delete(TOPO.audit_queue)) == 403


def test_a_monitor_reads_status_and_publishes_nothing(secure: SecureFleet) -> None:
    done = secure.cli("monitor", "status", "--shard", secure.shards[0], "--listen", "2",
                      "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["shards"][secure.shards[0]]
    assert report["tick"] is not None and report["health"] is not None, report
    for exchange in (TOPO.commands_exchange, TOPO.results_exchange, TOPO.telemetry_exchange,
                     TOPO.dead_exchange):
        assert refused(secure, "monitor", publish(exchange, secure.shards[0])) == 403
    assert refused(secure, "monitor", lambda ch: ch.basic_consume(
        TOPO.dead_queue, lambda *a: None)) == 403  # dead letters may hold secrets
    assert refused(secure, "monitor", lambda ch: ch.basic_consume(
        TOPO.shard_queue(secure.shards[0]), lambda *a: None)) == 403


def test_a_shard_user_is_confined_to_its_own_shard(secure: SecureFleet) -> None:
    a, b = secure.shards
    role = f"shard-{a}"
    assert refused(secure, role, lambda ch: ch.basic_consume(
        TOPO.shard_queue(b), lambda *x: None)) == 403
    assert refused(secure, role, lambda ch: ch.queue_delete(TOPO.audit_queue)) == 403
    assert refused(secure, role, lambda ch: ch.queue_purge(TOPO.audit_queue)) == 403
    assert refused(secure, role, publish(TOPO.commands_exchange, b)) == 403
    # The broker checks user_id: a shard cannot publish in another shard user's name.
    assert refused(secure, role, publish(TOPO.results_exchange,
                                         user_id=secure.user(f"shard-{b}"))) == 406


def test_the_audit_user_reads_the_audit_queue_only(secure: SecureFleet) -> None:
    assert refused(secure, "audit", publish(TOPO.results_exchange)) == 403
    assert refused(secure, "audit", lambda ch: ch.basic_consume(
        TOPO.shard_queue(secure.shards[0]), lambda *x: None)) == 403
    assert refused(secure, "audit", lambda ch: ch.queue_delete(TOPO.audit_queue)) == 403


def test_every_result_names_its_publisher_and_the_broker_vouches_for_it(
        secure: SecureFleet) -> None:
    """Shards publish with the AMQP user_id of their login (the broker refuses any other)."""
    a = secure.shards[0]
    listen = secure.channel("admin")
    queue = listen.queue_declare("", exclusive=True).method.queue
    listen.queue_bind(queue, TOPO.results_exchange)
    cmd_id = f"who-{uuid.uuid4().hex}"
    secure.channel("operator").basic_publish(TOPO.commands_exchange, a, pack(
        {"v": 1, "cmd_id": cmd_id, "name": "help", "auth": {"token": ADMIN_TOKEN}}))
    seen: list[Any] = []

    def arrived() -> bool:
        method, props, body = listen.basic_get(queue, auto_ack=True)
        if method is not None:
            seen.append((props, msgpack.unpackb(body)))
        return any(data.get("cmd_id") == cmd_id for _, data in seen)

    wait_until(arrived, 20, "the result")
    props, data = next((p, d) for p, d in seen if d.get("cmd_id") == cmd_id)
    assert props.user_id == secure.user(f"shard-{a}")
    assert data["sig"]["alg"] == "hmac-sha256" and data["shard_id"] == a


def test_a_wrong_password_is_refused_at_once_without_a_traceback(secure: SecureFleet) -> None:
    done = secure.cli("monitor", "status", "--shard", secure.shards[0], "--listen", "0",
                      TOWNLET_AMQP_URL=secure.url("monitor", password="wrong"))
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert secure.passwords["monitor"] not in done.stderr + done.stdout
