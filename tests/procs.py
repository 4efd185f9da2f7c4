"""Run `townlet shard` / `townlet audit` as real processes against a real RabbitMQ.

What the end-to-end and chaos tests share:

* ``rabbit_url`` (session fixture): a private vhost on the local node (``TOWNLET_TEST_AMQP_URL``,
  default 127.0.0.1:5672; a non-local URL is refused), deleted at the end; skip when RabbitMQ
  is unreachable, fail when ``CI=true``. ``townlet.audit``, ``townlet.dead`` and the exchanges
  have fixed names: another test run, or a deployment, on the same node would otherwise
  consume our results or purge our audit queue. The contract suite uses the same vhost.
* ``harness`` (fixture): a tmp working directory holding a copy of ``configs/``, process
  starters (``[sys.executable, "-m", "ops.cli", ...]``, broker URL only in the environment),
  raw-pika publishers and recorders; at teardown every process still running is SIGKILLed,
  connections are closed, the test's shard inboxes are deleted and each process's log tail is
  printed (pytest shows it when the test failed).

Every wait here has a deadline; a timeout names what was awaited and shows the relevant log.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import msgpack
import pika
import pika.exceptions
import pytest
import yaml

from shared.broker import DEFAULT_AMQP_URL, BrokerError, open_broker, redact_url
from shared.broker.semantics import queue_arguments
from shared.topology import Topology

REPO = Path(__file__).resolve().parents[1]
TOPO = Topology()
BASE_CONFIG = "configs/examples/poc_hybrid.yaml"
# Random per run, so "the token appears nowhere" can never pass or fail by coincidence.
ADMIN_TOKEN = f"adm-{uuid.uuid4().hex}"
VIEWER_TOKEN = f"vwr-{uuid.uuid4().hex}"
ADMIN_LABEL, VIEWER_LABEL = "ops-admin", "ops-viewer"
# The fleet result key of every process a harness starts: results are signed and verified, as
# in production (docs/THREAT_MODEL.md). Random per run, like the tokens.
RESULT_KEY = f"rk-{uuid.uuid4().hex}{uuid.uuid4().hex}"
_UNSET: Any = object()
# Runs argv[2:] under RLIMIT_FSIZE = argv[1] (Python already ignores SIGXFSZ, so writes past
# the limit fail with EFBIG instead of killing the process).
_FSIZE_WRAPPER = ("import os, resource, sys; n = int(sys.argv[1]); "
                  "resource.setrlimit(resource.RLIMIT_FSIZE, (n, n)); "
                  "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])")


def free_port() -> int:
    """A TCP port nobody listens on right now (for --metrics-port and private nodes)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- waiting ----------------------------------------------------------------------------------
def wait_until(check: Callable[[], bool], timeout: float, what: str | Callable[[], str],
               interval: float = 0.02) -> None:
    """Poll ``check`` until it holds; fail after ``timeout`` seconds naming ``what``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            detail = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {detail}")
        time.sleep(interval)


# -- the broker ---------------------------------------------------------------------------------
# Tests never read TOWNLET_AMQP_URL (production's variable): a test run pointed at a real
# deployment would consume its results or purge its audit queue. They take the node from
# TOWNLET_TEST_AMQP_URL (default: the local node), refuse anything that is not on this machine,
# and make a private vhost there for the session, deleted at the end.
TEST_URL_ENV = "TOWNLET_TEST_AMQP_URL"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _unavailable(message: str) -> None:
    """Skip when RabbitMQ can't be used here, but fail in CI where it must be."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_rabbitmq(url: str) -> None:
    """Skip when RabbitMQ is unreachable, but fail in CI where it must be there."""
    try:
        open_broker(url, reconnect_timeout=0, socket_timeout=2).close()
    except BrokerError as exc:
        _unavailable(f"RabbitMQ unreachable at {redact_url(url)}: {exc}")


