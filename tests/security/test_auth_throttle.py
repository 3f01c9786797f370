"""Throttling on a real worker: guessing secrets gets 429s, legacy clients have a budget,
signed traffic a configurable one (defaults in worker_node.settings)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from nexus_common.protocol import AUTH_HEADER
from nexus_common.signing import SigningAuth
from tests.support.servers import serve_app
from tests.worker.conftest import TOKEN, make_settings, subtask
from worker_node.auth import client_key
from worker_node.main import create_app
from worker_node.throttle import AuthThrottle

WRONG = "a-wrong-grid-secret-guessed-by-attacker-000"
DEFAULT_BUDGET = {"NADG_AUTH_FAIL_BURST": 10}  # make_settings raises it for the shared worker


def _serve(**overrides: object) -> Iterator[str]:
    with serve_app(create_app(make_settings(**{**DEFAULT_BUDGET, **overrides}))) as url:
        yield url


async def _burst(url: str, n: int, **kwargs: object) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30, **kwargs) as client:  # type: ignore[arg-type]
        return list(await asyncio.gather(*(client.post("/execute", json=subtask(
            "noop", {"echo": i}, sid=f"g{i}")) for i in range(n))))


@pytest.mark.parametrize("attack", ["wrong-secret", "wrong-bearer", "unsigned"])
def test_a_burst_of_200_wrong_credentials_gets_429s(attack: str) -> None:
    kwargs: dict[str, object] = {
        "wrong-secret": {"auth": SigningAuth(WRONG)},
        "wrong-bearer": {"headers": {AUTH_HEADER: "guess"}},
        "unsigned": {},
    }[attack]  # type: ignore[assignment]
    for url in _serve(NADG_COMPAT_V1=True):
        responses = asyncio.run(_burst(url, 200, **kwargs))
        codes = Counter(r.status_code for r in responses)
        assert codes[429] >= 185, codes  # at most the burst of 10 is even looked at
        assert set(codes) <= {401, 403, 429}, codes
        assert codes[401] + codes[403] <= 10, codes
        limited = next(r for r in responses if r.status_code == 429)
        assert int(limited.headers["Retry-After"]) >= 1
        assert "too many failed authentications" in limited.json()["error"]
        # the address stays locked for anything unsigned or wrongly signed ...
        assert httpx.get(f"{url}/status", timeout=30).status_code == 429
        assert httpx.get(f"{url}/status", auth=SigningAuth(WRONG),
                         timeout=30).status_code == 429
        # ... but the master (right signature), maybe behind the same proxy, is served
        right = httpx.get(f"{url}/status", auth=SigningAuth(TOKEN), timeout=30)
        assert right.status_code == 200
        # /health stays open for probes
        assert httpx.get(f"{url}/health", timeout=30).status_code == 200


def test_legacy_bearer_clients_get_60_a_minute_burst_10() -> None:
    for url in _serve(NADG_COMPAT_V1=True):
        with httpx.Client(base_url=url, headers={AUTH_HEADER: TOKEN}, timeout=30) as client:
            codes = [client.get("/status").status_code for _ in range(14)]
        assert codes[:10] == [200] * 10
        assert set(codes[10:]) == {429}


def test_signed_traffic_has_its_own_budget() -> None:
    for url in _serve(NADG_SIGNED_RATE=0.5, NADG_SIGNED_BURST=3):
        with httpx.Client(base_url=url, auth=SigningAuth(TOKEN), timeout=30) as client:
            codes = [client.get("/status").status_code for _ in range(5)]
        assert codes[:3] == [200] * 3 and set(codes[3:]) == {429}


def test_the_default_signed_budget_takes_a_benchmark_burst() -> None:
    for url in _serve():
        responses = asyncio.run(_burst(url, 300, auth=SigningAuth(TOKEN)))
        # the worker's own queue may answer 503 to some; the auth budget answers no 429
        assert not [r for r in responses if r.status_code == 429]


def test_ipv6_clients_are_counted_per_64() -> None:
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert client_key("2001:db8:0:1::1") != client_key("2001:db8::1")
    assert client_key("127.0.0.1") == "127.0.0.1"
    assert client_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert client_key("testclient") == "testclient"


def test_the_failure_budget_refills_over_time() -> None:
    now = [0.0]
    throttle = AuthThrottle(fail_burst=10, fail_per_minute=10, clock=lambda: now[0])
    for _ in range(10):
        assert throttle.blocked("1.2.3.4") is None
        throttle.failed("1.2.3.4")
    wait = throttle.blocked("1.2.3.4")
    assert wait is not None and 5.9 <= wait <= 6.0
    assert throttle.blocked("5.6.7.8") is None  # per address
    now[0] = 6.0
    assert throttle.blocked("1.2.3.4") is None
