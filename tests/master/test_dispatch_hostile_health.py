"""A hostile registered URL whose /health says ok but which refuses every other connection:
refused calls cost no attempt and an open breaker is probed as soon as /health answers, so
only the breaker and the all-down rule can end such a run. They must, quickly, and the
master must not flood the URL meanwhile."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from master_app.dispatch import Dispatcher, EventKind, ProgressEvent
from master_app.dispatch.client import WorkerCallError
from tests.master.conftest import fast_settings
from tests.master.fakes import FakeWorker, fake_workers, node
from tests.master.test_dispatcher import noops
from tests.support.servers import free_port

_HEALTH = json.dumps({"status": "ok", "worker_id": "hostile", "version": "1", "uptime_s": 1.0,
                      "running": 0, "capacity": 4}).encode()


class HealthyButRefusing:
    """Answers ``GET /health`` (and closes), then stops listening for ``gap_s`` so that the
    call that follows is refused; counts what reached it."""

    def __init__(self, port: int, gap_s: float = 0.4) -> None:
        self.port, self.gap_s = port, gap_s
        self.health_hits = 0
        self.other_hits = 0
        self.server: asyncio.Server | None = None
        self.closed = False
        self.reopen: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    def start_later(self) -> None:
        """Refuse from the start (nothing listens) and listen after ``gap_s``."""
        self.reopen = asyncio.create_task(self._reopen())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if head.startswith(b"GET /health"):
            self.health_hits += 1
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(_HEALTH), _HEALTH))
            await writer.drain()
            self._stop_listening()
        else:
            self.other_hits += 1
        writer.close()

    def _stop_listening(self) -> None:
        if self.server is not None and self.reopen is None:
            self.server.close()
            self.server = None
            self.reopen = asyncio.create_task(self._reopen())

    async def _reopen(self) -> None:
        await asyncio.sleep(self.gap_s)  # the outage under test, not a synchronisation
        if not self.closed:
            await self.start()
        self.reopen = None

    async def close(self) -> None:
        self.closed = True
        if self.reopen is not None:
            self.reopen.cancel()
        if self.server is not None:
            self.server.close()


async def test_a_url_healthy_but_refusing_is_given_up_by_the_all_down_rule() -> None:
    port = free_port()
    hostile = HealthyButRefusing(port)
    hostile.start_later()
    events: list[ProgressEvent] = []
    # The cooldown alone would keep the breaker open for a minute: only the /health checks
    # let the refused calls through, and only the all-down rule can end the run.
    settings = fast_settings(NADG_MAX_ATTEMPTS=2, NADG_CIRCUIT_FAILURES=2,
                             NADG_CIRCUIT_COOLDOWN_S=60, NADG_ALL_DOWN_GRACE_S=3)
    started = time.monotonic()
    try:
        async with Dispatcher(settings) as d:
            report = await asyncio.wait_for(
                d.run_subtasks(noops(3), [node(f"http://127.0.0.1:{port}", capacity=4)],
                               on_event=events.append), timeout=30)
    finally:
        await hostile.close()
    took = time.monotonic() - started
    assert not report.ok and len(report.failures) == 3
    assert all("stayed down" in f.reason for f in report.failures.values()), report.failures
    assert hostile.health_hits >= 1, "the /health checks must have run"
    refused = [e for e in events if e.kind is EventKind.RETRIED and "ConnectError" in e.message]
    # two to open the breaker, then the probes let through by /health answers
    assert len(refused) >= settings.circuit_failures + 2, "probes after /health were refused"
    assert hostile.other_hits == 0
    assert took < 15, f"the all-down rule must end the run (took {took:.1f}s)"
    # at most a probe per /health answer (about one a second), plus the first failures
    assert report.attempts <= 3 * settings.circuit_failures + 3 * (hostile.health_hits + 1)


async def test_a_healthy_but_refusing_url_does_not_hold_back_a_good_worker() -> None:
    port = free_port()
    hostile = HealthyButRefusing(port)
    await hostile.start()
    good = FakeWorker("good", delay_s=0.2, capacity=1)
    settings = fast_settings(NADG_MAX_ATTEMPTS=2, NADG_CIRCUIT_FAILURES=2,
                             NADG_CIRCUIT_COOLDOWN_S=60, NADG_ALL_DOWN_GRACE_S=3)
    try:
        with fake_workers(good) as (good_url,):
            async with Dispatcher(settings) as d:
                report = await asyncio.wait_for(d.run_subtasks(
                    noops(6), [node(f"http://127.0.0.1:{port}", capacity=4),
                               node(good_url, capacity=1)]), timeout=30)
    finally:
        await hostile.close()
    assert report.ok, report.failures
    assert sorted(good.calls) == [f"t:{i}" for i in range(6)]


@pytest.mark.parametrize("call", ["health", "prove"])
async def test_an_endless_small_answer_is_cut_off_not_buffered(call: str) -> None:
    """A hostile URL answering /health (or /auth/prove) with a body that never ends: the
    comeback checks ask /health every second while its breaker is open, and a URL typed
    into the registry is asked to prove its key before any work, so the master must stop
    reading after a few KiB (and within the timeout), not buffer what it is sent."""
    sent = 0
    limit = 128 * 1024 * 1024

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (64 * 1024, b" " * (64 * 1024))
        try:
            while sent < limit:
                writer.write(chunk)
                await writer.drain()
                sent += 64 * 1024
            await asyncio.sleep(30)  # then nothing more, the connection left open
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Dispatcher(fast_settings()) as d:
            started = time.monotonic()
            with pytest.raises(WorkerCallError):
                await getattr(d.client, call)(f"http://127.0.0.1:{port}", timeout_s=2.0)
            took = time.monotonic() - started
    finally:
        server.close()
    assert took < 5, f"the check must end within its timeout (took {took:.1f}s)"
    assert sent < 16 * 1024 * 1024, f"the master read {sent} bytes of a /{call} answer"
