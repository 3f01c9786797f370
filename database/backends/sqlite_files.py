"""Owner-only files for the SQLite registry: the file 0600 in a folder 0700.

The registry holds every task's code and inputs. Created with the process umask (0644 in
a 0755 folder, typically) any local user, sandboxed code running as ``nobody`` included,
could read it. So, before SQLite opens it:

* a folder this module creates is made 0700; an existing folder named ``.nadg`` (NEXUS
  Grid's own) is tightened to 0700; any other existing folder that others can enter is
  left as it is, with a warning (``/tmp`` or a home folder is not ours to change);
* the file is created empty with mode 0600 (an empty file is an empty SQLite database)
  or, when it exists, tightened to 0600; its side files (``-wal``, ``-shm``,
  ``-journal``) likewise. SQLite gives side files it creates later the mode of the
  database file, so they are born 0600.

A file, side file or folder that is a symlink or belongs to another user (root's folders
excepted) is refused with :class:`PermissionError`: whoever planted it (in ``/tmp``, say,
before the grid first ran) could read every task, or swap the file. Only a mode that
cannot be tightened is a warning.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

logger = logging.getLogger(__name__)

FILE_MODE = 0o600
FOLDER_MODE = 0o700
#: The folder name NEXUS Grid uses for its own state (``.nadg/registry.db`` by default).
OWN_FOLDER = ".nadg"
SIDE_FILES = ("-wal", "-shm", "-journal")


def _loose(mode: int) -> bool:
    """True when group or others have any access."""
    return bool(stat.S_IMODE(mode) & 0o077)


def _tighten(path: Path, mode: int, what: str) -> None:
    try:
        os.chmod(path, mode)
    except OSError as exc:
        logger.warning("%s %s is readable by other users and could not be made %o: %s;"
                       " run `chmod %o %s` as its owner", what, path, mode, exc, mode, path)
    else:
        logger.info("tightened %s %s to %o", what, path, mode)


def _refuse_foreign(path: Path, what: str, *, root_ok: bool) -> os.stat_result | None:
    """``path``'s lstat (None when missing); PermissionError when it is a symlink or
    belongs to another user (``root_ok``: or to root)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    ours = {os.geteuid(), 0} if root_ok else {os.geteuid()}
    if stat.S_ISLNK(info.st_mode) or info.st_uid not in ours:
        found = "is a symlink" if stat.S_ISLNK(info.st_mode) else \
            f"belongs to another user (uid {info.st_uid})"
        raise PermissionError(
            f"{what} {path} {found}: whoever made it could read or swap the registry; "
            "remove it, or point NADG_REGISTRY at a file in a folder only you can write")
    return info


def secure_folder(folder: Path) -> None:
    """Create ``folder`` 0700, or check (and for ``.nadg`` tighten) an existing one."""
    if not folder.is_dir():  # a file in the way makes mkdir raise: reported by the caller
        folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        os.chmod(folder, FOLDER_MODE)  # mkdir's mode is filtered by the umask
        return
    _refuse_foreign(folder, "the registry folder", root_ok=True)
    mode = folder.stat().st_mode
    if not _loose(mode):
        return
    if folder.name == OWN_FOLDER:
        _tighten(folder, FOLDER_MODE, "registry folder")
    else:
        logger.warning("the registry folder %s is open to other users (mode %o); the"
                       " registry file itself is 0600, but consider `chmod 700 %s` or a"
                       " private NADG_REGISTRY folder", folder, stat.S_IMODE(mode), folder)


def secure_file(path: Path) -> None:
    """Create ``path`` empty and 0600, or tighten it and its side files to 0600."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, FILE_MODE)
    except FileExistsError:
        pass
    else:
        os.close(fd)
    for candidate in (path, *(path.with_name(path.name + s) for s in SIDE_FILES)):
        info = _refuse_foreign(candidate, "the registry file", root_ok=False)
        if info is not None and _loose(info.st_mode):
            _tighten(candidate, FILE_MODE, "registry file")


def secure_registry_path(path: Path) -> None:
    """Make ``path``'s folder and file owner-only before SQLite opens it (see module)."""
    if str(path) == ":memory:":
        return
    secure_folder(path.parent)
    secure_file(path)
