"""Attacks on a real worker's authentication, on loopback: replay, capture by a stranger
URL, tampering, stale requests, rotation, per-worker keys, compat bearer, docs.

Each worker here is the real app under uvicorn; requests are made exactly as an attacker
would make them (raw headers and bodies copied from captured requests).
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from database.models import WorkerNode, WorkerStatus
from master_app.dispatch import Dispatcher, WorkerAuthError, WorkerClient
from master_app.settings import MasterSettings
from nexus_common.protocol import AUTH_HEADER, Subtask
from nexus_common.signing import HEADER_TIMESTAMP, GridSigner, SigningAuth, issue_worker_key
from tests.support.servers import REPO_ROOT, free_port, serve_app
from tests.support.signing import Captured, capture_app
from tests.worker.conftest import TOKEN, make_settings, subtask
from worker_node.main import create_app
from worker_node.settings import InsecureStartRefused

NEW = "rotated-grid-secret-0123456789abcdef-new"
THIRD = "a-third-grid-secret-0123456789abcdef-xyz"
NOOP = subtask("noop", {"echo": "hi"})


def _worker(**overrides: object) -> Iterator[str]:
    port = free_port()
    settings = make_settings(NADG_AUTH_FAIL_BURST=1000, **overrides)
    with serve_app(create_app(settings), port=port) as url:
        yield url


@pytest.fixture(scope="module")
def worker() -> Iterator[str]:
    """A worker with the grid secret TOKEN (a large failure budget: attacks are counted
    by the throttle tests, not here)."""
    yield from _worker()


def _noop(sid: str) -> Subtask:
    return Subtask.model_validate(subtask("noop", {"echo": sid}, sid=sid))


def _replay(url: str, captured: httpx.Request | Captured,
            path: str | None = None) -> httpx.Response:
    """Send a captured request again, byte for byte (headers and body), to ``url``."""
    if isinstance(captured, httpx.Request):
        method, raw_path = captured.method, captured.url.raw_path.decode()
        headers, body = dict(captured.headers), captured.content
    else:
        method, raw_path, headers, body = (captured.method, captured.path, captured.headers,
                                           captured.body)
    headers = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length")}
    return httpx.request(method, url + (path or raw_path), headers=headers, content=body,
                         timeout=30)


def test_a_signed_request_replayed_to_the_same_worker_is_refused(worker: str) -> None:
    first = httpx.post(f"{worker}/execute", json=NOOP, auth=SigningAuth(TOKEN), timeout=30)
    assert first.status_code == 200 and first.json()["status"] == "completed"
    again = _replay(worker, first.request)
    assert again.status_code == 401
    assert "nonce already used" in again.json()["error"]


def test_a_tampered_body_is_refused(worker: str) -> None:
    request = httpx.post(f"{worker}/execute", json=subtask("noop", {"echo": 1}, sid="t1"),
                         auth=SigningAuth(TOKEN), timeout=30).request
    request.headers["X-NADG-Nonce"] = "fresh-nonce-but-same-signature"
    forged = httpx.post(f"{worker}/execute", timeout=30, content=request.content.replace(
        b'"echo":1', b'"echo":2'), headers={k: v for k, v in request.headers.items()
                                           if k.lower() != "content-length"})
    assert forged.status_code == 403  # the nonce change alone breaks the signature
    # same headers (fresh signature) but another body: the body hash is checked
    signer = GridSigner(TOKEN)
    body = b'{"id":"t2","task_id":"t","kind":"noop","payload":{"echo":1}}'
    headers = signer.headers("POST", worker, "/execute", body)
    tampered = body.replace(b'"echo":1', b'"echo":9')
    response = httpx.post(f"{worker}/execute", content=tampered, timeout=30,
                          headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 403
    assert "body does not match" in response.json()["error"]


def test_a_stale_request_is_refused(worker: str) -> None:
    signer = GridSigner(TOKEN)
    body = b""
    headers = signer.headers("GET", worker, "/status", body, now=1_000_000_000)
    response = httpx.get(f"{worker}/status", headers=headers, timeout=30)
    assert response.status_code == 401
    assert "stale request" in response.json()["error"]
    assert headers[HEADER_TIMESTAMP] == "1000000000.000"
    malformed = {**signer.headers("GET", worker, "/status", body), HEADER_TIMESTAMP: "soon"}
    response = httpx.get(f"{worker}/status", headers=malformed, timeout=30)
    assert response.status_code == 401
    assert "must be unix seconds" in response.json()["error"]


def test_a_stranger_url_in_the_registry_gets_no_work_and_nothing_replayable(
        worker: str) -> None:
    """The issue's attack: a URL typed into the registry that is not a worker. The master
    sends it nothing but a challenge, and what it captures is refused by the real worker."""
    captured: list[Captured] = []
    settings = MasterSettings.model_validate(dict(
        NADG_AUTH_TOKEN=TOKEN, NADG_BACKOFF_BASE_S=0.01, NADG_BACKOFF_MAX_S=0.05,
        NADG_CIRCUIT_FAILURES=1, NADG_CIRCUIT_COOLDOWN_S=30, NADG_HEDGING=False,
        NADG_ALL_DOWN_GRACE_S=5, GEMINI_API_KEY=None))
    with serve_app(capture_app(captured)) as stranger:
        nodes = [WorkerNode(id=1, vm_url=stranger, status=WorkerStatus.ACTIVE, max_concurrency=4),
                 WorkerNode(id=2, vm_url=worker, status=WorkerStatus.ACTIVE, max_concurrency=4)]

        async def run() -> None:
            async with Dispatcher(settings) as dispatcher:
                report = await dispatcher.run_subtasks([_noop(f"s{i}") for i in range(6)],
                                                       nodes)
            assert report.ok, report.failures
            assert set(report.winners.values()) == {2}

        asyncio.run(run())
    assert captured, "the stranger was never contacted: the test proves nothing"
    assert {c.path for c in captured} == {"/auth/prove"}  # a challenge, never a subtask
    assert not any(b"s0" in c.body for c in captured)
    for request in captured:
        for path in ("/auth/prove", "/execute", "/status"):
            replayed = _replay(worker, request, path)
            assert replayed.status_code == 403, (path, replayed.text)
        assert "signed for" in _replay(worker, request).json()["error"]
    # a grid bearer token was never sent to the stranger
    assert not any(TOKEN in " ".join(c.headers.values()) for c in captured)


def test_the_master_refuses_a_worker_with_another_secret(worker: str) -> None:
    async def run() -> None:
        async with httpx.AsyncClient() as http:
            client = WorkerClient(http, THIRD)
            with pytest.raises(WorkerAuthError, match="unknown key id"):
                await client.execute(worker, _noop("x"))

    asyncio.run(run())


def test_rotation_accepts_the_old_and_the_new_secret_during_the_window() -> None:
    for url in _worker(NADG_AUTH_TOKEN=NEW, NADG_AUTH_TOKEN_PREVIOUS=TOKEN):
        async def run(url: str = url) -> None:
            async with httpx.AsyncClient() as http:
                for secret in (TOKEN, NEW):  # masters not yet moved, and moved ones
                    result = await WorkerClient(http, secret).execute(url, _noop(secret[:4]))
                    assert result.ok
                with pytest.raises(WorkerAuthError, match="unknown key id"):
                    await WorkerClient(http, THIRD).execute(url, _noop("third"))

        asyncio.run(run())


def test_a_worker_with_its_own_key_serves_the_master_and_nothing_else() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = make_settings(NADG_AUTH_TOKEN=None, NADG_WORKER_KEY=issue_worker_key(TOKEN, url),
                             NADG_AUTH_FAIL_BURST=1000)
    assert settings.token is None  # the grid secret is not on this worker
    with serve_app(create_app(settings), port=port):
        async def run() -> None:
            async with httpx.AsyncClient() as http:
                assert (await WorkerClient(http, TOKEN).execute(url, _noop("k"))).ok

        asyncio.run(run())
        # signed for another worker's URL (its key), sent here: refused
        other = GridSigner(TOKEN).headers("GET", "http://127.0.0.1:1", "/status", b"")
        response = httpx.get(f"{url}/status", headers=other, timeout=30)
        assert response.status_code == 403


def test_bearer_tokens_work_only_in_compat_mode_and_are_logged(
        worker: str, caplog: pytest.LogCaptureFixture) -> None:
    for headers in ({AUTH_HEADER: TOKEN}, {"Authorization": f"Bearer {TOKEN}"}):
        refused = httpx.get(f"{worker}/status", headers=headers, timeout=30)
        assert refused.status_code == 401
        assert "NADG_COMPAT_V1=1" in refused.json()["error"]
    caplog.set_level(logging.WARNING, logger="worker_node.auth")
    for url in _worker(NADG_COMPAT_V1=True):
        assert httpx.get(f"{url}/status", headers={AUTH_HEADER: TOKEN},
                         timeout=30).status_code == 200
        assert httpx.get(f"{url}/status", headers={AUTH_HEADER: "nope"},
                         timeout=30).status_code == 403
        # signed requests still work beside it
        assert httpx.get(f"{url}/status", auth=SigningAuth(TOKEN), timeout=30).status_code == 200
    assert any("original bearer token" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
def test_docs_are_off_by_default_and_behind_auth(worker: str, path: str) -> None:
    assert httpx.get(worker + path, timeout=30).status_code == 401
    assert httpx.get(worker + path, auth=SigningAuth(TOKEN), timeout=30).status_code == 404


def test_docs_when_enabled_need_a_signature() -> None:
    for url in _worker(NADG_DOCS=True):
        assert httpx.get(f"{url}/openapi.json", timeout=30).status_code == 401
        signed = httpx.get(f"{url}/openapi.json", auth=SigningAuth(TOKEN), timeout=30)
        assert signed.status_code == 200 and "/execute" in signed.json()["paths"]


@pytest.mark.parametrize("name", ["NADG_AUTH_TOKEN", "NADG_AUTH_TOKEN_PREVIOUS"])
def test_short_secrets_are_refused_in_process(name: str) -> None:
    with pytest.raises(InsecureStartRefused, match=r"token_urlsafe\(32\)"):
        create_app(make_settings(**{name: "x" * 31}))


def test_a_worker_with_a_short_secret_refuses_to_start(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NADG_", "DATABASE_URL",
                                                                    "SUPABASE"))}
    env.update(NADG_AUTH_TOKEN="short", HOME=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "uvicorn", "worker_node.main:app", "--host", "127.0.0.1",
         "--port", str(port)], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=120)
    assert proc.returncode != 0
    assert "NADG_AUTH_TOKEN is 5 bytes long" in proc.stderr
    assert 'python -c "import secrets; print(secrets.token_urlsafe(32))"' in proc.stderr


def test_a_request_captured_before_a_restart_is_refused_after_it() -> None:
    port = free_port()
    settings = make_settings(NADG_AUTH_FAIL_BURST=1000)
    with serve_app(create_app(settings), port=port) as url:
        first = httpx.post(f"{url}/execute", json=NOOP, auth=SigningAuth(TOKEN), timeout=30)
        assert first.status_code == 200
    # the same worker, restarted at once on the same URL: its nonce cache is new
    with serve_app(create_app(make_settings(NADG_AUTH_FAIL_BURST=1000)), port=port) as url:
        again = _replay(url, first.request)
        assert again.status_code == 401
        assert "signed before this worker started" in again.json()["error"]
        assert httpx.post(f"{url}/execute", json=NOOP, auth=SigningAuth(TOKEN),
                          timeout=30).status_code == 200


@pytest.mark.parametrize("name,value", [
    ("X-NADG-Signature", "\u00e9" * 64), ("X-NADG-Nonce", "\u00e9" * 20),
    ("X-NADG-Target", "http://[::1"), ("X-NADG-Key-Id", "\u00e9"),
    ("X-NADG-Content-SHA256", "zz"), ("X-NADG-Timestamp", "1e9")])
def test_malformed_signing_headers_are_a_4xx_never_a_crash(
        worker: str, name: str, value: str) -> None:
    headers = {**GridSigner(TOKEN).headers("GET", worker, "/status", b""), name: value}
    raw = [(k.encode(), v.encode("latin-1")) for k, v in headers.items()]
    response = httpx.get(f"{worker}/status", headers=raw, timeout=30)
    assert response.status_code in (401, 403), response.text
    assert response.json()["error"]
