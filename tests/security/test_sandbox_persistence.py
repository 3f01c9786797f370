"""What a run could leave behind or take back after its sandbox is set up.

* System V shared memory outlives its process: a segment created and touched by a run
  stays in RAM (and readable by the next run of that uid) until someone removes it. Without
  an IPC namespace (landlock, uid and process levels) a run may not create one (seccomp);
  with one, the segment dies with the namespace. Either way none is left on the host.
* A key added to the user keyring outlives the run too: the next run given the same pool
  uid (or any run of a non-root worker) read it. Refused without a user namespace.
* Uid 0 of a user namespace gets every capability back on ``exec``: a payload mapped to
  uid 0 without Landlock could exec itself, make ``/`` writable again and write the host's
  files as root. ``configure`` never maps a root worker's run to uid 0 (it gets a pool
  uid), so this guards the invariant rather than a reachable level: ``no_new_privs`` is
  set on every payload, and no exec gains a capability.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.security.sandbox_fleet import Target
from worker_node import sandbox
from worker_node.sandbox_isolation import Isolation
from worker_node.sandbox_runner import EXIT_SETUP_FAILED

SHM = r"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
made = []
for _ in range(3):
    sid = libc.shmget(0, INPUT, 0o1000 | 0o666)        # IPC_PRIVATE, IPC_CREAT
    if sid < 0:
        made.append(-ctypes.get_errno())
        break
    addr = libc.shmat(sid, None, 0)
    ctypes.memset(addr, 1, INPUT)                      # really in RAM now
    libc.shmdt(ctypes.c_void_p(addr))
    made.append(sid)
RESULT = made
"""


def _host_segments_of_size(size: int) -> list[str]:
    with open("/proc/sysvipc/shm", encoding="ascii") as f:
        return [line for line in f.readlines()[1:] if line.split()[3] == str(size)]


def test_system_v_shared_memory_does_not_outlive_the_run(target: Target) -> None:
    size = 4096 * (4096 + secrets.randbelow(4096))  # 16-32 MiB, unique to this test
    try:
        answer = target.run(SHM, size)
        assert answer["status"] == "completed", answer
        made = answer["output"]["result"]
        if target.level == "namespaces":
            assert all(sid >= 0 for sid in made), made  # its own IPC namespace: allowed
        elif target.level != "process":
            assert made == [-1], made  # EPERM: seccomp refuses shmget
        left = _host_segments_of_size(size)
        if target.level != "process":
            assert left == [], left
    finally:
        for line in _host_segments_of_size(size):  # a failed run's: never leak RAM
            subprocess.run(["ipcrm", "-m", line.split()[1]], check=False)
    target.assert_still_serves()


KEY_WRITE = r"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
made = libc.syscall(248, b"user", b"nadg-leak", INPUT.encode(), len(INPUT), -4)  # add_key, @u
RESULT = made if made > 0 else -ctypes.get_errno()
"""
KEY_READ = r"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
found = libc.syscall(249, b"user", b"nadg-leak", None, 0)                     # request_key
buf = ctypes.create_string_buffer(128)
size = libc.syscall(250, 11, found, buf, 128) if found > 0 else -1            # KEYCTL_READ
RESULT = buf.value.decode() if size > 0 else -ctypes.get_errno()
"""


def test_a_key_left_in_a_keyring_is_not_read_by_the_next_run(target: Target) -> None:
    secret = "left-by-run-a-" + secrets.token_hex(6)
    written = target.run(KEY_WRITE, secret)["output"]["result"]
    # the next runs (a pool uid is reused as soon as it is free)
    reads = [target.run(KEY_READ, sid=f"next-{n}")["output"]["result"] for n in range(3)]
    assert secret not in reads
    if target.level != "namespaces":  # its own user namespace has its own keyrings
        assert written == -1, written  # EPERM: seccomp refuses add_key
    target.assert_still_serves()


REGAIN = r'''
import subprocess
import sys
child = r"""
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
class Attr(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in ("set", "clr", "propagation", "userns")]
attr = Attr(clr=1)                                    # MOUNT_ATTR_RDONLY off on /
writable = libc.syscall(442, -100, b"/", 0, ctypes.byref(attr), ctypes.sizeof(attr)) == 0
try:
    open(sys.argv[1], "w").write("escaped")
    wrote = True
except OSError:
    wrote = False
caps = [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")][0]
print(caps, writable, wrote)
"""
out = subprocess.run([__PYTHON__, "-c", child, INPUT], capture_output=True, text=True)
RESULT = out.stdout.split() or out.stderr
'''


def test_exec_regains_no_capability_in_the_user_namespace() -> None:
    if os.geteuid() != 0:
        pytest.skip("only uid 0 of a user namespace gets its capabilities back on exec")
    host = Path(tempfile.mkdtemp(dir=Path.home()))  # on the host's disk: not /tmp
    target = host / "escaped"
    try:
        bare = Isolation("namespaces", namespaces=True, landlock_abi=0, run_uids=False)
        # the interpreter itself, resolved here: a venv's link to it may sit under /tmp (a
        # checkout there), which is behind the run's private /tmp
        code = REGAIN.replace("__PYTHON__", repr(os.path.realpath(sys.executable)))
        outcome = sandbox._run(bare, code, str(target),  # noqa: SLF001 - a forced level
                               sandbox.SandboxLimits(timeout_s=30), None)
        if outcome.exit_code == EXIT_SETUP_FAILED:
            pytest.skip(f"no user namespaces here: {outcome.stderr[-300:]}")
        assert outcome.exit_code == 0, outcome.stderr
        caps, writable, wrote = outcome.result
        assert int(caps, 16) == 0, f"exec regained capabilities {caps}"
        assert (writable, wrote) == ("False", "False")
        assert not target.exists()
    finally:
        shutil.rmtree(host, ignore_errors=True)
