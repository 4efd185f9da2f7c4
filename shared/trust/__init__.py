"""Keys and signatures: who may say what a shard did (docs/THREAT_MODEL.md).

``keys`` (the fleet key, derived shard and audit-line keys, key ids), ``canonical`` (the bytes
a signature covers), ``signing`` (result signatures and their verification), ``env`` (keys
from the environment). Standard library only (``hmac``, ``hashlib``); nothing here does I/O
but ``env`` reading variables through ``shared.config``.
"""
