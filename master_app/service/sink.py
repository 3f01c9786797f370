"""Where a run's attempts and outcomes go: :class:`StoreSink` writes them to the store
through one group commit and remembers what it wrote, so the runner knows the store's state
without reading it back."""

from __future__ import annotations

import asyncio
import logging

from database.blobs import DEFAULT_THRESHOLD, BlobStore, offload_result
from database.models import SubtaskStatus, WorkerNode
from database.store import OutcomeWrite, Store
from master_app.dispatch import Failure
from master_app.service.commit import GroupCommit
from nexus_common.protocol import Subtask, SubtaskResult

logger = logging.getLogger(__name__)


class StoreSink:
    """Persists attempts and outcomes as the dispatcher reports them, through one group
    commit (:class:`~master_app.service.commit.GroupCommit`: a batch per transaction), and
    remembers what it wrote (so the runner knows the store's state without reading it
    back).

    An outcome is acknowledged (the call returns) only once its batch is durable. Attempts
    are queued without waiting (see :meth:`GroupCommit.attempt`). Cancellations are not
    written one by one: :meth:`settle` cancels what is left of the task in one statement.
    """

    def __init__(self, store: Store, commit: GroupCommit | None = None, *,
                 blobs: BlobStore | None = None,
                 blob_threshold: int = DEFAULT_THRESHOLD) -> None:
        self.store = store
        self.commit = commit or GroupCommit(store)
        #: where outputs over ``blob_threshold`` bytes go (None: they stay in the row)
        self.blobs = blobs
        self.blob_threshold = blob_threshold
        self.recorded = 0
        #: subtask id -> the attempt count the store returned for its latest attempt
        self.attempts: dict[str, int] = {}
        #: subtask ids whose final outcome the store has (written here without an error)
        self.written: set[str] = set()
        #: subtask ids whose completed result the store refused: it already had another
        self.refused: set[str] = set()
        #: subtask ids the run cancelled (written by :meth:`settle`, in one statement)
        self.cancelled: set[str] = set()

    async def attempt(self, subtask: Subtask, worker: WorkerNode) -> None:
        """Mark the subtask running on ``worker`` (attempts + 1), in the next batch."""
        sid = subtask.id

        def seen(count: int) -> None:
            self.attempts[sid] = max(count, self.attempts.get(sid, 0))

        self.commit.attempt(sid, worker.id, on_written=seen)

    async def completed(self, subtask: Subtask, result: SubtaskResult,
                        worker: WorkerNode) -> None:
        """Record the result (the store ignores all but the first completed one); returns
        once it is durable."""
        payload = result.model_dump(mode="json")
        if self.blobs is not None:  # the object is durable before the row refers to it
            payload = await asyncio.to_thread(offload_result, self.blobs, subtask.id, payload,
                                              threshold=self.blob_threshold)
        first = await self.commit.outcome(OutcomeWrite(
            subtask.id, SubtaskStatus.COMPLETED, result=payload, worker_id=worker.id))
        self.written.add(subtask.id)
        if first:
            self.recorded += 1
        else:
            self.refused.add(subtask.id)

    async def failed(self, subtask: Subtask, failure: Failure) -> None:
        """Record a final failure with its reason (a cancellation waits for :meth:`settle`)."""
        if failure.cancelled:
            self.cancelled.add(subtask.id)
            return
        await self.commit.outcome(OutcomeWrite(
            subtask.id, SubtaskStatus.FAILED, error=failure.reason,
            worker_id=failure.worker_id))
        self.written.add(subtask.id)

    async def settle(self, task_id: str) -> None:
        """Wait for every queued write; then cancel what the run cancelled, in one
        statement (a subtask completed meanwhile keeps its result)."""
        await self.commit.flush()
        if self.cancelled:
            n = await asyncio.to_thread(self.store.cancel_unfinished_subtasks, task_id,
                                        "cancelled")
            logger.info("task %s: cancelled %d subtask(s) in one statement", task_id, n)
            self.written |= self.cancelled
