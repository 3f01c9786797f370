"""Writes to /dev/shm, /tmp, /var/tmp and the worker's folders, and a disk filler.

Contained: with namespaces the run writes only its private tmpfs (one size bound over
/tmp, /dev/shm and /var/tmp); with Landlock only its run folder, whose size is polled;
with a per-run uid only world-writable folders, emptied after the run. After every run no
file of it is left on the host, and 320 MiB aimed at /dev/shm never stays in RAM.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from tests.security.sandbox_fleet import DISK_MB, Target

MIB = 1024 * 1024
ATTACK = r"""
import os
token, out = INPUT["token"], {}
for folder in ("/tmp", "/var/tmp", INPUT["outside"]):
    try:
        with open(os.path.join(folder, token), "wb") as f:
            f.write(b"x" * 1024 * 1024)
        out[folder] = "written"
    except OSError as exc:
        out[folder] = type(exc).__name__
shm = 0
try:
    for i in range(40):                      # 320 MiB into /dev/shm, 8 MiB a file
        with open(f"/dev/shm/{token}-{i}", "wb") as f:
            f.write(b"s" * 8 * 1024 * 1024)
        shm += 8 * 1024 * 1024
except OSError as exc:
    out["/dev/shm"] = type(exc).__name__
out["shm_bytes"] = shm
RESULT = out
"""
FILLER = r"""
import os
written = 0
try:
    for i in range(64):                      # 256 MiB into its own folder, 4 MiB a file
        with open(f"fill-{i}", "wb") as f:
            f.write(b"y" * 4 * 1024 * 1024)
        written += 4 * 1024 * 1024
except OSError as exc:
    RESULT = [written, type(exc).__name__]
else:
    RESULT = [written, None]
"""


def _leftovers(token: str) -> list[str]:
    found = []
    for folder in ("/tmp", "/var/tmp", "/dev/shm"):
        found += [os.path.join(folder, n) for n in os.listdir(folder) if token in n]
    return found


def test_writes_outside_the_private_area(target: Target) -> None:
    token = "nadg-write-" + secrets.token_hex(6)
    outside = target.home / "outside"
    outside.mkdir(exist_ok=True)
    outside.chmod(0o777)  # even a world-writable folder of the worker's
    try:
        answer = target.run(ATTACK, {"token": token, "outside": str(outside)})
        out = answer["output"]["result"]
        assert out is not None, answer
        if target.level in ("namespaces", "landlock"):
            assert out[str(outside)] != "written"
            assert out["shm_bytes"] <= DISK_MB * MIB
        if target.level == "landlock":
            assert out["/tmp"] == out["/var/tmp"] == out["/dev/shm"] == "PermissionError"
        if target.level == "uid":
            assert out[str(outside)] == "written"  # world-writable: permissions allow it
        if target.level != "process":
            assert _leftovers(token) == []  # private tmpfs gone, or the uid's files removed
    finally:
        for path in _leftovers(token):
            Path(path).unlink()
    target.assert_still_serves()


def test_total_size_is_bounded_not_per_file(target: Target) -> None:
    answer = target.run(FILLER, timeout_s=20)
    out = answer["output"]
    if out["result"] is not None:  # the tmpfs said "no space left"
        written, error = out["result"]
        assert error == "OSError" and written <= DISK_MB * MIB
    else:  # the run folder grew past the bound and the worker killed it
        assert "wrote more than" in (out["result_error"] or ""), out
    target.assert_still_serves()
