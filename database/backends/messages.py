"""Error messages shared by every backend, so each failure reads the same everywhere."""

from __future__ import annotations


def no_worker(worker_id: int) -> str:
    """No worker has ``worker_id`` (WorkerNotFound)."""
    return (f"no worker with id {worker_id}; run `python -m database.manage_workers list`"
            " to see the registered ids")


def no_task(task_id: str) -> str:
    """No task has ``task_id`` (TaskNotFound)."""
    return f"no task with id {task_id!r}"


def no_subtask(subtask_id: str) -> str:
    """No subtask has ``subtask_id`` (SubtaskNotFound)."""
    return f"no subtask with id {subtask_id!r}"


def duplicate_worker(url: str) -> str:
    """A worker is already registered under ``url`` (DuplicateWorker)."""
    return (f"a worker with URL {url} is already registered; remove it first or use"
            " another URL")


def duplicate_model(model_id: str) -> str:
    """A model with ``model_id`` exists already."""
    return f"a model with id {model_id} exists already; pick a new id"


def unknown_deployment_target(model_id: str, worker_id: int) -> str:
    """A deployment names a model or a worker that is not registered."""
    return (f"cannot record deployment of model {model_id} on worker {worker_id}: the model"
            " or the worker is not registered")


def schema_outdated(where: str, detail: str, *, hint: str = "") -> str:
    """The database lacks tables or columns of the schema (SchemaOutdated).

    ``where`` names the database, ``detail`` what is missing (the server's own words),
    ``hint`` an extra way out that only one backend has.
    """
    return (f"{where} lacks part of the NEXUS Grid schema ({detail}): its schema is missing"
            " or older than this release (an original NADG project has only worker_nodes);"
            " run database/schema.sql once, pasted into the Supabase SQL editor or with"
            " `psql \"$DATABASE_URL\" -f database/schema.sql`; it upgrades an original"
            " worker_nodes table in place and keeps its rows" + (f"; {hint}" if hint else ""))
