"""Reading the master's SQLite registry (``.nadg/`` in the worker's working folder).

With namespaces or Landlock the run may read only system and Python folders, so even a
0644 registry is out of reach; with a per-run uid the registry's own 0600/0700 modes keep
it out. The weak level reads what the worker's user reads (documented).
"""

from __future__ import annotations

import os
import secrets

from tests.security.sandbox_fleet import Target

ATTACK = r"""
import os
found = {}
for path in INPUT["paths"]:
    try:
        with open(path, "rb") as f:
            found[path] = f.read().decode(errors="replace")
    except OSError as exc:
        found[path] = type(exc).__name__
RESULT = found
"""


def test_registry_is_not_readable(target: Target) -> None:
    row = "task-code-and-inputs-" + secrets.token_hex(6)
    folder = target.home / ".nadg"
    folder.mkdir(exist_ok=True)
    registry = folder / "registry.db"
    registry.write_text(row)
    strict = target.level == "uid"  # the registry's own modes are what protects it here
    folder.chmod(0o700 if strict else 0o755)
    registry.chmod(0o600 if strict else 0o644)
    owner = target.home.stat()
    os.chown(folder, owner.st_uid, owner.st_gid)
    os.chown(registry, owner.st_uid, owner.st_gid)
    paths = [str(registry), ".nadg/registry.db"]
    answer = target.run(ATTACK, {"paths": paths})
    found = answer["output"]["result"]
    leaked = [path for path, text in found.items() if row in text]
    if target.level == "process":
        assert str(registry) in leaked  # the weak level's documented limit
    else:
        assert leaked == [], found
    target.assert_still_serves()