def local_test_node_url() -> str:
    """The node the tests may use; a non-local URL is refused (pytest.fail), never used."""
    url = os.environ.get(TEST_URL_ENV) or DEFAULT_AMQP_URL
    host = urlsplit(url).hostname
    if host not in LOCAL_HOSTS:
        pytest.fail(f"{TEST_URL_ENV}={redact_url(url)} is not a local broker: tests only use a "
                    f"node on this machine ({', '.join(LOCAL_HOSTS)}), in a vhost of their own")
    return url


def _rabbitmqctl(*args: str) -> bool:
    try:
        done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, timeout=30,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def private_vhost(base_url: str) -> tuple[str, Callable[[], None]]:
    """A fresh vhost on the local node (URL, cleanup). Skips (fails in CI) when none can be
    made: there is no fallback to a shared vhost."""
    parts = urlsplit(base_url)
    if not shutil.which("rabbitmqctl"):
        _unavailable("rabbitmqctl not found: the tests need it to make their own vhost")
    vhost = f"townlet-test-{uuid.uuid4().hex[:10]}"
    user = unquote(parts.username or "guest")
    if not _rabbitmqctl("add_vhost", vhost):
        _unavailable(f"rabbitmqctl add_vhost {vhost} failed")

    def cleanup() -> None:
        _rabbitmqctl("delete_vhost", vhost)

    url = urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), parts.query,
                      parts.fragment))
    if not _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*"):
        cleanup()
        _unavailable(f"rabbitmqctl set_permissions on {vhost} failed")
    return url, cleanup


@pytest.fixture(scope="session")
def rabbit_url() -> Iterator[str]:
    """The session's own vhost on the local node (deleted at the end)."""
    base = local_test_node_url()
    require_rabbitmq(base)
    url, cleanup = private_vhost(base)
    try:
        require_rabbitmq(url)
        yield url
    finally:
        cleanup()


def connect(url: str) -> pika.BlockingConnection:
    params = pika.URLParameters(url)
    params.socket_timeout = 5
    params.blocked_connection_timeout = 30
    return pika.BlockingConnection(params)


def declare_inbox(channel: Any, shard_id: str) -> str:
    """Declare a shard's inbox exactly as the worker does (so a command never goes unrouted)."""
    spec = TOPO.shard_queue_spec(shard_id)
    channel.exchange_declare(TOPO.commands_exchange, "direct", durable=True)
    channel.queue_declare(spec.name, durable=True, arguments=queue_arguments(spec))
    channel.queue_bind(spec.name, TOPO.commands_exchange, routing_key=shard_id)
    return spec.name


def pack(payload: dict[str, Any]) -> bytes:
    return msgpack.packb(payload, use_bin_type=True)


def command(name: str, *args: Any, cmd_id: str | None, token: str | None = VIEWER_TOKEN,
            mode: str = "viewer", **kwargs: Any) -> dict[str, Any]:
    """A command body as PROTOCOL.md has it (v, cmd_id, name, args, kwargs, mode, auth)."""
    body: dict[str, Any] = {"v": 1, "name": name, "args": list(args), "kwargs": kwargs,
                            "mode": mode}
    if cmd_id is not None:
        body["cmd_id"] = cmd_id
    if token is not None:
        body["auth"] = {"token": token}
    return body


def admin(name: str, *args: Any, cmd_id: str, **kwargs: Any) -> dict[str, Any]:
    return command(name, *args, cmd_id=cmd_id, token=ADMIN_TOKEN, mode="admin", **kwargs)


