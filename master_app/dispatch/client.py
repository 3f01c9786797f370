"""The master's HTTP client for one worker protocol call at a time.

Exceptions::

    WorkerCallError            a call to a worker did not produce a result
    ├── WorkerUnreachable      connect error, reset, or timeout: try another worker
    ├── WorkerBusy             503 backpressure; ``retry_after_s`` says when to retry
    ├── WorkerAuthError        401/403, or the worker could not prove it holds its key
    └── WorkerProtocolError    a 4xx/5xx or a body that is not the protocol

A subtask that *ran* and failed is not an exception: it is a ``SubtaskResult`` whose
status says so. One :class:`httpx.AsyncClient` (keep-alive pool) is shared by all calls.

Every request is signed for the worker it goes to (:mod:`nexus_common.signing`), and no
work goes to a worker before it has proved it holds its key (``POST /auth/prove``, once per
worker, again after an auth error): a URL typed into the registry that is not a grid worker
gets nothing it could use and no subtask.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Sequence

import httpx
from pydantic import TypeAdapter, ValidationError

from nexus_common.protocol import HealthResponse, Subtask, SubtaskResult, endpoint_url
from nexus_common.signing import GridSigner, SigningAuth, canonical_origin, new_challenge

logger = logging.getLogger(__name__)

_RESULTS = TypeAdapter(list[SubtaskResult])
_SUBTASKS = TypeAdapter(list[Subtask])
_JSON_HEADERS = {"Content-Type": "application/json"}
#: Seconds added to a subtask's own timeout for the HTTP round trip.
TRANSPORT_SLACK_S = 10.0
#: The most of a ``/health`` or ``/auth/prove`` answer read (a real one is a few hundred
#: bytes).
SMALL_ANSWER_MAX_BYTES = 64 * 1024
#: Parsed endpoint URLs kept (a registry holds far fewer workers; past it the cache restarts).
MAX_CACHED_URLS = 4096


class WorkerCallError(Exception):
    """A call to a worker did not produce a result."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(f"{url}: {message}")
        self.url = url


class WorkerUnreachable(WorkerCallError):
    """The worker could not be reached or did not answer in time."""


class WorkerRefused(WorkerUnreachable):
    """The connection was refused or never made: nothing reached the worker, so the
    subtask did not run there (a worker restarting, a port nobody listens on)."""


def _unreachable(url: str, exc: httpx.TransportError) -> WorkerUnreachable:
    kind = WorkerRefused if isinstance(exc, httpx.ConnectError) else WorkerUnreachable
    return kind(url, f"{type(exc).__name__}: {exc}")


class WorkerBusy(WorkerCallError):
    """The worker answered 503: every slot busy and its queue full."""

    def __init__(self, url: str, message: str, retry_after_s: float) -> None:
        super().__init__(url, message)
        self.retry_after_s = retry_after_s


class WorkerAuthError(WorkerCallError):
    """The worker refused our signature (401/403), or could not prove it holds its key."""


class WorkerProtocolError(WorkerCallError):
    """The worker answered something that is not the protocol."""


