"""docs/alerts.yml and docs/grafana-dashboard.json use only metrics the master exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from database.backends.sqlite import SqliteStore
from master_app.metrics import StoreCollector, get_metrics
from tests.support.servers import REPO_ROOT

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
            "gauge": ("",)}


def exported(tmp_path: Path) -> set[str]:
    """Every sample name the master's endpoint can serve."""
    store = SqliteStore(tmp_path / "registry.db")
    families = [*get_metrics().registry.collect(), *StoreCollector(store).collect()]
    store.close()
    return {f.name + suffix for f in families for suffix in SUFFIXES[f.type]}


def test_alert_rules_are_valid_and_use_exported_metrics(tmp_path: Path) -> None:
    rules = yaml.safe_load((REPO_ROOT / "docs" / "alerts.yml").read_text())
    group = rules["groups"][0]["rules"]
    names = {r["alert"] for r in group}
    assert {"NadgWorkerOffline", "NadgSubtaskErrorRate", "NadgOldestQueuedSubtask"} <= names
    known = exported(tmp_path)
    for rule in group:
        assert rule["expr"] and rule["annotations"]["summary"], rule
        used = set(re.findall(r"\bnadg_\w+", rule["expr"]))
        assert used and used <= known, (rule["alert"], used - known)


def test_dashboard_panels_use_exported_metrics(tmp_path: Path) -> None:
    dashboard = json.loads((REPO_ROOT / "docs" / "grafana-dashboard.json").read_text())
    known = exported(tmp_path)
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    used = {name for e in exprs for name in re.findall(r"\bnadg_\w+", e)}
    assert used <= known, used - known
    for required in ("nadg_tasks", "nadg_master_subtasks_total", "nadg_master_retries_total",
                     "nadg_master_hedges_total", "nadg_master_breaker_state",
                     "nadg_master_store_write_seconds_bucket",
                     "nadg_master_subtask_seconds_bucket"):
        assert required in used, required
