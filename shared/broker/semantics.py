"""AMQP/RabbitMQ semantics shared by the transports, as pure functions (no I/O, no pika).

Kept apart so the in-memory broker and the RabbitMQ transport agree by construction on the
details the contract tests check: queue x-arguments, topic matching, dead-letter headers.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from shared.broker.base import QueueSpec


def queue_arguments(spec: QueueSpec) -> dict[str, Any]:
    """The x-arguments RabbitMQ needs for ``spec``."""
    args: dict[str, Any] = {}
    if spec.quorum:
        args["x-queue-type"] = "quorum"
    if spec.single_active_consumer:
        args["x-single-active-consumer"] = True
    if spec.delivery_limit is not None:
        args["x-delivery-limit"] = spec.delivery_limit
    if spec.dead_letter_exchange is not None:
        args["x-dead-letter-exchange"] = spec.dead_letter_exchange
    if spec.expires_ms is not None:
        args["x-expires"] = spec.expires_ms
    if spec.max_length is not None:
        args["x-max-length"] = spec.max_length
    if spec.max_length_bytes is not None:
        args["x-max-length-bytes"] = spec.max_length_bytes
    return args


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: ``*`` is one word, ``#`` is zero or more words."""
    return _match_words(pattern.split("."), key.split("."))


def _match_words(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match_words(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head in ("*", words[0])) and _match_words(rest, words[1:])


def dead_letter_headers(
    headers: dict[str, object], queue: str, reason: str, exchange: str, routing_key: str
) -> dict[str, object]:
    """Headers of a dead-lettered copy, shaped like RabbitMQ's (``x-death``, ``x-first-*``)."""
    out = {k: v for k, v in copy.deepcopy(headers).items() if k != "x-delivery-count"}
    death: dict[str, object] = {
        "count": 1,
        "reason": reason,
        "queue": queue,
        "time": datetime.now(UTC).replace(microsecond=0),
        "exchange": exchange,
        "routing-keys": [routing_key],
    }
    previous = out.get("x-death")
    out["x-death"] = [death, *(previous if isinstance(previous, list) else [])]
    out.setdefault("x-first-death-exchange", exchange)
    out.setdefault("x-first-death-queue", queue)
    out.setdefault("x-first-death-reason", reason)
    return out


def plain_headers(value: Any) -> Any:
    """Plain Python header values: pika decodes AMQP longs as an int subclass printing ``1L``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, dict):
        return {str(k): plain_headers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_headers(v) for v in value]
    return value
