"""The table of broker transports, keyed by URL scheme, and ``open_broker`` on top of it.

Everything that depends on which transport a URL names reads it from ``TRANSPORTS``:
``open_broker`` (which opener, which options), the CLI (``in_process`` transports exist only
inside ``townlet up``) and the contract suite (it runs once per row). Adding a transport is one
module implementing ``Broker`` plus one row here.

Openers import their module when called, so a transport's outside dependency (pika for
RabbitMQ) is loaded only by processes that open such a URL; embedded runs never load pika.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.broker.base import Broker
from shared.broker.memory import MemoryBroker, MemoryHub
from shared.broker.redaction import redact_url
from shared.config import environment_value

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
AMQP_URL_ENV = "TOWNLET_AMQP_URL"

# What opens a connection: (url, the process's MemoryHub if any, the options this transport
# accepts, already filtered from the caller's keywords).
Opener = Callable[[str, MemoryHub | None, Mapping[str, Any]], Broker]


@dataclass(frozen=True)
class Transport:
    """One row of the table: how to open a URL scheme and what callers need to know about it."""

    name: str  # "memory", "rabbitmq": test ids and messages
    schemes: tuple[str, ...]  # lower-case URL schemes served, e.g. ("amqp", "amqps")
    open: Opener
    # Lives inside one process (needs the process's hub): no other process can reach it, so
    # the CLI allows it only where the whole fleet shares the process (`townlet up`).
    in_process: bool = False
    # Keyword options of ``open_broker`` this transport takes. Callers stay transport-agnostic
    # (a worker passes ``wait_for_broker`` whatever the URL), so an option that only another
    # transport takes is dropped, and a name that no transport takes is a TypeError.
    options: frozenset[str] = frozenset()


def _open_memory(url: str, hub: MemoryHub | None, options: Mapping[str, Any]) -> Broker:
    if hub is None:
        raise ValueError("memory:// needs a MemoryHub: pass hub=MemoryHub() shared by "
                         "every broker of this process")
    return MemoryBroker(hub)


def _open_rabbitmq(url: str, hub: MemoryHub | None, options: Mapping[str, Any]) -> Broker:
    from shared.broker.rabbitmq import RabbitBroker  # lazy: keeps pika out of embedded runs

    return RabbitBroker(url, **options)


# The keyword parameters of ``RabbitBroker`` (tests/contract/test_transports.py keeps them in
# step with its signature, which cannot be read here without importing pika).
_RABBITMQ_OPTIONS = frozenset({
    "heartbeat", "connection_attempts", "socket_timeout", "blocked_connection_timeout",
    "reconnect_timeout", "backoff", "connection_name", "on_reconnect", "wait_for_broker",
})

TRANSPORTS: tuple[Transport, ...] = (
    Transport("memory", ("memory",), _open_memory, in_process=True),
    Transport("rabbitmq", ("amqp", "amqps"), _open_rabbitmq, options=_RABBITMQ_OPTIONS),
)

_BY_SCHEME: dict[str, Transport] = {s: t for t in TRANSPORTS for s in t.schemes}
_ALL_OPTIONS: frozenset[str] = frozenset().union(*(t.options for t in TRANSPORTS))


def url_scheme(url: str) -> str:
    """The lower-cased scheme of ``url`` ("" if it has none)."""
    return url.split("://", 1)[0].lower() if "://" in url else ""


def find_transport(url: str) -> Transport | None:
    """The transport serving ``url``'s scheme, or None if no row has it."""
    return _BY_SCHEME.get(url_scheme(url))


def network_schemes() -> list[str]:
    """Schemes another process can reach too, in table order (what the CLI accepts)."""
    return [s for t in TRANSPORTS if not t.in_process for s in t.schemes]


def _one_of(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def default_amqp_url() -> str:
    """The broker URL from ``TOWNLET_AMQP_URL``, or the local default (read when called)."""
    return environment_value(AMQP_URL_ENV) or DEFAULT_AMQP_URL


def open_broker(url: str, *, hub: MemoryHub | None = None, **kw: Any) -> Broker:
    """Open a connection for ``url``; ``memory://`` needs the process's ``MemoryHub``.

    ``kw`` are transport options (heartbeat, wait_for_broker, ...: ``Transport.options``); the
    in-process broker never loses its connection and takes none of them."""
    unknown = sorted(set(kw) - _ALL_OPTIONS)
    if unknown:
        raise TypeError(f"open_broker() got unknown option(s) {', '.join(unknown)}")
    transport = find_transport(url)
    if transport is None:
        schemes = _one_of([f"{s}://" for t in TRANSPORTS for s in t.schemes])
        raise ValueError(f"unsupported broker URL scheme {url_scheme(url)!r} in "
                         f"{redact_url(url)}: use {schemes}")
    return transport.open(url, hub, {k: v for k, v in kw.items() if k in transport.options})
