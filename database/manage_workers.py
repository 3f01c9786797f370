"""The original NADG registry tool, kept where its users run it.

``python -m database.manage_workers list``, ``python database/manage_workers.py list`` and
``cd database && python manage_workers.py list`` all work (the project is installed, so the
packages import from anywhere). The CLI itself is operator code and lives in
:mod:`nexus_ops.workers_cli`; this module only forwards to it.
"""

from __future__ import annotations

import sys

from nexus_ops.workers_cli import main

if __name__ == "__main__":
    sys.exit(main())
