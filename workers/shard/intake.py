"""What a delivery brings besides its body: checked before anything is answered or published.

docs/PROTOCOL.md, "Bad input", and docs/THREAT_MODEL.md:

* ``reply_to`` is where the shard publishes a copy of the answer (through the default
  exchange), so it is refused when it names a queue of the project's own namespace
  (``townlet.``): another shard's inbox, the audit queue, the dead-letter queue. Also refused:
  RabbitMQ's direct reply-to pseudo-queues (``amq.rabbitmq.``): a forged one makes the broker
  close the shard's connection, so the command is redelivered and answered again, up to its
  delivery limit, stalling the shard for everyone (found attacking it with aio-pika). Clients
  reply to private queues (server-named ``amq.gen-...`` ones, as ``townlet send`` does). At
  most ``MAX_REPLY_TO`` characters (AMQP's short-string limit).
* ``correlation_id`` is published with the result on the results fanout, so it is refused when
  it is longer than ``MAX_CORRELATION_ID`` or holds a configured console token.
* A command must arrive through the commands exchange: one put straight into the inbox
  through the default exchange (which any user allowed to send replies may do, shards
  included) is refused, so a shard's broker login cannot feed another shard commands.
* A refused delivery is answered with a ``usage`` / ``invalid_args`` refusal on the results
  exchange only: no reply is sent, and a refused correlation_id is not repeated.
* A dead letter the shard publishes itself holds the body (cut to ``max_bytes``), headers and
  ids of the delivery with every configured token replaced by ``***``: only messages that
  crash the worker reach ``townlet.dead`` verbatim, through the broker's delivery limit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from shared.broker.base import Delivery
from shared.console.envelope import ConsoleError, ErrorCode
from workers.shard.records import Reply

MAX_REPLY_TO = 255
MAX_CORRELATION_ID = 128
MAX_DEAD_HEADER_CHARS = 4096
BROKER_PSEUDO_QUEUES = "amq.rabbitmq."  # direct reply-to: see the module docstring
REDACTED = b"***"


@dataclass(frozen=True, slots=True)
class Intake:
    """The reply a delivery may get, and why it is refused (None: it is not)."""

    reply: Reply
    refusal: ConsoleError | None = None


def check_reply(delivery: Delivery, secrets: list[str], namespace: str,
                commands_exchange: str | None = None) -> Intake:
    """Check the route, ``reply_to`` and ``correlation_id`` (see the module docstring)."""
    reply_to, correlation = delivery.reply_to or None, delivery.correlation_id or None
    refusal: ConsoleError | None = None
    if commands_exchange is not None and delivery.exchange != commands_exchange:
        refusal = ConsoleError(ErrorCode.USAGE, f"commands are published to the "
                               f"{commands_exchange} exchange, not straight into an inbox")
    if correlation is not None and (len(correlation) > MAX_CORRELATION_ID
                                    or any(secret in correlation for secret in secrets)):
        correlation, refusal = None, ConsoleError(
            ErrorCode.INVALID_ARGS, f"correlation_id must be at most {MAX_CORRELATION_ID} "
            "characters and never hold a console token (send it in auth.token only)")
    if reply_to is not None and (len(reply_to) > MAX_REPLY_TO
                                 or reply_to.startswith((namespace, BROKER_PSEUDO_QUEUES))):
        reply_to, refusal = None, ConsoleError(
            ErrorCode.USAGE, f"reply_to must name a private queue of at most {MAX_REPLY_TO} "
            f"characters, never one of the {namespace}* queues nor direct reply-to (use a "
            "server-named queue)")
    return Intake((None, None) if refusal else (reply_to, correlation), refusal)


def scrubbed(delivery: Delivery, secrets: list[str], max_bytes: int) -> Delivery:
    """A copy of ``delivery`` fit to dead-letter: tokens replaced, body cut, headers bounded."""
    body = _scrub_bytes(delivery.body, secrets)
    headers = {str(k): _scrub_value(v, secrets) for k, v in delivery.headers.items()}
    if len(repr(headers)) > MAX_DEAD_HEADER_CHARS:
        headers = {"x-original-headers": f"{len(delivery.headers)} dropped (too large)"}
    if len(body) > max_bytes:
        headers["x-original-bytes"] = len(delivery.body)
        body = body[:max_bytes]
    return replace(delivery, body=body, headers=headers,
                   message_id=_scrub_text(delivery.message_id, secrets),
                   correlation_id=_scrub_text(delivery.correlation_id, secrets),
                   reply_to=_scrub_text(delivery.reply_to, secrets))


def _scrub_bytes(data: bytes, secrets: list[str]) -> bytes:
    for secret in secrets:
        raw = secret.encode("utf-8", "surrogatepass")
        if raw in data:
            data = data.replace(raw, REDACTED)
    return data


def _scrub_text(value: str | None, secrets: list[str]) -> str | None:
    if value is None:
        return None
    for secret in secrets:
        value = value.replace(secret, REDACTED.decode())
    return value


def _scrub_value(value: object, secrets: list[str]) -> object:
    if isinstance(value, str):
        return _scrub_text(value, secrets)
    if isinstance(value, bytes):
        return _scrub_bytes(value, secrets)
    if isinstance(value, list | tuple):
        return [_scrub_value(v, secrets) for v in value]
    if isinstance(value, dict):
        return {str(k): _scrub_value(v, secrets) for k, v in value.items()}
    return value
