"""The transport table: one row per transport, what ``open_broker`` and the CLI read from it,
and the import rules that keep transports independent (no cycles, pika in one package)."""

from __future__ import annotations

import inspect
import subprocess
import sys

import grimp
import pytest

from shared.broker import (
    TRANSPORTS,
    MemoryBroker,
    MemoryHub,
    find_transport,
    network_schemes,
    open_broker,
)
from shared.broker.rabbitmq import RabbitBroker
from tests.contract.conftest import CONTRACT_SETUP
from tests.simtools import ROOT

UNREACHABLE = "amqp://townlet:s3cr3t-pw@127.0.0.1:1/%2F"


def test_every_scheme_has_exactly_one_transport() -> None:
    schemes = [s for t in TRANSPORTS for s in t.schemes]
    assert len(schemes) == len(set(schemes)) and all(s == s.lower() for s in schemes)
    assert len({t.name for t in TRANSPORTS}) == len(TRANSPORTS)
    assert {t.name for t in TRANSPORTS} == set(CONTRACT_SETUP)  # each runs the contract suite


@pytest.mark.parametrize(("url", "name", "in_process"), [
    ("memory://", "memory", True),
    ("amqp://guest:guest@127.0.0.1:5672/%2F", "rabbitmq", False),
    ("AMQPS://host/vh", "rabbitmq", False),
])
def test_find_transport_by_scheme(url: str, name: str, in_process: bool) -> None:
    transport = find_transport(url)
    assert transport is not None
    assert (transport.name, transport.in_process) == (name, in_process)


@pytest.mark.parametrize("url", ["redis://u:pw@host/0", "127.0.0.1:5672", ""])
def test_unknown_schemes_have_no_transport(url: str) -> None:
    assert find_transport(url) is None


def test_network_schemes_are_what_other_processes_can_reach() -> None:
    assert network_schemes() == ["amqp", "amqps"]


def test_unsupported_scheme_names_every_scheme_and_hides_credentials() -> None:
    with pytest.raises(ValueError) as info:
        open_broker("redis://u:pw@host/0")
    assert str(info.value) == ("unsupported broker URL scheme 'redis' in redis://***@host/0: "
                               "use memory://, amqp:// or amqps://")


def test_rabbitmq_row_lists_exactly_the_rabbit_broker_options() -> None:
    [row] = [t for t in TRANSPORTS if t.name == "rabbitmq"]
    params = inspect.signature(RabbitBroker).parameters.values()
    assert row.options == {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def test_options_of_other_transports_are_dropped_for_memory() -> None:
    # The shard worker passes wait_for_broker whatever its URL is.
    broker = open_broker("memory://", hub=MemoryHub(), wait_for_broker=False, heartbeat=5)
    assert isinstance(broker, MemoryBroker)
    broker.close()


@pytest.mark.parametrize("url", ["memory://", UNREACHABLE])
def test_an_option_no_transport_takes_is_a_type_error(url: str) -> None:
    # Raised before any connection is tried (port 1 has no broker), on every transport.
    with pytest.raises(TypeError, match="wait_for_brokr"):
        open_broker(url, hub=MemoryHub(), wait_for_brokr=False)


def test_embedded_brokers_never_load_pika() -> None:
    code = ("import sys\nfrom shared.broker import MemoryHub, open_broker\n"
            "open_broker('memory://', hub=MemoryHub()).close()\n"
            "assert 'pika' not in sys.modules, 'pika loaded'\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_broker_package_has_no_import_cycle_and_pika_stays_in_rabbitmq() -> None:
    # grimp sees every import, including those inside functions and under TYPE_CHECKING.
    graph = grimp.build_graph("shared", "workers", "ops", cache_dir=None,
                              include_external_packages=True)
    modules = sorted(m for m in graph.modules if m.startswith("shared.broker"))
    for module in modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if imported.startswith("shared.") and imported != module:
                assert not graph.chain_exists(imported, module), (module, imported)
    importers = graph.find_modules_that_directly_import("pika")
    assert importers and all(m.startswith("shared.broker.rabbitmq.") for m in importers)
