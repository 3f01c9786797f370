"""One contract for the master's two HTTP transports: httpx's own and the lean
:class:`nexus_common.http_transport.KeepAliveTransport`, against a real uvicorn server and
raw sockets that misbehave. Whatever the dispatcher relies on (status, headers, bodies,
streaming with a bounded read, timeouts, errors, keep-alive) must hold for both."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from nexus_common.http_transport import KeepAliveTransport, uses_proxy, worker_client_http
from tests.support.servers import serve_app

BIG = bytes(range(256)) * 20_000  # 5.1 MB


async def _echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({"method": request.method, "path": request.url.path,
                         "query": request.url.query, "size": len(body),
                         "head": body[:20].decode("latin-1"),
                         "x": request.headers.get("x-test")},
                        headers={"X-Answer": "yes"})


async def _chunked(_request: Request) -> Response:
    async def parts() -> AsyncIterator[bytes]:
        for i in range(50):
            yield f"part {i};".encode()

    return StreamingResponse(parts(), media_type="text/plain")


async def _big(_request: Request) -> Response:
    return Response(BIG, media_type="application/octet-stream")


async def _gzipped(_request: Request) -> Response:
    return Response(gzip.compress(b"squeezed " * 100), headers={"Content-Encoding": "gzip"})


async def _endless(_request: Request) -> Response:
    async def forever() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 65536
            await asyncio.sleep(0)

    return StreamingResponse(forever())


async def _slow(_request: Request) -> Response:
    await asyncio.sleep(2)
    return Response(b"late")


async def _close(_request: Request) -> Response:
    return Response(b"bye", headers={"Connection": "close"})


async def _status(request: Request) -> Response:
    return Response(b"nope", status_code=int(request.path_params["code"]),
                    headers={"Retry-After": "3"})


APP = Starlette(routes=[
    Route("/health", lambda _r: Response(b"ok")),
    Route("/echo", _echo, methods=["GET", "POST"]),
    Route("/chunked", _chunked), Route("/big", _big), Route("/gzip", _gzipped),
    Route("/endless", _endless), Route("/slow", _slow), Route("/close", _close),
    Route("/status/{code}", _status),
])

MakeClient = Callable[..., httpx.AsyncClient]
TRANSPORTS: dict[str, Callable[[], httpx.AsyncBaseTransport]] = {
    "httpx": httpx.AsyncHTTPTransport, "keepalive": KeepAliveTransport}


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve_app(APP) as base:
        yield base


@pytest.fixture(params=sorted(TRANSPORTS))
def make_client(request: pytest.FixtureRequest) -> MakeClient:
    def make(**kwargs: object) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=TRANSPORTS[request.param](), **kwargs)  # type: ignore[arg-type]

    return make


async def test_a_post_and_its_answer(url: str, make_client: MakeClient) -> None:
    async with make_client() as client:
        response = await client.post(f"{url}/echo?a=1&b=2", content=b"hello world",
                                     headers={"X-Test": "t"})
    assert response.status_code == 200
    assert response.headers["x-answer"] == "yes"
    assert response.json() == {"method": "POST", "path": "/echo", "query": "a=1&b=2",
                               "size": 11, "head": "hello world", "x": "t"}


async def test_large_bodies_both_ways(url: str,
                                      make_client: MakeClient) -> None:
    async with make_client() as client:
        sent = await client.post(f"{url}/echo", content=BIG)
        got = await client.get(f"{url}/big")
    assert sent.json()["size"] == len(BIG)
    assert got.content == BIG


async def test_chunked_and_compressed_answers(url: str,
                                              make_client: MakeClient) -> None:
    async with make_client() as client:
        chunked = await client.get(f"{url}/chunked")
        squeezed = await client.get(f"{url}/gzip")
    assert chunked.text == "".join(f"part {i};" for i in range(50))
    assert squeezed.content == b"squeezed " * 100


async def test_error_statuses_keep_their_headers(url: str,
                                                 make_client: MakeClient) -> None:
    async with make_client() as client:
        busy = await client.get(f"{url}/status/503")
        after = await client.get(f"{url}/echo")  # the connection is still good
    assert (busy.status_code, busy.headers["retry-after"], busy.text) == (503, "3", "nope")
    assert after.json()["method"] == "GET"


async def test_an_endless_answer_is_read_only_as_far_as_the_reader_goes(
        url: str, make_client: MakeClient) -> None:
    async with make_client(timeout=10) as client:
        read = 0
        async with client.stream("GET", f"{url}/endless") as response:
            async for chunk in response.aiter_bytes():
                read += len(chunk)
                if read > 1_000_000:
                    break
        assert 1_000_000 < read < 10_000_000
        again = await client.post(f"{url}/echo", content=b"next")  # a fresh connection
    assert again.json()["size"] == 4


async def test_a_slow_answer_times_out(url: str,
                                       make_client: MakeClient) -> None:
    async with make_client() as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(f"{url}/slow", timeout=0.3)
        assert (await client.get(f"{url}/echo")).status_code == 200


async def test_a_port_nobody_listens_on_is_a_connect_error(
        make_client: MakeClient) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with make_client() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")


async def test_connection_close_is_honoured(url: str,
                                            make_client: MakeClient) -> None:
    async with make_client() as client:
        for _ in range(3):
            response = await client.get(f"{url}/close")
            assert response.text == "bye"


@contextlib.contextmanager
def raw_server(answer: bytes, *, close: bool = True) -> Iterator[str]:
    """A socket server that reads a request and writes ``answer`` (then closes)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(answer)
                if not close:
                    stop.wait(5)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()


