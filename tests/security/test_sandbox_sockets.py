"""A run that reaches host services by socket: a Unix socket by path, UDP on loopback.

A Unix socket is a file: a network namespace does not hide it, a read-only mount does not
stop ``connect`` to it, and Landlock (up to ABI 7) does not govern it. A PostgreSQL socket
with trust or peer auth (``/var/run/postgresql``, 0777) gave a run the whole registry at
every level; a root-owned Docker socket would give the host. UDP was open wherever no
network namespace was. Contained: a seccomp filter refuses every socket but netlink, so
nothing reaches the listeners below, and the worker still serves.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.sandbox_fleet import Target

REACH = r"""
import socket
out = {}
try:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(3)
    s.connect(INPUT["unix"])
    s.sendall(b"stolen")
    out["unix"] = "connected"
except OSError as exc:
    out["unix"] = type(exc).__name__
try:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b"stolen", ("127.0.0.1", INPUT["udp"]))
    out["udp"] = "sent"
except OSError as exc:
    out["udp"] = type(exc).__name__
RESULT = out
"""


@pytest.fixture(scope="module")
def services() -> Iterator[tuple[socket.socket, socket.socket, str]]:
    """A world-connectable Unix socket outside every run's private area, and a UDP port."""
    if os.geteuid() != 0:
        pytest.skip("the host service's socket goes in /run (root only)")
    folder = Path(tempfile.mkdtemp(prefix="nadg-attack-", dir="/run"))
    folder.chmod(0o755)
    path = str(folder / "service.sock")
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(path)
    os.chmod(path, 0o777)  # like PostgreSQL's socket
    unix.listen(8)
    unix.settimeout(0.2)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.2)
    try:
        yield unix, udp, path
    finally:
        unix.close()
        udp.close()
        shutil.rmtree(folder, ignore_errors=True)


def _arrived(server: socket.socket, udp: bool) -> bool:
    try:
        if udp:
            server.recvfrom(64)
        else:
            server.accept()[0].close()
    except TimeoutError:
        return False
    return True


def test_no_host_service_is_reachable_by_socket(
        target: Target, services: tuple[socket.socket, socket.socket, str]) -> None:
    unix, udp, path = services
    answer = target.run(REACH, {"unix": path, "udp": udp.getsockname()[1]})
    out = answer["output"]["result"]
    assert out == {"unix": "PermissionError", "udp": "PermissionError"}, answer
    assert not _arrived(unix, udp=False)
    assert not _arrived(udp, udp=True)
    target.assert_still_serves()
