"""The original NADG worker API under NADG_COMPAT_V1=1, and ``python worker_node/main.py``.

The original shapes (docs: /work/shared/ORIGINAL_NADG.md): ``GET /``, ``POST /execute``
with ``{"task", "task_id", "timeout"}``, ``POST /execute-python`` (408 past its timeout),
authenticated by ``X-NADG-AUTH``. Without compat mode those routes do not exist.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from nexus_common.protocol import AUTH_HEADER
from nexus_common.signing import SigningAuth
from tests.support.servers import REPO_ROOT, free_port, serve_app
from tests.support.waiting import wait_until
from tests.worker.conftest import TOKEN, make_settings, subtask
from tests.worker.test_generate import reference
from tests.worker.tiny_models import put_in_hub_cache, tiny_chat_model
from worker_node.main import create_app
from worker_node.settings import DEFAULT_GENERATE_MODEL

V1 = {AUTH_HEADER: TOKEN}
HELLO = "print('Hello from NADG worker!')"
ORIGINAL_KEYS = {"task_id", "status", "output", "error", "executed_at"}


@pytest.fixture(scope="module")
def compat_url() -> Iterator[str]:
    """A worker with NADG_COMPAT_V1=1."""
    with serve_app(create_app(make_settings(NADG_COMPAT_V1=True))) as url:
        yield url


def is_iso(value: str) -> bool:
    return isinstance(datetime.fromisoformat(value), datetime)


def test_without_compat_mode_the_original_routes_do_not_exist(worker_url: str,
                                                              client: httpx.Client) -> None:
    assert httpx.get(f"{worker_url}/").status_code == 404
    assert client.post("/execute-python", json={"task": HELLO}).status_code == 404
    original = client.post("/execute", json={"task": HELLO, "task_id": 1})
    assert original.status_code == 422  # not a Subtask
    # and the original header is no credential there
    assert httpx.post(f"{worker_url}/execute-python", json={"task": HELLO},
                      headers=V1).status_code == 401


def test_root_answers_the_original_shape(compat_url: str) -> None:
    body = httpx.get(f"{compat_url}/").json()
    assert body.keys() == {"status", "service", "timestamp"}
    assert body["status"] == "active" and body["service"] == "NADG Worker Node"
    assert is_iso(body["timestamp"])


def test_execute_python_runs_the_code_in_the_sandbox(compat_url: str) -> None:
    response = httpx.post(f"{compat_url}/execute-python", headers=V1, timeout=60,
                          json={"task": HELLO, "task_id": 42, "timeout": 20})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body.keys() == ORIGINAL_KEYS | {"return_code"}
    assert body["task_id"] == 42 and body["status"] == "completed"
    assert body["output"] == "Hello from NADG worker!\n" and body["error"] == ""
    assert body["return_code"] == 0 and is_iso(body["executed_at"])


def test_execute_python_reports_a_failing_script(compat_url: str) -> None:
    body = httpx.post(f"{compat_url}/execute-python", headers=V1, timeout=60, json={
        "task": "import sys\nprint('half')\nsys.exit(3)"}).json()
    assert (body["status"], body["return_code"], body["output"]) == ("failed", 3, "half\n")
    raised = httpx.post(f"{compat_url}/execute-python", headers=V1, timeout=60, json={
        "task": "raise ValueError('boom')"}).json()
    assert raised["status"] == "failed" and raised["return_code"] != 0
    assert "ValueError: boom" in raised["error"]


def test_execute_python_past_its_timeout_is_408(compat_url: str) -> None:
    response = httpx.post(f"{compat_url}/execute-python", headers=V1, timeout=60,
                          json={"task": "while True:\n    pass", "task_id": 9, "timeout": 1})
    assert response.status_code == 408
    assert "task 9 ran past its 1s timeout" in response.json()["error"]


def test_sandboxed_code_cannot_read_the_grid_secret(compat_url: str) -> None:
    """The attack: a script that hunts for the worker's token in its environment."""
    code = ("import os\nprint(sorted(k for k in os.environ if 'NADG' in k or 'TOKEN' in k))\n"
            "print(open('/proc/self/environ', 'rb').read())")
    body = httpx.post(f"{compat_url}/execute-python", headers=V1, timeout=60,
                      json={"task": code}).json()
    assert TOKEN not in body["output"] and TOKEN not in body["error"]


def test_execute_acknowledges_the_original_body(compat_url: str) -> None:
    task = "Create a Python script that prints 'Hello from NADG'"
    body = httpx.post(f"{compat_url}/execute", headers=V1, timeout=60,
                      json={"task": task, "task_id": 7}).json()
    assert body.keys() == ORIGINAL_KEYS
    assert (body["task_id"], body["status"], body["output"], body["error"]) == (
        7, "completed", task, "")
    assert is_iso(body["executed_at"])


