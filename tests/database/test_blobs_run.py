"""A run with the object store configured: large outputs leave the rows as they land, the
first completed result still wins, and the stored task aggregates to the same answer as
the run's own detail, after a master restart too."""

from __future__ import annotations

from pathlib import Path

import pytest

from database.backends.sqlite import SqliteStore
from database.blobs import is_offloaded
from master_app.aggregate import aggregate
from master_app.planning import LocalPlanner
from master_app.service import JobRunner
from tests.master.conftest import fast_settings
from tests.master.fakes import FakeWorker, fake_workers


async def test_large_outputs_leave_the_rows_and_aggregate_after_a_restart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NADG_BLOBS", str(tmp_path / "blobs"))
    monkeypatch.setenv("NADG_BLOB_THRESHOLD_BYTES", "10")  # every noop output is "large"
    store = SqliteStore(tmp_path / "r.db")
    w = FakeWorker("a")
    try:
        with fake_workers(w) as urls:
            store.add_worker(urls[0], max_concurrency=2)
            async with JobRunner(store, fast_settings(NADG_HEDGING=False)) as runner:
                task_id = runner.submit("noop 12", LocalPlanner().plan("noop 12", None, []),
                                        None)
                outcome = await runner.run(task_id)
        assert outcome.ok and outcome.detail is not None
        from_run = aggregate(outcome.detail)
    finally:
        store.close()
    reopened = SqliteStore(tmp_path / "r.db")
    try:
        detail = reopened.get_task(task_id)
        assert all(is_offloaded(s.result) for s in detail.subtasks)
        assert all(len(str(s.result)) < 600 for s in detail.subtasks)
        from_store = aggregate(detail)
        assert from_store.table.equals(from_run.table)
        assert len(list((tmp_path / "blobs").rglob("*.json.zst"))) == 12
    finally:
        reopened.close()