def _retry_after(headers: httpx.Headers) -> float:
    try:
        return max(0.0, float(headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


def _raise_for(url: str, response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    _raise_status(url, response.status_code, response.headers, response.text[:300])


def _raise_status(url: str, status: int, headers: httpx.Headers, text: str) -> None:
    if status in (503, 429):
        raise WorkerBusy(url, f"busy ({status}): {text}", _retry_after(headers))
    if status in (401, 403):
        raise WorkerAuthError(url, f"signature refused ({status}): {text}")
    raise WorkerProtocolError(url, f"HTTP {status}: {text}")


class WorkerClient:
    """Calls the worker protocol over a shared ``httpx.AsyncClient``."""

    def __init__(self, http: httpx.AsyncClient, token: str | None) -> None:
        """``token`` is the grid secret (None: an insecure local grid, nothing signed);
        a secret shorter than 32 bytes raises :class:`nexus_common.signing.WeakSecret`."""
        self._http = http
        self._signer = GridSigner(token) if token else None
        self._auth = SigningAuth(self._signer) if self._signer else None
        self._proven: set[str] = set()
        self._proving: dict[str, asyncio.Lock] = {}
        self._urls: dict[tuple[str, str], httpx.URL] = {}

    async def prove(self, url: str, timeout_s: float = 10.0) -> None:
        """Make the worker at ``url`` prove it holds its key (cached once it has).

        Raises :class:`WorkerAuthError` when it cannot: not a grid worker, or one with
        another secret. Nothing is sent to a worker before this passes.
        """
        if self._signer is None:
            return
        origin = canonical_origin(url)
        if origin in self._proven:
            return
        lock = self._proving.setdefault(origin, asyncio.Lock())
        async with lock:
            if origin in self._proven:
                return
            challenge = new_challenge()
            answer = await self._small_answer("POST", url, "/auth/prove",
                                              {"challenge": challenge}, timeout_s)
            try:
                proof = str(json.loads(answer)["proof"])
            except (ValueError, KeyError, TypeError) as exc:
                raise WorkerAuthError(url, f"no proof of key in the answer: {exc}") from exc
            expected = self._signer.expected_proof(url, challenge)
            if not hmac.compare_digest(proof.encode(), expected.encode()):
                raise WorkerAuthError(url, "the worker could not prove it holds its key: "
                                           "not a grid worker, or its NADG_AUTH_TOKEN differs; "
                                           "no work is sent to it")
            self._proven.add(origin)
            logger.info("worker %s proved it holds its key", origin)

    def _endpoint(self, url: str, path: str) -> httpx.URL:
        """The parsed URL of a worker's endpoint (parsed once: httpx parses a string URL,
        its host included, on every request)."""
        key = (url, path)
        found = self._urls.get(key)
        if found is None:
            if len(self._urls) >= MAX_CACHED_URLS:
                self._urls.clear()
            found = self._urls[key] = httpx.URL(endpoint_url(url, path))
        return found

    def forget(self, url: str) -> None:
        """Drop the cached proof of ``url`` (it will be asked again before the next call)."""
        self._proven.discard(canonical_origin(url))

    async def execute(self, url: str, subtask: Subtask) -> SubtaskResult:
        """``POST /execute``: one subtask, one result."""
        response = await self._post(url, "/execute", subtask.model_dump_json().encode(),
                                    subtask.timeout_s)
        try:
            return SubtaskResult.model_validate_json(response.content)
        except ValidationError as exc:
            raise WorkerProtocolError(url, f"not a SubtaskResult: {exc}") from exc

    async def execute_batch(self, url: str, subtasks: Sequence[Subtask]) -> list[SubtaskResult]:
        """``POST /execute/batch``: results in the order of ``subtasks``."""
        body = _SUBTASKS.dump_json(list(subtasks))  # pydantic's encoder: no dict pass
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
        """``GET /health`` (no token needed): at most :data:`SMALL_ANSWER_MAX_BYTES` of it
        read, within ``timeout_s`` in all (any URL in the registry is asked, proven or not)."""
        body = await self._small_answer("GET", url, "/health", None, timeout_s, signed=False)
        try:
            return HealthResponse.model_validate_json(body)
        except ValidationError as exc:
            raise WorkerProtocolError(url, f"not a health answer: {exc}") from exc

    async def _small_answer(self, method: str, url: str, path: str, body: object,
                            timeout_s: float, *, signed: bool = True) -> bytes:
        """The body of a request whose answer is small by the protocol (``/health``,
        ``/auth/prove``): read as a stream, refused past :data:`SMALL_ANSWER_MAX_BYTES`,
        and bounded in total time. Such requests go to URLs not yet proven to be
        workers, and httpx's timeout bounds each read, not the answer: an answer that
        never ends would otherwise be read (and held in memory) for ever."""
        data = bytearray()
        try:
            async with asyncio.timeout(timeout_s), self._http.stream(
                    method, endpoint_url(url, path), json=body, timeout=timeout_s,
                    auth=(self._auth if signed else None) or httpx.USE_CLIENT_DEFAULT,
            ) as response:
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > SMALL_ANSWER_MAX_BYTES:
                        raise WorkerProtocolError(
                            url, f"a {path} answer over {SMALL_ANSWER_MAX_BYTES} bytes")
        except httpx.TransportError as exc:
            raise _unreachable(url, exc) from exc
        except TimeoutError as exc:
            raise WorkerUnreachable(url, f"no whole {path} answer within {timeout_s:g}s") \
                from exc
        if response.status_code >= 400:
            _raise_status(url, response.status_code, response.headers,
                          data[:300].decode("utf-8", errors="replace"))
        return bytes(data)

    async def _post(self, url: str, path: str, body: object, timeout_s: float) -> httpx.Response:
        return await self._send(url, path, body, timeout_s + TRANSPORT_SLACK_S, prove=True)

    async def _send(self, url: str, path: str, body: object, timeout_s: float, *,
                    prove: bool) -> httpx.Response:
        if prove:
            await self.prove(url)
        # a body already encoded (the protocol models, by pydantic) is sent as it is
        encoded = body if isinstance(body, bytes) else None
        try:
            response = await self._http.post(
                self._endpoint(url, path), content=encoded,
                json=None if encoded is not None else body,
                headers=_JSON_HEADERS if encoded is not None else None,
                auth=self._auth or httpx.USE_CLIENT_DEFAULT, timeout=timeout_s)
        except httpx.TransportError as exc:
            raise _unreachable(url, exc) from exc
        if response.status_code in (401, 403):
            self.forget(url)
        _raise_for(url, response)
        return response


