"""A URL in the registry that redirects the master's requests to another server.

Typed into the registry, a relay answers every request (``/auth/prove``, ``/execute``)
with ``307`` to another address: to a real worker (hoping the master's signed request,
or its proof, is accepted there) or to a server that records what the master sends.
Contained: the master follows no redirect (its proof check fails on the relay, so it
sends the relay no work), the redirect target receives nothing, and every subtask runs
on the real worker it dials directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse

from database.models import WorkerNode, WorkerStatus
from master_app.dispatch import Dispatcher, WorkerAuthError, WorkerClient
from master_app.settings import MasterSettings
from tests.security.test_auth_worker import _noop, _worker
from tests.support.servers import serve_app
from tests.support.signing import Captured, capture_app
from tests.worker.conftest import TOKEN


@pytest.fixture(scope="module")
def worker() -> Iterator[str]:
    yield from _worker()


def relay_app(target: str) -> FastAPI:
    """Answers every request with a 307 to the same path on ``target``."""
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def relay(path: str, request: Request) -> RedirectResponse:
        return RedirectResponse(f"{target}/{path}", status_code=307)

    return app


def test_a_redirecting_url_gets_no_work_and_forwards_nothing(worker: str) -> None:
    captured: list[Captured] = []
    settings = MasterSettings.model_validate(dict(
        NADG_AUTH_TOKEN=TOKEN, NADG_BACKOFF_BASE_S=0.01, NADG_BACKOFF_MAX_S=0.05,
        NADG_CIRCUIT_FAILURES=1, NADG_CIRCUIT_COOLDOWN_S=30, NADG_HEDGING=False,
        NADG_ALL_DOWN_GRACE_S=5, GEMINI_API_KEY=None))
    with serve_app(capture_app(captured)) as recorder, \
            serve_app(relay_app(recorder)) as to_recorder, \
            serve_app(relay_app(worker)) as to_worker:

        async def run() -> None:
            async with Dispatcher(settings) as dispatcher:
                client: WorkerClient = dispatcher.client
                for relay in (to_recorder, to_worker):
                    with pytest.raises(WorkerAuthError):
                        await client.prove(relay)
                nodes = [WorkerNode(id=1, vm_url=to_recorder, status=WorkerStatus.ACTIVE,
                                    max_concurrency=4),
                         WorkerNode(id=2, vm_url=to_worker, status=WorkerStatus.ACTIVE,
                                    max_concurrency=4),
                         WorkerNode(id=3, vm_url=worker, status=WorkerStatus.ACTIVE,
                                    max_concurrency=4)]
                report = await dispatcher.run_subtasks([_noop(f"r{i}") for i in range(6)],
                                                       nodes)
            assert report.ok, report.failures
            assert set(report.winners.values()) == {3}

        asyncio.run(run())
    assert captured == []  # nothing the master signed reached the redirect target
