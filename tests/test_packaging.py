"""The project as installed: the `nexus` script, the original tool's invocations, no path hacks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import REPO_ROOT

BIN = Path(sys.executable).parent
CLEAN_ENV = {k: v for k, v in os.environ.items()
             if k not in ("SUPABASE_URL", "SUPABASE_SERVICE_KEY", "SUPABASE_ANON_KEY",
                          "DATABASE_URL", "PYTHONPATH")}


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env={**CLEAN_ENV, **env}, capture_output=True,
                          text=True, timeout=120, check=False)


def test_nexus_help_works_from_any_directory(tmp_path: Path) -> None:
    done = run([str(BIN / "nexus"), "--help"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for command in ("workers", "heartbeat", "worker", "bench", "call", "run", "resume", "train"):
        assert re.search(rf"^\s*{command}\b", done.stdout, re.MULTILINE), (command, done.stdout)


def test_nexus_workers_uses_the_registry_cli(tmp_path: Path) -> None:
    registry = tmp_path / "r.db"
    added = run([str(BIN / "nexus"), "workers", "add", "http://127.0.0.1:9"], cwd=tmp_path,
                NADG_REGISTRY=str(registry))
    assert added.returncode == 0, added.stderr
    listed = run([str(BIN / "nexus"), "workers", "list"], cwd=tmp_path,
                 NADG_REGISTRY=str(registry))
    assert listed.returncode == 0 and "http://127.0.0.1:9" in listed.stdout


def test_unknown_command_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = run([str(BIN / "nexus"), "frobnicate"], cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "frobnicate" in lines[0]


@pytest.mark.parametrize(("cwd", "script"), [
    (".", "database/manage_workers.py"),
    ("database", "manage_workers.py"),
])
def test_original_manage_workers_invocations(tmp_path: Path, cwd: str, script: str) -> None:
    """The original NADG guide runs the tool as a file, from the root or from database/."""
    registry = tmp_path / "registry.db"
    added = run([sys.executable, script, "add", "http://127.0.0.1:9", "--name", "w"],
                cwd=REPO_ROOT / cwd, NADG_REGISTRY=str(registry))
    assert added.returncode == 0, added.stderr
    listed = run([sys.executable, script, "list"], cwd=REPO_ROOT / cwd,
                 NADG_REGISTRY=str(registry))
    assert listed.returncode == 0, listed.stderr
    assert "http://127.0.0.1:9" in listed.stdout


#: The sandbox's payload hides the worker's own folders from untrusted code (it removes
#: paths in the sandboxed child); that is isolation, not an import hack.
SYS_PATH_ALLOWED = {"worker_node/sandbox_runner.py"}


def test_no_package_edits_sys_path() -> None:
    edits = re.compile(r"sys\.path\.(insert|append|extend)|sys\.path(\[[^\]]*\])?\s*[+]?=")
    offenders = [str(path.relative_to(REPO_ROOT))
                 for package in ("nexus_common", "master_app", "worker_node", "database",
                                 "nexus_ops", "scripts")
                 for path in (REPO_ROOT / package).rglob("*.py")
                 if edits.search(path.read_text())]
    assert sorted(offenders) == sorted(SYS_PATH_ALLOWED)


def test_no_master_module_shadows_an_installed_one() -> None:
    """`streamlit run master_app/app.py` puts master_app/ first on sys.path: a module there
    named like an installed one (watchdog, metrics, …) would replace it for Streamlit."""
    import importlib.util

    names = sorted(p.stem for p in (REPO_ROOT / "master_app").glob("*.py")
                   if p.stem not in ("__init__", "__main__", "app"))
    shadowing = [name for name in names if importlib.util.find_spec(name) is not None]
    assert shadowing == []
