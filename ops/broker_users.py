"""The broker's users and what each may do: renders ``ops/rabbitmq/definitions.json``.

Least privilege on RabbitMQ (docs/THREAT_MODEL.md, "Broker users"). Permissions are three
regular expressions over exchange and queue names: *configure* (declare, and so delete),
*write* (publish to an exchange, bind a queue) and *read* (consume a queue, bind from an
exchange). ``amq.default`` is the default exchange; ``amq.gen-...`` are the exclusive,
broker-named queues the CLI reads replies and telemetry from.

* ``townlet-shard-<id>``, one per shard: consume its own inbox; publish results, telemetry,
  dead letters, and replies (through the default exchange, to the private queue a command names;
  the shard itself refuses a reply_to in ``townlet.``). Declares only its own inbox.
* ``townlet-audit``: consume ``townlet.audit``; publish dead letters. Declares nothing.
* ``townlet-operator``: publish commands (and create a shard's inbox before it first starts);
  read replies, results, telemetry and dead letters. Never the results or telemetry exchanges.
* ``townlet-monitor``: read telemetry and results through its own private queues; publishes
  nothing (``townlet status`` works with it).
* ``townlet-admin``: everything, for the management UI and broker maintenance only.

The shared topology (exchanges, the audit and dead queues, the fleet's inboxes) is part of the
file, built from ``shared.topology`` so its arguments are exactly the ones the code declares.
The file holds no password: ``python -m ops.broker_users --passwords`` renders the users with
password hashes from ``TOWNLET_BROKER_PASSWORD_<ROLE>`` variables, to be imported with
``rabbitmqctl import_definitions -`` (ops/runbooks/broker-users.md).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import secrets
import sys
from collections.abc import Callable
from typing import Any

from shared.broker.semantics import queue_arguments
from shared.config import environment_value
from shared.topology import Topology, validate_shard_id

FLEET_SHARDS = ("town-a", "town-b")  # docker-compose.yml's shards
PASSWORD_ENV_PREFIX = "TOWNLET_BROKER_PASSWORD_"
_RESULTS, _TELEMETRY = r"townlet\.console\.results", r"townlet\.telemetry"
_DEAD, _COMMANDS = r"townlet\.dead", r"townlet\.commands"
_INBOXES, _PRIVATE = r"townlet\.shard\..+\.commands", r"amq\.gen-.*"


def _any(*names: str) -> str:
    return "^(" + "|".join(names) + ")$" if names else "^$"


def shard_permissions(shard_id: str) -> tuple[str, str, str]:
    inbox = re.escape(Topology().shard_queue(shard_id))
    return (_any(inbox), _any(_RESULTS, _TELEMETRY, _DEAD, inbox, r"amq\.default"),
            _any(inbox, _COMMANDS))


ROLES: dict[str, tuple[str, str, str]] = {  # role: (configure, write, read)
    "admin": (".*", ".*", ".*"),
    "audit": (_any(), _any(_DEAD), _any(r"townlet\.audit")),
    "operator": (_any(_PRIVATE, _INBOXES), _any(_PRIVATE, _COMMANDS, _DEAD, _INBOXES),
                 _any(_PRIVATE, _COMMANDS, _TELEMETRY, _RESULTS, _DEAD)),
    "monitor": (_any(_PRIVATE), _any(_PRIVATE), _any(_PRIVATE, _TELEMETRY, _RESULTS)),
}
TAGS = {"admin": ["administrator"], "monitor": ["monitoring"]}


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + sha256(salt + password))."""
    salt = salt if salt is not None else secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def password_env(role: str) -> str:
    """``shard-town-a`` -> ``TOWNLET_BROKER_PASSWORD_SHARD_TOWN_A``."""
    return PASSWORD_ENV_PREFIX + re.sub(r"[^A-Z0-9]", "_", role.upper())


def roles(shards: tuple[str, ...]) -> dict[str, tuple[str, str, str]]:
    """Every role of a fleet: the fixed ones and one per shard (``shard-<id>``)."""
    out = dict(ROLES)
    for shard_id in shards:
        out[f"shard-{validate_shard_id(shard_id)}"] = shard_permissions(shard_id)
    return out


def definitions(shards: tuple[str, ...] = FLEET_SHARDS, *, vhost: str = "/",
                prefix: str = "townlet-",
                password: Callable[[str], str | None] | None = None) -> dict[str, Any]:
    """The definitions document; ``password(role)`` gives a role's password (None: none)."""
    users, permissions = [], []
    for role, (configure, write, read) in roles(shards).items():
        secret = password(role) if password is not None else None
        users.append({"name": prefix + role, "tags": TAGS.get(role, []), "limits": {},
                      "hashing_algorithm": "rabbit_password_hashing_sha256",
                      "password_hash": password_hash(secret) if secret else ""})
        permissions.append({"user": prefix + role, "vhost": vhost, "configure": configure,
                            "write": write, "read": read})
    doc: dict[str, Any] = {"users": users, "vhosts": [{"name": vhost}],
                           "permissions": permissions}
    doc.update(topology(shards, vhost))
    return doc


def topology(shards: tuple[str, ...], vhost: str) -> dict[str, Any]:
    topo = Topology()
    exchanges = [topo.commands_exchange_spec(), topo.telemetry_exchange_spec(),
                 topo.results_exchange_spec(), topo.dead_exchange_spec()]
    queues = [topo.audit_queue_spec(), topo.dead_queue_spec(),
              *(topo.shard_queue_spec(s) for s in shards)]
    return {
        "exchanges": [{"name": e.name, "vhost": vhost, "type": e.kind, "durable": e.durable,
                       "auto_delete": False, "internal": False, "arguments": {}}
                      for e in exchanges],
        "queues": [{"name": q.name, "vhost": vhost, "durable": q.durable, "auto_delete": False,
                    "arguments": queue_arguments(q)} for q in queues],
        "bindings": [{"source": exchange, "vhost": vhost, "destination": q.name,
                      "destination_type": "queue", "routing_key": key, "arguments": {}}
                     for q in queues for exchange, key in q.bindings],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.broker_users", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shard", action="append", help="a shard id (repeat; default: "
                        + ", ".join(FLEET_SHARDS) + ")")
    parser.add_argument("--vhost", default="/")
    parser.add_argument("--passwords", action="store_true",
                        help=f"fill in password hashes from {PASSWORD_ENV_PREFIX}<ROLE>")
    args = parser.parse_args(argv)
    shards = tuple(args.shard or FLEET_SHARDS)
    password = (lambda role: environment_value(password_env(role))) if args.passwords else None
    doc = definitions(shards, vhost=args.vhost, password=password)
    if args.passwords:
        missing = [u["name"] for u in doc["users"] if not u["password_hash"]]
        if missing:
            print(f"error: no password for {', '.join(missing)} (set "
                  f"{PASSWORD_ENV_PREFIX}<ROLE>, e.g. {password_env('audit')})", file=sys.stderr)
            return 1
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
