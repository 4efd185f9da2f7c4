"""The in-process broker: a real broker with RabbitMQ quorum-queue semantics, no network.

``MemoryHub`` (``hub.py``) is the "server"; one hub is shared by every ``MemoryBroker``
(``client.py``) connection in the process. Queue semantics are in ``queue.py``, exchange routing
in ``routing.py``. There is no module-level state: whoever composes the process creates the hub
and hands it to the brokers.

Semantics chosen to match RabbitMQ 3.10+ quorum queues (the contract tests check both):

* Bodies are copied bytes; headers are deep-copied. Fanout copies to every bound queue, direct
  routes by key, the default exchange ``""`` routes to the queue named by the key, topic uses
  ``*``/``#``. Unroutable messages are dropped (no ``mandatory``).
* Messages are pushed to consumers as soon as they have prefetch capacity, so queue depth
  counts only messages not yet handed to any consumer (like ``message_count`` in AMQP).
* A returned message (nack with requeue, cancel, connection close) goes back to its original
  position: the ready list is ordered by enqueue sequence, so returns land before anything
  published after them. RabbitMQ quorum queues with a delivery limit serve returns first (in
  return order), which is the same order whenever messages come back in delivery order, as
  they do on cancel/close. Caveat: RabbitMQ 3.10-3.13 quorum queues *without* a delivery
  limit put nacked messages at the back; townlet never nacks on such queues.
* Each return increments the delivery count and sets ``redelivered``; when the count exceeds
  the queue's delivery limit the message is dead-lettered (reason ``delivery_limit``); a nack
  without requeue dead-letters with reason ``rejected``. Dead-lettered copies carry ``x-death``
  and ``x-first-death-*`` headers like RabbitMQ's.
* Single active consumer: only the first registered consumer receives; when it goes, its
  unacked messages are returned first and the next consumer takes over.
"""

from __future__ import annotations

from shared.broker.memory.client import MemoryBroker
from shared.broker.memory.hub import MemoryHub

__all__ = ["MemoryBroker", "MemoryHub"]
