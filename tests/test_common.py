"""The shared pieces every client uses: one URL join, one /health reading."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from nexus_common.protocol import endpoint_url
from nexus_ops.health import Probe, probe_sync


@pytest.mark.parametrize("base", ["http://w:7860", "http://w:7860/", "http://w:7860//"])
def test_one_way_to_join_a_worker_url_and_a_path(base: str) -> None:
    assert endpoint_url(base, "/health") == "http://w:7860/health"
    assert endpoint_url(base, "execute/batch") == "http://w:7860/execute/batch"
    assert endpoint_url("https://me-w.hf.space/sub", "/health") == "https://me-w.hf.space/sub/health"


@pytest.mark.parametrize(("status", "body", "alive"), [
    (200, {"status": "ok"}, True),
    (200, {"status": "healthy"}, True),  # an original NADG worker
    (200, {"status": "degraded"}, True),
    (200, {"status": "starting"}, False),
    (200, "not json", False),
    (503, {"status": "ok"}, False),
])
def test_the_sync_probe_reads_health_like_the_heartbeat(status: int, body: object,
                                                       alive: bool) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/health"
        if isinstance(body, dict):
            return httpx.Response(status, json=body)
        return httpx.Response(status, text=str(body))

    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        assert probe_sync(client, "http://w:1/", timeout_s=1.0).ok is alive


def test_the_sync_probe_reports_a_refused_connection_as_data() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with httpx.Client(transport=httpx.MockTransport(refuse)) as client:
        probe = probe_sync(client, "http://w:1", timeout_s=1.0)
    assert not probe.ok and "ConnectError" in (probe.error or "")


def test_an_endless_health_answer_is_cut_off_by_both_probes() -> None:
    """Any URL in the registry is pinged: one answering without end must not fill the
    heartbeat, the watchdog or the local grid with what it sends."""
    import asyncio

    from nexus_ops.health import MAX_HEALTH_BYTES, probe_once

    sent = {"sync": 0, "async": 0}

    def endless() -> Iterator[bytes]:
        while True:
            sent["sync"] += 4096
            yield b" " * 4096

    async def endless_async() -> AsyncIterator[bytes]:
        while True:
            sent["async"] += 4096
            yield b" " * 4096

    with httpx.Client(transport=httpx.MockTransport(
            lambda request: httpx.Response(200, content=endless()))) as client:
        probe = probe_sync(client, "http://w:1", timeout_s=5.0)
    assert not probe.ok and "over" in (probe.error or "")

    async def ping() -> Probe:
        transport = httpx.MockTransport(
            lambda request: httpx.Response(200, content=endless_async()))
        async with httpx.AsyncClient(transport=transport) as client:
            return await probe_once(client, "http://w:1", timeout_s=5.0)

    probe = asyncio.run(ping())
    assert not probe.ok and "over" in (probe.error or "")
    assert max(sent.values()) <= MAX_HEALTH_BYTES + 2 * 4096, sent
