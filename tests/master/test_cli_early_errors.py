"""``python -m master_app run`` finds bad input before it starts any local worker (issue 15,
item 16): an unknown command, a wrong column, an unwritable ``--out``: exit 2 at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.servers import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"


def cli(*args: str, registry: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "GEMINI_API_KEY": "", "GOOGLE_API_KEY": "", "DATABASE_URL": "",
           "SUPABASE_URL": "", "NADG_REGISTRY": str(registry)}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "master_app", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    return done, time.monotonic() - started


@pytest.mark.parametrize(("args", "says"), [
    (("make me a sandwich",), "I did not understand 'make me a sandwich'"),
    (("classify as a / b column nope", "--data", str(EXAMPLES / "tickets.csv")),
     "the plan names column 'nope'"),
    (("classify as a / b",), "classify works on data rows"),
])
def test_a_bad_command_is_refused_before_the_local_workers_start(
        tmp_path: Path, args: tuple[str, ...], says: str) -> None:
    done, _ = cli("run", *args, "--local", "2", registry=tmp_path / "r.db")
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr
    assert "starting 2 local worker(s)" not in done.stderr  # nothing was started


def test_an_unwritable_out_path_is_refused_before_anything_runs(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("not a folder")
    for out, says in [(a_file / "x.csv", "is a file, not a folder"),
                      (tmp_path, "is a folder; give a file name")]:
        done, took = cli("run", "noop 2", "--local", "1", "--out", str(out),
                         registry=tmp_path / "r.db")
        assert done.returncode == 2, done.stderr
        assert says in done.stderr and "starting" not in done.stderr
        assert done.stdout == ""
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        done, _ = cli("run", "noop 2", "--local", "1", "--out", str(locked / "x.csv"),
                      registry=tmp_path / "r.db")
        assert done.returncode == 2 and "cannot be written" in done.stderr
