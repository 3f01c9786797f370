"""Checkpoints: atomic files, sha256 checked on load, last N kept, corrupt ones skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from master_app.federated.checkpoints import CheckpointStore
from nexus_common.training.codec import CodecError


def _save(store: CheckpointStore, rnd: int) -> None:
    store.save(rnd, {"w": torch.full((3,), float(rnd))}, {"m": torch.ones(1) * rnd},
               {"accuracy": rnd / 10}, {"spec": "x"})


def test_save_load_prune(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=2)
    for rnd in (1, 2, 3):
        _save(store, rnd)
    assert store.rounds() == [2, 3]
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))
    ckpt = store.latest().checkpoint
    assert ckpt is not None and ckpt.round == 3
    assert torch.equal(ckpt.weights["w"], torch.full((3,), 3.0))
    assert torch.equal(ckpt.strategy_state["m"], torch.ones(1) * 3)
    assert ckpt.metrics == {"accuracy": 0.3} and ckpt.config == {"spec": "x"}


def test_corrupt_checkpoint_is_reported_and_skipped(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=3)
    for rnd in (1, 2, 3):
        _save(store, rnd)
    path = store.tensor_path(3)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    store.tensor_path(2).unlink()  # a crash between the two files of round 2
    with pytest.raises(CodecError, match="corrupt"):
        store.load(3)
    report = store.latest()
    assert report.checkpoint is not None and report.checkpoint.round == 1
    assert len(report.skipped) == 2 and "round 3 is corrupt" in report.skipped[0]


def test_empty_directory_has_no_checkpoint(tmp_path: Path) -> None:
    report = CheckpointStore(tmp_path / "new").latest()
    assert report.checkpoint is None and report.skipped == []


@pytest.mark.parametrize("meta", ["[1, 2]", "null", '{"sha256": "SHA"}', '{"round": 7}',
                                  '{"round": 2, "sha256": "SHA", "config": 5}'])
def test_damaged_metadata_is_reported_and_skipped(tmp_path: Path, meta: str) -> None:
    store = CheckpointStore(tmp_path, keep=3)
    for rnd in (1, 2):
        _save(store, rnd)
    sha = json.loads(store.meta_path(2).read_text())["sha256"]
    store.meta_path(2).write_text(meta.replace("SHA", sha))
    report = store.latest()
    assert report.checkpoint is not None and report.checkpoint.round == 1
    assert len(report.skipped) == 1 and "round 2 is corrupt" in report.skipped[0]
