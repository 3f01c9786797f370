"""The worker's request authentication: a pure ASGI middleware in front of every route.

Order of checks for a request to anything but the public paths (``/health``, ``/``):

1. signed request (``X-NADG-Signature``): key id, target, timestamp, nonce and the
   signature are checked from the headers alone, so no body is read for a client that
   cannot sign; then the signed-traffic budget; then the body is read (bounded) and its
   hash compared with the signed one;
2. bearer token (``X-NADG-AUTH`` or ``Authorization: Bearer``): accepted only with
   ``NADG_COMPAT_V1=1`` (logged as a warning), within the legacy budget;
3. anything else: 401.

Every refusal counts against the address's failure budget; once it is spent, refusals
become 429 with ``Retry-After`` and unsigned requests are not even looked at. A correctly
signed request still passes from a locked address: behind a proxy (a Space) every client
shares the proxy's address, and an attacker's failures must not lock the master out
(a signature costs one HMAC to check, and a 256-bit secret is not guessed at any rate).
IPv6 clients are counted per /64, the block one host usually holds. A request that passes carries
its :class:`AuthContext` in ``scope["state"]["nadg_auth"]``, which the routes' ``AuthDep``
requires.
"""

from __future__ import annotations

import functools
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nexus_common.addresses import throttle_key as client_key
from nexus_common.protocol import AUTH_HEADER, ErrorResponse
from nexus_common.signing import (
    HEADER_SIGNATURE,
    KeySource,
    NonceCache,
    SignatureRejected,
    Verified,
    Verifier,
    canonical_origin,
)
from worker_node.settings import WorkerSettings
from worker_node.state import WorkerState
from worker_node.throttle import AuthThrottle, retry_after

logger = logging.getLogger(__name__)

#: Paths that answer without authentication.
PUBLIC_PATHS = frozenset({"/health", "/"})
SCOPE_KEY = "nadg_auth"


@dataclass(frozen=True)
class AuthContext:
    """How a request was authenticated: ``signed`` (with the verified key), ``bearer``
    (legacy, compat mode) or ``insecure`` (a worker without a secret)."""

    method: str
    verified: Verified | None = None


class AuthGuard:
    """Verifier, throttle and legacy tokens built from one worker's settings."""

    def __init__(self, settings: WorkerSettings, started_at: float | None = None) -> None:
        """``started_at``: when the worker started (unix time; default now)."""
        self.settings = settings
        self.insecure = not settings.has_secret
        sources: list[KeySource] = []
        for secret in (settings.auth_token, settings.auth_token_previous):
            if secret is not None and secret.get_secret_value():
                sources.append(KeySource.from_secret(secret.get_secret_value()))
        for name, key in (("NADG_WORKER_KEY", settings.worker_key),
                          ("NADG_WORKER_KEY_PREVIOUS", settings.worker_key_previous)):
            if key is not None and key.get_secret_value():
                sources.append(KeySource.from_worker_key(key.get_secret_value(), name))
        public = settings.resolved_public_url
        # requests signed before this process started cannot be replayed into it: the
        # nonces an earlier run saw are gone
        floor = (time.time() if started_at is None else started_at) + settings.auth_max_skew_s
        self.verifier = Verifier(sources, [public] if public else [],
                                 max_skew_s=settings.auth_max_skew_s,
                                 nonces=NonceCache(settings.nonce_cache_size, floor=floor))
        self.legacy_tokens = [s.get_secret_value().encode() for s in
                              (settings.auth_token, settings.auth_token_previous)
                              if s is not None and s.get_secret_value()]
        self.throttle = AuthThrottle(
            fail_burst=settings.auth_fail_burst, fail_per_minute=settings.auth_fail_per_minute,
            legacy_per_minute=settings.legacy_per_minute, legacy_burst=settings.legacy_burst,
            signed_per_s=settings.signed_rate_per_s, signed_burst=settings.signed_burst)
        self._warned: set[str] = set()
        logger.info("auth: %s; answers as %s; key ids %s%s",
                    "no secret (INSECURE)" if self.insecure else "signed requests",
                    public or "the address it listens on (no NADG_PUBLIC_URL)",
                    ", ".join(s.kid + (" (own key)" if s.bound else "") for s in sources)
                    or "none", "; original bearer header accepted (NADG_COMPAT_V1=1)"
                    if settings.compat_v1 else "")

    def legacy_ok(self, headers: Headers) -> bool:
        """True when a presented bearer token is the grid secret (constant time, all)."""
        presented = []
        bearer = headers.get("authorization")
        if bearer and bearer.lower().startswith("bearer "):
            presented.append(bearer[7:].strip().encode())
        original = headers.get(AUTH_HEADER)
        if original is not None:
            presented.append(original.encode())
        matches = [hmac.compare_digest(p, t) for p in presented for t in self.legacy_tokens]
        return any(matches)

    def warn_legacy(self, address: str) -> None:
        """Log once per address that it uses the original bearer header."""
        if address not in self._warned and len(self._warned) < 10_000:
            self._warned.add(address)
            logger.warning("client %s authenticated with the original bearer token "
                           "(NADG_COMPAT_V1=1): it can be replayed; move it to signed "
                           "requests (`nexus call`, nexus_common.signing.SigningAuth)", address)


