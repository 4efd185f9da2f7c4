"""Where keys come from: the environment, read once at start-up (docs/THREAT_MODEL.md, "Keys").

* A shard signs with ``TOWNLET_SHARD_KEY`` when it is set (its own derived key, the
  least a shard needs), else with the key derived from ``TOWNLET_RESULT_KEY``; with neither it
  publishes unsigned results (local development) and says so, loudly, once.
* Verifiers (the audit consumer, ``townlet verify``, ``townlet replay``) read the keyring from
  ``TOWNLET_RESULT_KEY`` (or the variable ``--key-env`` names).
"""

from __future__ import annotations

from shared.config import environment_value
from shared.trust.keys import Keyring, parse_keyring, parse_shard_token
from shared.trust.signing import ResultSigner

RESULT_KEY_ENV = "TOWNLET_RESULT_KEY"
SHARD_KEY_ENV = "TOWNLET_SHARD_KEY"
UNSIGNED_WARNING = (f"results are NOT signed: neither {SHARD_KEY_ENV} nor {RESULT_KEY_ENV} is "
                    "set (fine for local development only; anyone who can publish to the "
                    "results exchange can then write audit lines)")
UNVERIFIED_WARNING = (f"results are NOT verified: {RESULT_KEY_ENV} is not set (fine for local "
                      "development only; forged or unsigned results are then accepted)")


def keyring_from_env(var: str = RESULT_KEY_ENV) -> Keyring | None:
    """The fleet keys in ``var``, or None when it is unset; TrustKeyError when unusable."""
    text = environment_value(var)
    return None if text is None else parse_keyring(text, var)


def shard_signer(shard_id: str) -> ResultSigner | None:
    """The signer of one shard's results, or None when no key is configured."""
    token = environment_value(SHARD_KEY_ENV)
    if token is not None:
        return ResultSigner(parse_shard_token(token, shard_id, SHARD_KEY_ENV))
    keyring = keyring_from_env()
    if keyring is None:
        return None
    return ResultSigner(keyring.current.shard_key(shard_id))
