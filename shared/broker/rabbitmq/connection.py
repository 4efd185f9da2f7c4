"""The RabbitMQ connection under a ``RabbitBroker``: dialling, reconnecting, error translation.

* ``call`` runs one operation on a live connection. A 404 from the broker becomes ``NotFound``,
  any other channel close a ``BrokerError``; a lost connection is redialled and the operation
  retried once, then it is ``ConnectionLost``. Error text is scrubbed of credentials.
* Redialling: with ``wait_for_broker`` (the default) a call retries with capped exponential
  backoff until ``reconnect_timeout``; without it (the shard worker, which keeps ticking through
  an outage) a call makes at most one attempt, none before the backoff delay has passed, and
  raises ``ConnectionLost`` at once if the broker is still away. Bad credentials at start-up
  fail at once: they are a configuration error, not an outage.
* The owner is told through two hooks: ``on_open`` after every successful dial (re-declare,
  restart consumers) and ``on_drop`` whenever the connection is discarded (its deliveries are
  void: the broker redelivers them).
* Outages are reported once each through ``on_event`` (composed by the process's entry point,
  which logs them with its shard id): ``broker_connection_lost`` when the first attempt fails,
  with the retry backoff, and ``broker_reconnected`` with the outage's length once a dial
  succeeds again. pika's own log records are silenced by ``shared/logging.py``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pika
import pika.exceptions as pex
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from shared.broker.base import AccessRefused, BrokerError, BrokerStats, ConnectionLost, NotFound
from shared.broker.redaction import redact_url, scrub_secrets

T = TypeVar("T")
EventSink = Callable[[str, dict[str, Any]], None]  # (event name, fields): one per outage edge

# Errors after which the connection (not just one channel) must be considered gone.
LOST = (pex.AMQPConnectionError, pex.ChannelWrongStateError, OSError)
_AUTH = (pex.AuthenticationError, pex.ProbableAuthenticationError, pex.ProbableAccessDeniedError)


def connection_parameters(
    url: str,
    *,
    heartbeat: int,
    connection_attempts: int,
    socket_timeout: float,
    blocked_connection_timeout: float,
    connection_name: str,
) -> pika.URLParameters:
    params = pika.URLParameters(url)
    params.heartbeat = heartbeat
    params.connection_attempts = connection_attempts
    params.socket_timeout = socket_timeout
    params.blocked_connection_timeout = blocked_connection_timeout
    # The whole dial (TCP, TLS, AMQP handshake) within the socket timeout plus a margin, not
    # pika's default 15 s: an operator command must fail within its --timeout.
    params.stack_timeout = socket_timeout + 1.0
    params.client_properties = {"connection_name": connection_name}
    return params


class ManagedConnection:
    """At most one live pika connection at a time, redialled on demand. Not thread-safe."""

    def __init__(
        self,
        url: str,
        params: pika.URLParameters,
        *,
        reconnect_timeout: float,
        backoff: tuple[float, float],
        wait_for_broker: bool,
        on_reconnect: Callable[[], None] | None,
        on_open: Callable[[], None],
        on_drop: Callable[[], None],
        on_event: EventSink | None = None,
    ) -> None:
        self._url = url
        self._params = params
        self._reconnect_timeout = reconnect_timeout
        self._backoff = backoff
        self._wait_for_broker = wait_for_broker
        self._on_reconnect = on_reconnect
        self._on_open = on_open
        self._on_drop = on_drop
        self._on_event = on_event
        self._outage: tuple[float, int] | None = None  # (monotonic start, failed attempts)
        self._retry_delay = backoff[0]
        self._next_attempt = 0.0  # monotonic time before which a fail-fast call won't redial
        self.stats = BrokerStats()
        self.connection: BlockingConnection | None = None
        self._pub: BlockingChannel | None = None
        self.closed = False

    @property
    def is_open(self) -> bool:
        return self.connection is not None and self.connection.is_open

    def channel(self) -> BlockingChannel:
        """The channel in confirm mode for publishes and admin operations, reopened if closed."""
        if self._pub is None or not self._pub.is_open:
            assert self.connection is not None
            self._pub = self.connection.channel()
            self._pub.confirm_delivery()
        return self._pub

    def call(self, op: Callable[[], T]) -> T:
        """Run ``op`` on a live connection, reconnecting and retrying once if it drops."""
        self.check_open()
        for _attempt in range(2):
            self.ensure_connected()
            try:
                return op()
            except pex.ChannelClosedByBroker as exc:
                self.note_error(exc)  # channel() reopens the publishing channel if needed
                if exc.reply_code == 404:
                    raise NotFound(self.scrub(exc.reply_text)) from None
                if exc.reply_code == 403:
                    raise AccessRefused(self.scrub(f"403 {exc.reply_text}")) from None
                raise BrokerError(self.scrub(f"{exc.reply_code} {exc.reply_text}")) from None
            except LOST as exc:
                self.on_failure(exc)
        raise ConnectionLost(f"connection to {redact_url(self._url)} lost twice in one call")

    def ensure_connected(self) -> None:
        self.check_open()
        if not self.is_open:
            self.connect(initial=False)

    def connect(self, *, initial: bool) -> None:
        if not initial and not self._wait_for_broker:
            self._redial_once()
            return
        self.drop()
        deadline = time.monotonic() + self._reconnect_timeout
        delay = self._backoff[0]
        while True:
            try:
                self._open()
                break
            except (*LOST, pex.AMQPError) as exc:
                self.note_error(exc)
                self.drop()
                # Bad credentials at start-up are a configuration error, not an outage.
                if time.monotonic() + delay > deadline or (initial and isinstance(exc, _AUTH)):
                    raise ConnectionLost(
                        f"cannot connect to {redact_url(self._url)}: {self.stats.last_error}"
                    ) from None
                self._outage_began(delay)
                time.sleep(delay)
                delay = min(delay * 2, self._backoff[1])
        if not initial:
            self._reconnected()
        else:
            self._outage_ended()  # a start that had to wait for the broker

    def _redial_once(self) -> None:
        """One reconnect attempt if the backoff allows it; ``ConnectionLost`` if none succeeds."""
        self.drop()
        now = time.monotonic()
        if now < self._next_attempt:
            raise ConnectionLost(f"{redact_url(self._url)} unreachable: {self.stats.last_error}")
        try:
            self._open()
        except (*LOST, pex.AMQPError) as exc:
            self.note_error(exc)
            self.drop()
            self._outage_began(self._retry_delay)
            self._next_attempt = now + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, self._backoff[1])
            raise ConnectionLost(
                f"cannot reconnect to {redact_url(self._url)}: {self.stats.last_error}") from None
        self._retry_delay, self._next_attempt = self._backoff[0], 0.0
        self._reconnected()

    def _open(self) -> None:
        self.connection = BlockingConnection(self._params)
        self.channel()
        self._on_open()

    def _reconnected(self) -> None:
        self.stats.reconnects += 1
        self._outage_ended()
        if self._on_reconnect is not None:
            self._on_reconnect()

    def _outage_ended(self) -> None:
        if self._outage is not None:
            started, attempts = self._outage
            self._outage = None
            self._emit("broker_reconnected", outage_s=round(time.monotonic() - started, 3),
                       failed_attempts=attempts, reconnects=self.stats.reconnects)

    def _outage_began(self, retry_in: float) -> None:
        """Count a failed dial; the first of an outage is reported, the rest only counted."""
        if self._outage is not None:
            self._outage = (self._outage[0], self._outage[1] + 1)
            return
        self._outage = (time.monotonic(), 1)
        self._emit("broker_connection_lost", error=self.stats.last_error,
                   retry_in_s=round(retry_in, 3), max_backoff_s=self._backoff[1])

    def _emit(self, event: str, **fields: Any) -> None:
        if self._on_event is not None:
            self._on_event(event, {"broker": redact_url(self._url),
                                   "connection": self._params.client_properties.get(
                                       "connection_name"), **fields})

    def on_failure(self, exc: BaseException) -> None:
        """Record ``exc``; if the connection itself is gone, forget it (its deliveries are void).

        A failure confined to one channel leaves the connection alone: the publishing channel
        is reopened lazily by ``channel`` and consumer channels by their owner on the next poll.
        """
        self.note_error(exc)
        if not self.is_open:
            if self.connection is not None:  # it was live until now: an outage begins
                self._outage_began(0.0 if not self._wait_for_broker else self._backoff[0])
            self.drop()

    def drop(self) -> None:
        """Discard the connection (closing it if it still looks open) and tell the owner."""
        conn, self.connection, self._pub = self.connection, None, None
        self._on_drop()
        if conn is not None and conn.is_open:
            # Closing a half-broken connection can fail in any way; it is being discarded.
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        """Refuse every later call and discard the connection."""
        self.closed = True
        self.drop()

    def note_error(self, exc: BaseException) -> None:
        self.stats.last_error = self.scrub(repr(exc))  # pika's str() is often empty

    def scrub(self, text: str) -> str:
        return scrub_secrets(text, self._url)

    def check_open(self) -> None:
        if self.closed:
            raise BrokerError("broker connection is closed")
