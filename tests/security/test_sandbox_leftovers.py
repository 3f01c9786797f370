"""Files a run at the ``uid`` level leaves where every user may write, for the next run.

At the ``uid`` level (a root worker without namespaces or Landlock) a run writes only
where file permissions let any user write. Its files at the top of /tmp, /var/tmp and
/dev/shm were removed after the run, but not those in /run/lock (also world-writable, RAM
on most hosts) nor those inside a world-writable folder that another user made in /tmp:
the next run given the same pool uid read them. Contained: after a run nothing of its uid
is left in any of them.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.security.sandbox_fleet import Target

LEAVE = r"""
import os
left = []
for folder in INPUT["folders"]:
    try:
        with open(os.path.join(folder, INPUT["name"]), "w") as f:
            f.write(INPUT["secret"])
        left.append(folder)
    except OSError:
        pass
RESULT = left
"""
FIND = r"""
import os
found = []
for folder in INPUT["folders"]:
    try:
        with open(os.path.join(folder, INPUT["name"])) as f:
            found.append(f.read())
    except OSError:
        pass
RESULT = found
"""


def test_a_run_leaves_nothing_in_world_writable_folders(target: Target) -> None:
    if target.level != "uid":
        pytest.skip("other levels write only their own area (tested in test_sandbox_writes)")
    nested = Path(tempfile.mkdtemp(prefix="nadg-shared-", dir="/tmp"))
    nested.chmod(0o1777)  # like /tmp/.X11-unix, or a folder another user shared
    folders = [str(nested)] + [f for f in ("/run/lock", "/var/lock") if os.path.isdir(f)]
    name = "nadg-left-" + secrets.token_hex(6)
    secret = secrets.token_hex(8)
    job = {"folders": folders, "name": name, "secret": secret}
    try:
        left = target.run(LEAVE, job)["output"]["result"]
        assert left, "the run could write none of the folders: the test proves nothing"
        found = [target.run(FIND, job, sid=f"next-{n}")["output"]["result"] for n in range(2)]
        assert all(secret not in f for f in found), found
        assert not [f for f in folders if os.path.exists(os.path.join(f, name))]
    finally:
        for folder in folders:
            Path(folder, name).unlink(missing_ok=True)
        shutil.rmtree(nested, ignore_errors=True)
    target.assert_still_serves()
