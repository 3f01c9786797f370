"""Request signing between the master (or an operator) and a worker: the one place that
signs and the one place that verifies. Both deployables import it.

A request carries these headers (all ASCII)::

    X-NADG-Key-Id          which grid secret the key comes from (a fingerprint of it)
    X-NADG-Target          the worker origin the request is addressed to (scheme://host[:port])
    X-NADG-Timestamp       unix seconds when it was signed (milliseconds as decimals)
    X-NADG-Nonce           random, used once
    X-NADG-Content-SHA256  hex SHA-256 of the body
    X-NADG-Signature       hex HMAC-SHA256(worker key, string to sign)

The worker key is per target: ``HKDF-SHA256(ikm=grid secret, salt="NADG-worker-key-v1",
info=target)``. A worker that holds only its own key (``NADG_WORKER_KEY``, issued with
:func:`issue_worker_key`) can verify requests addressed to it and nothing else, so a
compromised worker exposes only itself; a request signed for one URL is refused by every
other worker. The string to sign binds method, path and query, body hash, timestamp,
nonce, target and key id, so nothing in a captured request can be changed or replayed
(the worker remembers nonces for the whole freshness window).

Before the master sends work to a worker it asks for a proof (``POST /auth/prove``): the
worker answers ``HMAC(key, "NADG-PROVE-v1" | target | challenge)``, which only a holder
of the target's key can compute (:func:`proof_of_key`).

Exceptions::

    ValueError
    ├── WeakSecret            a secret shorter than 32 bytes
    └── SignatureRejected     a request that must not pass (``status`` 401 or 403)
"""

from __future__ import annotations

import base64
import functools
import hashlib
import heapq
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

HEADER_KEY_ID = "X-NADG-Key-Id"
HEADER_TARGET = "X-NADG-Target"
HEADER_TIMESTAMP = "X-NADG-Timestamp"
HEADER_NONCE = "X-NADG-Nonce"
HEADER_CONTENT_SHA256 = "X-NADG-Content-SHA256"
HEADER_SIGNATURE = "X-NADG-Signature"

SCHEME = "NADG-HMAC-SHA256-v1"
MIN_SECRET_BYTES = 32
DEFAULT_MAX_SKEW_S = 60.0
MAKE_SECRET = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'

_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,6})?$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class WeakSecret(ValueError):
    """A secret is shorter than :data:`MIN_SECRET_BYTES`."""


class SignatureRejected(ValueError):
    """A request that must not pass; ``status`` is the HTTP answer (401 or 403)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_secret(value: str, name: str = "NADG_AUTH_TOKEN") -> None:
    """Raise :class:`WeakSecret` unless ``value`` has at least 32 bytes (UTF-8)."""
    size = len(value.encode())
    if size < MIN_SECRET_BYTES:
        raise WeakSecret(
            f"{name} is {size} bytes long; secrets must be at least {MIN_SECRET_BYTES} bytes. "
            f"Make one with: {MAKE_SECRET}")


@functools.lru_cache(maxsize=1024)
def canonical_origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, lower case, default port dropped.

    This is a worker's identity: the master signs for the origin it dials, and a worker
    accepts only its own.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if not scheme or not host:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def key_id(secret: str) -> str:
    """A public fingerprint of a grid secret (says which secret signed; reveals nothing)."""
    digest = hashlib.sha256(b"NADG-key-id-v1\0" + secret.encode()).hexdigest()
    return "g" + digest[:16]


def derive_worker_key(secret: str, target: str) -> bytes:
    """The 32-byte key of the worker at ``target`` (HKDF-SHA256, RFC 5869, one block)."""
    return _derive(secret, canonical_origin(target))


@functools.lru_cache(maxsize=256)
def _derive(secret: str, origin: str) -> bytes:
    prk = hmac.new(b"NADG-worker-key-v1", secret.encode(), hashlib.sha256).digest()
    return hmac.new(prk, origin.encode() + b"\x01", hashlib.sha256).digest()


def issue_worker_key(secret: str, target: str) -> str:
    """The value of ``NADG_WORKER_KEY`` for the worker at ``target``: ``<key id>:<key>``.

    A worker configured with it (instead of the grid secret) verifies the master's requests
    to that URL and can be lifted without exposing any other worker.
    """
    check_secret(secret)
    key = derive_worker_key(secret, target)
    return f"{key_id(secret)}:{base64.urlsafe_b64encode(key).decode().rstrip('=')}"


def parse_worker_key(value: str, name: str = "NADG_WORKER_KEY") -> tuple[str, bytes]:
    """Split a ``NADG_WORKER_KEY`` value into (key id, key); ValueError saying what is wrong."""
    kid, _, encoded = value.strip().partition(":")
    try:
        key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except ValueError as exc:
        raise ValueError(f"{name} is not '<key id>:<base64 key>': {exc}") from None
    if not kid or len(key) != 32:
        raise ValueError(f"{name} must be '<key id>:<base64 key>' as printed by "
                         "`nexus worker-key URL`")
    return kid, key


def body_sha256(body: bytes) -> str:
    """Hex SHA-256 of a request body."""
    return hashlib.sha256(body).hexdigest()


def string_to_sign(method: str, path: str, content_sha256: str, timestamp: str, nonce: str,
                   target: str, kid: str) -> bytes:
    """What the signature covers, one field a line."""
    return "\n".join([SCHEME, method.upper(), path, content_sha256, timestamp, nonce,
                      target, kid]).encode()


def _mac(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def proof_of_key(key: bytes, target: str, challenge: str) -> str:
    """A worker's answer to a challenge: proves it holds the key of ``target``."""
    return _mac(key, f"NADG-PROVE-v1\n{target}\n{challenge}".encode())


