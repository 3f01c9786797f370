"""``python -m scripts.smoke URL``: the deployed-worker check, against real workers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support.servers import REPO_ROOT, free_port, serve_app
from tests.worker.conftest import TOKEN, make_settings
from worker_node.main import create_app


@pytest.fixture(scope="module")
def compat_worker() -> Iterator[str]:
    with serve_app(create_app(make_settings(NADG_COMPAT_V1=True))) as url:
        yield url


def smoke(*args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NADG_AUTH_TOKEN"}
    if token is not None:
        env["NADG_AUTH_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "scripts.smoke", *args], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=180, check=False)


def test_a_healthy_worker_passes_every_check(compat_worker: str) -> None:
    done = smoke(compat_worker, "--v1")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    names = ["health", "status", "noop", "python", "v1 GET /", "v1 POST /execute-python"]
    parsed = [re.match(r"^(ok|FAIL)\s+(.+?)\s+\d+ ms  ", line) for line in lines[:-1]]
    assert [m.group(2) if m else line for m, line in zip(parsed, lines, strict=False)] == names
    assert all(m and m.group(1) == "ok" for m in parsed)
    assert "printed 'Hello from NADG worker!'" in done.stdout
    assert "device cpu float32" in done.stdout
    assert lines[-1] == f"6/6 checks passed against {compat_worker}"


def test_the_wrong_secret_fails_the_signed_checks_and_says_why(compat_worker: str) -> None:
    done = smoke(compat_worker, "--json", token="a-wrong-grid-secret-0123456789abcdef-xyz")
    assert done.returncode == 1
    checks = {c["name"]: c for c in json.loads(done.stdout)}
    assert checks["health"]["ok"]  # needs no secret
    for name in ("status", "noop", "python"):
        assert not checks[name]["ok"], checks[name]
        assert "HTTP 403" in checks[name]["detail"] and "NADG_AUTH_TOKEN" in checks[name]["detail"]


def test_an_unreachable_worker_fails_with_the_reason() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = smoke(url)
    assert done.returncode == 1
    assert "FAIL health" in done.stdout and f"cannot reach {url}" in done.stdout
    assert done.stdout.splitlines()[-1] == f"0/4 checks passed against {url}"


def test_a_bad_url_is_a_usage_error() -> None:
    done = smoke("worker.example")
    assert done.returncode == 2 and "is not a URL" in done.stderr
