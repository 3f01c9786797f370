"""Round checkpoints: atomic, checksummed, the last N kept, resumable.

Each round writes ``round-000012.safetensors`` (global weights as ``w/<name>``, strategy
state as ``s/<name>``) and then ``round-000012.json`` (round, sha256 of the tensor file,
metrics, config). Both are written to a temp file, fsynced and renamed, so a crash never
leaves a half-written checkpoint under its final name. Loading checks the sha256; a
corrupt or incomplete checkpoint is reported (logged and listed in ``skipped``) and the
previous one is used.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nexus_common.training.codec import CodecError, from_bytes, sha256_hex, to_bytes
from nexus_common.training.tensors import Tensors

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^round-(\d{6})\.json$")


@dataclass(frozen=True)
class Checkpoint:
    """One loaded checkpoint."""

    round: int
    weights: Tensors
    strategy_state: Tensors
    metrics: dict[str, Any]
    config: dict[str, Any]
    sha256: str


@dataclass
class LoadReport:
    """The latest good checkpoint (or None) and the corrupt ones skipped on the way."""

    checkpoint: Checkpoint | None
    skipped: list[str] = field(default_factory=list)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file, fsync and rename (then fsync the dir)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class CheckpointStore:
    """Checkpoints of one training run in a directory."""

    def __init__(self, directory: str | Path, keep: int = 3) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keep = keep

    def tensor_path(self, rnd: int) -> Path:
        """Path of round ``rnd``'s tensor file."""
        return self.dir / f"round-{rnd:06d}.safetensors"

    def meta_path(self, rnd: int) -> Path:
        """Path of round ``rnd``'s metadata file."""
        return self.dir / f"round-{rnd:06d}.json"

    def rounds(self) -> list[int]:
        """Rounds with a metadata file, ascending."""
        found = (_NAME.match(p.name) for p in self.dir.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def save(self, rnd: int, weights: Tensors, strategy_state: Tensors,
             metrics: dict[str, Any], config: dict[str, Any]) -> Path:
        """Write round ``rnd`` atomically, then prune to the last ``keep``."""
        tensors = {f"w/{k}": v for k, v in weights.items()}
        tensors.update({f"s/{k}": v for k, v in strategy_state.items()})
        data = to_bytes(tensors)
        atomic_write(self.tensor_path(rnd), data)
        meta = {"round": rnd, "sha256": sha256_hex(data), "bytes": len(data),
                "metrics": metrics, "config": config}
        atomic_write(self.meta_path(rnd), json.dumps(meta, indent=1).encode())
        self._prune()
        return self.tensor_path(rnd)

    def _prune(self) -> None:
        for rnd in self.rounds()[:-self.keep]:
            self.meta_path(rnd).unlink(missing_ok=True)
            self.tensor_path(rnd).unlink(missing_ok=True)

    def load(self, rnd: int) -> Checkpoint:
        """Round ``rnd``; raises :class:`CodecError` if it is corrupt or incomplete."""
        try:
            meta = json.loads(self.meta_path(rnd).read_text())
            data = self.tensor_path(rnd).read_bytes()
        except (OSError, ValueError) as exc:
            raise CodecError(f"checkpoint round {rnd} is unreadable: {exc}") from exc
        if not isinstance(meta, dict) or meta.get("round") != rnd:
            raise CodecError(f"checkpoint round {rnd} is corrupt: its metadata "
                             f"{self.meta_path(rnd).name} does not describe round {rnd}")
        digest = sha256_hex(data)
        if digest != meta.get("sha256"):
            raise CodecError(f"checkpoint round {rnd} is corrupt: sha256 {digest[:12]} "
                             f"!= recorded {str(meta.get('sha256'))[:12]}")
        tensors = from_bytes(data)
        try:
            return Checkpoint(
                round=rnd,
                weights={k[2:]: v for k, v in tensors.items() if k.startswith("w/")},
                strategy_state={k[2:]: v for k, v in tensors.items() if k.startswith("s/")},
                metrics=dict(meta.get("metrics", {})), config=dict(meta.get("config", {})),
                sha256=digest)
        except (TypeError, ValueError) as exc:
            raise CodecError(f"checkpoint round {rnd} is corrupt: bad metadata: {exc}") from exc

    def latest(self) -> LoadReport:
        """The newest checkpoint that loads and checks out; corrupt ones are skipped."""
        report = LoadReport(checkpoint=None)
        for rnd in reversed(self.rounds()):
            try:
                report.checkpoint = self.load(rnd)
                return report
            except CodecError as exc:
                logger.warning("skipping checkpoint: %s", exc)
                report.skipped.append(str(exc))
        return report
