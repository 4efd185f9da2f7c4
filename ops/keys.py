"""`townlet shard-key --shard ID`: the one key a shard needs, derived from the fleet key.

A shard handed only this (as ``TOWNLET_SHARD_KEY``) can sign its own results and nobody
else's: a leaked shard key costs one shard, not the fleet (docs/THREAT_MODEL.md, "Keys").
"""

from __future__ import annotations

from shared.topology import validate_shard_id
from shared.trust.env import keyring_from_env
from shared.trust.keys import TrustKeyError


def shard_key_token(shard_id: str, key_env: str) -> str:
    """The ``TOWNLET_SHARD_KEY`` value of ``shard_id`` under the current key in ``key_env``."""
    validate_shard_id(shard_id)
    keyring = keyring_from_env(key_env)
    if keyring is None:
        raise TrustKeyError(f"{key_env} is not set: it must hold the fleet key")
    return keyring.current.shard_key(shard_id).token()
