"""A small expander with the master's metrics (:mod:`master_app.metrics`), for the Workers page.

:func:`metrics_rows` turns this process's counters, and the store's gauges, into plain rows
(no Streamlit, testable); :func:`metrics_expander` shows them. Call it from a page with the
page's store: ``metrics_expander(store)``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import streamlit as st

from database.store import Store
from master_app.metrics import StoreCollector, get_metrics

logger = logging.getLogger(__name__)

#: (metric sample name, label filter, what the row says) in display order.
ROWS: tuple[tuple[str, dict[str, str], str], ...] = (
    ("nadg_master_subtasks_total", {"outcome": "completed"}, "subtasks completed"),
    ("nadg_master_subtasks_total", {"outcome": "failed"}, "subtasks failed"),
    ("nadg_master_subtasks_total", {"outcome": "cancelled"}, "subtasks cancelled"),
    ("nadg_master_attempts_total", {}, "attempts sent"),
    ("nadg_master_retries_total", {}, "retries"),
    ("nadg_master_hedges_total", {}, "hedged copies"),
    ("nadg_master_breaker_opened_total", {}, "circuit breakers opened"),
    ("nadg_master_subtask_seconds_count", {}, "round trips timed"),
    ("nadg_master_subtask_seconds_sum", {}, "round trip seconds in all"),
    ("nadg_tasks", {"status": "running"}, "tasks running"),
    ("nadg_tasks", {"status": "pending"}, "tasks pending"),
    ("nadg_workers", {"status": "active"}, "workers active"),
    ("nadg_workers", {"status": "offline"}, "workers offline"),
    ("nadg_oldest_queued_subtask_seconds", {}, "oldest queued subtask (s)"),
)


def _samples(families: Iterable[Any]) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, dict(s.labels), float(s.value)) for f in families for s in f.samples]


def metrics_rows(store: Store | None = None) -> list[dict[str, object]]:
    """The rows of :data:`ROWS` with their current values (store gauges when given)."""
    samples = _samples(get_metrics().registry.collect())
    if store is not None:
        samples += _samples(StoreCollector(store).collect())
    rows: list[dict[str, object]] = []
    for name, labels, what in ROWS:
        found = [v for n, lab, v in samples
                 if n == name and all(lab.get(k) == x for k, x in labels.items())]
        if found:
            value = float(sum(found))
            rows.append({"metric": what, "value": round(value, 3)
                         if not value.is_integer() else int(value)})
    return rows


def metrics_expander(store: Store | None = None) -> None:
    """An expander with the master's metrics (what ``--metrics-port`` serves)."""
    with st.expander("Master metrics (Prometheus)"):
        try:
            rows = metrics_rows(store)
        except Exception:
            logger.exception("could not read the metrics")
            st.warning("The metrics could not be read; see the master's log.")
            return
        st.dataframe(rows, hide_index=True)
        st.caption("Counters since this master started. Serve them to Prometheus with "
                   "`python -m master_app run … --metrics-port P` or `python -m scripts.grid "
                   "--metrics-port P`; docs/grafana-dashboard.json and docs/alerts.yml use "
                   "them.")
