"""Signing for tests: the grid secret fakes share with the master, and ``/auth/prove``
for fake workers (so a fake proves its key exactly as a real worker does)."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request

from nexus_common.signing import (
    KeySource,
    SignatureRejected,
    Verifier,
    canonical_origin,
    proof_of_key,
)

#: The grid secret of the master tests (>= 32 bytes, as every secret must be).
GRID_SECRET = "master-test-grid-secret-0123456789abcdef"


def add_prove_route(app: FastAPI, secret: str = GRID_SECRET) -> Verifier:
    """Give a fake worker ``POST /auth/prove``: verify the signature (addressed to the
    fake's own origin), then answer the proof of its key. Returns the verifier."""
    verifier = Verifier([KeySource.from_secret(secret)])

    @app.post("/auth/prove")
    async def prove(request: Request) -> dict[str, str]:
        server = request.scope["server"]
        origin = canonical_origin(f"http://{server[0]}:{server[1]}")
        body = await request.body()
        try:
            verified = verifier.verify(request.method, request.url.path, request.headers,
                                       [origin])
            Verifier.check_body(verified, body)
        except SignatureRejected as exc:
            raise HTTPException(exc.status, exc.message) from exc
        challenge = str((await request.json())["challenge"])
        return {"proof": proof_of_key(verified.key, verified.target, challenge),
                "target": verified.target, "worker_id": "fake"}

    return verifier


class Captured:
    """A request a capturing server received: method, path (with query), headers, body."""

    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        self.method, self.path, self.headers, self.body = method, path, headers, body


def capture_app(captured: list[Captured]) -> FastAPI:
    """A URL that is not a worker: it records every request and answers like a worker
    would (``/health`` ok, a made-up proof), to see what the master sends a stranger."""
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, object]:
        return {"status": "ok", "worker_id": "stranger", "version": "x", "uptime_s": 1.0,
                "running": 0, "capacity": 4}

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def record(request: Request, path: str) -> dict[str, str]:
        query = f"?{request.url.query}" if request.url.query else ""
        captured.append(Captured(request.method, request.url.path + query,
                                 dict(request.headers), await request.body()))
        # a made-up proof, non-ASCII on purpose: a client must refuse it, not crash
        return {"proof": "é" * 64, "target": "stranger", "worker_id": "stranger"}

    return app
