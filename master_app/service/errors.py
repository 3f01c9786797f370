"""The errors the service raises for input it cannot use, and the one tuple callers catch.

Each of these carries a message that says what was wrong and what to do; a front-end
shows the message as it is (one line) and never a traceback::

    ValueError
    ├── DataError              master_app.intake: a data file that cannot be read
    └── PlanError              master_app.planning: a plan that cannot run, a command not
        │                      understood
        ├── PlannerUnavailable the planning service did not answer usefully
        ├── PlanFileError      a saved plan file that cannot be used (master_app.service.plans)
        └── PlanNotRunnable    the live workers cannot run the plan (checked before Run)
    RuntimeError
    ├── GridError              master_app.local_grid: a local worker could not start
    │   └── GridCancelled      told to stop while it was starting
    └── NoLiveWorkers          work to run but no live worker
    StoreError                 database.store: the registry cannot be read or written
"""

from __future__ import annotations

from database.store import StoreError
from master_app.intake import DataError
from master_app.local_grid import GridCancelled, GridError
from master_app.planning.base import PlannerUnavailable
from master_app.planning.plan import PlanError
from master_app.service.runner import NoLiveWorkers


class PlanFileError(PlanError):
    """A saved plan file is missing, not JSON, not a plan file, or holds an invalid plan."""


class PlanNotRunnable(PlanError):
    """No live worker advertises what the plan needs (a kind, a model), or it needs Gemini
    and no key is set; the message lists each reason."""


#: Errors whose message is the whole story: bad input, or a grid that cannot run it.
USER_ERRORS: tuple[type[Exception], ...] = (
    DataError, PlanError, GridError, StoreError, NoLiveWorkers)

__all__ = ["USER_ERRORS", "DataError", "GridCancelled", "GridError", "NoLiveWorkers",
           "PlanError", "PlanFileError", "PlanNotRunnable", "PlannerUnavailable", "StoreError"]
