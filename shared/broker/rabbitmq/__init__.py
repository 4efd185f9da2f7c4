"""RabbitMQ transport over pika's BlockingConnection. The only package that imports pika.

Design choices (see also the contract tests, which run the same suite against memory://):

* One publishing channel in confirm mode (every publish waits for the broker's ack), plus one
  channel per consumed queue (``consumers.py`` says why).
* pika exceptions are translated here: connection problems become ``ConnectionLost`` (after
  reconnect attempts), a 404 becomes ``NotFound``, a nack/return becomes
  ``PublishNotConfirmed``. Error text is scrubbed of credentials.
* Reconnect: when the connection drops, the next call reconnects with capped exponential
  backoff (``connection.py``), re-declares every exchange/queue declared through this object
  (``declarations.py``) and restarts every consumer. Deliveries from the dead connection are
  discarded (the broker redelivers them); acking one later is a silent no-op thanks to
  ``Delivery.epoch``. A publish interrupted by a connection loss is retried once on the new
  connection (``publishing.py``).

Modules: ``broker.py`` (the ``RabbitBroker`` facade), ``connection.py``, ``consumers.py``,
``declarations.py``, ``publishing.py``. Import ``shared.broker.rabbitmq`` only where an AMQP
URL is really opened (``shared/broker/transports.py`` does it lazily).
"""

from __future__ import annotations

from shared.broker.rabbitmq.broker import RabbitBroker

__all__ = ["RabbitBroker"]
