"""``nexus call`` and ``call_worker``: operators call a worker through the one signing
client; a stranger URL gets no subtask."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from nexus_common.call import CallError, ProofFailed, call_worker
from nexus_common.cli import ExitCode, run_app
from nexus_common.signing import KeySource, issue_worker_key
from nexus_ops import call_cli
from tests.support.servers import REPO_ROOT, serve_app
from tests.support.signing import Captured, capture_app
from tests.worker.conftest import TOKEN, make_settings
from worker_node.main import create_app


@pytest.fixture(scope="module")
def worker() -> Iterator[str]:
    with serve_app(create_app(make_settings())) as url:
        yield url


def test_call_worker_signs_and_returns_the_result(worker: str) -> None:
    result = call_worker(worker, "noop", {"echo": {"a": 1}}, TOKEN)
    assert result.ok and result.output is not None
    assert result.output["echo"] == {"a": 1}


def test_call_worker_sends_nothing_to_a_stranger() -> None:
    captured: list[Captured] = []
    with serve_app(capture_app(captured)) as stranger:
        with pytest.raises(ProofFailed, match="nothing was sent"):
            call_worker(stranger, "python", {"code": "RESULT = 1"}, TOKEN)
    assert [c.path for c in captured] == ["/auth/prove"]


def test_call_worker_with_another_secret_is_refused(worker: str) -> None:
    with pytest.raises(CallError, match="unknown key id"):
        call_worker(worker, "noop", {}, "not-this-grid-secret-0123456789abcdef")


def test_nexus_call_prints_the_result(worker: str, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NADG_AUTH_TOKEN", TOKEN)
    code = run_app(call_cli.app, ["call", worker, "noop", '{"echo": 7}'])
    assert code == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["output"]["echo"] == 7


@pytest.mark.parametrize("args,message", [
    (["noop", "{not json"], "PAYLOAD is not JSON"),
    (["noop", "[1]"], "must be a JSON object"),
    (["nosuchkind", "{}"], "not a valid 'nosuchkind' subtask"),
])
def test_nexus_call_bad_input_says_what_is_wrong(
        worker: str, args: list[str], message: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NADG_AUTH_TOKEN", TOKEN)
    assert run_app(call_cli.app, ["call", worker, *args]) == ExitCode.USAGE
    assert message in capsys.readouterr().err


def test_nexus_call_needs_a_secret(worker: str, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("NADG_AUTH_TOKEN", raising=False)
    assert run_app(call_cli.app, ["call", worker, "noop", "{}"]) == ExitCode.USAGE
    assert "set NADG_AUTH_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("NADG_AUTH_TOKEN", "short")
    assert run_app(call_cli.app, ["call", worker, "noop", "{}"]) == ExitCode.USAGE
    assert "token_urlsafe(32)" in capsys.readouterr().err


def test_nexus_worker_key_prints_a_key_bound_to_the_url(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NADG_AUTH_TOKEN", TOKEN)
    assert run_app(call_cli.app, ["worker-key", "https://w1.example"]) == ExitCode.OK
    printed = capsys.readouterr().out.strip()
    assert printed == issue_worker_key(TOKEN, "https://w1.example")
    assert TOKEN not in printed
    assert KeySource.from_worker_key(printed).bound


def test_nexus_call_as_a_process(worker: str) -> None:
    env = {**os.environ, "NADG_AUTH_TOKEN": TOKEN}
    proc = subprocess.run([sys.executable, "-m", "nexus_ops.call_cli", "call", worker,
                           "noop", '{"echo": "proc"}'], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["output"]["echo"] == "proc"