def new_challenge() -> str:
    """A fresh random challenge for :func:`proof_of_key`."""
    return secrets.token_urlsafe(24)


class GridSigner:
    """Signs requests with keys derived from the grid secret (master and operators)."""

    def __init__(self, secret: str) -> None:
        check_secret(secret)
        self._secret = secret
        self.kid = key_id(secret)
        self._keys: dict[str, bytes] = {}

    def key_for(self, target: str) -> bytes:
        """The key of the worker at ``target`` (cached)."""
        target = canonical_origin(target)
        key = self._keys.get(target)
        if key is None:
            key = self._keys[target] = derive_worker_key(self._secret, target)
        return key

    def headers(self, method: str, url: str, path: str, body: bytes, *,
                now: float | None = None, nonce: str | None = None) -> dict[str, str]:
        """The signing headers of one request to ``url`` (its origin is the target)."""
        target = canonical_origin(url)
        timestamp = f"{time.time() if now is None else now:.3f}"
        nonce = nonce or secrets.token_urlsafe(18)
        content = body_sha256(body)
        message = string_to_sign(method, path, content, timestamp, nonce, target, self.kid)
        return {HEADER_KEY_ID: self.kid, HEADER_TARGET: target, HEADER_TIMESTAMP: timestamp,
                HEADER_NONCE: nonce, HEADER_CONTENT_SHA256: content,
                HEADER_SIGNATURE: _mac(self.key_for(target), message)}

    def expected_proof(self, url: str, challenge: str) -> str:
        """What the worker at ``url`` must answer to ``challenge``."""
        target = canonical_origin(url)
        return proof_of_key(self.key_for(target), target, challenge)


class SigningAuth(httpx.Auth):
    """``httpx`` auth that signs every request for the worker it is sent to.

    ``httpx.Client(auth=SigningAuth(secret))`` is all a script needs; nobody builds the
    headers by hand.
    """

    requires_request_body = True

    def __init__(self, signer: GridSigner | str) -> None:
        self.signer = signer if isinstance(signer, GridSigner) else GridSigner(signer)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        path = request.url.raw_path.decode("ascii")
        request.headers.update(self.signer.headers(request.method, str(request.url), path,
                                                   request.content))
        yield request


@dataclass(frozen=True)
class KeySource:
    """One way a worker knows keys: the grid secret (any target) or one issued key."""

    kid: str
    secret: str | None = None
    fixed_key: bytes | None = None

    @classmethod
    def from_secret(cls, secret: str) -> KeySource:
        """Keys derived from a grid secret."""
        return cls(kid=key_id(secret), secret=secret)

    @classmethod
    def from_worker_key(cls, value: str, name: str = "NADG_WORKER_KEY") -> KeySource:
        """One issued key (``NADG_WORKER_KEY``), bound to the target it was issued for."""
        kid, key = parse_worker_key(value, name)
        return cls(kid=kid, fixed_key=key)

    @property
    def bound(self) -> bool:
        """True for an issued key: it verifies only requests to its own target."""
        return self.fixed_key is not None

    def key_for(self, target: str) -> bytes:
        """The key that verifies requests to ``target``."""
        if self.fixed_key is not None:
            return self.fixed_key
        if self.secret is None:
            raise ValueError(f"key source {self.kid} has neither a secret nor a key")
        return derive_worker_key(self.secret, target)


@dataclass(frozen=True)
class Verified:
    """A request whose headers passed; its body is still to be checked."""

    kid: str
    target: str
    key: bytes
    content_sha256: str


