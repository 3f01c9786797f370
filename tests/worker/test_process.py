"""The worker as the container runs it: ``uvicorn worker_node.main:app`` with env only.

Covers the insecure-start refusal, secrets kept from sandboxed code, and self-registration
against a real Postgres (its own schema) through ``DATABASE_URL``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.support.servers import REPO_ROOT, WorkerProcess, free_port
from tests.support.waiting import wait_until
from tests.worker.conftest import AUTH, TOKEN, subtask

ADMIN_DSN = os.environ.get("NADG_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
SECRETS = {"GEMINI_API_KEY": "gemini-secret-123", "HF_TOKEN": "hf-secret-456"}
STRIPPED = ("NADG_AUTH_TOKEN", "NADG_ALLOW_INSECURE", "DATABASE_URL", "SUPABASE_URL",
            "NADG_REGISTRY", "NADG_PUBLIC_URL", "SPACE_HOST")


def worker_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A container-like environment: HOME in a temp dir, PORT set, no inherited NADG vars."""
    env = {k: v for k, v in os.environ.items() if k not in STRIPPED}
    env.update(HOME=str(tmp_path), NADG_CAPACITY="1", NADG_QUEUE_SIZE="2", **extra)
    return env


def test_importing_the_app_is_cheap() -> None:
    code = ("import sys, worker_node.main as m; assert m.app is not None; "
            "print(sorted({'torch', 'transformers', 'sentence_transformers'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "NADG_AUTH_TOKEN": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "uvicorn", "worker_node.main:app", "--host", "127.0.0.1",
         "--port", str(port)],
        cwd=REPO_ROOT, env=worker_env(tmp_path, PORT=str(port)), capture_output=True,
        text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "NADG_AUTH_TOKEN is not set" in proc.stderr
    assert "NADG_ALLOW_INSECURE=1" in proc.stderr


def test_insecure_mode_serves_without_a_token(tmp_path: Path) -> None:
    port = free_port()
    with WorkerProcess(port=port, env=worker_env(tmp_path, PORT=str(port),
                                                 NADG_ALLOW_INSECURE="1")) as worker:
        body = httpx.post(f"{worker.url}/execute", json=subtask("noop", {"echo": "hi"}),
                          timeout=30).json()
        assert body["output"]["echo"] == "hi"


@pytest.fixture()
def pg_dsn() -> Iterator[str]:
    """A DATABASE_URL pointing at a fresh schema of the test database (dropped after)."""
    try:
        admin = psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Postgres at {ADMIN_DSN} is unreachable in CI: {exc}")
        pytest.skip(f"Postgres at {ADMIN_DSN} is unreachable: {exc}")
    schema = f"nadg_worker_{uuid.uuid4().hex[:10]}"
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in ADMIN_DSN else "?"
        try:
            yield f"{ADMIN_DSN}{sep}options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def test_container_command_registers_pings_hides_secrets_and_drains(
        tmp_path: Path, pg_dsn: str) -> None:
    from database.backends.postgres import PostgresStore
    from database.models import WorkerStatus

    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    env = worker_env(tmp_path, PORT=str(port), NADG_AUTH_TOKEN=TOKEN, WORKER_ID="proc-worker",
                     NADG_PUBLIC_URL=public_url, DATABASE_URL=pg_dsn,
                     NADG_PING_INTERVAL_S="0.2", **SECRETS)
    worker = WorkerProcess(port=port, env=env).start()
    store = PostgresStore(pg_dsn, max_size=2)
    try:
        node = wait_until(lambda: store.find_worker(public_url), timeout=30,
                          what="the worker to register")
        assert node.status is WorkerStatus.ACTIVE
        assert node.name == "proc-worker"
        assert "embed" in node.capabilities and node.max_concurrency == 1
        first_ping = node.last_ping
        assert first_ping is not None
        wait_until(lambda: (n := store.find_worker(public_url)) is not None
                   and n.last_ping is not None and n.last_ping > first_ping,
                   timeout=30, what="a later ping")
        status = httpx.get(f"{worker.url}/status", auth=AUTH, timeout=30).json()
        assert status["registered_id"] == node.id

        body = httpx.post(f"{worker.url}/execute", auth=AUTH, timeout=30, json=subtask(
            "python", {"code": "import os\nRESULT = dict(os.environ)"})).json()
        assert body["status"] == "completed", body
        leaked = str(body["output"]["result"])
        for secret in (TOKEN, pg_dsn, *SECRETS.values()):
            assert secret not in leaked
    finally:
        worker.stop()
        try:
            # uvicorn re-raises SIGTERM after a graceful shutdown: -15 is a clean exit
            assert worker.proc is not None and worker.proc.returncode in (0, -15)
            node = store.find_worker(public_url)
            assert node is not None and node.status is WorkerStatus.DRAINING
        finally:
            store.close()
