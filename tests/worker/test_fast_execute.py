"""The execute hot path (:mod:`worker_node.fast_execute`) answers what the FastAPI routes
answer: the same requests go to a worker with it and to one without it, and the answers
are compared; it never serves a request the auth middleware did not pass."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from nexus_common.protocol import MAX_BATCH
from tests.support.servers import serve_app
from tests.worker.conftest import AUTH, make_settings, subtask
from worker_node import fast_execute
from worker_node.fast_execute import ExecuteFastPath
from worker_node.main import create_app

Request = tuple[str, Any]

CASES: dict[str, Request] = {
    "noop": ("/execute", subtask("noop", {"echo": {"a": [1, 2]}})),
    "python": ("/execute", subtask("python", {"code": "RESULT = 6 * 7"})),
    "failing python": ("/execute", subtask("python", {"code": "raise ValueError('no')"})),
    "batch": ("/execute/batch", [subtask("noop", {"echo": i}, sid=f"b{i}") for i in range(3)]),
    "empty batch": ("/execute/batch", []),
    "missing kind": ("/execute", {"id": "x", "task_id": "t", "payload": {}}),
    "unknown kind": ("/execute", subtask("teleport", {})),
    "payload of another kind": ("/execute", subtask("noop", {"sleep_ms": "soon"})),
    "not json": ("/execute", b"{not json"),
    "a list to /execute": ("/execute", [subtask("noop", {})]),
    "an object to the batch": ("/execute/batch", subtask("noop", {})),
    "batch too big": ("/execute/batch", [subtask("noop", {}, sid=f"s{i}")
                                         for i in range(MAX_BATCH + 1)]),
    "repeated ids": ("/execute/batch", [subtask("noop", {}, sid="same")] * 2),
}


def _without_fast_path(app: FastAPI) -> FastAPI:
    app.user_middleware = [m for m in app.user_middleware if m.cls is not ExecuteFastPath]
    return app


@pytest.fixture(scope="module")
def urls() -> Iterator[tuple[str, str]]:
    settings = make_settings(NADG_SANDBOX_ALLOW_WEAK=True)
    with serve_app(create_app(settings)) as fast, \
            serve_app(_without_fast_path(create_app(settings))) as routes:
        yield fast, routes


def _comparable(value: Any) -> Any:
    """The answer without its timings (which differ from run to run)."""
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()
                if k not in ("duration_ms", "slept_ms")}
    return value


async def _send(client: httpx.AsyncClient, url: str, path: str, body: Any) -> httpx.Response:
    if isinstance(body, bytes):
        return await client.post(url + path, content=body,
                                 headers={"Content-Type": "application/json"})
    return await client.post(url + path, json=body)


@pytest.mark.parametrize("case", sorted(CASES))
async def test_the_hot_path_answers_as_the_routes_do(case: str, urls: tuple[str, str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fast, routes = urls
    served: list[bool] = []
    parse = fast_execute._parse

    def spy(body: bytes, batch: bool) -> Any:
        parsed = parse(body, batch)
        served.append(parsed is not None)
        return parsed

    monkeypatch.setattr(fast_execute, "_parse", spy)
    path, body = CASES[case]
    async with httpx.AsyncClient(auth=AUTH, timeout=30) as client:
        quick = await _send(client, fast, path, body)
        reference = await _send(client, routes, path, body)
    assert quick.status_code == reference.status_code, (quick.text, reference.text)
    assert quick.headers["content-type"] == reference.headers["content-type"]
    assert _comparable(quick.json()) == _comparable(reference.json())
    # valid requests are the hot path's; the rest fall through to the routes
    assert served == [quick.status_code == 200]


async def test_a_full_worker_answers_the_same_503() -> None:
    answers = []
    for app in (create_app(make_settings(NADG_CAPACITY=1, NADG_QUEUE_SIZE=0)),
                _without_fast_path(create_app(make_settings(NADG_CAPACITY=1,
                                                            NADG_QUEUE_SIZE=0)))):
        with serve_app(app) as url:
            async with httpx.AsyncClient(auth=AUTH, timeout=30) as client:
                running = asyncio.ensure_future(client.post(
                    f"{url}/execute", json=subtask("noop", {"sleep_ms": 500}, sid="long")))
                while (await client.get(f"{url}/health")).json()["running"] < 1:
                    await asyncio.sleep(0.01)
                refused = await client.post(f"{url}/execute", json=subtask("noop", {}))
                assert (await running).json()["status"] == "completed"
        answers.append((refused.status_code, refused.headers.get("retry-after"),
                        refused.json()["detail"]))
    assert answers[0] == answers[1]
    assert answers[0][0] == 503


@pytest.mark.parametrize("headers", [{}, {"X-NADG-AUTH": "guess"},
                                     {"Authorization": "Bearer guess"}])
async def test_the_hot_path_serves_nothing_unauthenticated(
        headers: dict[str, str], urls: tuple[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    fast, _ = urls
    parsed: list[bytes] = []
    monkeypatch.setattr(fast_execute, "_parse", lambda body, batch: parsed.append(body))
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.post(f"{fast}/execute", json=subtask("noop", {}),
                                   headers=headers)
    assert answer.status_code == 401
    assert parsed == []


async def test_a_body_that_is_not_declared_json_gets_the_routes_answer(
        urls: tuple[str, str]) -> None:
    answers = []
    async with httpx.AsyncClient(auth=AUTH, timeout=30) as client:
        for url in urls:
            answer = await client.post(f"{url}/execute",
                                       content=json.dumps(subtask("noop", {})).encode(),
                                       headers={"Content-Type": "text/plain"})
            answers.append((answer.status_code, answer.json()))
    assert answers[0] == answers[1]
    assert answers[0][0] == 422
