"""The HTTP surface of a worker on loopback: health, auth, limits, errors, batch, metrics."""

from __future__ import annotations

from collections.abc import Iterator

import httpx

from nexus_common.protocol import AUTH_HEADER, ResultStatus, Subtask, SubtaskKind, SubtaskResult
from tests.worker.conftest import AUTH, TOKEN, subtask
from worker_node.executors.noop import NoopExecutor
from worker_node.metrics import WorkerMetrics
from worker_node.runner import SubtaskRunner

NOOP = subtask("noop", {"echo": {"x": 1}})


def test_health_needs_no_token_and_reports_capacity(worker_url: str) -> None:
    body = httpx.get(f"{worker_url}/health").json()
    assert body["status"] == "ok"
    assert body["worker_id"] == "test-worker"
    assert body["capacity"] == 2
    assert body["uptime_s"] >= 0


def test_execute_without_a_signature_is_401(worker_url: str) -> None:
    response = httpx.post(f"{worker_url}/execute", json=NOOP)
    assert response.status_code == 401
    assert "signed" in response.json()["error"]


def test_bearer_tokens_are_refused_without_compat_mode(worker_url: str) -> None:
    # the right token in the original headers: refused (it could be replayed anywhere)
    for headers in ({"Authorization": f"Bearer {TOKEN}"}, {AUTH_HEADER: TOKEN}):
        response = httpx.post(f"{worker_url}/execute", json=NOOP, headers=headers)
        assert response.status_code == 401
        assert "NADG_COMPAT_V1=1" in response.json()["error"]


def test_a_signed_request_is_served(worker_url: str) -> None:
    response = httpx.post(f"{worker_url}/execute", json=NOOP, auth=AUTH)
    assert response.status_code == 200
    result = SubtaskResult.model_validate(response.json())
    assert result.ok and result.output is not None
    assert result.output["echo"] == {"x": 1}


def test_a_body_without_a_signature_is_refused_before_it_is_read(worker_url: str) -> None:
    # not parsed (no 422 for broken JSON), not even read: 401 first
    broken = b'{"id": "x", "payload": ' + b"[" * 1000
    response = httpx.post(f"{worker_url}/execute", content=broken,
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 401
    assert "signed" in response.json()["error"]
    assert response.headers["WWW-Authenticate"] == "NADG-HMAC-SHA256"


def test_status_and_metrics_need_the_token(worker_url: str) -> None:
    assert httpx.get(f"{worker_url}/status").status_code == 401
    assert httpx.get(f"{worker_url}/metrics").status_code == 401


def test_status_reports_kinds_and_resources(client: httpx.Client) -> None:
    body = client.get("/status").json()
    assert {"noop", "python", "embed", "classify", "generate"} <= set(body["kinds"])
    assert sorted(body["kinds"] + body["unsupported_kinds"]) == sorted(k.value for k in SubtaskKind)
    assert body["resources"]["rss_bytes"] > 10_000_000
    assert body["resources"]["cpu_count"] >= 1
    assert "gpu" in body["resources"]


def test_status_measures_the_worker_cpu_between_calls(client: httpx.Client) -> None:
    client.get("/status")  # the baseline
    texts = [f"sentence {i} " + "about the cost of running a grid " * 20 for i in range(32)]
    assert client.post("/execute", json=subtask("embed", {"texts": texts})).json()[
        "status"] == "completed"  # CPU work inside the worker process
    assert client.get("/status").json()["resources"]["process_cpu_percent"] > 0


async def test_a_kind_without_executor_is_rejected() -> None:
    runner = SubtaskRunner({SubtaskKind.NOOP: NoopExecutor()}, capacity=1, queue_size=0,
                           metrics=WorkerMetrics())
    try:
        result = await runner.execute(Subtask.model_validate(
            subtask("python", {"code": "RESULT = 1"})))
    finally:
        runner.shutdown()
    assert result.status is ResultStatus.REJECTED
    assert "does not run 'python'" in (result.error or "")
    assert runner.counts["rejected"] == 1


def test_invalid_subtask_is_422_naming_the_field(client: httpx.Client) -> None:
    response = client.post("/execute", json=subtask("embed", {"texts": []}))
    assert response.status_code == 422
    error = response.json()["error"]
    assert "payload" in error and "texts" in error and "at least 1 item" in error
    response = client.post("/execute", json={"id": "x", "task_id": "t", "kind": "embed",
                                             "payload": {"texts": ["a"]}, "timeout_s": -1})
    assert response.status_code == 422
    assert "timeout_s" in response.json()["error"]


def test_body_over_the_limit_is_413_by_content_length(client: httpx.Client) -> None:
    big = subtask("noop", {"echo": "x" * (600 * 1024)})
    response = client.post("/execute", json=big)
    assert response.status_code == 413
    assert "too large" in response.json()["error"]


def test_chunked_body_over_the_limit_is_413(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"id": "c", "task_id": "t", "kind": "noop", "payload": {"echo": "'
        for _ in range(100):
            yield b"y" * 8192
        yield b'"}}'

    response = client.post("/execute", content=chunks(),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_chunked_body_under_the_limit_is_served(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"id": "c", "task_id": "t", "kind": "noop",'
        yield b' "payload": {"echo": "small"}}'

    response = client.post("/execute", content=chunks(),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    assert response.json()["output"]["echo"] == "small"


def test_batch_answers_in_order(client: httpx.Client) -> None:
    batch = [subtask("noop", {"echo": i, "sleep_ms": (5 - i) * 20}, sid=f"b{i}")
             for i in range(6)]
    batch.insert(3, subtask("python", {"code": "RESULT = INPUT + 1", "input": 41}, sid="py"))
    results = client.post("/execute/batch", json=batch).json()
    assert [r["id"] for r in results] == [s["id"] for s in batch]
    assert [r["output"]["echo"] for r in results if r["id"] != "py"] == list(range(6))
    assert results[3]["output"]["result"] == 42


def test_batch_with_duplicate_ids_is_422(client: httpx.Client) -> None:
    response = client.post("/execute/batch", json=[NOOP, NOOP])
    assert response.status_code == 422
    assert "unique" in response.json()["error"]


def test_failed_subtask_is_a_result_and_the_worker_keeps_serving(client: httpx.Client) -> None:
    body = client.post("/execute", json=subtask(
        "generate", {"prompts": ["hi"], "model": "/nonexistent/model-dir"})).json()
    assert body["status"] == "failed"
    assert body["error"]
    assert client.post("/execute", json=NOOP).json()["status"] == "completed"


def test_noop_past_its_timeout_is_a_timeout_result(client: httpx.Client) -> None:
    body = client.post("/execute", json=subtask("noop", {"sleep_ms": 60_000},
                                                timeout_s=0.3)).json()
    assert body["status"] == "timeout"
    assert "deadline" in body["error"]


def test_metrics_count_subtasks_by_kind_and_status(client: httpx.Client) -> None:
    client.post("/execute", json=NOOP)
    text = client.get("/metrics").text
    assert 'nadg_worker_subtasks_total{kind="noop",status="completed"}' in text
    assert "nadg_worker_subtask_duration_seconds_bucket" in text
    assert "nadg_worker_running" in text and "nadg_worker_queue_depth" in text
