"""How CLI commands reach the broker: URL checks, fast-failing connections, error -> exit code.

An operator command must answer within its ``--timeout`` even when the broker is away (exit 4,
one line), so client connections make one attempt, bounded by the timeout, and never wait for
the broker to come back (``wait_for_broker=False``). Long-running processes (shard, audit) make
their own connections in their entry points. Connections are named by role and shard, so
``rabbitmqctl list_connections name`` tells who is who.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from ops.client import ResultTimeout
from ops.vocabulary import CliError, Exit
from shared.broker import (
    Broker,
    BrokerError,
    ConnectionLost,
    Unroutable,
    default_amqp_url,
    find_transport,
    network_schemes,
    open_broker,
    redact_url,
)

MEMORY_ONLY_IN_UP = ("memory:// is the embedded broker and exists only inside one process: use "
                     "`townlet up` (no broker configured) or an amqp:// URL")


def connection_name(role: str, shard_id: str | None = None) -> str:
    """``townlet shard town-a @host:pid``: what rabbitmqctl and the management UI show."""
    who = f"townlet {role}" + (f" {shard_id}" if shard_id else "")
    return f"{who} @{socket.gethostname()}:{os.getpid()}"


def in_process_only(url: str) -> bool:
    """Whether ``url`` names a transport that lives inside one process (memory://)."""
    transport = find_transport(url)
    return transport is not None and transport.in_process


def broker_url(value: str | None) -> str:
    """The broker URL of a command that talks to a broker from its own process.

    memory:// is refused here: an in-memory broker is private to the process that holds it, so
    a lone shard, audit consumer or operator command on it could never meet anyone."""
    url = value or default_amqp_url()
    if in_process_only(url):
        raise CliError(MEMORY_ONLY_IN_UP, Exit.USAGE)
    if find_transport(url) is None:
        schemes = " or ".join(f"{scheme}://..." for scheme in network_schemes())
        raise CliError(f"unsupported broker URL {redact_url(url)}: use {schemes}", Exit.USAGE)
    return url


def connect_client(url: str, timeout: float, role: str, shard_id: str | None = None) -> Broker:
    """One connection attempt bounded by ``timeout``; CliError(exit 4) if the broker is away."""
    try:
        return open_broker(url, reconnect_timeout=0.0, socket_timeout=timeout,
                           connection_attempts=1, wait_for_broker=False,
                           connection_name=connection_name(role, shard_id))
    except BrokerError as exc:
        raise unreachable(url, exc) from None


# What pika's nested connection errors mean, for the one line an operator reads.
_REASONS = (("Connection refused", "connection refused (is RabbitMQ running there?)"),
            ("ProbableAuthentication", "access refused: check the user and password"),
            ("AuthenticationError", "access refused: check the user and password"),
            ("ACCESS_REFUSED", "access refused: check the user, password and vhost"),
            ("NOT_ALLOWED", "vhost not found or not allowed"),
            ("gaierror", "unknown host"), ("Name or service not known", "unknown host"),
            ("timed out", "no answer (timed out)"), ("Timeout", "no answer (timed out)"))


def reason(text: str) -> str:
    for marker, meaning in _REASONS:
        if marker in text:
            return meaning
    return text


def unreachable(url: str, exc: BaseException) -> CliError:
    return CliError(f"broker unreachable at {redact_url(url)}: {reason(str(exc))}",
                    Exit.UNREACHABLE)


@contextmanager
def client_errors(url: str) -> Iterator[None]:
    """Turn what a client command can meet into one line and its exit code."""
    try:
        yield
    except ResultTimeout as exc:
        raise CliError(str(exc), Exit.TIMEOUT) from None
    except ConnectionLost as exc:
        raise unreachable(url, exc) from None
    except Unroutable as exc:
        raise CliError(str(exc)) from None
    except BrokerError as exc:
        raise CliError(f"broker error: {exc}") from None
