"""Schemathesis against the worker's OpenAPI: generated requests, signed, never a 5xx.

How: the schema comes from the app itself (``app.openapi()``: the served ``/openapi.json``
is off by default), and every generated request is signed by :class:`_SignedRequests`, a
``requests`` auth over the same :class:`nexus_common.signing.GridSigner` the master uses
(schemathesis sends with ``requests``). The worker runs with its normal auth on; only the
generate model is pointed at a path that does not exist, so a generated ``generate``
subtask fails fast instead of downloading a model. Examples are bounded
(``MAX_EXAMPLES`` per operation) to keep the run short.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from nexus_common.signing import GridSigner
from tests.support.servers import serve_app
from tests.worker.conftest import TOKEN, make_settings
from worker_node.main import create_app

MAX_EXAMPLES = 6


class _SignedRequests(requests.auth.AuthBase):
    """Signs a ``requests`` request exactly as SigningAuth signs an httpx one."""

    def __init__(self, secret: str) -> None:
        self.signer = GridSigner(secret)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        raw = request.body or b""
        body = raw.encode() if isinstance(raw, str) else raw
        if not isinstance(body, bytes) or request.method is None or request.url is None:
            raise TypeError("only complete requests with an in-memory body can be signed")
        request.headers.update(self.signer.headers(request.method, request.url,
                                                   request.path_url, body))
        return request


_app = create_app(make_settings(NADG_GENERATE_MODEL="/nonexistent/generate-model",
                                NADG_QUEUE_SIZE=64, NADG_SIGNED_RATE=0))
schema = schemathesis.openapi.from_dict(_app.openapi())


@pytest.fixture(scope="module")
def worker_url() -> Iterator[str]:
    with serve_app(_app) as url:
        yield url


def _bound_timeouts(body: Any) -> None:
    """Valid subtasks run for real: keep each one's timeout short."""
    for item in body if isinstance(body, list) else [body]:
        if isinstance(item, dict) and isinstance(item.get("timeout_s"), int | float) \
                and not isinstance(item["timeout_s"], bool):
            item["timeout_s"] = min(item["timeout_s"], 1.0)


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_5xx(case: Any, worker_url: str) -> None:
    _bound_timeouts(case.body)
    response = case.call(base_url=worker_url, auth=_SignedRequests(TOKEN), timeout=60)
    assert response.status_code < 500, (case.as_curl_command(), response.text[:500])
    assert response.status_code not in (401, 403), response.text  # signing itself works
