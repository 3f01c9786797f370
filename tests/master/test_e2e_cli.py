"""``python -m master_app`` as a subprocess: a classify job over examples/, bad input, failure."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.servers import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"


def cli(*args: str, registry: Path, env: dict[str, str] | None = None,
        timeout: float = 240) -> subprocess.CompletedProcess[str]:
    base = {**os.environ, "GEMINI_API_KEY": "", "GOOGLE_API_KEY": "", "DATABASE_URL": "",
            "SUPABASE_URL": "", "NADG_REGISTRY": str(registry)}
    return subprocess.run([sys.executable, "-m", "master_app", *args], cwd=REPO_ROOT,
                          env={**base, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def test_classify_examples_with_local_workers(tmp_path: Path) -> None:
    out = tmp_path / "labels.csv"
    done = cli("run", "classify as billing / bug / feature", "--data",
               str(EXAMPLES / "tickets.csv"), "--local", "2", "--json", "--out", str(out),
               registry=tmp_path / "r.db")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "completed" and result["failures"] == []
    rows = list(csv.DictReader((EXAMPLES / "tickets.csv").open()))
    table = result["table"]
    assert [r["row"] for r in table] == list(range(40))
    assert [r["text"] for r in table] == [r["text"] for r in rows], "input order kept"
    assert sum(result["label_counts"].values()) == 40
    correct = sum(t["label"] == r["label"] for t, r in zip(table, rows, strict=True))
    assert correct >= 32, f"zero-shot MiniLM should get most tickets right, got {correct}/40"
    assert "plan (local planner" in done.stderr and "[####" in done.stderr  # progress bar
    # stderr is a pipe here: whole lines, about one per tenth of the task, no redraws.
    progress = [line for line in done.stderr.splitlines() if line.startswith("[")]
    assert "\r" not in done.stderr and 1 <= len(progress) <= 12, progress
    saved = list(csv.DictReader(out.open()))
    assert [r["label"] for r in saved] == [t["label"] for t in table]


def test_bad_input_is_one_clear_line(tmp_path: Path) -> None:
    registry = tmp_path / "r.db"
    missing = cli("run", "embed", "--data", "no/such/file.csv", "--local", "1",
                  registry=registry)
    assert missing.returncode == 2
    assert missing.stderr.strip() == "error: no such file: no/such/file.csv; check the path."
    unknown = cli("run", "make me a sandwich", "--data", str(EXAMPLES / "reviews.txt"),
                  registry=registry)
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert "I did not understand" in unknown.stderr and "classify as A / B / C" in unknown.stderr
    nobody = cli("run", "sentiment", "--data", str(EXAMPLES / "reviews.txt"), registry=registry)
    assert nobody.returncode == 2 and "no live workers" in nobody.stderr
    assert "Traceback" not in nobody.stderr


def test_failed_task_exits_non_zero(tmp_path: Path) -> None:
    done = cli("run", "noop 4 sleep 2500", "--local", "1", "--json", "--no-progress",
               env={"NADG_TASK_DEADLINE_S": "1"}, registry=tmp_path / "r.db")
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "failed" and len(result["failures"]) == 4
    assert "deadline of 1s passed" in done.stderr


def test_bad_settings_and_out_paths_are_one_clear_line(tmp_path: Path) -> None:
    registry = tmp_path / "r.db"
    bad_env = cli("run", "noop 2", env={"NADG_MAX_ATTEMPTS": "many"}, registry=registry)
    assert bad_env.returncode == 2 and "Traceback" not in bad_env.stderr
    assert bad_env.stderr.startswith("error: bad setting in the environment: NADG_MAX_ATTEMPTS=")
    assert len(bad_env.stderr.strip().splitlines()) == 1
    npy = cli("run", "noop 2", "--out", str(tmp_path / "x.npy"), registry=registry)
    assert npy.returncode == 2 and "Traceback" not in npy.stderr
    assert "only embed results make a .npy matrix" in npy.stderr
    unwritable = tmp_path / "file"
    unwritable.write_text("not a directory")
    out = cli("run", "noop 2", "--local", "1", "--no-progress", "--json",
              "--out", str(unwritable / "x.csv"), registry=registry)
    # Found before anything runs (tests/master/test_cli_early_errors.py has the rest).
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "is a file, not a folder" in out.stderr and out.stdout == ""
