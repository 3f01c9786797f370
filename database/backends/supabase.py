"""Supabase backend through supabase-py (``SUPABASE_URL`` + ``SUPABASE_SERVICE_KEY``).

It talks to the tables through PostgREST, the way the original NADG does:

* every list paginates with ``.range()`` until a page comes back empty (PostgREST returns
  at most ``max-rows`` rows a request: 1,000 by default, fewer where a project lowered it);
* ``create_task`` is one call of the ``nadg_create_task`` SQL function (defined in
  schema.sql), so a task and its subtasks are written in one transaction;
* ``record_result`` is one conditional update (``status <> 'completed'``): the first
  completed result wins, atomically;
* read-modify-write updates (a ping, an attempt, a dispatch count) are compare-and-swap
  updates retried on conflict, so concurrent writers never lose an update;
* the job runner's group commit (``write_batch``), cancelling a task and dispatch counts
  are set-based SQL functions, one RPC each (:mod:`~database.backends.supabase_batch`).

The schema cannot be created through PostgREST: run database/schema.sql in the Supabase
SQL editor once, or also set ``DATABASE_URL`` and it is applied on open. Opening probes
every ``worker_nodes`` column, so a project with only the original NADG table gets
:class:`~database.store.SchemaOutdated` naming database/schema.sql at once, as does any
later request that meets a missing table, column or function.

:class:`SupabaseStore` composes three mixins, one per part of the Store protocol:
:mod:`~database.backends.supabase_workers`, :mod:`~database.backends.supabase_jobs` and
:mod:`~database.backends.supabase_models`, all on the client plumbing of
:mod:`~database.backends.supabase_base`.
"""

from __future__ import annotations

import logging

from database.backends.supabase_base import CAS_ATTEMPTS, PAGE, ApiFailure, Row
from database.backends.supabase_batch import SupabaseBatch
from database.backends.supabase_jobs import SupabaseJobs
from database.backends.supabase_models import SupabaseModels
from database.backends.supabase_workers import SupabaseWorkers

__all__ = ["CAS_ATTEMPTS", "PAGE", "ApiFailure", "Row", "SupabaseStore"]

logger = logging.getLogger(__name__)


class SupabaseStore(SupabaseWorkers, SupabaseJobs, SupabaseBatch, SupabaseModels):
    """The Store on a Supabase project, through supabase-py and PostgREST."""

    def close(self) -> None:
        """Close the HTTP session of the PostgREST client."""
        try:
            self._client.postgrest.session.close()
        except (AttributeError, RuntimeError):
            logger.debug("supabase client had no open session to close")

    def __enter__(self) -> SupabaseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
