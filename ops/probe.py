"""`townlet probe`: ask a worker's health probe (``/healthz`` on its ``--metrics-port``).

What the compose healthchecks run inside each container; the standard library is enough.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def probe(host: str, port: int, timeout: float) -> tuple[bool, dict[str, Any]]:
    """(healthy, the probe's JSON body); an unreachable probe is unhealthy with ``unreachable``."""
    url = f"http://{host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http only
            return True, _body(response.read())
    except urllib.error.HTTPError as exc:  # 503: the process answers, and is unhealthy
        return False, _body(exc.read())
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, {"unreachable": True, "detail": f"no answer from {url}: {reason}"}


def _body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {"detail": raw[:200].decode("utf-8", "replace")}
    return body if isinstance(body, dict) else {"detail": body}
