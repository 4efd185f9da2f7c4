"""Broker trouble: what the worker's parts report when a broker call fails.

The inbox, the outbox and the health publisher hand every ``BrokerError`` to one
``BrokerTrouble``. It notes the error for health (``LastError``), logs it at most every few
seconds (a lost connection not at all: the adapter logs each outage once, with its backoff),
and says what the error means must be repaired; the worker does the repairs
(``take_repairs``), so no part calls another:

* ``ConnectionLost``: deliveries of the dead connection can't be acked (the broker redelivers
  them), so the inbox must drop them. After a channel-level error the consumer is intact and
  its deliveries must still be answered, so only a lost connection drops them.
* ``NotFound``: something was deleted under us (an exchange or queue): declare the topology
  again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.broker.base import ConnectionLost, NotFound
from shared.telemetry import LastError

TROUBLE_LOG_EVERY_S = 5.0


@dataclass(frozen=True, slots=True)
class Repairs:
    drop_inbox: bool = False
    redeclare: bool = False

    def __bool__(self) -> bool:
        return self.drop_inbox or self.redeclare


NO_REPAIRS = Repairs()


class BrokerTrouble:
    def __init__(self, errors: LastError, log: Any, clock: Callable[[], float],
                 unsent: Callable[[], int]) -> None:
        self.errors = errors
        self.log = log
        self.clock = clock
        self._unsent = unsent  # for the log line: how much is waiting for the broker
        self._logged_at = -TROUBLE_LOG_EVERY_S
        self._drop_inbox = False
        self._redeclare = False
        self.needs_repair = False  # cheap to test on every call-down
        self.reported = 0  # broker errors so far (a counter for metrics)

    def report(self, exc: Exception) -> None:
        self.reported += 1
        if isinstance(exc, ConnectionLost):
            self._drop_inbox = self.needs_repair = True
        elif isinstance(exc, NotFound):
            self._redeclare = self.needs_repair = True
        self.errors.note(f"{type(exc).__name__}: {exc}")
        if isinstance(exc, ConnectionLost):
            return  # the broker adapter logs each outage once (broker_connection_lost)
        now = self.clock()
        if now - self._logged_at >= TROUBLE_LOG_EVERY_S:
            self._logged_at = now
            self.log.warning("broker_trouble", error=str(exc), unsent_outputs=self._unsent())

    def take_repairs(self) -> Repairs:
        """What the errors reported since the last call ask for (then forgotten)."""
        if not (self._drop_inbox or self._redeclare):
            return NO_REPAIRS  # the usual case, several times a tick: allocate nothing
        repairs = Repairs(self._drop_inbox, self._redeclare)
        self._drop_inbox = self._redeclare = self.needs_repair = False
        return repairs
