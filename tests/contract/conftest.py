"""Fixtures running the broker contract suite against every transport.

Each test gets a ``Brokers`` factory bound to one transport; names are unique per test and
everything declared through the factory is deleted afterwards, so runs never interfere with
each other or with a real deployment on the same broker.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from shared.broker import TRANSPORTS, MemoryHub, open_broker
from shared.broker.base import Broker, Delivery, ExchangeKind, ExchangeSpec, QueueSpec


@dataclass(frozen=True)
class ContractSetup:
    """How the suite reaches one transport of the table."""

    url: Callable[[pytest.FixtureRequest], str]  # may use fixtures (a server checked once)
    marks: tuple[pytest.MarkDecorator, ...] = ()


# One entry per row of shared/broker/transports.py, by transport name: a new row is covered
# by the whole suite once it has an entry here, and fails it until then.
CONTRACT_SETUP: dict[str, ContractSetup] = {
    "memory": ContractSetup(lambda request: "memory://"),
    "rabbitmq": ContractSetup(lambda request: str(request.getfixturevalue("amqp_url")),
                              (pytest.mark.rabbitmq,)),
}
_NOT_SET_UP = ContractSetup(lambda request: pytest.fail(
    f"transport {request.param!r} has no entry in CONTRACT_SETUP (tests/contract/conftest.py)"))
TRANSPORT_PARAMS = [
    pytest.param(t.name, marks=CONTRACT_SETUP.get(t.name, _NOT_SET_UP).marks, id=t.name)
    for t in TRANSPORTS
]


@pytest.fixture(scope="session")
def amqp_url(rabbit_url: str) -> str:
    """The session's private vhost (tests/procs.py): never a broker the tests did not make."""
    return rabbit_url


class Brokers:
    """Opens connections to one transport and cleans up what the test declared."""

    def __init__(self, transport: str, url: str) -> None:
        self.transport = transport
        self.url = url
        self.hub = MemoryHub()
        self.uid = uuid.uuid4().hex[:10]
        self._open: list[Broker] = []
        self._queues: list[str] = []
        self._exchanges: list[str] = []

    def connect(self, **kw: object) -> Broker:
        broker = open_broker(self.url, hub=self.hub, **kw)
        self._open.append(broker)
        return broker

    def name(self, suffix: str) -> str:
        return f"test.{self.uid}.{suffix}"

    def exchange(self, broker: Broker, suffix: str, kind: ExchangeKind = "direct") -> str:
        spec = ExchangeSpec(self.name(suffix), kind)
        self._exchanges.append(spec.name)
        broker.declare_exchange(spec)
        return spec.name

    def queue(self, broker: Broker, suffix: str, **kw: object) -> str:
        spec = QueueSpec(self.name(suffix), **kw)  # type: ignore[arg-type]
        self._queues.append(spec.name)
        broker.declare_queue(spec)
        return spec.name

    def cleanup(self) -> None:
        for broker in self._open:
            broker.close()
        if self._queues or self._exchanges:
            admin = open_broker(self.url, hub=self.hub)
            for queue in self._queues:
                admin.delete_queue(queue)
            for exchange in self._exchanges:
                admin.delete_exchange(exchange)
            admin.close()


@pytest.fixture(params=TRANSPORT_PARAMS)
def brokers(request: pytest.FixtureRequest) -> Iterator[Brokers]:
    name = request.param
    factory = Brokers(name, CONTRACT_SETUP.get(name, _NOT_SET_UP).url(request))
    yield factory
    factory.cleanup()


def collect(
    broker: Broker,
    count: int,
    timeout: float = 3.0,
    settle: Callable[[Delivery], None] | None = None,
) -> list[Delivery]:
    """Poll until ``count`` deliveries arrived or ``timeout`` passed (RabbitMQ is async)."""
    out: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        got = broker.poll(timeout=0.05, max_messages=count - len(out))
        for delivery in got:
            if settle is not None:
                settle(delivery)
        out.extend(got)
    return out


def eventually(check: Callable[[], bool], timeout: float = 3.0) -> bool:
    """True once ``check`` holds; RabbitMQ applies some effects a few milliseconds late."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()
