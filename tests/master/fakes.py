"""In-process fake workers that speak the protocol, with switchable misbehaviour."""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from database.models import WorkerNode, WorkerStatus
from nexus_common.protocol import HealthResponse, Subtask, SubtaskResult
from tests.support.servers import serve_app
from tests.support.signing import add_prove_route
from tests.support.waiting import hold_until

_ids = itertools.count(1)


class NullSink:
    """An outcome sink that records nothing (tests override the step they watch)."""

    async def attempt(self, subtask: Subtask, worker: object) -> None:
        return None

    async def completed(self, subtask: Subtask, result: object, worker: object) -> None:
        return None

    async def failed(self, subtask: Subtask, failure: object) -> None:
        return None


@dataclass
class FakeWorker:
    """Behaviour knobs: ``mode`` is ok | http500 | hang | fail | busy."""

    name: str
    mode: str = "ok"
    delay_s: float = 0.0
    capacity: int = 2
    calls: list[str] = field(default_factory=list)
    batches: int = 0
    stopped: threading.Event = field(default_factory=threading.Event)
    #: With a queue: answers busy (503) when it holds capacity + queue subtasks already
    #: (a batch is taken whole while there is room for one more, as a real worker does).
    queue: int | None = None
    active: int = 0
    rejected: int = 0

    def app(self) -> FastAPI:
        app = FastAPI()
        add_prove_route(app)  # proves it holds its key, as a real worker does

        @app.get("/health")
        async def health() -> HealthResponse:
            return HealthResponse(status="ok", worker_id=self.name, version="fake",
                                  uptime_s=1.0, running=0, capacity=self.capacity)

        @app.post("/execute")
        async def execute(request: Request) -> Any:
            sub = Subtask.model_validate(await request.json())
            return await self._run(sub)

        @app.post("/execute/batch")
        async def batch(request: Request) -> Any:
            subs = [Subtask.model_validate(s) for s in await request.json()]
            self.batches += 1
            if self.queue is not None and self.active >= self.capacity + self.queue:
                self.rejected += 1
                return JSONResponse({"error": "full"}, status_code=503,
                                    headers={"Retry-After": "0.05"})
            self.active += len(subs)
            out = []
            try:
                for sub in subs:
                    r = await self._run(sub)
                    if isinstance(r, JSONResponse):
                        return r
                    out.append(r)
                    self.active -= 1
            finally:
                self.active -= len(subs) - len(out)
            return out

        return app

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the test tears the server down."""
        await hold_until(self.stopped.is_set, timeout=seconds)

    async def _run(self, sub: Subtask) -> Any:
        self.calls.append(sub.id)
        if self.mode == "http500":
            return JSONResponse({"error": "boom"}, status_code=500)
        if self.mode == "busy":
            return JSONResponse({"error": "full"}, status_code=503,
                                headers={"Retry-After": "0.05"})
        if self.mode == "hang":
            await self._sleep(3600)
        sleep_ms = getattr(sub.payload, "sleep_ms", 0.0)
        await self._sleep(self.delay_s + sleep_ms / 1000)
        if self.mode == "fail":
            return SubtaskResult(id=sub.id, status="failed", error="it broke")
        echo = getattr(sub.payload, "echo", None)
        return SubtaskResult(id=sub.id, status="completed",
                             output={"echo": echo, "worker": self.name})


def node(url: str, capacity: int = 2, wid: int | None = None) -> WorkerNode:
    """A registry record for a URL (no store needed)."""
    return WorkerNode(id=wid if wid is not None else next(_ids), vm_url=url,
                      status=WorkerStatus.ACTIVE, max_concurrency=capacity)


@contextlib.contextmanager
def fake_workers(*workers: FakeWorker) -> Iterator[list[str]]:
    """Serve each fake worker on loopback; yields their URLs."""
    with contextlib.ExitStack() as stack:
        for w in workers:
            stack.callback(w.stopped.set)  # runs before each server stops (LIFO)
        urls = [stack.enter_context(serve_app(w.app())) for w in workers]
        for w in workers:
            stack.callback(w.stopped.set)
        yield urls
