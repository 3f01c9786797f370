"""The master's HTTP client for one worker protocol call at a time.

Exceptions::

    WorkerCallError            a call to a worker did not produce a result
    ├── WorkerUnreachable      connect error, reset, or timeout: try another worker
    ├── WorkerBusy             503 backpressure; ``retry_after_s`` says when to retry
    ├── WorkerAuthError        401/403: the shared token is wrong on one side
    └── WorkerProtocolError    a 4xx/5xx or a body that is not the protocol

A subtask that *ran* and failed is not an exception: it is a ``SubtaskResult`` whose
status says so. One :class:`httpx.AsyncClient` (keep-alive pool) is shared by all calls.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import httpx
from pydantic import TypeAdapter, ValidationError

from worker_node.protocol import HealthResponse, Subtask, SubtaskResult

logger = logging.getLogger(__name__)

_RESULTS = TypeAdapter(list[SubtaskResult])
#: Seconds added to a subtask's own timeout for the HTTP round trip.
TRANSPORT_SLACK_S = 10.0


class WorkerCallError(Exception):
    """A call to a worker did not produce a result."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(f"{url}: {message}")
        self.url = url


class WorkerUnreachable(WorkerCallError):
    """The worker could not be reached or did not answer in time."""


class WorkerBusy(WorkerCallError):
    """The worker answered 503: every slot busy and its queue full."""

    def __init__(self, url: str, message: str, retry_after_s: float) -> None:
        super().__init__(url, message)
        self.retry_after_s = retry_after_s


class WorkerAuthError(WorkerCallError):
    """The worker refused the token (401/403)."""


class WorkerProtocolError(WorkerCallError):
    """The worker answered something that is not the protocol."""


def auth_headers(token: str | None) -> dict[str, str]:
    """The headers that carry the shared token (empty without one)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


def _raise_for(url: str, response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    text = response.text[:300]
    if response.status_code == 503:
        raise WorkerBusy(url, f"busy (503): {text}", _retry_after(response))
    if response.status_code in (401, 403):
        raise WorkerAuthError(url, f"token refused ({response.status_code}): {text}")
    raise WorkerProtocolError(url, f"HTTP {response.status_code}: {text}")


class WorkerClient:
    """Calls the worker protocol over a shared ``httpx.AsyncClient``."""

    def __init__(self, http: httpx.AsyncClient, token: str | None) -> None:
        self._http = http
        self._headers = auth_headers(token)

    async def execute(self, url: str, subtask: Subtask) -> SubtaskResult:
        """``POST /execute``: one subtask, one result."""
        response = await self._post(url, "/execute", subtask.model_dump(mode="json"),
                                    subtask.timeout_s)
        try:
            return SubtaskResult.model_validate_json(response.content)
        except ValidationError as exc:
            raise WorkerProtocolError(url, f"not a SubtaskResult: {exc}") from exc

    async def execute_batch(self, url: str, subtasks: Sequence[Subtask]) -> list[SubtaskResult]:
        """``POST /execute/batch``: results in the order of ``subtasks``."""
        body = [s.model_dump(mode="json") for s in subtasks]
        timeout = sum(s.timeout_s for s in subtasks)
        response = await self._post(url, "/execute/batch", body, timeout)
        try:
            results = _RESULTS.validate_json(response.content)
        except ValidationError as exc:
            raise WorkerProtocolError(url, f"not a list of SubtaskResult: {exc}") from exc
        if [r.id for r in results] != [s.id for s in subtasks]:
            raise WorkerProtocolError(url, "batch results do not match the subtasks sent")
        return results

    async def health(self, url: str, timeout_s: float = 5.0) -> HealthResponse:
        """``GET /health`` (no token needed)."""
        try:
            response = await self._http.get(_join(url, "/health"), timeout=timeout_s)
        except httpx.TransportError as exc:
            raise WorkerUnreachable(url, f"{type(exc).__name__}: {exc}") from exc
        _raise_for(url, response)
        try:
            return HealthResponse.model_validate_json(response.content)
        except ValidationError as exc:
            raise WorkerProtocolError(url, f"not a health answer: {exc}") from exc

    async def _post(self, url: str, path: str, body: object, timeout_s: float) -> httpx.Response:
        try:
            response = await self._http.post(
                _join(url, path),
                json=body,
                headers=self._headers,
                timeout=timeout_s + TRANSPORT_SLACK_S,
            )
        except httpx.TransportError as exc:
            raise WorkerUnreachable(url, f"{type(exc).__name__}: {exc}") from exc
        _raise_for(url, response)
        return response


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + path
