"""``python -m master_app``: see :mod:`master_app.cli`."""

from master_app.cli import main

raise SystemExit(main())
