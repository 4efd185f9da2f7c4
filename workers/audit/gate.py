"""The audit consumer's gate: only results signed by the shard they name become audit lines.

docs/THREAT_MODEL.md, "Forged results". With a keyring (``TOWNLET_RESULT_KEY``) every result is
verified before it is encoded: an unsigned or badly signed one never becomes a line, so it can
neither write history nor take the (shard_id, cmd_id) key of the real result. It is counted,
kept aside (``shared/audit/quarantine.py``) and logged once per source (the AMQP ``user_id``
the broker vouched for, else "unknown"), so a flood cannot flood the log too. Without a keyring
(local development) everything is admitted, and ``run_audit`` says so once, loudly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.audit.quarantine import Quarantine
from shared.broker.base import Delivery
from shared.logging import Logger
from shared.trust.keys import Keyring
from shared.trust.signing import Verdict, verify_result

MAX_SOURCES_LOGGED = 1024  # distinct sources warned about; later ones are only counted


class ResultGate:
    def __init__(self, keyring: Keyring | None, quarantine: Quarantine | None,
                 logger: Logger) -> None:
        self.keyring = keyring
        self._quarantine = quarantine
        self._logger = logger
        self._warned: set[str] = set()
        self.refused = 0  # results kept out of the audit log
        self.quarantine_failures = 0

    def admit(self, record: Mapping[str, Any], delivery: Delivery) -> bool:
        """True when ``record`` may become an audit line; otherwise it is set aside."""
        if self.keyring is None:
            return True
        verdict = verify_result(record, self.keyring)
        if verdict is Verdict.OK:
            return True
        self._refuse(record, delivery, verdict.value)
        return False

    def _refuse(self, record: Mapping[str, Any] | None, delivery: Delivery,
                verdict: str) -> None:
        self.refused += 1
        source = delivery.user_id or "unknown"
        if self._quarantine is not None:
            try:
                self._quarantine.keep(record, verdict=verdict, source=delivery.user_id,
                                      message_id=delivery.message_id, size=len(delivery.body))
            except OSError as exc:
                self.quarantine_failures += 1
                self._logger.error("audit_quarantine_failed", error=str(exc))
        if source in self._warned or len(self._warned) >= MAX_SOURCES_LOGGED:
            return
        self._warned.add(source)
        shard = record.get("shard_id") if record is not None else None
        self._logger.warning("audit_result_refused", verdict=verdict, source=source,
                             claimed_shard=str(shard)[:64] if shard is not None else None,
                             note="not logged; kept aside in the quarantine file; further "
                                  "refusals from this source are only counted")
