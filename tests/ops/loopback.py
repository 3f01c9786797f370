"""Loopback stand-ins for the ops tests: a server that accepts and never answers, a webhook
receiver, and a health server answering on any path (many "workers" on one port)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any, Self

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.support.servers import REPO_ROOT, serve_app


class _LoopServer:
    """A raw asyncio TCP server in its own thread (far lighter than uvicorn + FastAPI, so one
    can stand in for hundreds of workers on a busy 2-core machine)."""

    def __init__(self) -> None:
        self.accepted = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._writers: list[asyncio.StreamWriter] = []

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.append(writer)
        with contextlib.suppress(Exception):
            await self.serve(reader, writer)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Handle one connection."""
        raise NotImplementedError

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=2048)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        self._server.close()
        for writer in self._writers:
            writer.close()

    @property
    def url(self) -> str:
        """Its base URL."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


class SilentServer(_LoopServer):
    """Accepts TCP connections, reads, never answers (a hung worker or proxy)."""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read the request; say nothing."""
        while await reader.read(65536):
            pass


class HealthServer(_LoopServer):
    """Answers every ``GET .../health`` with HTTP 200 (keep-alive): paths under ``/orig/``
    as an original NADG worker (``{"status": "healthy"}``), the rest as ours."""

    OURS = json.dumps({"status": "ok", "worker_id": "stand-in", "version": "1.0",
                       "uptime_s": 1.0, "running": 0, "capacity": 2}).encode()
    ORIGINAL = json.dumps({"status": "healthy", "uptime": "running", "worker_id": "orig",
                           "timestamp": "2026-01-01T00:00:00"}).encode()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One keep-alive HTTP/1.1 connection: answer each request head."""
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1]
            body = self.ORIGINAL if path.startswith(b"/orig/") else self.OURS
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()


def many_health_app() -> FastAPI:
    """``/w/{i}/health`` answers as our worker; ``/orig/{i}/health`` as an original NADG one."""
    app = FastAPI()

    @app.get("/w/{i}/health")
    async def ours(i: int) -> dict[str, object]:
        return {"status": "ok", "worker_id": f"w{i}", "version": "1.0", "uptime_s": 1.0,
                "running": 0, "capacity": 2}

    @app.get("/orig/{i}/health")
    async def original(i: int) -> dict[str, object]:
        return {"status": "healthy", "uptime": "running", "worker_id": f"orig{i}",
                "timestamp": "2026-01-01T00:00:00"}

    return app


class Webhook:
    """What a webhook receiver got."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[dict[str, Any]] = []

    def app(self) -> FastAPI:
        """The receiver: records each JSON body, answers ``status``."""
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> JSONResponse:
            self.bodies.append(await request.json())
            return JSONResponse({"ok": self.status < 300}, status_code=self.status)

        @app.get("/health")
        async def health() -> dict[str, str]:
            return {"status": "ok"}

        return app


@contextlib.contextmanager
def webhook_receiver(status: int = 200) -> Iterator[tuple[Webhook, str]]:
    """A webhook receiver on loopback; yields it and its URL."""
    hook = Webhook(status)
    with serve_app(hook.app()) as url:
        yield hook, url + "/hook"


class StandIns:
    """A :class:`HealthServer` and a :class:`SilentServer` in a child process of their own,
    so that serving hundreds of "workers" does not compete with the test for the GIL.

    ``alive`` and ``silent`` are their base URLs; :meth:`silent_accepted` asks the child how
    many connections the silent server has accepted.
    """

    def __enter__(self) -> StandIns:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.ops.loopback"], cwd=REPO_ROOT, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        alive, silent = self.proc.stdout.readline().split()
        self.alive = f"http://127.0.0.1:{alive}"
        self.silent = f"http://127.0.0.1:{silent}"
        return self

    def silent_accepted(self) -> int:
        """Connections the silent server accepted so far."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()  # the child exits at EOF
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _serve_stand_ins() -> None:
    """The child of :class:`StandIns`: print both ports, answer ``count`` lines, exit at EOF."""
    with HealthServer() as alive, SilentServer() as silent:
        sys.stdout.write(f"{alive.port} {silent.port}\n")
        sys.stdout.flush()
        for line in sys.stdin:
            if line.strip() == "count":
                sys.stdout.write(f"{silent.accepted}\n")
                sys.stdout.flush()


if __name__ == "__main__":
    _serve_stand_ins()
