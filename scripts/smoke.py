"""Check a deployed worker end to end: ``python -m scripts.smoke URL [--v1] [--generate]``.

The original NADG's ``test_worker.py URL`` did this job. In order: ``GET /health``
(no token), ``GET /status``, a ``noop`` subtask, and a ``python`` subtask that prints
``Hello from NADG worker!`` in the worker's sandbox; ``--v1`` adds the original API
(``GET /`` and ``POST /execute-python`` with ``X-NADG-AUTH``, for a worker started with
``NADG_COMPAT_V1=1``); ``--generate`` adds one ``generate`` subtask with the worker's
default model (the first one downloads the model: allow minutes).

The grid secret comes from ``NADG_AUTH_TOKEN`` (requests are signed with it). Every
check prints one line (``ok`` or ``FAIL`` with the reason); the exit code is 0 when all
passed, 1 otherwise, 2 for bad arguments. ``--json`` prints the checks as JSON instead.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import httpx
import typer

from nexus_common.cli import ExitCode, UsageError, new_app, run_app
from nexus_common.protocol import AUTH_HEADER
from nexus_common.signing import SigningAuth

HELLO = "Hello from NADG worker!"


@dataclass
class Check:
    """One step of the smoke test and how it went."""

    name: str
    ok: bool
    detail: str
    ms: float


class SmokeFailed(Exception):
    """A check's answer was not what a healthy worker answers."""


def _subtask(kind: str, payload: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    return {"id": f"smoke-{uuid.uuid4().hex[:8]}", "task_id": "smoke", "kind": kind,
            "payload": payload, "timeout_s": timeout_s}


def _json(response: httpx.Response) -> Any:
    if response.status_code != 200:
        raise SmokeFailed(f"HTTP {response.status_code}: {response.text[:300]}")
    return response.json()


def _completed(response: httpx.Response) -> dict[str, Any]:
    result = _json(response)
    if result.get("status") != "completed":
        raise SmokeFailed(f"subtask {result.get('status')}: {result.get('error')}")
    output: dict[str, Any] = result.get("output") or {}
    return output


def checks(client: httpx.Client, plain: httpx.Client, secret: str | None, *, v1: bool = False,
           generate: bool = False) -> list[tuple[str, Callable[[], str]]]:
    """The checks to run, in order: (name, function returning a one-line detail).

    ``client`` signs its requests; ``plain`` sends none (the routes that need no token,
    and the original API's bearer header)."""

    def health() -> str:
        body = _json(plain.get("/health"))
        if body.get("status") not in ("ok", "degraded", "healthy"):
            raise SmokeFailed(f"status {body.get('status')!r}")
        return f"{body.get('status')}, worker {body.get('worker_id')}, " \
               f"version {body.get('version')}"

    def status() -> str:
        body = _json(client.get("/status"))
        return f"kinds {', '.join(body.get('kinds', []))}; device {body.get('device')} " \
               f"{body.get('dtype')}; generate model {body.get('models', {}).get('generate')}"

    def noop() -> str:
        output = _completed(client.post("/execute", json=_subtask("noop", {"echo": "smoke"},
                                                                      30)))
        if output.get("echo") != "smoke":
            raise SmokeFailed(f"echo came back as {output.get('echo')!r}")
        return "echoed"

    def python() -> str:
        output = _completed(client.post("/execute", json=_subtask(
            "python", {"code": f"print({HELLO!r})"}, 60)))
        if output.get("stdout", "").strip() != HELLO or output.get("exit_code") != 0:
            raise SmokeFailed(f"exit {output.get('exit_code')}, stdout "
                              f"{output.get('stdout')!r}, stderr {output.get('stderr')!r}")
        return f"printed {HELLO!r}"

    def generate_one() -> str:
        output = _completed(client.post("/execute", timeout=900, json=_subtask(
            "generate", {"prompts": ["Say hello in five words."], "max_new_tokens": 16},
            900)))
        return f"{output.get('model')}: {output.get('completions', [''])[0]!r} " \
               f"({output.get('tokens_per_s')} tokens/s)"

    def v1_root() -> str:
        body = _json(plain.get("/"))
        if body.get("service") != "NADG Worker Node":
            raise SmokeFailed(f"answered {body!r}: is NADG_COMPAT_V1=1 set on the worker?")
        return str(body.get("status"))

    def v1_python() -> str:
        headers = {AUTH_HEADER: secret} if secret else {}
        body = _json(plain.post("/execute-python", headers=headers,
                                 json={"task": f"print({HELLO!r})", "task_id": 1}))
        if body.get("output", "").strip() != HELLO:
            raise SmokeFailed(f"answered {body!r}")
        return f"return_code {body.get('return_code')}"

    found: list[tuple[str, Callable[[], str]]] = [
        ("health", health), ("status", status), ("noop", noop), ("python", python)]
    if generate:
        found.append(("generate", generate_one))
    if v1:
        found += [("v1 GET /", v1_root), ("v1 POST /execute-python", v1_python)]
    return found


def run_smoke(url: str, secret: str | None, *, v1: bool = False, generate: bool = False,
              timeout_s: float = 60.0) -> list[Check]:
    """Run every check against ``url``; a failed check never stops the next ones."""
    auth = SigningAuth(secret) if secret else None
    results: list[Check] = []
    base = url.rstrip("/")
    with httpx.Client(base_url=base, auth=auth, timeout=timeout_s) as client, \
            httpx.Client(base_url=base, timeout=timeout_s) as plain:
        for name, check in checks(client, plain, secret, v1=v1, generate=generate):
            start = time.perf_counter()
            try:
                detail, ok = check(), True
            except SmokeFailed as exc:
                detail, ok = str(exc), False
            except httpx.HTTPError as exc:
                detail, ok = f"cannot reach {url}: {type(exc).__name__}: {exc}", False
            results.append(Check(name, ok, detail, round((time.perf_counter() - start) * 1e3,
                                                         1)))
    return results


app = new_app("Check a deployed worker end to end (the original test_worker.py's job).")


@app.command()
def smoke(url: Annotated[str, typer.Argument(
              help="the worker's base URL, e.g. https://me-worker.hf.space")],
          v1: Annotated[bool, typer.Option("--v1", help="also check the original API")] = False,
          generate: Annotated[bool, typer.Option(help="also run one generate")] = False,
          as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
          ) -> None:
    """Run health, status, a noop and a python subtask (signed) against one worker."""
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"{url!r} is not a URL: give the worker's http:// or https:// URL")
    secret = os.environ.get("NADG_AUTH_TOKEN") or None
    if secret is None:
        typer.echo("note: NADG_AUTH_TOKEN is not set; only a worker with NADG_ALLOW_INSECURE=1 "
                   "will answer the signed checks", err=True)
    results = run_smoke(url, secret, v1=v1, generate=generate)
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in results], indent=2))
    else:
        for r in results:
            typer.echo(f"{'ok  ' if r.ok else 'FAIL'} {r.name:<24} {r.ms:>8.0f} ms  {r.detail}")
        passed = sum(r.ok for r in results)
        typer.echo(f"{passed}/{len(results)} checks passed against {url}")
    if not all(r.ok for r in results):
        raise typer.Exit(ExitCode.FAILED)


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit code."""
    return run_app(app, argv, prog_name="python -m scripts.smoke")


if __name__ == "__main__":
    sys.exit(main())
