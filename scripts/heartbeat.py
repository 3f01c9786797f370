"""``python -m scripts.heartbeat``: one heartbeat, as the GitHub Actions cron runs it.

The logic lives in :mod:`nexus_ops.heartbeat` (also ``nexus heartbeat``).
"""

from __future__ import annotations

import sys

from nexus_ops.heartbeat import main

if __name__ == "__main__":
    sys.exit(main())
