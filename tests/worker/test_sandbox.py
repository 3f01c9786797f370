"""The python sandbox: hostile code is contained and the worker answers the next subtask."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.worker.conftest import subtask


def run(client: httpx.Client, code: str, timeout_s: float = 20.0,
        input_value: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = client.post("/execute", json=subtask(
        "python", {"code": code, "input": input_value}, timeout_s=timeout_s)).json()
    return body


@pytest.fixture(autouse=True)
def still_serving(client: httpx.Client) -> Any:
    """After every sandbox test the worker still runs the next subtask correctly."""
    yield
    after = run(client, "RESULT = sum(INPUT)", input_value=[1, 2, 3])
    assert after["status"] == "completed"
    assert after["output"]["result"] == 6


def test_result_stdout_and_exit_code(client: httpx.Client) -> None:
    body = run(client, "import sys\nprint('hello')\nprint('oops', file=sys.stderr)\n"
                       "RESULT = {'n': INPUT * 2}\nsys.exit(3)", input_value=21)
    assert body["status"] == "completed"
    out = body["output"]
    assert (out["stdout"], out["stderr"], out["exit_code"]) == ("hello\n", "oops\n", 3)
    assert out["result"] == {"n": 42}


def test_exception_in_code_is_reported(client: httpx.Client) -> None:
    out = run(client, "1 / 0")["output"]
    assert out["exit_code"] == 1
    assert "ZeroDivisionError" in out["stderr"]


def test_infinite_loop_is_killed_at_the_deadline(client: httpx.Client) -> None:
    body = run(client, "while True:\n    pass", timeout_s=1.0)
    assert body["status"] == "timeout"
    assert "killed" in body["error"]
    assert body["output"]["killed_by"] == "SIGKILL"
    assert body["metrics"]["duration_ms"] < 5_000


def test_memory_bomb_hits_the_address_space_limit(client: httpx.Client) -> None:
    out = run(client, "x = []\nwhile True:\n    x.append(bytearray(10**7))")["output"]
    assert out["exit_code"] != 0
    assert "MemoryError" in out["stderr"]


def test_fork_bomb_is_contained(client: httpx.Client) -> None:
    code = "import os\nwhile True:\n    os.fork()"
    body = run(client, code, timeout_s=2.0)
    assert body["status"] in ("completed", "timeout")
    out = body["output"]
    assert out["exit_code"] != 0
    assert out["timed_out"] or "BlockingIOError" in out["stderr"] \
        or "Resource temporarily unavailable" in out["stderr"]


def test_huge_print_is_capped(client: httpx.Client) -> None:
    rss_before = client.get("/status").json()["resources"]["rss_bytes"]
    code = "import sys\nchunk = 'x' * 1_000_000\nfor _ in range(100):\n    sys.stdout.write(chunk)"
    out = run(client, code)["output"]
    assert out["exit_code"] == 0
    assert out["stdout_truncated"] is True
    assert len(out["stdout"]) == 1_000_000
    rss_after = client.get("/status").json()["resources"]["rss_bytes"]
    assert rss_after - rss_before < 60_000_000


def test_environment_holds_no_secrets(client: httpx.Client) -> None:
    out = run(client, "import os\nRESULT = dict(os.environ)")["output"]
    env = out["result"]
    assert set(env) <= {"PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "HOME", "TMPDIR",
                        "PYTHONDONTWRITEBYTECODE", "PYTHONIOENCODING", "OMP_NUM_THREADS",
                        "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"}


def test_writing_outside_its_directory_fails(client: httpx.Client, tmp_path: Path) -> None:
    if client.get("/status").json()["sandbox"]["weak"]:
        pytest.skip("a weak sandbox level writes what the worker can (documented)")
    target = tmp_path / "escaped.txt"
    code = (f"open('inside.txt', 'w').write('ok')\n"
            f"open({str(target)!r}, 'w').write('pwned')")
    out = run(client, code)["output"]
    assert out["exit_code"] == 1
    # a private /tmp (namespaces) does not have the folder; Landlock or another uid refuse
    assert any(error in out["stderr"] for error in
               ("PermissionError", "FileNotFoundError", "Read-only file system"))
    assert not target.exists()


def test_each_run_gets_a_fresh_directory(client: httpx.Client) -> None:
    first = run(client, "import os\nopen('mark', 'w').write('1')\nRESULT = os.getcwd()")
    second = run(client, "import os\nRESULT = [os.getcwd(), os.listdir('.')]")
    assert "mark" not in second["output"]["result"][1]
    # with namespaces both see a private tmpfs at /tmp; otherwise each a new host folder
    folder = first["output"]["result"]
    assert folder == "/tmp" or (folder != second["output"]["result"][0]
                                and not Path(folder).exists())
