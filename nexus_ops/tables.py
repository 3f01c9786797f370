"""Plain-text and Markdown tables for the operator tools (no dependencies)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from database.models import WorkerNode

if TYPE_CHECKING:
    from nexus_ops.health import HeartbeatReport

Cell = str | int | float | None

WORKER_HEADERS = ("id", "status", "name", "url", "max", "tasks", "fails", "last ping",
                  "latency ms", "circuit")
PING_HEADERS = ("id", "worker", "result", "latency ms", "status", "fails", "detail")


def _text(value: Cell) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def render_text(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    """Columns padded to their widest cell."""
    cells = [[_text(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def render_markdown(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells escaped)."""
    def esc(value: Cell) -> str:
        return _text(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def ago(when: datetime | None, now: datetime | None = None) -> str | None:
    """``12s ago`` / ``5m ago`` / ``3h ago`` / ``2d ago``."""
    if when is None:
        return None
    seconds = max(0, int(((now or datetime.now(UTC)) - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def worker_rows(workers: Sequence[WorkerNode]) -> list[list[Cell]]:
    """Rows of :data:`WORKER_HEADERS`."""
    return [[w.id, w.status.value, w.name, w.vm_url, w.max_concurrency, w.total_tasks,
             w.consecutive_failures, ago(w.last_ping), w.last_latency_ms, w.circuit_state.value]
            for w in workers]


def ping_rows(report: HeartbeatReport) -> list[list[Cell]]:
    """Rows of :data:`PING_HEADERS`."""
    out: list[list[Cell]] = []
    for o in report.outcomes:
        before, after = o.worker.status.value, o.status_after.value
        status = before if before == after else f"{before} -> {after}"
        fails = o.after.consecutive_failures if o.after else o.worker.consecutive_failures
        detail = o.record_error and f"not recorded: {o.record_error}" or o.probe.error
        out.append([o.worker.id, o.worker.label, "ok" if o.probe.ok else "FAIL",
                    o.probe.latency_ms, status, fails, detail])
    return out
