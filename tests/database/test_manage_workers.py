"""``python -m database.manage_workers`` as a real subprocess against an SQLite registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.database.health_apps import alive_app
from tests.support.servers import REPO_ROOT, free_port, serve_app

CLEAN_ENV = {k: v for k, v in os.environ.items()
             if k not in ("SUPABASE_URL", "SUPABASE_SERVICE_KEY", "DATABASE_URL")}


def start(args: Sequence[str], registry: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "database.manage_workers", *args], cwd=REPO_ROOT,
        env={**CLEAN_ENV, "NADG_REGISTRY": str(registry), "NADG_HEARTBEAT_TIMEOUT_S": "3",
             "NADG_HEARTBEAT_RETRY_DELAY_S": "0.05", **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def cli(*args: str, registry: Path, **env: str) -> subprocess.CompletedProcess[str]:
    proc = start(args, registry, **env)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def listed(registry: Path) -> list[dict[str, object]]:
    done = cli("list", "--json", registry=registry)
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, object]] = json.loads(done.stdout)
    return rows


@pytest.fixture(scope="module")
def alive_url() -> Iterator[str]:
    with serve_app(alive_app(version="4.5.6")) as url:
        yield url


def test_every_verb(tmp_path: Path, alive_url: str) -> None:
    reg = tmp_path / "nested" / "registry.db"
    empty = cli("list", registry=reg)
    assert empty.returncode == 0 and "no workers registered" in empty.stdout
    added = cli("add", alive_url + "/", "--name", "alive", "--max-concurrency", "2",
                registry=reg)
    assert added.returncode == 0, added.stderr
    assert f"added worker 1: {alive_url}" in added.stdout
    dead_port = free_port()
    assert cli("add", f"http://127.0.0.1:{dead_port}", registry=reg).returncode == 0
    table = cli("list", registry=reg)
    assert table.returncode == 0 and "alive" in table.stdout and alive_url in table.stdout
    rows = listed(reg)
    assert [(r["id"], r["name"], r["max_concurrency"], r["status"]) for r in rows] == [
        (1, "alive", 2, "active"), (2, None, 4, "active")]

    pinged = cli("ping", "1", registry=reg)
    assert pinged.returncode == 0, pinged.stderr
    assert "ok" in pinged.stdout
    one = listed(reg)[0]
    assert one["version"] == "4.5.6" and one["last_ping"] is not None
    assert one["last_latency_ms"] is not None

    for _ in range(2):  # ping all: the closed port fails twice and goes offline
        assert cli("ping", registry=reg).returncode == 0
    rows = listed(reg)
    assert [(r["status"], r["consecutive_failures"]) for r in rows] == [
        ("active", 0), ("offline", 2)]

    st = cli("status", "1", "DRAINING", registry=reg)
    assert st.returncode == 0 and "draining" in st.stdout
    assert listed(reg)[0]["status"] == "draining"
    rm = cli("remove", "2", registry=reg)
    assert rm.returncode == 0 and "removed worker 2" in rm.stdout
    assert [r["id"] for r in listed(reg)] == [1]


BAD_INPUT = [
    (("add", "ftp://example.com"), 2, "not an http(s) URL"),
    (("add", "example.com:7860"), 2, "not an http(s) URL"),
    (("add", "http://ok:1", "--max-concurrency", "0"), 2, "--max-concurrency"),
    (("add", "http://127.0.0.1:9/"), 1, "already registered"),
    (("remove", "99"), 1, "no worker with id 99"),
    (("remove", "abc"), 2, "positive integer"),
    (("status", "99", "active"), 1, "no worker with id 99"),
    (("status", "1", "sleeping"), 2, "unknown status 'sleeping'"),
    (("ping", "99"), 1, "no worker with id 99"),
    (("frobnicate",), 2, "No such command"),
    (("status", "1"), 2, "Missing argument"),
]


def test_bad_input_one_line_nonzero_nothing_written(tmp_path: Path) -> None:
    reg = tmp_path / "registry.db"
    assert cli("add", "http://127.0.0.1:9", registry=reg).returncode == 0
    before = listed(reg)
    procs = [(args, code, text, start(args, reg)) for args, code, text in BAD_INPUT]
    for args, code, text, proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == code, (args, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], (
            args, err)
    assert listed(reg) == before


def test_bad_input_is_refused_before_the_registry_is_opened(tmp_path: Path) -> None:
    reg = tmp_path / "fresh" / "registry.db"
    done = cli("add", "not a url", registry=reg)
    assert done.returncode == 2 and not reg.exists() and not reg.parent.exists()


def test_unreachable_registry(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    procs = [
        start(("list",), blocker / "registry.db"),
        start(("add", "http://w:1"), tmp_path / "r.db",
              DATABASE_URL=f"postgresql://nadg@127.0.0.1:{free_port()}/nadg"),
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    for proc, (_out, err), variable in zip(procs, outputs, ("NADG_REGISTRY", "DATABASE_URL"),
                                           strict=True):
        assert proc.returncode == 3, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "registry unavailable" in lines[0] and variable in lines[0]
    assert not (tmp_path / "r.db").exists()
