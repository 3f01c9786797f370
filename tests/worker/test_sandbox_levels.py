"""The isolation levels: what each reports, the opt-ins, and the worker's hardening."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from worker_node import sandbox
from worker_node.hardening import drop_secrets
from worker_node.sandbox_isolation import LEVELS, SandboxRefused, candidates, refusal
from worker_node.sandbox_landlock import abi_version
from worker_node.settings import WorkerSettings

CONNECT = r"""
import socket
try:
    socket.create_connection(("127.0.0.1", INPUT), timeout=3).close()
    RESULT = "connected"
except OSError as exc:
    RESULT = type(exc).__name__
"""


@pytest.fixture
def isolation_restored() -> Iterator[None]:
    """Tests that reconfigure the sandbox put the process's level back afterwards."""
    saved = dict(sandbox._state)
    yield
    sandbox._state.clear()
    sandbox._state.update(saved)


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        yield int(server.getsockname()[1])


def test_every_level_says_what_it_contains() -> None:
    reports = {iso.level: iso.report() for root in (True, False)
               for iso in candidates("auto", root=root, landlock_abi=6, allow_network=False)}
    assert set(reports) == set(LEVELS)
    assert reports["namespaces"]["network"].startswith("off")
    assert reports["process"]["weak"] is True
    assert reports["process"]["signals"].startswith("NOT contained")
    assert not any(reports[level]["weak"] for level in ("namespaces", "landlock", "uid"))


def test_landlock_without_signal_scopes_is_weak_for_a_non_root_worker() -> None:
    [landlock] = candidates("landlock", root=False, landlock_abi=5, allow_network=False)[:1]
    assert landlock.weak and "NADG_SANDBOX_ALLOW_WEAK=1" in refusal(landlock)
    [rooted] = candidates("landlock", root=True, landlock_abi=5, allow_network=False)[:1]
    assert not rooted.weak  # a per-run uid keeps signals in


def test_an_unknown_level_is_refused_with_the_choices() -> None:
    with pytest.raises(SandboxRefused, match="auto or one of namespaces"):
        candidates("chroot", root=True, landlock_abi=0, allow_network=False)
    with pytest.raises(ValidationError):
        WorkerSettings(NADG_SANDBOX_LEVEL="chroot", NADG_ALLOW_INSECURE=True)


def test_landlock_abi_is_read_from_the_kernel() -> None:
    version = abi_version()
    assert version >= 0
    if version == 0:
        pytest.skip("this kernel has no Landlock")


def test_network_is_off_by_default_and_an_opt_in(isolation_restored: None,
                                                 listener: int) -> None:
    limits = sandbox.SandboxLimits(timeout_s=10)
    try:
        sandbox.configure("auto", allow_weak=True)
    except SandboxRefused as exc:
        pytest.skip(str(exc))
    off = sandbox.run_python(CONNECT, listener, limits).result
    if sandbox.current_isolation().level in ("namespaces", "landlock"):
        assert off != "connected"
    sandbox.configure("auto", allow_weak=True, allow_network=True)
    assert sandbox.current_isolation().allow_network
    assert sandbox.run_python(CONNECT, listener, limits).result == "connected"


def test_secrets_are_dropped_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NADG_AUTH_TOKEN", "x" * 40)
    monkeypatch.setenv("GEMINI_API_KEY", "gemini-secret")
    monkeypatch.setenv("DATABASE_URL", "postgresql://registry")
    dropped = drop_secrets()
    assert {"NADG_AUTH_TOKEN", "GEMINI_API_KEY"} <= set(dropped)
    assert "NADG_AUTH_TOKEN" not in os.environ and "GEMINI_API_KEY" not in os.environ
    assert os.environ["DATABASE_URL"] == "postgresql://registry"  # the registry needs it


def test_the_result_comes_over_a_pipe_not_a_file(isolation_restored: None) -> None:
    # a result file the run writes itself is just a file: only its own RESULT comes back
    code = ("import os\nopen('result.json', 'w').write('{\"result\": \"forged\"}')\n"
            "RESULT = 'true'")
    outcome = sandbox.run_python(code, None, sandbox.SandboxLimits(timeout_s=10))
    assert outcome.result == "true", outcome.stderr


def test_runner_source_has_no_file_the_run_could_rewrite() -> None:
    code = sandbox.runner_code()
    assert "from worker_node" not in code  # the Landlock module is pasted in
    assert "def restrict(" in code
    report: dict[str, Any] | None = sandbox.sandbox_report()
    assert report is None or "level" in report


def test_the_image_has_an_init_that_reaps_orphans() -> None:
    from tests.support.servers import REPO_ROOT

    dockerfile = (REPO_ROOT / "worker_node" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["/usr/bin/tini", "--"]' in dockerfile
    assert "apt-get install -y --no-install-recommends tini" in dockerfile
    # tini is installed while still root, before the image switches to uid 1000
    assert dockerfile.index("tini \\") < dockerfile.index("USER user")
