"""What a worker Space's repository holds: the files the image needs, and nothing else.

A Docker Space builds from its repository's root, so the bundle mirrors the grid repository
the way ``worker_node/Dockerfile`` expects it::

    Dockerfile      <- worker_node/Dockerfile
    README.md       <- worker_node/README.md   (the Space card: sdk: docker, app_port: 7860)
    nexus_common/   worker_node/   database/   (the packages the image copies)

Only source-like files are taken (an allow-list of suffixes); hidden files and folders
(``.env``, ``.nadg/``, ``.git``), caches (``__pycache__``, ``*.egg-info``) and anything
else are left out. As a last guard, :func:`check_no_secrets` refuses a bundle in which any
file contains one of the secret values in play (the grid secret, the Hugging Face token, a
store password) or a private key: a Space repository can be public.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

#: the packages the worker image copies (worker_node/Dockerfile)
PACKAGES = ("nexus_common", "worker_node", "database")
#: repository root file <- source file
ROOT_FILES = {"Dockerfile": "worker_node/Dockerfile", "README.md": "worker_node/README.md"}
SUFFIXES = frozenset({".py", ".pyi", ".sql", ".txt", ".md", ".json", ".toml", ".cfg",
                      ".ini", ".yaml", ".yml", ".typed"})
NAMES = frozenset({"Dockerfile"})
SKIPPED_DIRS = frozenset({"__pycache__", "node_modules"})
#: a regular (non-LFS) commit file on the Hub is at most this big
MAX_FILE_BYTES = 5 * 1024 * 1024
PRIVATE_KEY_MARK = b"PRIVATE KEY-----"


class BundleError(ValueError):
    """The worker's files cannot be bundled (missing, too big, or holding a secret)."""


@dataclass(frozen=True)
class BundleFile:
    """One file of the Space repository: where it goes and where it comes from."""

    path_in_repo: str
    source: Path

    def read(self) -> bytes:
        """Its content."""
        return self.source.read_bytes()


def git_blob_oid(data: bytes) -> str:
    """Git's object id of a blob: what the Hub reports for a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _taken(path: Path, package_root: Path) -> bool:
    parts = path.relative_to(package_root).parts
    if any(p.startswith(".") or p in SKIPPED_DIRS or p.endswith(".egg-info") for p in parts):
        return False
    return path.suffix in SUFFIXES or path.name in NAMES


def bundle_files(source_root: Path) -> list[BundleFile]:
    """The Space repository's files, built from the grid checkout at ``source_root``.

    Raises :class:`BundleError` when the checkout lacks a package or a root file, or a file
    is too big for a regular commit.
    """
    root = source_root.resolve()
    files = []
    for target, source in ROOT_FILES.items():
        path = root / source
        if not path.is_file():
            raise BundleError(f"{path} is missing: run the command from a NEXUS Grid checkout "
                              "(or pass --source DIR, the folder holding worker_node/)")
        files.append(BundleFile(target, path))
    for package in PACKAGES:
        package_root = root / package
        if not (package_root / "__init__.py").is_file():
            raise BundleError(f"{package_root} is not a Python package: run the command from "
                              "a NEXUS Grid checkout (or pass --source DIR)")
        for path in sorted(package_root.rglob("*")):
            if path.is_file() and not path.is_symlink() and _taken(path, root):
                files.append(BundleFile(path.relative_to(root).as_posix(), path))
    for item in files:
        size = item.source.stat().st_size
        if size > MAX_FILE_BYTES:
            raise BundleError(f"{item.source} is {size} bytes, more than a regular Hub commit "
                              f"takes ({MAX_FILE_BYTES}); keep large files out of the worker")
    return files


def check_no_secrets(files: Iterable[BundleFile], secrets: Iterable[str]) -> None:
    """Raise :class:`BundleError` naming the first file that holds one of ``secrets``
    (values of at least 8 characters) or a PEM private key. Nothing is uploaded then."""
    values = [s.encode() for s in secrets if s and len(s) >= 8]
    for item in files:
        data = item.read()
        if any(value in data for value in values):
            raise BundleError(f"{item.source} contains a secret value (a token, key or store "
                              "password in use for this deploy): remove it from the file; "
                              "nothing was uploaded")
        if PRIVATE_KEY_MARK in data:
            raise BundleError(f"{item.source} contains a private key: remove it; nothing was "
                              "uploaded")
