"""Stop signals, installed first thing by long-running commands (before heavy imports), so a
SIGTERM during start-up is already an orderly stop rather than a kill."""

from __future__ import annotations

import signal
import threading


def install_stop_signals(stop: threading.Event) -> None:
    """SIGTERM/SIGINT set ``stop``; the process stops at its next safe point (main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
