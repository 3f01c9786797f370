"""A lean HTTP/1.1 transport for httpx: keep-alive connections on asyncio protocols, with
responses parsed by httptools (the C parser uvicorn itself uses).

Why the project carries its own: the dispatcher's round trip to a worker is its hot path,
and py-spy put over half of the master's CPU per no-op subtask inside httpcore's pure-Python
pool, anyio streams and the h11 parser. This transport keeps httpx's API (``AsyncClient``,
auth flows, timeouts, streaming, the exception types), so the rest of the code and every
test of it stay as they are; only the bytes on the wire are handled here. It is used for the
worker protocol's calls (see :func:`worker_client_http`); anything it does not do (proxies
from the environment, HTTP/2) is left to httpx's own transport.

Behaviour, as httpx's default transport:

- one request at a time per connection; idle connections are kept per origin (at most
  ``max_idle_per_origin``) and reused; a connection the server closed is never reused;
- ``timeout.connect`` bounds the connect, ``timeout.read`` each wait for bytes (the head,
  then every body chunk);
- the body streams: a reader that stops reading stops the socket being read (flow control),
  so a response that never ends is held only as far as its reader takes it;
- errors are httpx's: :class:`httpx.ConnectError`, :class:`httpx.ConnectTimeout`,
  :class:`httpx.ReadTimeout`, :class:`httpx.RemoteProtocolError`;
- a response not read to its end (the stream closed early, a cancelled request, an error)
  closes its connection instead of returning it to the pool.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import httptools
import httpx

logger = logging.getLogger(__name__)

#: Body bytes buffered from the socket before reading pauses until the reader catches up.
HIGH_WATER = 1 << 20
#: The most bytes a response's status line and headers may take (h11's bound, as httpx's
#: own transport): a server that sends headers for ever is cut off, not held in memory.
MAX_HEAD_BYTES = 64 * 1024
Origin = tuple[bytes, bytes, int]


class _Connection(asyncio.Protocol):
    """One keep-alive connection: writes a request, parses its response as it arrives."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._active = False  # a request is out and its response not yet complete
        self._no_body = False  # the request was HEAD: its response has no body
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._head_done = False
        self.complete = False
        self._error: Exception | None = None
        self._wake: asyncio.Future[None] | None = None
        self._paused = False
        self._until_close = False
        self._keep_alive = False
        self._head_bytes = 0
        self._header_bytes = 0
        self._informational = False

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self._active:  # bytes nobody asked for: the stream can no longer be trusted
            self._fail(httpx.RemoteProtocolError("the server sent bytes with no request out"))
            self.close()
            return
        if not self._head_done:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES + HIGH_WATER:  # head plus a first chunk
                self._fail(httpx.RemoteProtocolError(
                    f"response headers over {MAX_HEAD_BYTES} bytes"))
                self.close()
                return
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed HTTP response: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._head_done and self._until_close and not self.complete:
            self.complete = True  # a body delimited by the end of the connection
            self._signal()
        elif not self.complete:
            self._fail(httpx.RemoteProtocolError(
                "the server closed the connection before the whole response"
                if self._head_done else "server disconnected without sending a response"))

    # -- httptools callbacks --------------------------------------------------------

    def on_message_begin(self) -> None:
        if not self._active:  # a second answer to one request: a desync, never read
            raise httptools.HttpParserError("the server sent an answer nobody asked for")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEAD_BYTES:
            raise httptools.HttpParserError(f"response headers over {MAX_HEAD_BYTES} bytes")

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # informational (100 Continue): the real answer follows
            self.headers = []
            self._informational = True
            return
        self.status = status
        delimited = any(name.lower() == b"content-length" or (
            name.lower() == b"transfer-encoding" and b"chunked" in value.lower())
            for name, value in self.headers)
        self._until_close = (not delimited and self.status not in (204, 304)
                             and not self._no_body)
        self._head_done = True
        if self._no_body:  # the parser cannot know the request was HEAD
            self.complete, self._active = True, False
        self._signal()

    def on_body(self, body: bytes) -> None:
        if self._informational:
            raise httptools.HttpParserError("an informational answer with a body")
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._signal()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        # asked now: once the message is complete the parser has reset for the next one
        self._keep_alive = self._parser.should_keep_alive()
        self.complete, self._active = True, False
        self._signal()

    # -- used by the transport ------------------------------------------------------

    @property
    def reusable(self) -> bool:
        """True when this connection may carry another request."""
        return (not self.closed and self.transport is not None
                and not self.transport.is_closing() and self._error is None)

    def send(self, data: bytes, *, no_body: bool = False) -> None:
        """Start a request: reset the response state and write the request's bytes
        (``no_body``: a HEAD request, whose answer carries none)."""
        assert self.transport is not None
        self._reset()
        self._active, self._no_body = True, no_body
        self.transport.write(data)

    async def head(self, timeout: float | None) -> None:
        """Wait for the response's status line and headers."""
        while not self._head_done:
            if self._error is not None:
                raise self._error
            await self._wait(timeout)

    async def chunk(self, timeout: float | None) -> bytes:
        """The next piece of the body, ``b""`` once it has all been read."""
        while not self._chunks:
            if self.complete:
                return b""
            if self._error is not None:
                raise self._error
            await self._wait(timeout)
        data = self._chunks.popleft()
        self._buffered -= len(data)
        if self._paused and self._buffered <= HIGH_WATER // 2 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    def keep_alive(self) -> bool:
        """True when the response allows the connection to be reused."""
        return (self.complete and not self._until_close and self._keep_alive
                and not self._no_body)

    def close(self) -> None:
        """Close the connection (an unread or failed response leaves it unusable)."""
        self.closed = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    async def _wait(self, timeout: float | None) -> None:
        """Wait for the next event (bytes, the end, an error) of this connection; what
        arrived is the callers' to look at (an error after a whole answer spoils nothing
        of that answer)."""
        self._wake = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._wake
        except TimeoutError:
            raise httpx.ReadTimeout("timed out waiting for the server's answer") from None
        finally:
            self._wake = None

    def _fail(self, error: Exception) -> None:
        if self._error is None:
            self._error = error
        self._signal()

    def _signal(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)


