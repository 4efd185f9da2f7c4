"""TLS end to end: `amqps://` with certificate verification, on a private RabbitMQ node.

The test makes a CA and a server certificate for ``localhost`` (openssl), starts its own node
with a TLS listener (its own name, ports, mnesia and log dirs: never the shared broker), runs a
shard, the audit consumer and `townlet send` over ``amqps://`` trusting only that CA
(``SSL_CERT_FILE``, the standard OpenSSL variable; docs/THREAT_MODEL.md, "Transport"), and
checks that a client trusting another CA, or reaching the node by a name the certificate does
not hold, is refused before it logs in.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_broker_restart import PrivateNode, free_port
from tests.procs import RESULT_KEY, Harness, read_jsonl, wait_until

pytestmark = pytest.mark.rabbitmq


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str) -> Path:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}", cwd=directory)
    return directory / f"{name}.pem"


def make_server_cert(directory: Path, ca: str) -> None:
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
            "server.csr", "-subj", "/CN=localhost", cwd=directory)
    (directory / "ext.cnf").write_text("subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n"
                                       "extendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf",
            cwd=directory)


class TlsNode(PrivateNode):
    def __init__(self) -> None:
        super().__init__()
        self.tls_port = free_port()
        certs = self.base / "certs"
        certs.mkdir()
        self.ca = make_ca(certs, "townlet-test-ca")
        self.rogue_ca = make_ca(certs, "rogue-ca")
        make_server_cert(certs, "townlet-test-ca")
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.ssl.default = {self.tls_port}\n"
            f"ssl_options.cacertfile = {certs / 'townlet-test-ca.pem'}\n"
            f"ssl_options.certfile = {certs / 'server.pem'}\n"
            f"ssl_options.keyfile = {certs / 'server.key'}\n"
            "ssl_options.verify = verify_none\n"
            "ssl_options.fail_if_no_peer_cert = false\n")
        for path in [self.base, *self.base.rglob("*")]:
            shutil.chown(path, "rabbitmq", "rabbitmq")

    def amqps(self, host: str = "localhost") -> str:
        return f"amqps://guest:guest@{host}:{self.tls_port}/%2F"


@pytest.fixture()
def tls_node() -> Iterator[TlsNode]:
    for tool in ("rabbitmq-server", "openssl"):
        if shutil.which(tool) is None:
            if os.environ.get("CI") == "true":
                pytest.fail(f"{tool} is not installed: cannot run the TLS test")
            pytest.skip(f"{tool} is not installed")
    node = TlsNode()
    try:
        node.start()
        wait_until(lambda: _accepting(node.tls_port), 60, "the TLS listener")
        yield node
    finally:
        node.stop()
        shutil.rmtree(node.base, ignore_errors=True)


def _accepting(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_amqps_with_certificate_verification_end_to_end(tls_node: TlsNode,
                                                        tmp_path: Path) -> None:
    harness = Harness(tls_node.amqps(), tmp_path / "h")
    harness.env["SSL_CERT_FILE"] = str(tls_node.ca)  # trust our CA, and only it
    try:
        shard_id = harness.shard_id("tls")
        shard = harness.shard(shard_id, harness.config("tls", auth=False)).start()
        audit_log = harness.root / "logs" / "commands.jsonl"
        audit = harness.audit(audit_log).start()
        shard.wait_log("shard_started", 30)
        audit.wait_log("audit_started", 30)
        done = cli(harness, "send", shard_id, "help", "--cmd-id", "over-tls", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["status"] == "ok"
        wait_until(lambda: any(r.get("cmd_id") == "over-tls" for r in read_jsonl(audit_log)),
                   20, "the audit line written over TLS")
        assert "amqps://***@localhost" in shard.output()  # the URL is logged, never its login
        for env, why in (({"SSL_CERT_FILE": str(tls_node.rogue_ca)}, "another CA"),
                         ({"TOWNLET_AMQP_URL": tls_node.amqps("127.0.0.1")}, "another name")):
            refused = cli(harness, "send", shard_id, "help", "--timeout", "3", **env)
            assert refused.returncode == 4, (why, refused.stdout)  # 4: broker unreachable
            assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr or \
                "certificate verify failed" in refused.stderr, (why, refused.stderr)
            assert "guest:guest" not in refused.stderr and "Traceback" not in refused.stderr
        assert shard.terminate() == 0 and audit.terminate() == 0
        assert RESULT_KEY not in shard.output() + audit.output()
    finally:
        harness.close()


def cli(harness: Harness, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ops.cli", *args], cwd=harness.cwd,
                          env={**harness.env, **env}, capture_output=True, text=True,
                          timeout=60, check=False)
