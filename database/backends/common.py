"""Helpers every backend shares: URL normalisation, JSON text and ping retention."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

#: Ping history older than this is pruned when a new ping is recorded.
PING_RETENTION = timedelta(days=7)


def norm_url(vm_url: str) -> str:
    """A worker URL as stored: surrounding blanks and trailing slashes removed."""
    return vm_url.strip().rstrip("/")


def dumps(value: Any) -> str:
    """Compact JSON text (raises TypeError for values JSON cannot hold)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
