"""FastAPI dependencies: the worker's state and token auth, as ``Annotated`` aliases."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from worker_node.protocol import AUTH_HEADER, ErrorResponse
from worker_node.state import WorkerState


def get_state(request: Request) -> WorkerState:
    """The state the lifespan built; 503 while the worker is still starting."""
    state: WorkerState | None = getattr(request.app.state, "worker", None)
    if state is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "the worker is still starting; retry in a moment")
    return state


StateDep = Annotated[WorkerState, Depends(get_state)]


def _presented_tokens(headers: Mapping[str, str]) -> list[str]:
    """Every token the request presents: the Bearer credential and ``X-NADG-AUTH``.

    Both are collected (not the first found): behind a proxy that puts its own
    credential in ``Authorization`` (a private Hugging Face Space wants the HF token
    there), the grid's token arrives in ``X-NADG-AUTH`` and must still be accepted.
    """
    tokens: list[str] = []
    header = headers.get("authorization")
    if header and header.lower().startswith("bearer "):
        tokens.append(header[7:].strip())
    original = headers.get(AUTH_HEADER)
    if original is not None:
        tokens.append(original)
    return tokens


def token_error(headers: Mapping[str, str], expected: str | None) -> HTTPException | None:
    """The 401/403 to answer for these request headers, or None when they may pass."""
    if expected is None:  # insecure mode, explicitly allowed
        return None
    presented = _presented_tokens(headers)
    if not presented:
        return HTTPException(status.HTTP_401_UNAUTHORIZED,
                             f"missing token: send 'Authorization: Bearer <token>' or "
                             f"'{AUTH_HEADER}: <token>'",
                             headers={"WWW-Authenticate": "Bearer"})
    # compare every presented token (no short cut), each in constant time
    matches = [hmac.compare_digest(token.encode(), expected.encode()) for token in presented]
    if not any(matches):
        return HTTPException(status.HTTP_403_FORBIDDEN,
                             "wrong token: use the grid's NADG_AUTH_TOKEN")
    return None


def require_token(request: Request, state: StateDep) -> None:
    """Accept ``Authorization: Bearer T`` or ``X-NADG-AUTH: T`` (constant-time compare)."""
    error = token_error(request.headers, state.settings.token)
    if error is not None:
        raise error


class TokenBeforeBody:
    """Pure ASGI: refuse a request that carries a body (POST, ...) without the token
    before any of the body is read, so that an unauthenticated client on the internet
    cannot make the worker buffer and parse bodies up to the size limit. The routes
    check the token again through :data:`AuthDep`; ``GET`` requests read no body and
    are left to it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        worker: WorkerState | None = getattr(scope["app"].state, "worker", None) \
            if scope["type"] == "http" and "app" in scope else None
        if worker is None or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        error = token_error(Headers(scope=scope), worker.settings.token)
        if error is None:
            await self.app(scope, receive, send)
            return
        body = ErrorResponse(error=str(error.detail)).model_dump_json().encode()
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
        headers += [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
        await send({"type": "http.response.start", "status": error.status_code,
                    "headers": headers})
        await send({"type": "http.response.body", "body": body})


AuthDep = Depends(require_token)
