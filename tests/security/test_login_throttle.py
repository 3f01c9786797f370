"""Password guessing against the master's login from many addresses of one IPv6 host.

A host usually holds a whole IPv6 /64 and a fresh browser session costs nothing, so a
throttle keyed by single addresses let one attacker rotate through fresh addresses and
never be locked. Contained: the client key of an IPv6 address is its /64 (IPv4 and
IPv4-mapped addresses stay themselves), so the lockout holds across the rotation.
"""

from __future__ import annotations

import ipaddress
from types import SimpleNamespace
from typing import Any

import pytest

from master_app.ui import auth
from master_app.ui.throttle import LoginThrottle
from nexus_common.addresses import throttle_key as address_key


def _keys_as_the_app_builds_them(monkeypatch: pytest.MonkeyPatch, ip: str) -> list[str]:
    """``auth._throttle_keys`` for a fresh browser session from ``ip``."""
    fake: Any = SimpleNamespace(context=SimpleNamespace(ip_address=ip), session_state={})
    monkeypatch.setattr(auth, "st", fake)
    return auth._throttle_keys()  # noqa: SLF001 - the keys the login counts against


def test_rotating_ipv6_addresses_of_one_host_stays_locked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    throttle = LoginThrottle(free_failures=5, base_lockout_s=60.0)
    network = ipaddress.ip_network("2001:db8:7:1::/64")
    refused = 0
    for n in range(1, 51):  # 50 guesses, each from a fresh session and a fresh address
        keys = _keys_as_the_app_builds_them(monkeypatch, str(network[n * 7919]))
        if throttle.attempt(keys) > 0:
            refused += 1
    assert refused == 45  # 5 free failures, then locked whatever the address
    other_host = _keys_as_the_app_builds_them(monkeypatch, "2001:db8:7:2::1")
    assert throttle.attempt(other_host) == 0  # another /64 is not locked out


def test_client_keys() -> None:
    assert address_key("2001:db8::1") == address_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert address_key("203.0.113.9") == "203.0.113.9"
    assert address_key("::ffff:203.0.113.9") == "203.0.113.9"
    assert address_key("not-an-ip") == "not-an-ip"


def test_a_viewer_sign_in_does_not_reset_the_lockout_of_operator_guesses() -> None:
    """Whoever holds the viewer password must not get unlimited operator guesses by
    signing in as a viewer between them."""
    throttle = LoginThrottle(free_failures=5, base_lockout_s=30)
    keys = ["session:a", "client:203.0.113.9"]
    for _ in range(4):  # four wrong operator guesses
        assert throttle.attempt(keys) == 0
    assert throttle.attempt(keys) == 0  # the viewer password: counted in advance...
    throttle.refund(keys)  # ...then refunded, not reset
    assert throttle.failures("client:203.0.113.9") == 4
    # the next wrong guess, from a fresh session, locks as if the viewer had not signed in
    assert throttle.failed(["session:b", "client:203.0.113.9"]) > 0