@pytest.mark.parametrize("answer", [
    b"this is not HTTP at all\r\n\r\n",
    b"",  # closed without a word
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part",
], ids=["garbage", "nothing", "cut-short"])
async def test_a_broken_answer_is_a_protocol_error(
        answer: bytes, make_client: MakeClient) -> None:
    with raw_server(answer) as base:
        async with make_client(timeout=5) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(f"{base}/")


async def test_a_body_delimited_by_the_close(make_client: MakeClient) -> None:
    with raw_server(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end") as base:
        async with make_client(timeout=5) as client:
            assert (await client.get(f"{base}/")).text == "until the end"


async def test_keepalive_reuses_one_connection(url: str) -> None:
    transport = KeepAliveTransport()
    async with httpx.AsyncClient(transport=transport) as client:
        for i in range(20):
            assert (await client.post(f"{url}/echo", content=b"x" * i)).json()["size"] == i
        assert len(transport._open) == 1
        # ten at once need ten connections; afterwards they are all idle and reused
        await asyncio.gather(*(client.get(f"{url}/echo") for _ in range(10)))
        opened = len(transport._open)
        await asyncio.gather(*(client.get(f"{url}/echo") for _ in range(10)))
        assert len(transport._open) == opened <= 10
    assert not transport._open


async def test_a_cancelled_request_does_not_leave_its_connection_in_the_pool(url: str) -> None:
    transport = KeepAliveTransport()
    async with httpx.AsyncClient(transport=transport) as client:
        slow = asyncio.ensure_future(client.get(f"{url}/slow"))
        await asyncio.sleep(0.2)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        # the next answer is its own, not the late one of the cancelled request
        assert (await client.post(f"{url}/echo", content=b"mine")).json()["head"] == "mine"


def test_a_proxy_in_the_environment_keeps_httpx_own_transport(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert not uses_proxy()
    client = worker_client_http()
    assert isinstance(client._transport, KeepAliveTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert uses_proxy()
    proxied = worker_client_http()
    assert not isinstance(proxied._transport, KeepAliveTransport)


async def _set_cookie(_request: Request) -> Response:
    response = Response(b"planted")
    response.set_cookie("session", "from-a-worker")
    return response


async def test_the_worker_client_keeps_no_cookies() -> None:
    """A worker (or a URL posing as one) cannot plant a cookie the master would send on."""
    seen: list[str | None] = []

    async def show(request: Request) -> Response:
        seen.append(request.headers.get("cookie"))
        return Response(b"ok")

    app = Starlette(routes=[Route("/health", lambda _r: Response(b"ok")),
                            Route("/plant", _set_cookie), Route("/show", show)])
    with serve_app(app) as base:
        async with worker_client_http() as client:
            planted = await client.get(f"{base}/plant")
            await client.get(f"{base}/show")
    assert "session=from-a-worker" in planted.headers["set-cookie"]
    assert seen == [None]


async def test_requests_past_max_connections_wait_for_a_free_one(url: str) -> None:
    transport = KeepAliveTransport(max_connections=2)
    async with httpx.AsyncClient(transport=transport, timeout=10) as client:
        slow = [asyncio.ensure_future(client.get(f"{url}/slow")) for _ in range(2)]
        await asyncio.sleep(0.2)
        with pytest.raises(httpx.PoolTimeout):  # both connections are busy
            await client.get(f"{url}/echo", timeout=httpx.Timeout(10, pool=0.2))
        waiting = asyncio.ensure_future(client.get(f"{url}/echo"))
        assert [r.text for r in await asyncio.gather(*slow)] == ["late", "late"]
        assert (await waiting).status_code == 200
        assert len(transport._open) <= 2


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\n" + b"X-Filler: " + b"a" * 2_000_000 + b"\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(20_000)) + b"\r\n",
], ids=["one-endless-header", "many-headers"])
async def test_headers_without_end_are_cut_off(answer: bytes,
                                               make_client: MakeClient) -> None:
    with raw_server(answer) as base:
        async with make_client(timeout=5) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(f"{base}/")


async def test_an_informational_answer_is_skipped(make_client: MakeClient) -> None:
    answer = (b"HTTP/1.1 100 Continue\r\n\r\n"
              b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
    with raw_server(answer) as base:
        async with make_client(timeout=5) as client:
            response = await client.post(f"{base}/", content=b"x")
    assert (response.status_code, response.text) == (200, "final")


async def test_a_head_request_has_no_body(url: str, make_client: MakeClient) -> None:
    async with make_client(timeout=5) as client:
        head = await client.head(f"{url}/big")
        after = await client.get(f"{url}/echo")
    assert head.status_code in (200, 405) and head.content == b""
    assert after.json()["method"] == "GET"


async def test_bytes_sent_after_an_answer_poison_only_that_connection() -> None:
    """A server that sends a second, unasked-for answer must not have it read as the
    answer to the next request (response desync)."""
    answer = (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"
              b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged")
    with raw_server(answer, close=False) as base:
        transport = KeepAliveTransport()
        async with httpx.AsyncClient(transport=transport, timeout=2) as client:
            assert (await client.get(f"{base}/")).text == "first"
            with contextlib.suppress(httpx.TransportError):
                second = await client.get(f"{base}/")
                assert second.text != "forged"


async def test_a_streamed_request_body_arrives_whole(url: str, make_client: MakeClient) -> None:
    async def parts() -> AsyncIterator[bytes]:
        for i in range(5):
            yield b"%d" % i * 1000

    async with make_client(timeout=5) as client:
        sent = await client.post(f"{url}/echo", content=parts())
        after = await client.post(f"{url}/echo", content=b"next")  # still in step
    assert sent.json()["size"] == 5000 and sent.json()["head"] == "0" * 20
    assert after.json()["head"] == "next"
