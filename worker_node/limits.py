"""A pure ASGI middleware that answers 413 to request bodies over a byte limit.

A declared ``Content-Length`` over the limit is refused before any body is read; a
chunked body is counted as it streams and refused as soon as it passes the limit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    """Refuse bodies larger than ``limit()`` bytes with 413 (an ErrorResponse body)."""

    def __init__(self, app: ASGIApp, limit: Callable[[], int]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(send, limit, f"{int(declared)} bytes declared")
            return
        messages = await read_messages(receive, limit)
        if messages is None:
            await _refuse(send, limit, f"more than {limit} bytes sent")
            return
        await self.app(scope, replay(messages, receive), send)


async def read_messages(receive: Receive, limit: int | None = None) -> list[Message] | None:
    """Every message of a request's body, up to its last (or a disconnect); None once the
    body passes ``limit`` bytes."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages
        size += len(message.get("body", b""))
        if limit is not None and size > limit:
            return None
        if not message.get("more_body", False):
            return messages


def replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that hands out ``messages`` again, then goes on with ``receive``."""
    async def replayed() -> Message:
        return messages.pop(0) if messages else await receive()

    return replayed


async def _refuse(send: Send, limit: int, what: str) -> None:
    body: dict[str, Any] = {
        "error": f"request body too large ({what}); this worker accepts at most {limit} "
                 "bytes: split the work into smaller subtasks",
        "detail": {"limit_bytes": limit},
    }
    raw = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(raw)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": raw})
