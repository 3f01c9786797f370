"""Backpressure (503 + Retry-After when full) and /health while inference runs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from nexus_common.protocol import ResultStatus, Subtask, SubtaskKind
from tests.support.servers import serve_app
from tests.support.waiting import async_wait_until
from tests.worker.conftest import AUTH, make_settings, subtask
from worker_node.executors.noop import NoopExecutor
from worker_node.executors.python import PythonExecutor
from worker_node.main import create_app
from worker_node.metrics import WorkerMetrics
from worker_node.runner import SubtaskRunner, WorkerBusy


async def _health(client: httpx.AsyncClient) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get("/health")).json()
    return body


async def test_full_worker_answers_503_with_retry_after() -> None:
    app = create_app(make_settings(NADG_CAPACITY=1, NADG_QUEUE_SIZE=0))
    with serve_app(app) as url:
        async with httpx.AsyncClient(base_url=url, auth=AUTH, timeout=30) as client:
            long = asyncio.create_task(client.post("/execute", json=subtask(
                "noop", {"sleep_ms": 60_000}, sid="long", timeout_s=1.5)))
            await async_wait_until(lambda: _running(client, 1), what="the long noop to run")
            busy = await client.post("/execute", json=subtask("noop", {}, sid="next"))
            assert busy.status_code == 503
            assert busy.headers["Retry-After"] == "1"
            assert "busy" in busy.json()["error"]
            batch = await client.post("/execute/batch", json=[subtask("noop", {}, sid="b")])
            assert batch.status_code == 503
            assert (await _health(client))["status"] == "degraded"
            assert (await long).json()["status"] == "timeout"
            after = await client.post("/execute", json=subtask("noop", {}, sid="after"))
            assert after.json()["status"] == "completed"
            metrics = (await client.get("/metrics")).text
            assert "nadg_worker_busy_rejections_total 2.0" in metrics


async def test_queue_of_one_holds_one_then_refuses() -> None:
    app = create_app(make_settings(NADG_CAPACITY=1, NADG_QUEUE_SIZE=1))
    with serve_app(app) as url:
        async with httpx.AsyncClient(base_url=url, auth=AUTH, timeout=30) as client:
            first = asyncio.create_task(client.post("/execute", json=subtask(
                "noop", {"sleep_ms": 400}, sid="first")))
            await async_wait_until(lambda: _running(client, 1), what="first to run")
            second = asyncio.create_task(client.post("/execute", json=subtask(
                "noop", {"echo": 2}, sid="second")))

            async def queued() -> bool:
                return (await _health(client))["queued"] == 1

            await async_wait_until(queued, what="second to queue")
            third = await client.post("/execute", json=subtask("noop", {}, sid="third"))
            assert third.status_code == 503
            assert (await first).json()["status"] == "completed"
            assert (await second).json()["output"]["echo"] == 2


async def _running(client: httpx.AsyncClient, n: int) -> bool:
    return bool((await _health(client))["running"] >= n)


async def test_health_answers_fast_while_inference_runs(worker_url: str) -> None:
    texts = [f"text {i}: " + "several words about an important subject " * 25
             for i in range(48)]
    async with httpx.AsyncClient(base_url=worker_url, auth=AUTH, timeout=120) as client:
        warm = await client.post("/execute", json=subtask("embed", {"texts": ["warm"]}))
        assert warm.json()["status"] == "completed"
        job = asyncio.create_task(client.post("/execute", json=subtask(
            "embed", {"texts": texts}, sid="heavy")))
        await async_wait_until(lambda: _running(client, 1), what="the embedding to run")
        latencies, still_running = [], []
        for _ in range(5):
            start = time.monotonic()
            body = await _health(client)
            latencies.append(time.monotonic() - start)
            still_running.append(body["running"] >= 1)
        result = (await job).json()
        assert result["status"] == "completed"
        assert len(result["output"]["embeddings"]) == len(texts)
        assert any(still_running)
        assert max(latencies) < 0.5, latencies


def _noop(sid: str, sleep_ms: float) -> Subtask:
    return Subtask.model_validate(subtask("noop", {"sleep_ms": sleep_ms}, sid=sid))


async def test_batch_items_waiting_for_a_slot_count_against_the_queue() -> None:
    runner = SubtaskRunner({SubtaskKind.NOOP: NoopExecutor()}, capacity=1, queue_size=1,
                           metrics=WorkerMetrics())
    try:
        first = asyncio.create_task(runner.execute_batch(
            [_noop(f"a{i}", 200) for i in range(3)]))
        # a second batch in the same loop turn: the first one's items are not admitted yet
        second = asyncio.create_task(runner.execute_batch([_noop("b", 0)]))
        with pytest.raises(WorkerBusy):
            await second
        assert runner.queued + runner.running == 3  # one runs, two wait: all counted
        assert not runner.has_room()
        with pytest.raises(WorkerBusy):
            await runner.execute(_noop("single", 0))
        results = await first
        assert [r.status for r in results] == [ResultStatus.COMPLETED] * 3
        assert runner.queued == 0 and runner.has_room()
    finally:
        runner.shutdown()


async def test_a_cancelled_batch_gives_its_queue_places_back() -> None:
    runner = SubtaskRunner({SubtaskKind.NOOP: NoopExecutor()}, capacity=1, queue_size=0,
                           metrics=WorkerMetrics())
    try:
        batch = asyncio.create_task(runner.execute_batch(
            [_noop(f"c{i}", 100) for i in range(4)]))
        await asyncio.sleep(0)  # let the batch be accepted, then cancel it at once
        batch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await batch

        async def room() -> bool:
            return runner.has_room() and runner.queued == 0

        await async_wait_until(room, what="the cancelled batch's places to come back")
        assert (await runner.execute(_noop("after", 0))).status is ResultStatus.COMPLETED
    finally:
        runner.shutdown()


async def test_a_cancelled_subtask_stops_and_frees_its_slot() -> None:
    runner = SubtaskRunner({SubtaskKind.NOOP: NoopExecutor()}, capacity=1, queue_size=0,
                           metrics=WorkerMetrics())
    try:
        job = asyncio.create_task(runner.execute(Subtask.model_validate(subtask(
            "noop", {"sleep_ms": 120_000}, sid="cancelled", timeout_s=300))))

        async def running() -> bool:
            return runner.running == 1

        await async_wait_until(running, what="the long noop to run")
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job

        async def free() -> bool:
            return runner.running == 0 and runner.has_room()

        await async_wait_until(free, what="the cancelled noop to give its slot back")
        assert (await runner.execute(_noop("next", 0))).status is ResultStatus.COMPLETED
    finally:
        runner.shutdown()


async def test_a_cancelled_python_subtask_kills_its_process_and_frees_its_slot() -> None:
    python = PythonExecutor(memory_bytes=256 * 1024 * 1024, output_bytes=10_000,
                            file_bytes=1_000_000, max_procs=8)
    runner = SubtaskRunner({SubtaskKind.PYTHON: python, SubtaskKind.NOOP: NoopExecutor()},
                           capacity=1, queue_size=0, metrics=WorkerMetrics())
    try:
        job = asyncio.create_task(runner.execute(Subtask.model_validate(subtask(
            "python", {"code": "print('up', flush=True)\nimport time\ntime.sleep(120)"},
            sid="py-cancelled", timeout_s=300))))

        async def running() -> bool:
            return runner.running == 1

        await async_wait_until(running, what="the python subtask to run")
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job

        async def free() -> bool:
            return runner.running == 0 and runner.has_room()

        await async_wait_until(free, what="the cancelled python subtask to give its slot back")
        assert (await runner.execute(_noop("next", 0))).status is ResultStatus.COMPLETED
    finally:
        runner.shutdown()
