"""Outbound connections from the sandbox: off by default, on with NADG_SANDBOX_NETWORK=1.

A network namespace has no interface at all; Landlock (ABI 4+) refuses TCP connect and
bind; on every level a seccomp filter refuses every socket but netlink (so the ``uid`` and
``process`` levels are off too, and no level reaches a host service's Unix socket).
The opt-in itself is tested on the sandbox directly (tests/worker/test_sandbox_levels.py).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.security.sandbox_fleet import Target

CONNECT = r"""
import socket
try:
    socket.create_connection(("127.0.0.1", INPUT), timeout=3).close()
    RESULT = "connected"
except OSError as exc:
    RESULT = type(exc).__name__
"""


@pytest.fixture(scope="module")
def listener() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield int(server.getsockname()[1])


def test_outbound_network_is_off_by_default(target: Target, listener: int) -> None:
    result = target.run(CONNECT, listener)["output"]["result"]
    report = target.status()["sandbox"]["network"]
    assert result != "connected", report  # every level: netns, Landlock or seccomp
    assert report.startswith("off"), report
    target.assert_still_serves()
