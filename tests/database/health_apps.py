"""Minimal worker stand-ins for the heartbeat and CLI tests: ASGI apps with ``/health``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from tests.support.waiting import hold_until


def alive_app(version: str = "9.9.9") -> FastAPI:
    """Answers ``GET /health`` like a worker."""
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, object]:
        return {"status": "ok", "worker_id": "stand-in", "version": version, "uptime_s": 1.0,
                "running": 0, "capacity": 4}

    return app


def failing_app() -> FastAPI:
    """Answers ``GET /health`` with HTTP 500."""
    app = FastAPI()

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"error": "boom"}, status_code=500)

    return app


def hanging_app(release: threading.Event) -> FastAPI:
    """Holds every ``GET /health`` until ``release`` is set (past any client timeout)."""
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        await hold_until(release.is_set, timeout=120)  # far past any client timeout
        return {"status": "ok"}

    return app


def trickling_app(gap_s: float = 0.1) -> FastAPI:
    """Answers ``GET /health`` 200 at once, then trickles a valid body a byte per ``gap_s``
    (each read is quick, the whole answer is slow)."""
    from fastapi.responses import StreamingResponse

    app = FastAPI()
    body = b'{"status": "ok", "worker_id": "trickle", "version": "1"}'

    async def trickle() -> AsyncIterator[bytes]:
        for byte in body:
            yield bytes([byte])
            await asyncio.sleep(gap_s)  # the slowness under test, not a synchronisation

    @app.get("/health")
    async def health() -> StreamingResponse:
        return StreamingResponse(trickle(), media_type="application/json")

    return app


@dataclass
class Crowd:
    """Counts concurrent requests seen by :func:`crowd_app`."""

    limit: int
    now: int = 0
    peak: int = 0
    served: int = 0


def crowd_app(crowd: Crowd, hold_s: float = 0.5) -> FastAPI:
    """Many workers on one server (``/w/{i}/health``) counting requests in flight.

    Each request is held until ``crowd.limit`` requests are in flight (or ``hold_s``
    passed), so a client that respects the limit shows a peak of exactly the limit.
    """
    app = FastAPI()

    @app.get("/w/{i}/health")
    async def health(i: int) -> dict[str, object]:
        crowd.now += 1
        crowd.peak = max(crowd.peak, crowd.now)
        await hold_until(lambda: crowd.now >= crowd.limit, timeout=hold_s, interval=0.002)
        crowd.now -= 1
        crowd.served += 1
        return {"status": "ok", "worker_id": f"w{i}", "version": "1"}

    return app
