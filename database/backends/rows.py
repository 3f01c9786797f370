"""Turn backend rows (dicts) into the records of :mod:`database.models`.

SQLite hands back ISO strings and JSON text, psycopg ``datetime`` and decoded JSON,
PostgREST ISO strings and decoded JSON; these helpers accept all of them so every backend
shares one reader.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from database.models import (
    CircuitState,
    DeploymentRecord,
    ModelRecord,
    PingRecord,
    SubtaskRecord,
    SubtaskStatus,
    TaskRecord,
    TaskStatus,
    WorkerNode,
    WorkerStatus,
)

Row = Mapping[str, Any]


def ts(value: Any) -> datetime | None:
    """A timezone-aware UTC datetime from a datetime, an ISO string or None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value).replace("Z", "+00:00")
        if " " in text and "T" not in text:
            text = text.replace(" ", "T", 1)
        dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def req_ts(value: Any) -> datetime:
    """Like :func:`ts` for a column that is never NULL."""
    dt = ts(value)
    if dt is None:
        raise ValueError("a required timestamp column was NULL")
    return dt


def js(value: Any) -> Any:
    """Decoded JSON from JSON text or an already decoded value."""
    if isinstance(value, str | bytes):
        return json.loads(value)
    return value


def js_dict(value: Any) -> dict[str, Any] | None:
    """A JSON object column (None stays None)."""
    decoded = js(value)
    if decoded is None:
        return None
    if not isinstance(decoded, dict):
        raise ValueError(f"expected a JSON object, got {type(decoded).__name__}")
    return decoded


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def worker(row: Row) -> WorkerNode:
    """A ``worker_nodes`` row."""
    caps = js(row.get("capabilities")) or []
    return WorkerNode(
        id=int(row["id"]),
        vm_url=str(row["vm_url"]),
        status=WorkerStatus(row["status"]),
        name=row.get("name"),
        capabilities=tuple(str(c) for c in caps),
        max_concurrency=int(row.get("max_concurrency") or 4),
        total_tasks=int(row.get("total_tasks") or 0),
        last_ping=ts(row.get("last_ping")),
        last_latency_ms=_float(row.get("last_latency_ms")),
        consecutive_failures=int(row.get("consecutive_failures") or 0),
        circuit_state=CircuitState(row.get("circuit_state") or CircuitState.CLOSED),
        version=row.get("version"),
        created_at=ts(row.get("created_at")),
    )


def ping(row: Row) -> PingRecord:
    """A ``worker_pings`` row."""
    return PingRecord(
        worker_id=int(row["worker_id"]),
        at=req_ts(row["at"]),
        ok=bool(row["ok"]),
        latency_ms=_float(row.get("latency_ms")),
        error=row.get("error"),
    )


def task(row: Row) -> TaskRecord:
    """A ``tasks`` row."""
    return TaskRecord(
        id=str(row["id"]),
        command=str(row["command"]),
        plan=js_dict(row["plan"]) or {},
        status=TaskStatus(row["status"]),
        created_at=req_ts(row["created_at"]),
        updated_at=req_ts(row["updated_at"]),
        started_at=ts(row.get("started_at")),
        finished_at=ts(row.get("finished_at")),
        result_summary=js_dict(row.get("result_summary")),
        error=row.get("error"),
        subtask_count=int(row.get("subtask_count") or 0),
    )


def subtask(row: Row) -> SubtaskRecord:
    """A ``subtasks`` row."""
    wid = row.get("worker_id")
    return SubtaskRecord(
        id=str(row["id"]),
        task_id=str(row["task_id"]),
        idx=int(row["idx"]),
        kind=str(row["kind"]),
        payload=js_dict(row["payload"]) or {},
        status=SubtaskStatus(row["status"]),
        attempts=int(row.get("attempts") or 0),
        worker_id=None if wid is None else int(wid),
        result=js_dict(row.get("result")),
        error=row.get("error"),
        created_at=ts(row.get("created_at")),
        started_at=ts(row.get("started_at")),
        finished_at=ts(row.get("finished_at")),
    )


def model(row: Row) -> ModelRecord:
    """A ``models`` row."""
    return ModelRecord(
        id=str(row["id"]),
        name=str(row["name"]),
        family=str(row["family"]),
        sha256=str(row["sha256"]),
        uri=str(row["uri"]),
        labels=tuple(str(x) for x in (js(row.get("labels")) or [])),
        metrics=js_dict(row.get("metrics")) or {},
        created_at=ts(row.get("created_at")),
    )


def deployment(row: Row) -> DeploymentRecord:
    """A ``model_deployments`` row."""
    return DeploymentRecord(
        model_id=str(row["model_id"]),
        worker_id=int(row["worker_id"]),
        deployed_at=req_ts(row["deployed_at"]),
    )
