"""The headless check of docs/user/console-dry-run.md:
``python scripts/run_simulation.py CONFIG --ticks 50``.

The same command as ``townlet run`` (options: --ticks, --seed, --stream-telemetry,
--telemetry-path); kept under the name that document uses.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # works from a checkout, too

from ops.cli import app  # noqa: E402  (after the path fix above)

if __name__ == "__main__":
    app(args=["run", *sys.argv[1:]], prog_name="run_simulation.py")
