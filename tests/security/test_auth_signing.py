"""The signing contract itself (nexus_common.signing): every field is bound, nothing replays."""

from __future__ import annotations

import pytest

from nexus_common.signing import (
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TARGET,
    HEADER_TIMESTAMP,
    GridSigner,
    KeySource,
    NonceCache,
    SignatureRejected,
    Verifier,
    WeakSecret,
    body_sha256,
    canonical_origin,
    check_secret,
    derive_worker_key,
    issue_worker_key,
    key_id,
)

SECRET = "unit-grid-secret-0123456789abcdef-xyz"
OTHER = "another-grid-secret-0123456789abcdef-xyz"
URL = "http://10.0.0.7:7860"
NOW = 1_800_000_000.0


def _signed(signer: GridSigner | None = None, method: str = "POST",
            path: str = "/execute", body: bytes = b'{"a":1}', url: str = URL,
            now: float = NOW) -> dict[str, str]:
    return (signer or GridSigner(SECRET)).headers(method, url, path, body, now=now)


def _verifier(*sources: KeySource, identities: tuple[str, ...] = (URL,),
              clock: float = NOW) -> Verifier:
    return Verifier(sources or (KeySource.from_secret(SECRET),), identities,
                    clock=lambda: clock)


def test_a_signed_request_passes_and_its_body_is_checked() -> None:
    headers = _signed()
    verified = _verifier().verify("POST", "/execute", headers)
    Verifier.check_body(verified, b'{"a":1}')
    with pytest.raises(SignatureRejected, match="body does not match"):
        Verifier.check_body(verified, b'{"a":2}')


@pytest.mark.parametrize("method,path", [("GET", "/execute"), ("POST", "/execute/batch"),
                                         ("POST", "/execute?x=1")])
def test_method_and_path_are_bound(method: str, path: str) -> None:
    with pytest.raises(SignatureRejected) as info:
        _verifier().verify(method, path, _signed())
    assert info.value.status == 403


def test_every_signed_header_is_bound() -> None:
    for name, value in ((HEADER_TIMESTAMP, f"{NOW + 0.001:.3f}"), (HEADER_NONCE, "n" * 24),
                        (HEADER_SIGNATURE, "0" * 64)):
        headers = {**_signed(), name: value}
        with pytest.raises(SignatureRejected):
            _verifier().verify("POST", "/execute", headers)


def test_a_replayed_nonce_is_refused() -> None:
    verifier, headers = _verifier(), _signed()
    verifier.verify("POST", "/execute", headers)
    with pytest.raises(SignatureRejected, match="nonce already used") as info:
        verifier.verify("POST", "/execute", headers)
    assert info.value.status == 401


@pytest.mark.parametrize("skew", [-61.0, 61.0, 3600.0])
def test_a_stale_or_future_timestamp_is_refused(skew: float) -> None:
    with pytest.raises(SignatureRejected, match="stale request"):
        _verifier(clock=NOW + skew).verify("POST", "/execute", _signed())


def test_a_request_signed_for_another_worker_is_refused() -> None:
    # the target header names the other worker: this worker is not it
    headers = _signed(url="http://evil.example:7860")
    with pytest.raises(SignatureRejected, match="signed for http://evil.example:7860") as info:
        _verifier().verify("POST", "/execute", headers)
    assert info.value.status == 403
    # and rewriting the target header to this worker breaks the signature
    forged = {**headers, HEADER_TARGET: URL}
    with pytest.raises(SignatureRejected, match="bad signature"):
        _verifier().verify("POST", "/execute", forged)


def test_keys_are_per_worker() -> None:
    assert derive_worker_key(SECRET, URL) != derive_worker_key(SECRET, "http://10.0.0.8:7860")
    assert derive_worker_key(SECRET, URL) == derive_worker_key(SECRET, URL + "/")
    assert derive_worker_key(SECRET, URL) != derive_worker_key(OTHER, URL)


def test_an_issued_worker_key_verifies_only_its_own_target() -> None:
    source = KeySource.from_worker_key(issue_worker_key(SECRET, URL))
    assert source.kid == key_id(SECRET)
    verifier = Verifier([source], clock=lambda: NOW)  # knows no identity: the key is bound
    verifier.verify("POST", "/execute", _signed())
    with pytest.raises(SignatureRejected, match="bad signature"):
        verifier.verify("POST", "/execute", _signed(url="http://10.0.0.8:7860"))


def test_rotation_accepts_old_and_new_and_nothing_else() -> None:
    verifier = _verifier(KeySource.from_secret(OTHER), KeySource.from_secret(SECRET))
    verifier.verify("POST", "/execute", _signed(GridSigner(SECRET)))
    verifier.verify("POST", "/execute", _signed(GridSigner(OTHER)))
    with pytest.raises(SignatureRejected, match="unknown key id") as info:
        verifier.verify("POST", "/execute", _signed(GridSigner("third-secret-" + "z" * 32)))
    assert info.value.status == 403


def test_missing_headers_are_named() -> None:
    headers = _signed()
    del headers[HEADER_NONCE]
    with pytest.raises(SignatureRejected, match="missing X-NADG-Nonce") as info:
        _verifier().verify("POST", "/execute", headers)
    assert info.value.status == 401


def test_the_nonce_cache_is_bounded_and_never_forgets_into_a_replay() -> None:
    cache = NonceCache(max_entries=3)
    for i in range(3):
        assert cache.add(f"nonce-{i}", expires_at=100.0 + i, now=50.0) is None
    assert cache.add("nonce-3", expires_at=110.0, now=50.0) is None
    assert len(cache) == 3
    # nonce-0 was dropped; a replay of it (same expiry) is refused by the floor
    assert cache.add("nonce-0", expires_at=100.0, now=50.0) is not None
    # expired entries go, and the cache takes new ones
    assert cache.add("nonce-4", expires_at=200.0, now=150.0) is None
    assert len(cache) == 1


def test_short_secrets_are_refused_with_a_way_to_make_one() -> None:
    with pytest.raises(WeakSecret, match=r"secrets.token_urlsafe\(32\)"):
        check_secret("x" * 31)
    with pytest.raises(WeakSecret):
        GridSigner("t0ken")
    check_secret("x" * 32)


def test_canonical_origin() -> None:
    assert canonical_origin("HTTP://Example.COM:80/a/b?c") == "http://example.com"
    assert canonical_origin("https://h:443") == "https://h"
    assert canonical_origin("http://[::1]:8000/") == "http://[::1]:8000"
    with pytest.raises(ValueError, match="not an absolute"):
        canonical_origin("example.com")


def test_body_hash_header_is_the_sha256_of_the_body() -> None:
    headers = _signed(body=b"hello")
    assert headers["X-NADG-Content-SHA256"] == body_sha256(b"hello")


def test_requests_signed_before_a_restart_cannot_be_replayed_into_it() -> None:
    # a worker restarted at NOW: its nonce cache is empty, its floor is its start
    started = NOW
    verifier = Verifier([KeySource.from_secret(SECRET)], [URL], clock=lambda: NOW + 5,
                        nonces=NonceCache(floor=started + 60.0))
    with pytest.raises(SignatureRejected, match="signed before this worker started"):
        verifier.verify("POST", "/execute", _signed(now=NOW - 10))  # captured earlier
    verifier.verify("POST", "/execute", _signed(now=NOW + 4))  # signed since: fine