def test_a_compat_worker_still_runs_subtasks_on_execute(compat_url: str) -> None:
    signed = httpx.post(f"{compat_url}/execute", auth=SigningAuth(TOKEN), timeout=60,
                        json=subtask("noop", {"echo": "x"})).json()
    assert signed["status"] == "completed" and signed["output"]["echo"] == "x"
    bearer = httpx.post(f"{compat_url}/execute", headers=V1, timeout=60,
                        json=subtask("noop", {"echo": "y"})).json()
    assert bearer["output"]["echo"] == "y"
    bad = httpx.post(f"{compat_url}/execute", headers=V1, json=subtask("noop", {"nope": 1}))
    assert bad.status_code == 422 and "payload" in bad.json()["error"]


@pytest.mark.parametrize("body", [{"task": ""}, {"task": "x", "timeout": 0},
                                  {"task": "x", "task_id": "seven"}])
def test_a_bad_original_body_is_422_naming_the_field(compat_url: str,
                                                     body: dict[str, Any]) -> None:
    response = httpx.post(f"{compat_url}/execute-python", headers=V1, json=body)
    assert response.status_code == 422
    field = next(k for k in ("timeout", "task_id", "task") if k in body and
                 (k != "task" or body[k] == ""))
    assert f"body.{field}" in response.json()["error"]


@pytest.mark.parametrize("headers", [{}, {AUTH_HEADER: "wrong-token-" + "x" * 40}])
def test_the_original_routes_need_the_token(compat_url: str, headers: dict[str, str]) -> None:
    for path in ("/execute-python", "/execute"):
        response = httpx.post(f"{compat_url}{path}", headers=headers,
                              json={"task": HELLO})
        assert response.status_code in (401, 403), (path, response.text)
    assert httpx.get(f"{compat_url}/").status_code == 200  # GET / needed none originally


# -- `python worker_node/main.py`, as the original `python main.py` -------------------

SECRET = "main-py-test-grid-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A Hub cache holding a tiny chat model under the default model's id: the worker
    loads the default id through the real from_pretrained, offline."""
    root = tmp_path_factory.mktemp("hf")
    model = tiny_chat_model(root / "built")
    snapshot = put_in_hub_cache(root / "hub", DEFAULT_GENERATE_MODEL, model)
    return root / "hub", snapshot


@pytest.fixture(scope="module")
def main_py(hub_cache: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "DATABASE_URL", "SUPABASE_URL", "NADG_REGISTRY")}
    env.update(PORT=str(port), NADG_HOST="127.0.0.1", NADG_AUTH_TOKEN=SECRET,
               NADG_COMPAT_V1="1", NADG_REGISTER="0", WORKER_ID="main-py-worker",
               HF_HUB_CACHE=str(hub_cache[0]), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.pop("NADG_GENERATE_MODEL", None)
    # from another directory: the installed project, no path tricks
    proc = subprocess.Popen([sys.executable, str(REPO_ROOT / "worker_node" / "main.py")],
                            cwd=tmp_path_factory.mktemp("elsewhere"), env=env,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return proc.poll() is not None or httpx.get(f"{url}/health").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, timeout=120, what="python worker_node/main.py on $PORT")
        assert proc.poll() is None, f"python worker_node/main.py exited {proc.returncode}"
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        # a clean stop: uvicorn shuts down, then re-raises the SIGTERM it caught
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)


@pytest.mark.slow
def test_main_py_serves_on_port_with_the_original_api(main_py: str) -> None:
    health = httpx.get(f"{main_py}/health").json()
    assert health["worker_id"] == "main-py-worker" and health["status"] == "ok"
    assert httpx.get(f"{main_py}/").json()["service"] == "NADG Worker Node"
    body = httpx.post(f"{main_py}/execute-python", headers={AUTH_HEADER: SECRET}, timeout=60,
                      json={"task": HELLO}).json()
    assert body["output"] == "Hello from NADG worker!\n"


@pytest.mark.slow
def test_a_worker_with_no_model_configured_generates_with_the_default_id(
        main_py: str, hub_cache: tuple[Path, Path]) -> None:
    auth = SigningAuth(SECRET)
    prompts = ["write three taglines for each product", "A cat"]
    body = httpx.post(f"{main_py}/execute", auth=auth, timeout=120, json=subtask(
        "generate", {"prompts": prompts, "max_new_tokens": 6})).json()
    assert body["status"] == "completed", body["error"]
    assert body["output"]["model"] == DEFAULT_GENERATE_MODEL
    assert body["output"]["chat_template"] is True
    assert body["output"]["completions"] == [reference(hub_cache[1], p, 6, chat=True)
                                             for p in prompts]
    status = httpx.get(f"{main_py}/status", auth=auth).json()
    assert f"causal-lm:{DEFAULT_GENERATE_MODEL}" in status["models_loaded"]
    missing = httpx.post(f"{main_py}/execute", auth=auth, timeout=120, json=subtask(
        "generate", {"prompts": ["hi"], "model": "nadg-test/not-in-the-cache"})).json()
    assert missing["status"] == "failed"
    assert "could not load generation model 'nadg-test/not-in-the-cache'" in missing["error"]
    assert "HF_HUB_OFFLINE" in missing["error"]
