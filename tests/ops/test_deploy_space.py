"""``nexus deploy space OWNER/NAME`` against a loopback stand-in of the Hub API.

The command runs as a subprocess (``python -m nexus_ops.cli deploy space`` once, then the
same typer app through ``python -m nexus_ops.deploy_cli``) with ``HF_ENDPOINT`` pointing
at :mod:`tests.ops.hub_server`. The "Space" of the main test is a real worker process
started from exactly the secrets and variables the deploy set on the stand-in, on the URL
given with ``--url``; a signed call to it with the grid secret must then complete.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request

from database.backends.sqlite import SqliteStore
from nexus_common.call import call_worker
from nexus_ops.space_hub import DeployInputError, SpaceTarget
from tests.ops.hub_server import HubState, SpaceRepo, create_hub_app
from tests.ops.loopback import SilentServer
from tests.support.servers import REPO_ROOT, WorkerProcess, free_port, serve_app
from tests.support.waiting import wait_until

GRID = "grid-secret-for-deploy-tests-0123456789abcdef"
HF_TOKEN = "hf_alice_write_token_0123456789abcdefgh"
READ_TOKEN = "hf_carol_read_token_0123456789abcdefgh"
SPACE = "alice/nadg-worker"
CLEARED = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "NADG_AUTH_TOKEN",
           "DATABASE_URL", "SUPABASE_URL", "SUPABASE_SERVICE_KEY", "SUPABASE_KEY",
           "NADG_REGISTRY", "NADG_PUBLIC_URL", "SPACE_HOST", "WORKER_ID")
TRAPS = (".env", "worker_node/.env", "database/.nadg/registry.db",
         "worker_node/__pycache__/runner.cpython-311.pyc", "nexus_common/.cache/x.json",
         "worker_node/id_rsa.pem", "database/local.db")

@pytest.fixture
def hub() -> Iterator[tuple[HubState, str]]:
    state = HubState()
    state.add_user(HF_TOKEN, "alice", orgs=("nexus-lab",))
    state.add_user(READ_TOKEN, "carol", role="read")
    with serve_app(create_hub_app(state)) as url:
        yield state, url


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A copy of the worker's packages, with files a deploy must never upload planted."""
    root = tmp_path / "src"
    for package in ("nexus_common", "worker_node", "database"):
        shutil.copytree(REPO_ROOT / package, root / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (root / "database" / "obsolete.py").write_text("OLD = 1\n")
    for trap in TRAPS:
        (root / trap).parent.mkdir(parents=True, exist_ok=True)
        (root / trap).write_text("NADG_AUTH_TOKEN=planted\n")
    return root


def expected_files(root: Path) -> set[str]:
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    return (files - set(TRAPS)) | {"Dockerfile", "README.md"}


def deploy_env(hub_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update({"HF_ENDPOINT": hub_url, "HF_HOME": str(tmp_path / "hf"),
                "HF_HUB_DISABLE_TELEMETRY": "1", "NADG_REGISTRY": str(tmp_path / "registry.db"),
                "HF_TOKEN": HF_TOKEN, "NADG_AUTH_TOKEN": GRID, "PYTHONPATH": str(REPO_ROOT),
                **extra})
    return env


def command(*args: str, root: bool = False) -> list[str]:
    """``nexus deploy space ARGS`` (``root``: through the ``nexus`` root, which imports the
    master and takes seconds longer), else ``python -m nexus_ops.deploy_cli space ARGS``."""
    if root:
        return [sys.executable, "-m", "nexus_ops.cli", "deploy", "space", *args]
    return [sys.executable, "-m", "nexus_ops.deploy_cli", "space", *args]


def run_deploy(env: dict[str, str], cwd: Path, *args: str,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(*args), env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def registered(tmp_path: Path) -> list[object]:
    store = SqliteStore(tmp_path / "registry.db")
    try:
        return list(store.list_workers())
    finally:
        store.close()


@pytest.mark.slow
def test_deploy_creates_waits_registers_and_a_rerun_updates(
        hub: tuple[HubState, str], source: Path, tmp_path: Path) -> None:
    state, hub_url = hub
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = deploy_env(hub_url, tmp_path)
    args = (SPACE, "--url", url, "--timeout", "150", "--source", str(source),
            "--var", "NADG_CAPACITY=1", "--poll", "0.2")
    proc = subprocess.Popen(command(*args, root=True), env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        repo: SpaceRepo = wait_until(
            lambda: (r := state.repos.get(SPACE)) is not None and r.commits and r,
            timeout=60, what="the deploy's commit")
        assert repo.stage == "BUILDING"
        # the "build": a worker started from exactly what the Space was given
        worker_env = {k: v for k, v in os.environ.items() if k not in CLEARED}
        worker_env.update(repo.variables, **repo.secrets, HOME=str(tmp_path),
                          NADG_QUEUE_SIZE="2", NADG_REGISTER="0")
        with WorkerProcess(port=port, env=worker_env):
            repo.stage = "RUNNING"
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            assert f"created Space {SPACE}" in out
            assert f"healthy: {url}" in out
            assert HF_TOKEN not in out + err and GRID not in out + err
            assert "waiting for" in err and "stage BUILDING" in err  # progress was shown

            # a Docker Space, its files and nothing else
            assert (repo.sdk, repo.hardware, repo.private) == ("docker", "cpu-basic", False)
            assert set(repo.files) == expected_files(source)
            assert repo.files["Dockerfile"] == (source / "worker_node/Dockerfile").read_bytes()
            assert repo.files["README.md"].startswith(b"---\n")
            assert b"sdk: docker" in repo.files["README.md"]
            assert not any(p.startswith(".") or "/." in p or "__pycache__" in p
                           or p.endswith((".db", ".pem")) for p in repo.files)
            # its own key, never the grid secret; public variables hold no secret
            assert set(repo.secrets) == {"NADG_WORKER_KEY"}
            assert repo.variables == {"NADG_PUBLIC_URL": url, "WORKER_ID": "alice-nadg-worker",
                                      "NADG_CAPACITY": "1"}
            for blob in [*repo.files.values(), *(v.encode() for v in repo.variables.values()),
                         *(v.encode() for v in repo.secrets.values())]:
                assert GRID.encode() not in blob and HF_TOKEN.encode() not in blob
            # registered once, active, with what /health reported
            (worker,) = registered(tmp_path)
            assert (worker.vm_url, worker.name, worker.status.value) == (  # type: ignore[attr-defined]
                url, "alice-nadg-worker", "active")
            assert worker.max_concurrency == 1  # type: ignore[attr-defined]
            # the deployed settings work: the grid secret's signed call completes
            assert call_worker(url, "noop", {"echo": 7}, GRID, timeout_s=30).ok

            # a re-run with nothing changed: no commit, same secrets, one registry row
            commits = len(repo.commits)
            again = run_deploy(env, tmp_path, *args)
            assert again.returncode == 0, again.stderr
            assert f"updated Space {SPACE}: 0 file(s) uploaded, 0 removed" in again.stdout
            assert len(repo.commits) == commits
            assert set(repo.secrets) == {"NADG_WORKER_KEY"}
            assert len(registered(tmp_path)) == 1

            # one file changed, one gone: one commit with exactly those
            changed = source / "worker_node" / "heads.py"
            changed.write_text(changed.read_text() + "\n# changed\n")
            (source / "database" / "obsolete.py").unlink()
            state.after_commit = "RUNNING"
            third = run_deploy(env, tmp_path, *args)
            assert third.returncode == 0, third.stderr
            assert repo.commits[-1]["added"] == ["worker_node/heads.py"]
            assert repo.commits[-1]["deleted"] == ["database/obsolete.py"]
            assert "database/obsolete.py" not in repo.files
            assert len(registered(tmp_path)) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_a_bad_token_is_refused_before_anything_is_created(
        hub: tuple[HubState, str], tmp_path: Path) -> None:
    state, hub_url = hub
    env = deploy_env(hub_url, tmp_path, HF_TOKEN="hf_not_a_real_token_0123456789abcd")
    out = run_deploy(env, tmp_path, SPACE, "--timeout", "5")
    assert out.returncode == 1
    assert "refused the Hugging Face token" in out.stderr and "HF_TOKEN" in out.stderr
    assert "Traceback" not in out.stderr
    assert state.repos == {}


def test_a_read_token_or_a_foreign_owner_is_refused(
        hub: tuple[HubState, str], tmp_path: Path) -> None:
    state, hub_url = hub
    read = run_deploy(deploy_env(hub_url, tmp_path, HF_TOKEN=READ_TOKEN), tmp_path,
                      "carol/w", "--timeout", "5")
    assert read.returncode == 1 and "read-only" in read.stderr
    foreign = run_deploy(deploy_env(hub_url, tmp_path), tmp_path, "bob/w", "--timeout", "5")
    assert foreign.returncode == 1
    assert "cannot create Spaces under 'bob'" in foreign.stderr
    assert "alice or nexus-lab" in foreign.stderr
    assert state.repos == {}


@pytest.mark.parametrize(("target", "message"), [
    ("nadg-worker", "give OWNER/NAME"),
    ("alice/nadg/worker", "give OWNER/NAME"),
    ("alice/bad name", "bad NAME"),
    ("alice/a..b", "bad NAME"),
    ("al_ice/w", "bad OWNER"),
    ("-alice/w", "bad OWNER"),
])
def test_a_bad_space_id_says_what_is_wrong(target: str, message: str) -> None:
    with pytest.raises(DeployInputError, match=message):
        SpaceTarget.parse(target)


def test_a_bad_space_id_is_a_usage_error_and_reaches_no_hub(
        hub: tuple[HubState, str], tmp_path: Path) -> None:
    state, hub_url = hub
    out = run_deploy(deploy_env(hub_url, tmp_path), tmp_path, "alice/bad name")
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: bad NAME 'bad name'") and "Traceback" not in out.stderr
    assert state.requests == []  # nothing reached the Hub


def test_missing_token_weak_secret_and_unreachable_store_are_usage_errors(
        hub: tuple[HubState, str], tmp_path: Path) -> None:
    state, hub_url = hub
    env = deploy_env(hub_url, tmp_path)
    del env["HF_TOKEN"]
    no_token = run_deploy(env, tmp_path, SPACE)
    assert no_token.returncode == 2 and "no Hugging Face token" in no_token.stderr
    weak = run_deploy(deploy_env(hub_url, tmp_path, NADG_AUTH_TOKEN="short"), tmp_path, SPACE)
    assert weak.returncode == 2 and "at least 32 bytes" in weak.stderr
    loopback = run_deploy(deploy_env(hub_url, tmp_path,
                                     DATABASE_URL="postgresql://postgres@127.0.0.1/test"),
                          tmp_path, SPACE, "--store-secrets")
    assert loopback.returncode == 2 and "a Space cannot reach" in loopback.stderr
    assert state.requests == []


def test_a_file_holding_a_secret_stops_the_deploy_before_the_hub(
        hub: tuple[HubState, str], source: Path, tmp_path: Path) -> None:
    state, hub_url = hub
    (source / "worker_node" / "settings_local.py").write_text(f'TOKEN = "{GRID}"\n')
    out = run_deploy(deploy_env(hub_url, tmp_path), tmp_path, SPACE, "--source", str(source))
    assert out.returncode == 2
    assert "settings_local.py contains a secret value" in out.stderr
    assert state.requests == [] and state.repos == {}


@pytest.mark.slow
def test_a_space_that_never_answers_times_out_with_a_clear_message(
        hub: tuple[HubState, str], tmp_path: Path) -> None:
    state, hub_url = hub
    state.after_commit = "RUNNING"
    with SilentServer() as silent:  # accepts and never answers, like a hung proxy
        started = time.monotonic()
        out = run_deploy(deploy_env(hub_url, tmp_path), tmp_path, SPACE, "--url",
                         silent.url, "--timeout", "4")
        elapsed = time.monotonic() - started
    assert out.returncode == 1, out.stderr
    assert f"did not become healthy at {silent.url}/health within 4 s" in out.stderr
    assert "longer --timeout" in out.stderr
    assert elapsed < 30
    assert f"waiting up to 4 s for the Space to run and answer {silent.url}/health" in out.stderr
    assert registered(tmp_path) == []  # never registered


@pytest.mark.slow
def test_an_impostor_is_not_registered_and_never_sees_the_hf_token(
        hub: tuple[HubState, str], tmp_path: Path) -> None:
    """A URL that answers /health but cannot prove the worker's key is not the Space; a
    private deploy's Hugging Face token goes to the Space's own host only."""
    state, hub_url = hub
    state.after_commit = "RUNNING"
    seen: list[str] = []
    impostor = FastAPI()

    @impostor.middleware("http")
    async def record(request: Request, call_next: Any) -> Any:
        seen.append(request.headers.get("authorization", ""))
        return await call_next(request)

    @impostor.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "worker_id": "impostor", "version": "9", "capacity": 8}

    @impostor.post("/auth/prove")
    def prove() -> dict[str, str]:
        return {"proof": "0" * 64}

    with serve_app(impostor) as url:
        out = run_deploy(deploy_env(hub_url, tmp_path), tmp_path, SPACE, "--private",
                         "--url", url, "--timeout", "3", "--poll", "0.2")
    assert out.returncode == 1
    assert "did not prove" in out.stderr or "wrong proof" in out.stderr, out.stderr
    assert state.repos[SPACE].private
    assert seen and not any(HF_TOKEN in h for h in seen)
    assert registered(tmp_path) == []


@pytest.mark.slow
def test_an_error_stage_fails_at_once_with_its_stage_and_a_hint(
        hub: tuple[HubState, str], tmp_path: Path) -> None:
    state, hub_url = hub
    state.after_commit, state.error_message = "BUILD_ERROR", "pip install failed"
    env = deploy_env(hub_url, tmp_path, DATABASE_URL="postgresql://u:pw-0123456789@db.example"
                                                     ".org:5432/grid")
    started = time.monotonic()
    out = run_deploy(env, tmp_path, SPACE, "--timeout", "300", "--store-secrets",
                     "--share-grid-secret", "--hardware", "cpu-upgrade")
    assert time.monotonic() - started < 60  # not the 300 s deadline
    assert out.returncode == 1
    assert "stage BUILD_ERROR (pip install failed)" in out.stderr
    assert "?logs=build" in out.stderr
    repo = state.repos[SPACE]
    assert repo.hardware == "cpu-upgrade"
    assert repo.secrets == {"NADG_AUTH_TOKEN": GRID,
                            "DATABASE_URL": env["DATABASE_URL"]}
    # the URL the Hub reports for the Space
    assert repo.variables["NADG_PUBLIC_URL"] == "https://alice-nadg-worker.hf.space"
    assert registered(tmp_path) == []

    # deployed again with a new variable and no file changed: the Space is rebuilt, and the
    # old BUILD_ERROR the runtime still shows for a few polls is not taken for the outcome
    state.after_commit, state.error_message, state.lag_polls = (
        ["BUILDING", "APP_STARTING", "RUNTIME_ERROR"], "exit 3", 3)
    second = run_deploy(env, tmp_path, SPACE, "--timeout", "300", "--store-secrets",
                        "--share-grid-secret", "--hardware", "cpu-upgrade", "--poll", "0.2",
                        "--var", "NADG_SANDBOX_ALLOW_WEAK=1")
    assert second.returncode == 1
    assert "stage RUNTIME_ERROR (exit 3)" in second.stderr, second.stderr
    assert "?logs=container" in second.stderr and "BUILD_ERROR (pip" not in second.stderr
    assert "stage BUILD_ERROR: restarting it with a rebuild" in second.stderr, second.stderr
    assert repo.restarts == [True] and repo.lag == 0  # it polled through the stale answers
    assert repo.variables["NADG_SANDBOX_ALLOW_WEAK"] == "1"

    # deployed again without --share-grid-secret and --store-secrets: the grid secret and
    # the store's password are removed from the Space, not left behind
    state.after_commit, state.lag_polls = "BUILD_ERROR", 0
    third = run_deploy(env, tmp_path, SPACE, "--timeout", "1", "--poll", "0.2",
                       "--hardware", "cpu-upgrade")
    assert third.returncode == 1, third.stderr
    assert repo.secrets == {"NADG_WORKER_KEY": repo.secrets["NADG_WORKER_KEY"]}


def test_the_systemd_unit_verifies_and_starts_the_pull_worker(tmp_path: Path) -> None:
    unit = (REPO_ROOT / "docs" / "nexus-worker.service").read_text()
    (exec_line,) = [x for x in unit.splitlines() if x.startswith("ExecStart=")]
    interpreter, *argv = exec_line.removeprefix("ExecStart=").split()
    assert argv == ["-m", "worker_node", "pull"]
    assert "EnvironmentFile=/etc/nexus-worker.env" in unit
    assert "RestartPreventExitStatus=1" in unit  # a revoked credential is not retried
    for breaks_the_sandbox in ("RestrictNamespaces=", "PrivateUsers=", "SystemCallFilter="):
        assert not any(x.startswith(breaks_the_sandbox) for x in unit.splitlines())
    # the command the unit runs exists and parses
    help_ = subprocess.run([sys.executable, *argv, "--help"], cwd=REPO_ROOT, text=True,
                           capture_output=True, timeout=60)
    assert help_.returncode == 0 and "--lease-s" in help_.stdout, help_.stderr
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    copy = tmp_path / "nexus-worker.service"
    copy.write_text(unit.replace(interpreter, sys.executable))
    verify = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True,
                            timeout=60)
    # verify exits 0 on keys it ignores, so any line about the unit is a failure
    assert verify.returncode == 0 and str(copy) not in verify.stderr + verify.stdout, \
        verify.stderr


def test_the_readme_notebook_cell_compiles_and_sets_what_the_pull_worker_reads() -> None:
    import ast

    from database.leases import PullSettings

    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Join from anywhere", 1)[1].split("\n## ", 1)[0]
    cell = section.split("```python\n", 1)[1].split("```", 1)[0]
    tree = ast.parse(cell)
    (names,) = [tuple(e.value for e in node.iter.elts if isinstance(e, ast.Constant))
                for node in ast.walk(tree)
                if isinstance(node, ast.For) and isinstance(node.iter, ast.Tuple)]
    read = {str(f.validation_alias) for f in PullSettings.model_fields.values()}
    assert set(names) == {"NADG_WORKER_CREDENTIAL", "DATABASE_URL", "SUPABASE_URL",
                          "SUPABASE_ANON_KEY"} and set(names) <= read
    assert "SUPABASE_SERVICE_KEY" not in cell  # a notebook never gets the service key
    assert '"-m", "worker_node", "pull"' in cell