class _ResponseBody(httpx.AsyncByteStream):
    """A response body read from its connection; the connection goes back to the pool
    once the body has been read to its end, and is closed otherwise."""

    def __init__(self, pool: KeepAliveTransport, origin: Origin, conn: _Connection,
                 read_timeout: float | None) -> None:
        self._pool, self._origin, self._conn = pool, origin, conn
        self._timeout = read_timeout
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            try:
                data = await self._conn.chunk(self._timeout)
            except BaseException:
                self._finish()
                raise
            if not data:
                break
            yield data
        self._finish()

    async def aclose(self) -> None:
        self._finish()

    def _finish(self) -> None:
        if not self._released:
            self._released = True
            self._pool.release(self._origin, self._conn)


class KeepAliveTransport(httpx.AsyncBaseTransport):
    """httpx's async transport interface over pooled keep-alive HTTP/1.1 connections."""

    def __init__(self, *, max_connections: int = 100, max_idle_per_origin: int = 64,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        """``max_connections``: requests in flight at once (one per connection, as httpx's
        pool); a request past it waits up to ``timeout.pool`` (then
        :class:`httpx.PoolTimeout`). ``ssl_context``: for ``https`` origins (default:
        httpx's, verifying certificates)."""
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[Origin, list[_Connection]] = {}
        self._max_idle = max_idle_per_origin
        self._ssl = ssl_context
        self._open: set[_Connection] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` on a pooled connection; the body streams from the socket."""
        url = request.url
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        port = url.port or (443 if scheme == b"https" else 80)
        origin: Origin = (scheme, url.raw_host, port)
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        body = await request.aread()
        head = [request.method.encode(), b" ", url.raw_path, b" HTTP/1.1\r\n"]
        # the body is read whole above, so it always goes with its length (a streamed
        # body's chunked framing is not re-made here)
        for name, value in request.headers.raw:
            if name.lower() not in (b"transfer-encoding", b"content-length"):
                head += [name, b": ", value, b"\r\n"]
        if body or request.method not in ("GET", "HEAD"):
            head += [b"Content-Length: ", str(len(body)).encode(), b"\r\n"]
        head.append(b"\r\n")
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no connection free within the pool timeout") from None
        try:
            conn = await self._acquire(origin, timeouts.get("connect"))
        except BaseException:
            self._slots.release()
            raise
        try:
            conn.send(b"".join(head) + body, no_body=request.method == "HEAD")
            await conn.head(timeouts.get("read"))
        except BaseException:
            self._discard(conn)
            self._slots.release()
            raise
        return httpx.Response(conn.status, headers=conn.headers,
                              stream=_ResponseBody(self, origin, conn, timeouts.get("read")),
                              extensions={"http_version": b"HTTP/1.1"})

    def release(self, origin: Origin, conn: _Connection) -> None:
        """Return a connection whose response was read to its end; close any other."""
        self._slots.release()
        idle = self._idle.setdefault(origin, [])
        for dead in [c for c in idle if not c.reusable]:  # closed by the server meanwhile
            idle.remove(dead)
            self._discard(dead)
        if conn.keep_alive() and conn.reusable and len(idle) < self._max_idle:
            idle.append(conn)
        else:
            self._discard(conn)

    async def aclose(self) -> None:
        """Close every connection, idle or not."""
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._idle.clear()

    async def _acquire(self, origin: Origin, timeout: float | None) -> _Connection:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.reusable:
                return conn
            self._discard(conn)
        scheme, host, port = origin
        tls = scheme == b"https"
        name = host.decode("ascii")
        if tls and self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    _Connection, name.strip("[]"), port, ssl=self._ssl if tls else None,
                    server_hostname=name.strip("[]") if tls else None)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {name}:{port} timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}") from exc
        self._open.add(conn)
        return conn

    def _discard(self, conn: _Connection) -> None:
        conn.close()
        self._open.discard(conn)


def uses_proxy() -> bool:
    """True when the environment names an HTTP(S) proxy (then httpx's own transport,
    which honours it, is used instead of :class:`KeepAliveTransport`)."""
    proxies = urllib.request.getproxies()
    return any(key in proxies for key in ("http", "https", "all"))


def worker_client_http(limits: httpx.Limits | None = None) -> httpx.AsyncClient:
    """The ``httpx.AsyncClient`` the master talks to workers with: on
    :class:`KeepAliveTransport`, or on httpx's own when a proxy is configured.

    It keeps no cookies: the worker protocol has none, and a worker (or a URL posing as
    one) must not plant state that the master would send on to other hosts. Skipping the
    cookie jar also skips the urllib request httpx builds for it on every answer.
    """
    limits = limits or httpx.Limits()
    client = (httpx.AsyncClient(limits=limits) if uses_proxy()
              else httpx.AsyncClient(transport=KeepAliveTransport(
                  max_connections=limits.max_connections or 100)))
    client.cookies.extract_cookies = _keep_no_cookies  # type: ignore[method-assign,assignment]
    return client


def _keep_no_cookies(_response: httpx.Response) -> None:
    """Drop a response's ``Set-Cookie`` (see :func:`worker_client_http`)."""
