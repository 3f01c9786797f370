"""Postgres-only parts of the schema: SQL functions the Supabase backend calls by RPC.

PostgREST runs each RPC call in its own transaction, so a function is how the Supabase
backend makes several writes atomic. SQLite and the direct Postgres backend do the same
work in their own transactions and never call these.
"""

from __future__ import annotations

from database.schema.lease_routines import LEASE_ROUTINES

#: ``create_task`` for the Supabase backend: a task and all its subtasks in one
#: transaction. ``p_subtasks`` is a JSON array of ``{"idx": int, "kind": text, "payload":
#: object}``.
NADG_CREATE_TASK = """\
-- create_task for the Supabase backend: a task and all its subtasks in one transaction
-- (PostgREST runs each RPC call in its own transaction). p_subtasks is a JSON array of
-- {"idx": int, "kind": text, "payload": object}.
CREATE OR REPLACE FUNCTION nadg_create_task(
    p_id TEXT, p_command TEXT, p_plan JSONB, p_subtasks JSONB, p_now TIMESTAMPTZ
) RETURNS SETOF tasks
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tasks (id, command, plan, status, created_at, updated_at, subtask_count)
    VALUES (p_id, p_command, p_plan, 'pending', p_now, p_now, jsonb_array_length(p_subtasks));
    INSERT INTO subtasks (id, task_id, idx, kind, payload, status, attempts, created_at)
    SELECT p_id || ':' || s.idx, p_id, s.idx, s.kind, COALESCE(s.payload, '{}'::jsonb),
           'pending', 0, p_now
    FROM jsonb_to_recordset(p_subtasks) AS s(idx INTEGER, kind TEXT, payload JSONB);
    RETURN QUERY SELECT * FROM tasks WHERE id = p_id;
END
$$;
"""

#: ``write_batch`` for the Supabase backend: the job runner's group commit in one RPC and
#: one transaction, set-based (no compare-and-swap loop). ``p_attempts`` is a JSON array of
#: ``{"id", "n", "worker_id"}`` (distinct ids), ``p_outcomes`` of ``{"id", "status",
#: "result", "error", "worker_id"}`` (distinct ids). An unknown id raises P0002 and nothing
#: is written. Returns ``{"attempts": {id: count}, "opened": [ids whose outcome was
#: written]}`` (a subtask already completed keeps its result: the first completed wins).
NADG_WRITE_BATCH = """\
-- write_batch for the Supabase backend: many attempts and outcomes in one transaction,
-- set-based. p_attempts: [{"id", "n", "worker_id"}], p_outcomes: [{"id", "status",
-- "result", "error", "worker_id"}], ids distinct within each. Unknown id: P0002, nothing
-- written. Returns {"attempts": {id: count}, "opened": [ids whose outcome was written]}.
CREATE OR REPLACE FUNCTION nadg_write_batch(
    p_attempts JSONB, p_outcomes JSONB, p_now TIMESTAMPTZ
) RETURNS JSONB
LANGUAGE plpgsql AS $$
DECLARE
    v_missing TEXT;
    v_attempts JSONB;
    v_opened JSONB;
BEGIN
    SELECT x.id INTO v_missing FROM (
        SELECT a.id FROM jsonb_to_recordset(p_attempts) AS a(id TEXT)
        UNION ALL
        SELECT o.id FROM jsonb_to_recordset(p_outcomes) AS o(id TEXT)
    ) AS x WHERE NOT EXISTS (SELECT 1 FROM subtasks s WHERE s.id = x.id) LIMIT 1;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'no subtask with id %', v_missing USING ERRCODE = 'P0002';
    END IF;
    WITH changed AS (
        UPDATE subtasks s SET attempts = s.attempts + a.n,
            worker_id = CASE WHEN s.status = 'completed' THEN s.worker_id ELSE a.worker_id END,
            started_at = CASE WHEN s.status = 'completed' THEN s.started_at ELSE p_now END,
            status = CASE WHEN s.status = 'completed' THEN s.status ELSE 'running' END
        FROM jsonb_to_recordset(p_attempts) AS a(id TEXT, n INTEGER, worker_id BIGINT)
        WHERE s.id = a.id
        RETURNING s.id AS sid, s.attempts AS n
    )
    SELECT COALESCE(jsonb_object_agg(sid, n), '{}'::jsonb) INTO v_attempts FROM changed;
    WITH opened AS (
        UPDATE subtasks s SET status = o.status, result = o.result, error = o.error,
            worker_id = COALESCE(o.worker_id, s.worker_id), finished_at = p_now
        FROM jsonb_to_recordset(p_outcomes)
            AS o(id TEXT, status TEXT, result JSONB, error TEXT, worker_id BIGINT)
        WHERE s.id = o.id AND s.status <> 'completed'
        RETURNING s.id AS sid
    )
    SELECT COALESCE(jsonb_agg(sid), '[]'::jsonb) INTO v_opened FROM opened;
    RETURN jsonb_build_object('attempts', v_attempts, 'opened', v_opened);
END
$$;
"""

