"""Broker transports chosen by URL: ``memory://`` (in-process) or ``amqp(s)://`` (RabbitMQ).

pika is imported lazily, only when an AMQP URL is opened, so embedded runs never load it.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from shared.broker.base import (
    Broker,
    BrokerError,
    BrokerStats,
    ConnectionLost,
    Delivery,
    ExchangeSpec,
    Message,
    NotFound,
    PublishNotConfirmed,
    QueueSpec,
)
from shared.broker.memory import MemoryBroker, MemoryHub

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
AMQP_URL_ENV = "TOWNLET_AMQP_URL"

__all__ = [
    "AMQP_URL_ENV",
    "Broker",
    "BrokerError",
    "BrokerStats",
    "ConnectionLost",
    "DEFAULT_AMQP_URL",
    "Delivery",
    "ExchangeSpec",
    "MemoryBroker",
    "MemoryHub",
    "Message",
    "NotFound",
    "PublishNotConfirmed",
    "QueueSpec",
    "default_amqp_url",
    "open_broker",
    "redact_url",
    "scrub_secrets",
]


def default_amqp_url() -> str:
    """The broker URL from ``TOWNLET_AMQP_URL``, or the local default (read when called)."""
    return os.environ.get(AMQP_URL_ENV) or DEFAULT_AMQP_URL


def redact_url(url: str) -> str:
    """``url`` without user name and password, safe for logs and error messages."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparseable broker url>"
    if parts.username is None and parts.password is None:
        return url
    netloc = f"***@{host}" + (f":{port}" if port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def scrub_secrets(text: str, url: str) -> str:
    """Remove the URL's credentials from ``text`` (an error message from a library)."""
    out = text.replace(url, redact_url(url))
    try:
        parts = urlsplit(url)
    except ValueError:
        return out
    for secret in (parts.password, parts.username):
        if secret:
            for form in {secret, unquote(secret)}:
                out = out.replace(form, "***")
    return out


def open_broker(url: str, *, hub: MemoryHub | None = None, **kw: Any) -> Broker:
    """Open a connection for ``url``; ``memory://`` needs the process's ``MemoryHub``.

    ``kw`` are ``RabbitBroker`` options (heartbeat, wait_for_broker, ...); the in-process broker
    never loses its connection and ignores them."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "memory":
        if hub is None:
            raise ValueError("memory:// needs a MemoryHub: pass hub=MemoryHub() shared by "
                             "every broker of this process")
        return MemoryBroker(hub)
    if scheme in ("amqp", "amqps"):
        from shared.broker.rabbitmq import RabbitBroker  # lazy: keeps pika out of embedded runs

        return RabbitBroker(url, **kw)
    raise ValueError(f"unsupported broker URL scheme {scheme!r} in {redact_url(url)}: "
                     "use memory://, amqp:// or amqps://")