def local_origins(scope: Scope) -> list[str]:
    """The origins of the socket this request arrived on (a worker with no public URL
    answers as these): ``scheme://host:port``, plus ``localhost`` on loopback."""
    server = scope.get("server")
    if not server or server[1] is None:
        return []
    return list(_origins_of(scope.get("scheme", "http"), server[0], server[1]))


@functools.lru_cache(maxsize=64)
def _origins_of(scheme: str, host: str, port: int) -> tuple[str, ...]:
    host_part = f"[{host}]" if ":" in host else host
    origins = [f"{scheme}://{host_part}:{port}"]
    if host in ("127.0.0.1", "::1"):
        origins.append(f"{scheme}://localhost:{port}")
    return tuple(canonical_origin(o) for o in origins)


class RequestAuth:
    """Pure ASGI middleware: authenticate and throttle every non-public request."""

    def __init__(self, app: ASGIApp, limit: Callable[[], int]) -> None:
        self.app = app
        self.limit = limit
        self._guard: AuthGuard | None = None

    def guard(self, worker: WorkerState) -> AuthGuard:
        """The guard of this worker's settings (built once per app)."""
        if self._guard is None or self._guard.settings is not worker.settings:
            self._guard = AuthGuard(worker.settings, time.time() - worker.uptime_s)
        return self._guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        worker = getattr(scope["app"].state, "worker", None) \
            if scope["type"] == "http" and "app" in scope else None
        if worker is None or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        guard = self.guard(worker)
        if guard.insecure:
            scope.setdefault("state", {})[SCOPE_KEY] = AuthContext("insecure")
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = client_key(str(client[0])) if client else "unknown"
        headers = Headers(scope=scope)
        if headers.get(HEADER_SIGNATURE):
            await self._signed(scope, receive, send, guard, headers, address)
            return
        wait = guard.throttle.blocked(address)
        if wait is not None:
            await _locked(send, wait)
            return
        if headers.get("authorization") or headers.get(AUTH_HEADER) is not None:
            await self._bearer(scope, receive, send, guard, headers, address)
        else:
            guard.throttle.failed(address)
            await _answer(send, 401, "unauthenticated: requests to a worker are signed; "
                                     "call it through the signing client (`nexus call URL "
                                     "KIND PAYLOAD`, or nexus_common.signing.SigningAuth)",
                          {"WWW-Authenticate": "NADG-HMAC-SHA256"})

    async def _signed(self, scope: Scope, receive: Receive, send: Send, guard: AuthGuard,
                      headers: Headers, address: str) -> None:
        path = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            path += b"?" + scope["query_string"]
        try:
            verified = guard.verifier.verify(scope["method"], path.decode("latin-1"), headers,
                                             local_origins(scope))
        except SignatureRejected as exc:
            wait = guard.throttle.blocked(address)
            guard.throttle.failed(address)
            logger.info("refused a signed request from %s: %s", address, exc.message)
            if wait is not None:
                await _locked(send, wait)
            else:
                await _answer(send, exc.status, exc.message)
            return
        wait = guard.throttle.signed_request(address)
        if wait is not None:
            await _answer(send, 429, "signed request budget spent (NADG_SIGNED_RATE); "
                                     "retry later", {"Retry-After": retry_after(wait)})
            return
        body = await _read_body(receive, self.limit())
        if body is None:
            await _answer(send, 413, f"request body too large; this worker accepts at most "
                                     f"{self.limit()} bytes: split the work into smaller "
                                     "subtasks")
            return
        try:
            Verifier.check_body(verified, body)
        except SignatureRejected as exc:
            guard.throttle.failed(address)
            await _answer(send, exc.status, exc.message)
            return
        scope.setdefault("state", {})[SCOPE_KEY] = AuthContext("signed", verified)
        await self.app(scope, _replay(body, receive), send)

    async def _bearer(self, scope: Scope, receive: Receive, send: Send, guard: AuthGuard,
                      headers: Headers, address: str) -> None:
        if not guard.settings.compat_v1:
            guard.throttle.failed(address)
            await _answer(send, 401, f"bearer tokens ({AUTH_HEADER}, Authorization) are not "
                                     "accepted: requests are signed now (`nexus call`); a "
                                     "worker accepts the original header only with "
                                     "NADG_COMPAT_V1=1")
            return
        if not guard.legacy_ok(headers):
            guard.throttle.failed(address)
            await _answer(send, 403, "wrong token: use the grid's NADG_AUTH_TOKEN")
            return
        wait = guard.throttle.legacy_request(address)
        if wait is not None:
            await _answer(send, 429, "legacy (unsigned) client budget spent: 60 requests a "
                                     "minute; sign requests for more",
                          {"Retry-After": retry_after(wait)})
            return
        guard.warn_legacy(address)
        scope.setdefault("state", {})[SCOPE_KEY] = AuthContext("bearer")
        await self.app(scope, receive, send)


async def _locked(send: Send, wait: float) -> None:
    await _answer(send, 429, "too many failed authentications from this address; retry "
                             "later", {"Retry-After": retry_after(wait)})


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None once it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replayed


async def _answer(send: Send, status: int, message: str,
                  extra: dict[str, str] | None = None) -> None:
    body = ErrorResponse(error=message).model_dump_json().encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    headers += [(k.lower().encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