class Publisher:
    """Operator side over raw pika: confirmed, persistent, mandatory publishes of commands."""

    def __init__(self, url: str) -> None:
        self.conn = connect(url)
        self.channel = self.conn.channel()
        self.channel.confirm_delivery()
        self.channel.exchange_declare(TOPO.commands_exchange, "direct", durable=True)
        self.published = 0

    def ensure_inbox(self, shard_id: str) -> str:
        return declare_inbox(self.channel, shard_id)

    def send(self, shard_id: str, payload: dict[str, Any] | bytes, *,
             message_id: str | None = _UNSET, reply_to: str | None = None,
             correlation_id: str | None = None) -> None:
        """Publish and wait for the broker's confirm (raises if unroutable or nacked)."""
        body = payload if isinstance(payload, bytes) else pack(payload)
        if message_id is _UNSET:
            message_id = payload.get("cmd_id") if isinstance(payload, dict) else None
        props = pika.BasicProperties(content_type="application/msgpack", delivery_mode=2,
                                     message_id=message_id, reply_to=reply_to,
                                     correlation_id=correlation_id)
        self.channel.basic_publish(TOPO.commands_exchange, shard_id, body, props,
                                   mandatory=True)
        self.published += 1

    def inbox_depth(self, shard_id: str) -> int:
        """Commands ready in a shard's inbox (not counting ones a worker holds unacked)."""
        frame = self.channel.queue_declare(TOPO.shard_queue(shard_id), passive=True)
        return int(frame.method.message_count)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


@dataclass(frozen=True)
class Captured:
    """One message as a consumer saw it."""

    headers: dict[str, Any]
    body: bytes
    data: Any  # the decoded body (None if it was not msgpack)
    message_id: str | None
    correlation_id: str | None
    received: float


