"""The child processes of `townlet up`: started, restarted with backoff, and never orphaned.

* A child that dies is restarted after an exponential backoff (1 s, 2 s, 4 s ... capped at
  30 s); one that then runs for a minute is considered healthy again (backoff reset). After
  ``max_restarts`` restarts in a row the fleet stops loudly: a child that dies every time (a
  locked audit log, a bad config) must not crash-loop for ever, filling the log with tracebacks.
* Children die with their parent: each asks the kernel for SIGTERM when the parent dies
  (``PR_SET_PDEATHSIG``), so a SIGKILLed `townlet up` leaves no shard ticking and holding its
  locks. SIGTERM, not SIGKILL: a shard then stops at a boundary and writes its checkpoint.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from shared.logging import get_logger

log = get_logger("fleet")
BACKOFF_S = (1.0, 30.0)  # first restart delay, cap
HEALTHY_AFTER_S = 60.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """In the child, before exec: SIGTERM when the parent goes (Linux; elsewhere a no-op)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0  # in a row, without a healthy run between
    restart_at: float | None = None  # when a dead child is due to start again
    done: bool = False  # exited 0 after its --ticks: not restarted


class Supervisor:
    def __init__(self, argvs: dict[str, list[str]], env: dict[str, str], *,
                 max_restarts: int) -> None:
        self.env = env
        self.max_restarts = max_restarts
        self.children = {name: Child(name, argv) for name, argv in argvs.items()}
        self.failure: str | None = None  # set when a child exceeded its restarts

    def start_all(self) -> None:
        for child in self.children.values():
            self._start(child)

    def _start(self, child: Child) -> None:
        parent = os.getpid()
        child.proc = subprocess.Popen(child.argv, env=self.env,
                                      preexec_fn=lambda: _die_with_parent(parent))
        child.started_at, child.restart_at = time.monotonic(), None

    def running(self) -> list[str]:
        return [c.name for c in self.children.values() if not c.done]

    def check(self, *, finite: bool) -> None:
        """Restart children that died (when their backoff is over); with ``finite`` a shard
        that exited 0 has run its ticks and is done."""
        now = time.monotonic()
        for child in self.children.values():
            if child.done or child.proc is None:
                continue
            code = child.proc.poll()
            if code is None:
                if now - child.started_at >= HEALTHY_AFTER_S:
                    child.restarts = 0
                continue
            if finite and child.name != "audit" and code == 0:
                log.info("child_finished", child=child.name)
                child.done = True
                continue
            if child.restart_at is None:
                self._schedule(child, code, now)
            elif now >= child.restart_at:
                self._start(child)

    def _schedule(self, child: Child, code: int, now: float) -> None:
        if child.restarts >= self.max_restarts:
            self.failure = (f"{child.name} exited (code {code}) {child.restarts + 1} times in a "
                            f"row (limit --max-restarts {self.max_restarts}): fleet stopped")
            log.error("child_restart_limit", child=child.name, code=code,
                      restarts=child.restarts)
            return
        delay = min(BACKOFF_S[0] * 2 ** child.restarts, BACKOFF_S[1])
        child.restarts += 1
        child.restart_at = now + delay
        log.warning("child_exited_restarting", child=child.name, code=code,
                    restart_in_s=delay, restart=child.restarts, max_restarts=self.max_restarts)

    def terminate_all(self, timeout: float = 30.0) -> None:
        procs = [c.proc for c in self.children.values() if c.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