#: ``cancel_unfinished_subtasks`` for the Supabase backend: one statement, however large
#: the task; returns how many subtasks it cancelled.
NADG_CANCEL_UNFINISHED = """\
-- cancel_unfinished_subtasks for the Supabase backend: one statement for the whole task.
CREATE OR REPLACE FUNCTION nadg_cancel_unfinished(
    p_task_id TEXT, p_reason TEXT, p_now TIMESTAMPTZ
) RETURNS INTEGER
LANGUAGE plpgsql AS $$
DECLARE
    v_count INTEGER;
BEGIN
    IF p_reason = 'cancelled' THEN  -- the status says it all: the narrowest write
        UPDATE subtasks SET status = 'cancelled'
        WHERE task_id = p_task_id AND status IN ('pending', 'running');
    ELSE
        UPDATE subtasks SET status = 'cancelled', error = p_reason, finished_at = p_now
        WHERE task_id = p_task_id AND status IN ('pending', 'running');
    END IF;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;
"""

#: ``subtask_counts`` for the Supabase backend: one GROUP BY instead of reading the rows.
NADG_SUBTASK_COUNTS = """\
-- subtask_counts for the Supabase backend: subtasks per status, one GROUP BY.
CREATE OR REPLACE FUNCTION nadg_subtask_counts(p_task_id TEXT) RETURNS JSONB
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_object_agg(status, n), '{}'::jsonb)
    FROM (SELECT status, COUNT(*) AS n FROM subtasks WHERE task_id = p_task_id
          GROUP BY status) AS c;
$$;
"""

#: ``subtask_counts_by_worker`` for the Supabase backend: one GROUP BY for the live view.
NADG_SUBTASK_COUNTS_BY_WORKER = """\
-- subtask_counts_by_worker for the Supabase backend: subtasks per worker and status.
CREATE OR REPLACE FUNCTION nadg_subtask_counts_by_worker(p_task_id TEXT) RETURNS JSONB
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_agg(jsonb_build_object('worker_id', worker_id, 'status', status,
                                                 'n', n)), '[]'::jsonb)
    FROM (SELECT worker_id, status, COUNT(*) AS n FROM subtasks WHERE task_id = p_task_id
          GROUP BY worker_id, status) AS c;
$$;
"""

#: ``record_dispatches`` for the Supabase backend: a counter update without a read.
NADG_RECORD_DISPATCHES = """\
-- record_dispatches for the Supabase backend: add to total_tasks in one statement.
CREATE OR REPLACE FUNCTION nadg_record_dispatches(
    p_worker_id BIGINT, p_ok INTEGER, p_latency_ms DOUBLE PRECISION
) RETURNS INTEGER
LANGUAGE plpgsql AS $$
DECLARE
    v_count INTEGER;
BEGIN
    UPDATE worker_nodes SET total_tasks = total_tasks + p_ok,
        last_latency_ms = COALESCE(p_latency_ms, last_latency_ms)
    WHERE id = p_worker_id;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;
"""

#: Every function, in the order they are created (after the tables they use).
ROUTINES: tuple[str, ...] = (NADG_CREATE_TASK, NADG_WRITE_BATCH, NADG_CANCEL_UNFINISHED,
                             NADG_SUBTASK_COUNTS, NADG_SUBTASK_COUNTS_BY_WORKER,
                             NADG_RECORD_DISPATCHES)

#: The lease functions, grants and triggers (:mod:`database.schema.lease_routines`) come
#: last: the grants cover every function above.
ROUTINES += LEASE_ROUTINES
