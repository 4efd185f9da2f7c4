"""What the worker processes share about themselves: the name their broker connection gets."""

from __future__ import annotations

import os
import socket


def process_name(role: str, shard_id: str | None = None) -> str:
    """``townlet shard town-a @host:pid``: what `rabbitmqctl list_connections name` shows, so
    an operator can tell which process holds which connection."""
    who = f"townlet {role}" + (f" {shard_id}" if shard_id else "")
    return f"{who} @{socket.gethostname()}:{os.getpid()}"
