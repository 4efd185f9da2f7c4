"""Broker transports chosen by URL: ``memory://`` (in-process) or ``amqp(s)://`` (RabbitMQ).

The public names, gathered from the modules that define them: the contract in ``base``, the
transport table and ``open_broker`` in ``transports``, URL redaction in ``redaction``. Nothing
is defined here, and no module of the package imports this one, so importing a transport
never runs a cycle through it. pika is imported only when an AMQP URL is opened.
"""

from __future__ import annotations

from shared.broker.base import (
    AccessRefused,
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
    QueueStats,
    Unroutable,
)
from shared.broker.memory import MemoryBroker, MemoryHub
from shared.broker.redaction import redact_url, scrub_secrets, url_user
from shared.broker.transports import (
    AMQP_URL_ENV,
    DEFAULT_AMQP_URL,
    TRANSPORTS,
    Transport,
    default_amqp_url,
    find_transport,
    network_schemes,
    open_broker,
)

__all__ = [
    "AMQP_URL_ENV",
    "AccessRefused",
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
    "QueueStats",
    "Unroutable",
    "TRANSPORTS",
    "Transport",
    "default_amqp_url",
    "find_transport",
    "network_schemes",
    "open_broker",
    "redact_url",
    "scrub_secrets",
    "url_user",
]
