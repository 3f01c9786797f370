"""Pure helpers that turn store records into what the pages display (no Streamlit here)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from database.models import TaskRecord, WorkerNode, WorkerStatus, utcnow

#: Background colours of status cells (worker and task statuses), so tables read at a glance.
STATUS_COLOURS = {
    WorkerStatus.ACTIVE.value: "#c8f7c5",
    WorkerStatus.BUSY.value: "#fff3b0",
    WorkerStatus.DRAINING.value: "#ffd8a8",
    WorkerStatus.OFFLINE.value: "#ffc9c9",
    "pending": "#e9ecef",
    "running": "#d0ebff",
    "completed": "#c8f7c5",
    "failed": "#ffc9c9",
    "cancelled": "#ffd8a8",
    "open": "#ffc9c9",
    "half_open": "#fff3b0",
    "closed": "",
}


def status_style(value: object) -> str:
    """The CSS of one status cell (for ``DataFrame.style.map``)."""
    colour = STATUS_COLOURS.get(str(value), "")
    return f"background-color: {colour}; color: #212529" if colour else ""


def age(when: datetime | None, now: datetime | None = None) -> str:
    """How long ago ``when`` was, in words short enough for a table cell."""
    if when is None:
        return "never"
    seconds = max(0.0, ((now or utcnow()) - when).total_seconds())
    if seconds < 60:
        return f"{seconds:.0f}s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h ago"
    return f"{seconds / 86400:.1f}d ago"


def duration(task: TaskRecord) -> str:
    """How long a task ran (or has been running), ``"—"`` before it started."""
    if task.started_at is None:
        return "—"
    end = task.finished_at or utcnow()
    return f"{max(0.0, (end - task.started_at).total_seconds()):.1f}s"


def validate_worker_url(url: str) -> str:
    """A worker URL normalised (no trailing slash); raises ValueError saying what is wrong."""
    url = url.strip()
    if not url:
        raise ValueError("enter the worker's URL, e.g. http://127.0.0.1:7860")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"{url!r} is not an http(s) URL: start it with http:// or https://")
    if not parsed.hostname:
        raise ValueError(f"{url!r} has no host name")
    try:
        _ = parsed.port
    except ValueError as exc:
        raise ValueError(f"{url!r} has an invalid port: {exc}") from exc
    if parsed.query or parsed.fragment:
        raise ValueError(f"{url!r} must not carry a query or fragment")
    return url.rstrip("/")


def worker_rows(workers: list[WorkerNode], now: datetime | None = None) -> list[dict[str, Any]]:
    """The registry as table rows."""
    return [
        {
            "id": w.id,
            "name": w.label,
            "url": w.vm_url,
            "status": str(w.status),
            "last ping": w.last_ping.strftime("%H:%M:%S") if w.last_ping else "never",
            "age": age(w.last_ping, now),
            "latency ms": round(w.last_latency_ms, 1) if w.last_latency_ms is not None else None,
            "tasks done": w.total_tasks,
            "capacity": w.max_concurrency,
            "circuit": str(w.circuit_state),
            "failures": w.consecutive_failures,
            "version": w.version or "",
        }
        for w in workers
    ]


def task_rows(tasks: list[TaskRecord]) -> list[dict[str, Any]]:
    """Past tasks as table rows."""
    rows = []
    for t in tasks:
        summary = t.result_summary or {}
        rows.append(
            {
                "id": short_id(t.id),
                "status": str(t.status),
                "command": t.command if len(t.command) <= 80 else t.command[:77] + "...",
                "created": t.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                "duration": duration(t),
                "subtasks": t.subtask_count,
                "completed": summary.get("completed", summary.get("subtasks_completed")),
                "failed": summary.get("failed", summary.get("subtasks_failed")),
            }
        )
    return rows


#: How many characters of a task id a table shows (enough to tell tasks apart at a glance;
#: the full id is in the task's own view and its downloads).
SHORT_ID = 8


def short_id(task_id: str) -> str:
    """The first :data:`SHORT_ID` characters of an id (no horizontal scrolling in tables)."""
    return task_id[:SHORT_ID]


#: Internal words of error messages, as a person on the page reads them.
_PLAIN_WORDS = (
    ("give a data file (--data FILE or an upload)", "upload a data file"),
    ("invalid params for ", "the parameters of "),
    ("(--data FILE or an upload)", "(upload a data file)"),
    ("--data FILE", "a data file"),
    ("Value error, ", ""),
    ("Input should be a valid list", "should be a list, e.g. [\"a\", \"b\"]"),
    ("Input should be a valid dictionary", "should be a JSON object {...}"),
    ("Input should be a valid string", "should be text"),
    ("Input should be a valid integer", "should be a whole number"),
    ("Field required", "is missing"),
    ("Extra inputs are not permitted", "is not a known field"),
    ("Input should be ", "should be "),
)


def _plain_location(match: re.Match[str]) -> str:
    """``subtasks.0.python.code`` -> ``subtask 1, code``."""
    parts = match.group(1).split(".")
    words: list[str] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        if part == "subtasks" and i + 1 < len(parts) and parts[i + 1].isdigit():
            words.append(f"subtask {int(parts[i + 1]) + 1}")
            i += 2
            if i < len(parts) and parts[i] in _KINDS:
                i += 1  # the union's tag repeats the kind: say it once
            continue
        words.append(part)
        i += 1
    return ", ".join(words) + ":"


_KINDS = ("python", "embed", "classify", "generate", "train", "noop")
_LOCATION = re.compile(r"\b((?:subtasks\.\d+(?:\.\w+)+)|(?:reduce\.\w+(?:\.\w+)*))\s*:")


def humanise_error(message: str) -> str:
    """An error as a person reads it: no pydantic prefixes (``plan: Value error, ...``),
    no empty locations (``: :``), data-file wording instead of CLI flags, field paths in
    words (``subtasks.0.python.code`` -> ``subtask 1, code``)."""
    text = re.sub(r"\bplan:\s*(?=Value error, )", "", str(message))
    for jargon, plain in _PLAIN_WORDS:
        text = text.replace(jargon, plain)
    text = re.sub(r":\s*:\s*", ": ", text)
    text = _LOCATION.sub(_plain_location, text)
    text = re.sub(r"[ \t]+\n", "\n", text).strip()
    return text[:1].upper() + text[1:] if text else text


def error_markdown(message: str) -> str:
    """Markdown for ``st.error``: the first line as text, any further lines (a help table)
    in a code block so that their line breaks and alignment survive."""
    text = humanise_error(message)
    first, _, rest = text.partition("\n")
    if not rest.strip():
        return first
    return f"{first}\n\n```text\n{rest.strip(chr(10))}\n```"
