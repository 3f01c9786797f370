"""The master's WorkerClient against a real worker: the seam between the two halves."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from master_app.dispatch import WorkerAuthError, WorkerBusy, WorkerClient
from nexus_common.protocol import Subtask
from tests.support.servers import serve_app
from tests.support.waiting import async_wait_until
from tests.worker.conftest import TOKEN, make_settings
from worker_node.main import create_app


def _noop(sid: str, timeout_s: float = 5.0, **payload: object) -> Subtask:
    return Subtask.model_validate({"id": sid, "task_id": "t", "kind": "noop",
                                   "payload": payload, "timeout_s": timeout_s})


async def test_worker_client_round_trip(worker_url: str) -> None:
    async with httpx.AsyncClient() as http:
        client = WorkerClient(http, TOKEN)
        health = await client.health(worker_url)
        assert health.worker_id == "test-worker"
        result = await client.execute(worker_url, _noop("one", echo="hi"))
        assert result.ok and result.output is not None and result.output["echo"] == "hi"
        results = await client.execute_batch(worker_url, [_noop(f"b{i}", echo=i)
                                                          for i in range(3)])
        assert [r.output["echo"] for r in results if r.output] == [0, 1, 2]
        with pytest.raises(WorkerAuthError):
            await WorkerClient(http, "wrong-grid-secret-" + "x" * 32).execute(
                worker_url, _noop("x"))


async def test_worker_client_sees_busy_with_retry_after() -> None:
    with serve_app(create_app(make_settings(NADG_CAPACITY=1, NADG_QUEUE_SIZE=0))) as url:
        async with httpx.AsyncClient() as http:
            client = WorkerClient(http, TOKEN)
            long = asyncio.create_task(client.execute(url, _noop("long", 1.0, sleep_ms=60_000)))

            async def running() -> bool:
                return (await client.health(url)).running == 1

            await async_wait_until(running, what="the long noop to run")
            with pytest.raises(WorkerBusy) as info:
                await client.execute(url, _noop("next"))
            assert info.value.retry_after_s == 1.0
            assert (await long).status.value == "timeout"
