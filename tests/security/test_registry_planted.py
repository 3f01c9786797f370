"""A registry file planted by another user before the grid first opens it.

``NADG_REGISTRY`` in a folder others may write (``/tmp``, or the default ``.nadg/`` of a
working folder such as ``/tmp``), and another local user (a sandboxed run at the ``uid``
level writes to ``/tmp``) creates the file first: world-readable, or a symlink to a file
of theirs. The registry used to open it anyway, with a warning that it could not be made
0600, and that user then read every task's code and inputs. Contained: a registry file
or folder that is a symlink or belongs to another user is refused, with a message saying
what to do, and nothing is written to it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from database.backends.sqlite import SqliteStore
from database.store import StoreUnavailable

NOBODY = 65534
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder like /tmp: every user may create files in it (sticky, 1777)."""
    base = Path(tempfile.mkdtemp(prefix="nadg-planted-", dir="/tmp"))
    base.chmod(0o1777)
    yield base
    shutil.rmtree(base)


def as_nobody(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), user=NOBODY, group=NOBODY, capture_output=True,
                          text=True, timeout=30, cwd="/")


def _open_and_use(path: Path) -> None:
    store = SqliteStore(path)
    try:
        store.create_task("secret inputs", {"rows": ["card 4111"]}, [])
    finally:
        store.close()


@pytest.mark.parametrize("plant", ["file", "symlink", "folder"])
def test_a_registry_planted_by_another_user_is_refused(shared: Path, plant: str) -> None:
    db = shared / "registry.db"
    theirs = shared / "theirs.db"
    if plant == "file":
        as_nobody("sh", "-c", f"umask 0; touch {db}")
        stolen = db
    elif plant == "symlink":
        as_nobody("sh", "-c", f"umask 0; touch {theirs} && ln -s {theirs} {db}")
        stolen = theirs
    else:  # their folder where ours should be (the default .nadg/ of a shared cwd)
        db = shared / ".nadg" / "registry.db"
        as_nobody("sh", "-c", f"umask 0; mkdir -m 777 {db.parent} && touch {db}")
        stolen = db
    assert stolen.exists() and stolen.stat().st_uid == NOBODY
    with pytest.raises(StoreUnavailable, match="another user|symlink") as refused:
        _open_and_use(db)
    assert "NADG_REGISTRY" in str(refused.value)
    attempt = as_nobody("cat", str(stolen))
    assert "card 4111" not in attempt.stdout
