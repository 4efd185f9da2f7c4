"""`townlet top` in a real terminal (tmux): the fleet table appears, refreshes in place with the
shard's advancing tick, and Ctrl-C quits cleanly. Every wait is bounded."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from tests.procs import Harness, wait_until

pytestmark = pytest.mark.rabbitmq


class Tmux:
    """A private tmux server (its own socket), killed at the end."""

    def __init__(self) -> None:
        self.socket = f"townlet-test-{uuid.uuid4().hex[:8]}"
        self.session = "top"

    def run(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, timeout=10, check=True)
        return done.stdout

    def start(self, command: str) -> None:
        self.run("new-session", "-d", "-s", self.session, "-x", "150", "-y", "30", command)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.session)

    def alive(self) -> bool:
        return subprocess.run(["tmux", "-L", self.socket, "has-session", "-t", self.session],
                              capture_output=True, timeout=10, check=False).returncode == 0

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True,
                       timeout=10, check=False)


@pytest.fixture()
def tmux() -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    t = Tmux()
    try:
        yield t
    finally:
        t.kill()


def shown_tick(screen: str, shard_id: str) -> int | None:
    for line in screen.splitlines():
        if shard_id in line:
            match = re.search(r"ticking\s*│\s*(\d+)", line)
            if match:
                return int(match.group(1))
    return None


def test_top_draws_the_fleet_and_refreshes_in_place(harness: Harness, tmux: Tmux) -> None:
    shard_id = harness.shard_id("top")
    harness.shard(shard_id, harness.config("top"), tick_rate=20).start().wait_log(
        "shard_started", 20)
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in
                   {"TOWNLET_AMQP_URL": harness.url, "TERM": "xterm-256color",
                    "PYTHONPATH": str(harness.cwd.parent)}.items())
    marker = harness.root / "top.exit"
    # -u COLUMNS/LINES: tmux hands its panes the size of the process that started the server
    # (pytest's 80x24), which Rich would trust over the real pane.
    command = (f"cd {shlex.quote(str(harness.cwd))} && env -u COLUMNS -u LINES {env} "
               f"{shlex.quote(sys.executable)} "
               f"-m ops.cli top --shard {shard_id} --refresh 0.5; echo $? > {marker}; "
               "sleep 30")
    tmux.start(command)
    wait_until(lambda: shown_tick(tmux.screen(), shard_id) is not None, 20,
               lambda: f"the shard's row in top:\n{tmux.screen()}")
    first = shown_tick(tmux.screen(), shard_id)
    assert first is not None
    wait_until(lambda: (shown_tick(tmux.screen(), shard_id) or 0) > first + 5, 20,
               lambda: f"the tick to advance past {first}:\n{tmux.screen()}")
    screen = tmux.screen()
    assert screen.count("townlet top:") == 1  # redrawn in place, not appended
    for column in ("state", "tick", "rate", "lag s", "inbox", "pending", "exits today",
                   "last error"):
        assert column in screen, screen
    tmux.run("send-keys", "-t", tmux.session, "C-c")
    wait_until(marker.exists, 10, lambda: f"top to exit on Ctrl-C:\n{tmux.screen()}")
    assert marker.read_text().strip() == "0"
    assert "Traceback" not in tmux.screen()
