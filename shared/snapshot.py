"""Snapshot files: versioned, checksummed, complete world state plus shell state.

Layout: MAGIC, format version (u32), sha256 of the body, body. The body is a length-prefixed
canonical JSON header (format, config fingerprint, world meta, extra shell state) followed by an
``.npz`` of the numpy columns (loaded with ``allow_pickle=False``). Files are written atomically
(temp file, fsync, rename, directory fsync) so a crash never leaves a half snapshot behind.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from shared.config import SimulationConfig
from shared.sim.persist import canonical_json, export_state, restore_world
from shared.sim.world import World

MAGIC = b"TOWNLET-SNAPSHOT\n"
FORMAT_VERSION = 1
_WORLD_SECTIONS = ("features", "rewards", "economy", "jobs", "behavior", "employment",
                   "queue_fairness", "affordances", "world", "agents", "objects")


class SnapshotError(Exception):
    """A snapshot that cannot be used: corrupt, truncated, other format, or other config."""


def config_fingerprint(config: SimulationConfig) -> str:
    """Hash of the sections that shape the world (not auth, telemetry or console settings)."""
    data = config.model_dump(mode="json", include=set(_WORLD_SECTIONS))
    return hashlib.sha256(canonical_json(data)).hexdigest()[:32]


def encode_snapshot(world: World, config: SimulationConfig, extra: dict[str, Any]) -> bytes:
    arrays, meta = export_state(world)
    header = canonical_json({"format": FORMAT_VERSION, "fingerprint": config_fingerprint(config),
                             "world": meta, "extra": extra})
    npz = io.BytesIO()
    np.savez(npz, **arrays)  # type: ignore[arg-type]  # numpy stubs mistype **kwds
    body = struct.pack(">Q", len(header)) + header + npz.getvalue()
    return MAGIC + struct.pack(">I", FORMAT_VERSION) + hashlib.sha256(body).digest() + body


def decode_snapshot(data: bytes, config: SimulationConfig) -> tuple[World, dict[str, Any]]:
    fixed = len(MAGIC) + 4 + 32
    if len(data) < fixed + 8 or not data.startswith(MAGIC):
        raise SnapshotError("not a townlet snapshot (bad magic or truncated)")
    (version,) = struct.unpack(">I", data[len(MAGIC): len(MAGIC) + 4])
    if version != FORMAT_VERSION:
        raise SnapshotError(f"snapshot format {version} is not supported (need {FORMAT_VERSION})")
    digest, body = data[len(MAGIC) + 4: fixed], data[fixed:]
    if hashlib.sha256(body).digest() != digest:
        raise SnapshotError("snapshot checksum mismatch: the file is corrupt")
    (hlen,) = struct.unpack(">Q", body[:8])
    header = json.loads(body[8: 8 + hlen])
    if header["fingerprint"] != config_fingerprint(config):
        raise SnapshotError("snapshot was taken with a different config (fingerprint mismatch)")
    with np.load(io.BytesIO(body[8 + hlen:]), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    return restore_world(config, arrays, header["world"]), header["extra"]


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError:
        tmp.unlink(missing_ok=True)  # don't leave a half file filling the disk further
        raise
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_snapshot(path: Path, config: SimulationConfig) -> tuple[World, dict[str, Any]]:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {exc.strerror or exc}") from None
    return decode_snapshot(data, config)