class NonceCache:
    """Nonces seen within the freshness window, bounded in size.

    When full, the entry that expires first is dropped and the *floor* rises to its
    expiry: a request expiring at or before the floor is refused as too old, so no dropped
    nonce can ever be replayed. ``floor`` starts where the caller says: a worker starts it
    so that requests signed before the worker started are refused (the nonces seen by a
    previous run of the process are gone, so their requests must not be replayable).
    """

    def __init__(self, max_entries: int = 100_000, floor: float = 0.0) -> None:
        self.max_entries = max_entries
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._floor = floor
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._expiry)

    def add(self, nonce: str, expires_at: float, now: float) -> str | None:
        """Record ``nonce``; the reason it is refused (seen, or older than the floor)."""
        with self._lock:
            while self._heap and self._heap[0][0] < now:
                _, old = heapq.heappop(self._heap)
                self._expiry.pop(old, None)
            if expires_at <= self._floor:
                return ("signed before this worker started, or older than its replay window: "
                        "sign the request again (and check the clocks if this repeats)")
            if nonce in self._expiry:
                return "nonce already used: a replayed request"
            self._expiry[nonce] = expires_at
            heapq.heappush(self._heap, (expires_at, nonce))
            while len(self._expiry) > self.max_entries:
                expiry, old = heapq.heappop(self._heap)
                self._expiry.pop(old, None)
                self._floor = max(self._floor, expiry)
            return None


class Verifier:
    """Checks signed requests on a worker.

    ``sources`` lists the key sources (current first, then the previous during a
    rotation); ``identities`` are the origins this worker answers as (its public URL).
    When it has none, ``verify`` is given the local socket's origin instead.
    """

    def __init__(self, sources: Iterable[KeySource], identities: Iterable[str] = (), *,
                 max_skew_s: float = DEFAULT_MAX_SKEW_S, nonces: NonceCache | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.sources = {source.kid: source for source in sources}
        self.identities = frozenset(canonical_origin(i) for i in identities)
        self.max_skew_s = max_skew_s
        self.nonces = nonces if nonces is not None else NonceCache()
        self.clock = clock

    def verify(self, method: str, path: str, headers: Mapping[str, str],
               local_origins: Iterable[str] = ()) -> Verified:
        """Check the signing headers (no body needed); raise :class:`SignatureRejected`."""
        values = {name: headers.get(name) for name in (
            HEADER_KEY_ID, HEADER_TARGET, HEADER_TIMESTAMP, HEADER_NONCE,
            HEADER_CONTENT_SHA256, HEADER_SIGNATURE)}
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise SignatureRejected(401, f"unsigned or incomplete request: missing "
                                         f"{', '.join(missing)}; call workers through the "
                                         "signing client (`nexus call`, SigningAuth)")
        kid, target, stamp, nonce, content, signature = (str(v) for v in values.values())
        source = self.sources.get(kid)
        if source is None:
            raise SignatureRejected(403, f"unknown key id {kid!r}: the master's "
                                         "NADG_AUTH_TOKEN is not this worker's (nor its "
                                         "NADG_AUTH_TOKEN_PREVIOUS)")
        now = self.clock()
        if not _TIMESTAMP.match(stamp):
            raise SignatureRejected(401, f"{HEADER_TIMESTAMP} must be unix seconds")
        signed_at = float(stamp)
        if abs(now - signed_at) > self.max_skew_s:
            raise SignatureRejected(401, f"stale request: signed at {int(signed_at)}, worker "
                                         f"time {int(now)} (more than {self.max_skew_s:g} s "
                                         "apart): a replay, or a clock to fix (NTP)")
        if not _NONCE.match(nonce) or not _HEX64.match(content) \
                or not _HEX64.match(signature.lower()):
            raise SignatureRejected(401, "malformed nonce, content hash or signature")
        target = self._check_target(target, source, local_origins)
        key = source.key_for(target)
        message = string_to_sign(method, path, content, stamp, nonce, target, kid)
        if not hmac.compare_digest(_mac(key, message), signature.lower()):
            raise SignatureRejected(403, "bad signature: the request was changed, signed for "
                                         "another worker, or signed with another secret")
        refused = self.nonces.add(nonce, signed_at + self.max_skew_s, now)
        if refused is not None:
            raise SignatureRejected(401, refused)
        return Verified(kid=kid, target=target, key=key, content_sha256=content)

    def _check_target(self, target: str, source: KeySource,
                      local_origins: Iterable[str]) -> str:
        try:
            target = canonical_origin(target)
        except ValueError:
            raise SignatureRejected(401, f"{HEADER_TARGET} is not a URL origin") from None
        if source.bound:  # an issued key verifies only its own target
            return target
        allowed = self.identities or frozenset(canonical_origin(o) for o in local_origins)
        if target not in allowed:
            raise SignatureRejected(403, f"request signed for {target}, but this worker is "
                                         f"{', '.join(sorted(allowed)) or 'unknown'}: refused "
                                         "(a request meant for another worker); set "
                                         "NADG_PUBLIC_URL to the URL the master dials")
        return target

    @staticmethod
    def check_body(verified: Verified, body: bytes) -> None:
        """Raise :class:`SignatureRejected` unless ``body`` is the body that was signed."""
        if not hmac.compare_digest(body_sha256(body), verified.content_sha256):
            raise SignatureRejected(403, "body does not match its signed hash: the request "
                                         "was changed on the way")