class Recorder:
    """Everything published to a fanout exchange (or sent to a private reply queue).

    Own connection on its own thread (pika is not thread-safe), auto-ack, exclusive queue.
    """

    def __init__(self, url: str, exchange: str | None, *, name: str = "recorder") -> None:
        self.url = url
        self.exchange = exchange
        self.name = name
        self.queue = ""
        self._items: list[Captured] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        if not self._ready.wait(15):
            raise AssertionError(f"{name}: could not subscribe within 15s")
        if self._error is not None:
            raise AssertionError(f"{name}: subscribe failed: {self._error!r}")

    def _run(self) -> None:
        try:
            conn = connect(self.url)
        except BaseException as exc:  # surfaced to the constructor
            self._error = exc
            self._ready.set()
            return
        try:
            channel = conn.channel()
            self.queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
            if self.exchange is not None:
                channel.exchange_declare(self.exchange, "fanout", durable=True)
                channel.queue_bind(self.queue, self.exchange)
            channel.basic_consume(self.queue, self._on_message, auto_ack=True)
            self._ready.set()
            while not self._stop.is_set():
                conn.process_data_events(time_limit=0.05)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def _on_message(self, _ch: Any, _method: Any, props: Any, body: bytes) -> None:
        try:
            data = msgpack.unpackb(body, raw=False)
        except Exception:
            data = None
        headers = {str(k): (int(v) if isinstance(v, int) and not isinstance(v, bool) else v)
                   for k, v in (props.headers or {}).items()}
        item = Captured(headers, bytes(body), data, props.message_id, props.correlation_id,
                        time.monotonic())
        with self._lock:
            self._items.append(item)

    def items(self) -> list[Captured]:
        self._check()
        with self._lock:
            return list(self._items)

    def bodies(self) -> list[dict[str, Any]]:
        return [item.data for item in self.items() if isinstance(item.data, dict)]

    def captured(self) -> list[Captured]:
        """What arrived, even after the connection died (a broker stopped under it)."""
        with self._lock:
            return list(self._items)

    def wait_for(self, check: Callable[[list[Captured]], bool], timeout: float,
                 what: str | Callable[[], str]) -> list[Captured]:
        wait_until(lambda: check(self.items()), timeout, what)
        return self.items()

    def _check(self) -> None:
        if self._error is not None:
            raise AssertionError(f"{self.name} died: {self._error!r}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


# -- results and telemetry as the tests read them ----------------------------------------------
def results_of(recorder: Recorder, shard_id: str) -> list[Captured]:
    return [c for c in recorder.items()
            if isinstance(c.data, dict) and c.data.get("shard_id") == shard_id]


def ticks_of(recorder: Recorder, shard_id: str) -> list[Captured]:
    """A shard's per-tick telemetry (snapshot/diff), in arrival order; health left out."""
    return [c for c in recorder.items()
            if c.headers.get("shard_id") == shard_id and c.headers.get("kind") != "health"]


def last_tick(recorder: Recorder, shard_id: str) -> int:
    return max((int(c.headers["tick"]) for c in ticks_of(recorder, shard_id)), default=0)


def write_telemetry_jsonl(recorder: Recorder, shard_id: str, path: Path) -> set[int]:
    """Captured telemetry of one shard as JSON lines (what `townlet replay --telemetry` reads);
    returns the ticks written."""
    items = ticks_of(recorder, shard_id)
    with path.open("w", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps(item.data, sort_keys=True) + "\n")
    return {int(item.data["tick"]) for item in items}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    # "\n" only, as every reader of the audit log must (docs/PROTOCOL.md, "The audit log").
    return [json.loads(line) for line in path.read_bytes().decode("utf-8").split("\n") if line]


def differing_answers(items: list[Captured]) -> dict[tuple[str, str], list[Any]]:
    """(shard_id, cmd_id) answered with more than one distinct body -> those bodies.

    Guarantee 2 seen from outside: every result published for a command is byte-identical."""
    groups: dict[tuple[str, str], list[Captured]] = {}
    for item in items:
        groups.setdefault((str(item.data["shard_id"]), str(item.data["cmd_id"])), []).append(item)
    return {key: [i.data for i in group] for key, group in groups.items()
            if len({i.body for i in group}) > 1}


def unsigned(result: dict[str, Any]) -> dict[str, Any]:
    """A published result without its signature: as telemetry's console_results carry it (the
    signature belongs to the results message, docs/PROTOCOL.md, "Signatures")."""
    return {k: v for k, v in result.items() if k != "sig"}


def audit_key(result: dict[str, Any]) -> tuple[str, str]:
    """The audit log's dedupe key (PROTOCOL guarantee 5 + shared/audit/records.py): one line per
    applied (shard_id, cmd_id); a refusal is keyed ``<cmd_id>#refused:<code>``."""
    cmd_id = str(result["cmd_id"])
    if result.get("applied") is False:
        cmd_id = f"{cmd_id}#refused:{(result.get('error') or {}).get('code')}"
    return str(result["shard_id"]), cmd_id


def audit_records(path: Path, shard_ids: set[str]) -> list[dict[str, Any]]:
    """The audit log's lines of these shards (other tests' shards may share the queue), as the
    shards published them: without the writer's hash chain link (``townlet verify`` checks
    that, see ``verify_audit``)."""
    return [{k: v for k, v in r.items() if k != "chain"} for r in read_jsonl(path)
            if r.get("shard_id") in shard_ids]


def verify_audit(path: Path, env: dict[str, str], *, key_env: str | None = None) -> str:
    """Run `townlet verify` on an audit log; its output (it must exit 0)."""
    argv = [sys.executable, "-m", "ops.cli", "verify", str(path)]
    if key_env is not None:
        argv += ["--key-env", key_env]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, f"townlet verify failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def wait_audited(path: Path, results: list[dict[str, Any]], timeout: float = 20.0) -> None:
    wanted = {audit_key(r) for r in results}
    shards = {str(r["shard_id"]) for r in results}

    def missing() -> list[tuple[str, str]]:
        return sorted(wanted - {audit_key(r) for r in audit_records(path, shards)})

    wait_until(lambda: not missing(), timeout,
               lambda: f"{len(missing())} audit lines, e.g. {missing()[:10]}", interval=0.1)


# -- processes --------------------------------------------------------------------------------
class Proc:
    """One `townlet ...` child process (restartable); stdout+stderr appended to ``log``."""

    def __init__(self, name: str, argv: list[str], cwd: Path, env: dict[str, str],
                 log: Path) -> None:
        self.name = name
        self.argv = argv
        self.cwd = cwd
        self.env = env
        self.log = log
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._offset = 0
        self.started_at = 0.0

    def start(self, *, max_file_bytes: int | None = None) -> Proc:
        """Start (again). ``max_file_bytes`` simulates a full disk: the process can't grow any
        file past that size (RLIMIT_FSIZE; writes fail with EFBIG). Its output then goes
        through a pipe, so the limit never hits its own log."""
        assert not self.alive, f"{self.name} is already running"
        self.starts += 1
        argv = self.argv
        if max_file_bytes is not None:
            argv = [sys.executable, "-c", _FSIZE_WRAPPER, str(max_file_bytes), *argv[1:]]
        with self.log.open("ab") as fh:
            fh.write(f"=== {self.name} start #{self.starts}\n".encode())
            self._offset = fh.tell()
            self.started_at = time.monotonic()
            out: Any = subprocess.PIPE if max_file_bytes is not None else fh
            self.popen = subprocess.Popen(argv, cwd=self.cwd, env=self.env,
                                          stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT)
        if max_file_bytes is not None:
            threading.Thread(target=self._copy_output, args=(self.popen,), daemon=True).start()
        return self

    def _copy_output(self, popen: subprocess.Popen[bytes]) -> None:
        assert popen.stdout is not None
        with self.log.open("ab") as fh:
            for line in popen.stdout:
                fh.write(line)
                fh.flush()

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def output(self, all_runs: bool = False) -> str:
        """This run's output (or every run's)."""
        if not self.log.exists():
            return ""
        data = self.log.read_bytes()
        return data.decode("utf-8", "replace") if all_runs else \
            data[self._offset:].decode("utf-8", "replace")

    def tail(self, lines: int = 25, all_runs: bool = True) -> str:
        return "\n".join(self.output(all_runs).splitlines()[-lines:])

    def events(self, event: str) -> list[dict[str, Any]]:
        """This run's JSON log records with ``event == event``."""
        out = []
        for line in self.output().splitlines():
            if f'"{event}"' in line:
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if record.get("event") == event:
                        out.append(record)
        return out

    def wait_log(self, marker: str, timeout: float = 15.0) -> float:
        """Wait until this run has logged ``marker``; returns the seconds it took."""
        def seen() -> bool:
            if marker in self.output():
                return True
            if not self.alive:
                raise AssertionError(f"{self.name} exited ({self.returncode}) before logging "
                                     f"{marker!r}:\n{self.tail()}")
            return False

        wait_until(seen, timeout, lambda: f"{self.name} to log {marker!r}:\n{self.tail()}")
        return time.monotonic() - self.started_at

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def send_signal(self, sig: signal.Signals) -> None:
        if self.alive:
            assert self.popen is not None
            self.popen.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        assert self.popen is not None
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit within {timeout}s:\n"
                                 f"{self.tail()}") from None

    def kill(self) -> int:
        """SIGKILL (a crash at an arbitrary instant) and reap."""
        self.send_signal(signal.SIGKILL)
        return self.wait()

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM (an orderly stop) and reap; the exit code."""
        self.send_signal(signal.SIGTERM)
        return self.wait(timeout)


class Harness:
    """Per-test processes, connections and names; ``close`` leaves nothing behind."""

    def __init__(self, url: str, root: Path) -> None:
        self.url = url
        self.root = root
        self.cwd = root / "work"
        self.cwd.mkdir(parents=True)
        shutil.copytree(REPO / "configs", self.cwd / "configs")
        self.env = {**os.environ, "TOWNLET_AMQP_URL": url, "PYTHONUNBUFFERED": "1",
                    "TOWNLET_RESULT_KEY": RESULT_KEY}
        self.env.pop("TOWNLET_CONSOLE_TOKEN", None)
        self.env.pop("TOWNLET_SHARD_KEY", None)
        self.procs: list[Proc] = []
        self.shard_ids: list[str] = []
        self._closers: list[Callable[[], None]] = []

    # names and files
    def shard_id(self, prefix: str) -> str:
        shard_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.shard_ids.append(shard_id)
        return shard_id

    def config(self, name: str, *, auth: bool = True, **console: Any) -> Path:
        """A copy of the example config next to the original (so its relative paths hold)."""
        raw = yaml.safe_load((self.cwd / BASE_CONFIG).read_text(encoding="utf-8"))
        if auth:
            raw["console_auth"] = {"enabled": True, "require_auth_for_viewer": True, "tokens": [
                {"token": ADMIN_TOKEN, "role": "admin", "label": ADMIN_LABEL},
                {"token": VIEWER_TOKEN, "role": "viewer", "label": VIEWER_LABEL}]}
        raw["console"].update(console)
        path = self.cwd / "configs" / "examples" / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        return path

    # processes
    def _proc(self, name: str, args: list[str]) -> Proc:
        proc = Proc(name, [sys.executable, "-m", "ops.cli", *args], self.cwd, self.env,
                    self.root / f"{name}.log")
        self.procs.append(proc)
        return proc

    def shard(self, shard_id: str, config: Path, *, state_dir: Path | None = None,
              tick_rate: float = 50.0, checkpoint_every: int = 200, name: str | None = None,
              extra: tuple[str, ...] = ()) -> Proc:
        """A `townlet shard` process (not started)."""
        state = state_dir or self.root / "state" / shard_id
        return self._proc(name or f"shard-{shard_id}", [
            "shard", "--shard", shard_id, "--config", str(config), "--state-dir", str(state),
            "--tick-rate", str(tick_rate), "--checkpoint-every", str(checkpoint_every), *extra])

    def audit(self, log: Path, name: str = "audit", extra: tuple[str, ...] = ()) -> Proc:
        """A `townlet audit` process (not started)."""
        return self._proc(name, ["audit", "--audit-log", str(log), *extra])

    def replay(self, config: Path, shard_id: str, ticks: int, audit: Path,
               telemetry: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ops.cli", "replay", "--config", str(config), "--shard",
             shard_id, "--ticks", str(ticks), "--audit-log", str(audit), "--telemetry",
             str(telemetry)],
            cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=120, check=False)

    # connections
    def publisher(self) -> Publisher:
        publisher = Publisher(self.url)
        self._closers.append(publisher.close)
        return publisher

    def recorder(self, exchange: str | None, name: str = "recorder") -> Recorder:
        recorder = Recorder(self.url, exchange, name=name)
        self._closers.append(recorder.close)
        return recorder

    def purge_audit_queue(self) -> None:
        """Start from an empty ``townlet.audit`` (results of earlier tests are not ours)."""
        broker = open_broker(self.url)
        try:
            broker.declare_exchange(TOPO.results_exchange_spec())
            broker.declare_exchange(TOPO.dead_exchange_spec())
            broker.declare_queue(TOPO.audit_queue_spec())
            broker.purge(TOPO.audit_queue)
        finally:
            broker.close()

    def close(self) -> None:
        for proc in self.procs:
            if proc.alive:
                with contextlib.suppress(Exception):
                    proc.kill()
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                closer()
        if self.shard_ids:
            with contextlib.suppress(Exception):
                conn = connect(self.url)
                channel = conn.channel()
                for shard_id in self.shard_ids:
                    with contextlib.suppress(pika.exceptions.AMQPError):
                        channel.queue_delete(TOPO.shard_queue(shard_id))
                conn.close()
        for proc in self.procs:  # shown by pytest when the test failed
            print(f"--- {proc.name} (pid {proc.popen.pid if proc.popen else '-'}, "
                  f"{proc.starts} start(s), rc {proc.returncode}) log tail:\n{proc.tail(15)}")


@pytest.fixture()
def harness(rabbit_url: str, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(rabbit_url, tmp_path)
    try:
        yield h
    finally:
        h.close()
