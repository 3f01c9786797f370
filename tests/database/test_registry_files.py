"""The SQLite registry holds every task's code and inputs: 0600 files in a 0700 folder.

The attack (issue 10): sandboxed code running as ``nobody`` read the registry, created
0644 in ``.nadg/``. Run here as another user against a real registry.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from database.backends.sqlite import SqliteStore

NOBODY = 65534
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_base() -> Iterator[Path]:
    """A folder every user may enter (0755, under /tmp), so that only the registry's own
    modes stand between another user and the file."""
    base = Path(tempfile.mkdtemp(prefix="nadg-files-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """Umask 000: the modes must not depend on the process's umask."""
    old = os.umask(0)
    yield
    os.umask(old)


def use(store: SqliteStore) -> None:
    """Write enough that SQLite has its -wal and -shm side files."""
    store.add_worker("http://w:1")
    store.create_task("secret inputs", {"rows": ["card 4111"]}, [])


@pytest.mark.usefixtures("permissive_umask")
def test_a_new_registry_is_0600_in_a_0700_folder(open_base: Path) -> None:
    db = open_base / ".nadg" / "registry.db"
    store = SqliteStore(db)
    try:
        use(store)
        files = [db, db.with_name("registry.db-wal"), db.with_name("registry.db-shm")]
        assert all(f.exists() for f in files)
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
        assert mode(db.parent) == 0o700
    finally:
        store.close()


@pytest.mark.usefixtures("permissive_umask")
def test_an_existing_loose_registry_is_tightened(open_base: Path) -> None:
    folder = open_base / ".nadg"
    folder.mkdir(mode=0o755)
    db = folder / "registry.db"
    SqliteStore(db).close()
    for f in (db, db.with_name("registry.db-wal")):  # as an older release left them
        f.touch()
        f.chmod(0o644)
    folder.chmod(0o755)
    store = SqliteStore(db)
    try:
        use(store)
        assert mode(folder) == 0o700
        assert mode(db) == 0o600 and mode(db.with_name("registry.db-wal")) == 0o600
        assert mode(db.with_name("registry.db-shm")) == 0o600
        assert [w.vm_url for w in store.list_workers()] == ["http://w:1"]
    finally:
        store.close()


def test_a_shared_folder_is_left_alone_with_a_warning(
    open_base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # NADG_REGISTRY=/some/shared/folder/registry.db: the folder is not ours to change
    with caplog.at_level(logging.WARNING, logger="database.backends.sqlite_files"):
        store = SqliteStore(open_base / "registry.db")
    store.close()
    assert mode(open_base) == 0o755 and mode(open_base / "registry.db") == 0o600
    assert any(str(open_base) in r.getMessage() and "chmod 700" in r.getMessage()
               for r in caplog.records)


def as_nobody(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), user=NOBODY, group=NOBODY, capture_output=True,
                          text=True, timeout=30, cwd="/")


@ROOT_ONLY
def test_another_user_cannot_read_or_list_the_registry(open_base: Path) -> None:
    control = open_base / "control.txt"  # what a 0644 file here would give away
    control.write_text("readable")
    control.chmod(0o644)
    assert as_nobody("cat", str(control)).stdout == "readable"
    db = open_base / ".nadg" / "registry.db"
    store = SqliteStore(db)
    try:
        use(store)
        for target in (db, db.with_name("registry.db-wal")):
            attempt = as_nobody("cat", str(target))
            assert attempt.returncode != 0 and "Permission denied" in attempt.stderr
            assert "card 4111" not in attempt.stdout
        listing = as_nobody("ls", str(db.parent))
        assert listing.returncode != 0 and "registry.db" not in listing.stdout
    finally:
        store.close()
