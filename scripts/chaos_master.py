"""The master that :mod:`scripts.chaos` runs (and kills): the service layer, with a log.

    python -m scripts.chaos_master run "COMMAND" --log FILE
    python -m scripts.chaos_master resume --log FILE

It runs exactly what ``python -m master_app run`` / ``resume`` run (the
:class:`~master_app.service.GridService`, a real dispatcher, the registry from the
environment), and appends one JSON line to ``--log`` for each thing the chaos report needs:

- ``{"ev": "task", "id", "at"}`` once the task is persisted; ``{"ev": "done", "status",
  "at"}`` when this master finished its work;
- ``{"ev": "call", "call", "url", "at"}`` when a call to a worker is sent, then ``{"ev":
  "end", ...}`` when it ended or ``{"ev": "fail", ...}`` when it failed (how soon the master
  noticed a death, and whether it had work on that worker when it died);
- ``{"ev": "exec", "id", "url"}`` for every completed result that reached this master,
  winner or not (a subtask executed more than once shows up more than once);
- ``{"ev": "record", "id", "first"}`` for every completed result written to the store, and
  whether the store took it as the first one (a subtask stored twice would show two
  ``first: true``).

Every line also carries the master's ``pid``. Several masters (one killed, one resuming)
append to the same file; each line is one ``write`` in append mode, so lines never
interleave.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Annotated, Any, cast

import typer

from database.config import open_store
from database.models import SubtaskStatus
from database.store import Store
from master_app.dispatch import Dispatcher, WorkerClient
from master_app.service import GridService
from master_app.settings import MasterSettings
from nexus_common.cli import new_app, run_app
from nexus_common.protocol import HealthResponse, ResultStatus, Subtask, SubtaskResult

app = new_app("The master scripts.chaos runs and kills.")


class EventLog:
    """Appends one JSON object per line, flushed at once."""

    def __init__(self, path: Path) -> None:
        self._fh: IO[str] = path.open("a", buffering=1, encoding="utf-8")
        self._pid = os.getpid()

    def write(self, **fields: Any) -> None:
        """One line."""
        self._fh.write(json.dumps({**fields, "pid": self._pid}) + "\n")

    def close(self) -> None:
        """Close the file."""
        self._fh.close()


class CountingClient:
    """Wraps the dispatcher's :class:`WorkerClient`: logs failed calls and every result."""

    def __init__(self, inner: WorkerClient, log: EventLog) -> None:
        self.inner = inner
        self.log = log
        self._calls = itertools.count(1)

    async def health(self, url: str, timeout_s: float = 5.0) -> HealthResponse:
        """``GET /health`` of ``url`` (not logged: it carries no subtask)."""
        return await self.inner.health(url, timeout_s=timeout_s)

    def _results(self, url: str, results: Sequence[SubtaskResult]) -> None:
        for result in results:
            if result.status is ResultStatus.COMPLETED:
                self.log.write(ev="exec", id=result.id, url=url)

    async def execute(self, url: str, subtask: Subtask) -> SubtaskResult:
        """One subtask (logged)."""
        return (await self.execute_batch(url, [subtask], single=True))[0]

    async def execute_batch(self, url: str, subtasks: Sequence[Subtask], *,
                            single: bool = False) -> list[SubtaskResult]:
        """A batch (logged): ``call`` when it is sent, then ``fail`` or ``end``."""
        call = next(self._calls)
        self.log.write(ev="call", call=call, url=url, at=time.time())
        try:
            if single:
                results = [await self.inner.execute(url, subtasks[0])]
            else:
                results = await self.inner.execute_batch(url, subtasks)
        except asyncio.CancelledError:
            self.log.write(ev="end", call=call, url=url, at=time.time())
            raise
        except Exception:
            self.log.write(ev="fail", call=call, url=url, at=time.time())
            raise
        self.log.write(ev="end", call=call, url=url, at=time.time())
        self._results(url, results)
        return results


def _logged_store(store: Store, log: EventLog) -> Store:
    """``store`` whose ``record_result`` logs each completed write and whether it was first."""
    original = store.record_result

    def record_result(subtask_id: str, status: SubtaskStatus, **kwargs: Any) -> bool:
        first = original(subtask_id, status, **kwargs)
        if status is SubtaskStatus.COMPLETED:
            log.write(ev="record", id=subtask_id, first=bool(first))
        return first

    store.record_result = record_result  # type: ignore[method-assign]
    return store


def _service(store: Store, log: EventLog) -> GridService:
    settings = MasterSettings()
    dispatcher = Dispatcher(settings, registry=store)
    dispatcher.client = cast(WorkerClient, CountingClient(dispatcher.client, log))
    return GridService(store, settings, dispatcher=dispatcher)


LogOption = Annotated[Path, typer.Option("--log", help="the JSON-lines event log")]


@app.command()
def run(command: Annotated[str, typer.Argument(help="the task, e.g. 'noop 100 sleep 500'")],
        log_path: LogOption) -> int:
    """Plan (local planner), persist and run one task."""
    log = EventLog(log_path)
    store = _logged_store(open_store(), log)
    try:
        service = _service(store, log)
        planned = service.plan(command, None, planner="local")
        task_id = service.submit(planned.command, planned.plan, None)
        log.write(ev="task", id=task_id, at=time.time())
        outcome = asyncio.run(service.run(task_id))
        log.write(ev="done", id=task_id, status=outcome.status.value, at=time.time())
        return 0 if outcome.ok else 1
    finally:
        store.close()
        log.close()


@app.command()
def resume(log_path: LogOption) -> int:
    """Run every unfinished task to its end."""
    log = EventLog(log_path)
    store = _logged_store(open_store(), log)
    try:
        outcomes = asyncio.run(_service(store, log).resume())
        for outcome in outcomes:
            log.write(ev="done", id=outcome.task_id, status=outcome.status.value,
                      at=time.time())
        return 0 if all(o.ok for o in outcomes) else 1
    finally:
        store.close()
        log.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    return run_app(app, argv, prog_name="python -m scripts.chaos_master")


if __name__ == "__main__":
    raise SystemExit(main())
