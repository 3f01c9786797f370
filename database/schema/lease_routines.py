"""Postgres-only SQL for leases: pull workers, scoped credentials, several masters.

Pull workers (``python -m worker_node pull``) never touch a table. They call four
``SECURITY DEFINER`` functions that first check the caller's credential (its SHA-256 must be
an enrolled, unrevoked row of ``pull_credentials``) and then act only on that worker's own
leases: ``nadg_pull_hello``, ``nadg_pull_claim`` (``FOR UPDATE SKIP LOCKED``, with an
optional long poll), ``nadg_pull_extend`` and ``nadg_pull_complete``. On Postgres they are
executable by the ``nadg_pull`` role only (a NOLOGIN role: a pull worker logs in as a role
that is a member of it and nothing else); on Supabase by ``anon`` too, so that the project's
anon key is all a pull worker needs (RLS denies anon every table). Each function runs with
``search_path`` pinned to the schema it was created in, ``pg_temp`` last, so a caller's
temporary tables cannot stand in for the real ones.

The master (the tables' owner, or the service key) calls the other functions: task leases
(``nadg_task_lease``, ``nadg_task_release``, ``nadg_adoptable_tasks``), holding subtasks for
its push workers (``nadg_hold_subtasks``; all of a task's open subtasks as soon as it
takes the task, before the task is marked running) and giving the pull workers their share
(``nadg_release_subtasks``), and enrolling or revoking credentials. Nobody
else may execute them.
"""

from __future__ import annotations

#: Lease bounds the functions enforce whatever a caller asks for.
MAX_LEASE_S = 3600
MAX_WAIT_S = 20
MAX_CLAIM = 64

ROLE = """\
-- Pull workers ----------------------------------------------------------------------------
-- The role pull workers act as: no login, no table rights; EXECUTE on the nadg_pull_*
-- functions only (granted below). A pull worker logs in as a role that is a member of it:
--     CREATE ROLE worker_kaggle LOGIN PASSWORD '...' IN ROLE nadg_pull;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'nadg_pull') THEN
        CREATE ROLE nadg_pull NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR insufficient_privilege THEN
    RAISE NOTICE 'role nadg_pull not created here: %', SQLERRM;
END
$$;
"""

WHO = """\
-- The enrolled, unrevoked credential whose SHA-256 matches, or an error (SQLSTATE 28000).
CREATE OR REPLACE FUNCTION nadg_pull_who(p_credential TEXT) RETURNS pull_credentials
LANGUAGE plpgsql STABLE SECURITY DEFINER AS $$
DECLARE
    c pull_credentials;
BEGIN
    SELECT * INTO c FROM pull_credentials
    WHERE secret_hash = encode(sha256(convert_to(coalesce(p_credential, ''), 'UTF8')), 'hex')
      AND revoked_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pull worker credential refused (unknown or revoked)'
            USING ERRCODE = '28000',
                  HINT = 'enroll the worker: python -m database.manage_workers enroll NAME';
    END IF;
    RETURN c;
END
$$;
"""

HELLO = """\
-- A pull worker says it is up: registered (or refreshed) in worker_nodes as pull://NAME.
CREATE OR REPLACE FUNCTION nadg_pull_hello(
    p_credential TEXT, p_capabilities JSONB, p_max_concurrency INTEGER, p_version TEXT
) RETURNS BIGINT
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    c pull_credentials := nadg_pull_who(p_credential);
    wid BIGINT;
BEGIN
    INSERT INTO worker_nodes (vm_url, name, status, capabilities, max_concurrency, version,
                              last_ping, consecutive_failures)
    VALUES ('pull://' || c.name, c.name, 'active', coalesce(p_capabilities, '[]'::jsonb),
            LEAST(GREATEST(coalesce(p_max_concurrency, 1), 1), 64), left(p_version, 64),
            clock_timestamp(), 0)
    ON CONFLICT (vm_url) DO UPDATE SET
        status = CASE WHEN worker_nodes.status = 'draining' THEN 'draining' ELSE 'active' END,
        capabilities = excluded.capabilities, max_concurrency = excluded.max_concurrency,
        version = excluded.version, last_ping = excluded.last_ping, consecutive_failures = 0
    RETURNING id INTO wid;
    UPDATE pull_credentials SET worker_id = wid WHERE name = c.name;
    RETURN wid;
END
$$;
"""

CLAIM = f"""\
-- Lease up to p_max claimable subtasks of running tasks for p_lease_s seconds. Claimable:
-- pending and not held, or leased by a pull worker whose lease expired. With p_wait_s > 0
-- this is a long poll: it looks again every 0.1 s until something is claimable or the
-- wait (at most {MAX_WAIT_S} s) is over.
CREATE OR REPLACE FUNCTION nadg_pull_claim(
    p_credential TEXT, p_max INTEGER, p_lease_s DOUBLE PRECISION, p_kinds TEXT[],
    p_wait_s DOUBLE PRECISION
) RETURNS TABLE (id TEXT, task_id TEXT, kind TEXT, payload JSONB,
                 lease_expires_at TIMESTAMPTZ)
LANGUAGE plpgsql SECURITY DEFINER AS $$
#variable_conflict use_column
DECLARE
    c pull_credentials := nadg_pull_who(p_credential);
    me TEXT := 'pull:' || c.name;
    lease INTERVAL := make_interval(secs => LEAST(GREATEST(coalesce(p_lease_s, 30), 1),
                                                  {MAX_LEASE_S}));
    stop TIMESTAMPTZ := clock_timestamp()
        + make_interval(secs => LEAST(GREATEST(coalesce(p_wait_s, 0), 0), {MAX_WAIT_S}));
    want INTEGER := LEAST(GREATEST(coalesce(p_max, 1), 1), {MAX_CLAIM});
BEGIN
    -- a claim is the worker's heartbeat (no one can ping a pull worker)
    UPDATE worker_nodes SET last_ping = clock_timestamp(), consecutive_failures = 0,
           status = CASE WHEN worker_nodes.status = 'offline' THEN 'active'
                         ELSE worker_nodes.status END
    WHERE worker_nodes.id = c.worker_id;
    LOOP
        RETURN QUERY
        WITH picked AS (
            SELECT s.id FROM subtasks s JOIN tasks t ON t.id = s.task_id
            WHERE t.status = 'running'
              AND ((s.status = 'pending' AND (s.lease_expires_at IS NULL
                                              OR s.lease_expires_at < clock_timestamp()))
                   OR (s.status = 'running' AND s.lease_owner LIKE 'pull:%'
                       AND s.lease_expires_at < clock_timestamp()))
              AND (p_kinds IS NULL OR s.kind = ANY (p_kinds))
            ORDER BY t.seq, s.idx
            LIMIT want
            FOR UPDATE OF s SKIP LOCKED)
        UPDATE subtasks s SET status = 'running', attempts = s.attempts + 1,
               worker_id = c.worker_id, lease_owner = me,
               lease_expires_at = clock_timestamp() + lease, started_at = clock_timestamp()
        FROM picked WHERE s.id = picked.id
        RETURNING s.id, s.task_id, s.kind, s.payload, s.lease_expires_at;
        EXIT WHEN FOUND OR clock_timestamp() >= stop;
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
"""

EXTEND = f"""\
-- Extend this worker's own leases; returns the ids it still holds (a lost one is absent).
CREATE OR REPLACE FUNCTION nadg_pull_extend(
    p_credential TEXT, p_ids TEXT[], p_lease_s DOUBLE PRECISION
) RETURNS SETOF TEXT
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    c pull_credentials := nadg_pull_who(p_credential);
BEGIN
    UPDATE worker_nodes SET last_ping = clock_timestamp() WHERE id = c.worker_id;
    RETURN QUERY
    UPDATE subtasks SET lease_expires_at = clock_timestamp() + make_interval(
        secs => LEAST(GREATEST(coalesce(p_lease_s, 30), 1), {MAX_LEASE_S}))
    WHERE id = ANY (p_ids) AND lease_owner = 'pull:' || c.name AND status = 'running'
    RETURNING id;
END
$$;
"""

COMPLETE = """\
-- Record the outcome of a subtask this worker holds. The first completed result wins: a
-- subtask already completed, or leased to someone else since, is left as it is (false).
-- A failure puts the subtask back in the queue until it has had 3 attempts.
CREATE OR REPLACE FUNCTION nadg_pull_complete(
    p_credential TEXT, p_id TEXT, p_status TEXT, p_result JSONB, p_error TEXT
) RETURNS BOOLEAN
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    c pull_credentials := nadg_pull_who(p_credential);
    me TEXT := 'pull:' || c.name;
    n INTEGER;
BEGIN
    IF p_status = 'completed' THEN
        UPDATE subtasks SET status = 'completed', result = p_result, error = NULL,
               worker_id = c.worker_id, finished_at = clock_timestamp(),
               lease_owner = NULL, lease_expires_at = NULL
        WHERE id = p_id AND lease_owner = me AND status <> 'completed';
    ELSIF p_status = 'failed' THEN
        UPDATE subtasks SET
               status = CASE WHEN attempts >= 3 THEN 'failed' ELSE 'pending' END,
               error = left(p_error, 4000), worker_id = c.worker_id,
               finished_at = CASE WHEN attempts >= 3 THEN clock_timestamp() END,
               lease_owner = NULL, lease_expires_at = NULL
        WHERE id = p_id AND lease_owner = me AND status = 'running';
    ELSE
        RAISE EXCEPTION 'p_status must be completed or failed, not %', p_status
            USING ERRCODE = '22023';
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        UPDATE worker_nodes SET last_ping = clock_timestamp(),
               total_tasks = total_tasks + CASE WHEN p_status = 'completed' THEN 1 ELSE 0 END
        WHERE id = c.worker_id;
    END IF;
    RETURN n > 0;
END
$$;
"""

MASTER = """\
-- Masters --------------------------------------------------------------------------------
-- Take or renew the lease on an unfinished task. Free: never leased and older than
-- p_grace_s (0: any), or its lease expired. True when p_owner holds it now.
CREATE OR REPLACE FUNCTION nadg_task_lease(
    p_task_id TEXT, p_owner TEXT, p_lease_s DOUBLE PRECISION, p_grace_s DOUBLE PRECISION
) RETURNS BOOLEAN
LANGUAGE sql AS $$
    WITH got AS (
        UPDATE tasks SET lease_owner = p_owner,
               lease_expires_at = clock_timestamp() + make_interval(secs => p_lease_s)
        WHERE id = p_task_id AND status IN ('pending', 'running')
          AND (lease_owner = p_owner OR lease_expires_at < clock_timestamp()
               OR (lease_owner IS NULL AND (p_grace_s <= 0 OR updated_at
                   < clock_timestamp() - make_interval(secs => p_grace_s))))
        RETURNING 1)
    SELECT count(*) > 0 FROM got;
$$;

-- Let go of a task (its run ended here).
CREATE OR REPLACE FUNCTION nadg_task_release(p_task_id TEXT, p_owner TEXT) RETURNS BOOLEAN
LANGUAGE sql AS $$
    WITH gone AS (
        UPDATE tasks SET lease_owner = NULL, lease_expires_at = NULL
        WHERE id = p_task_id AND lease_owner = p_owner RETURNING 1)
    SELECT count(*) > 0 FROM gone;
$$;

-- Unfinished tasks no live master holds (what a master that is up adopts), oldest first.
CREATE OR REPLACE FUNCTION nadg_adoptable_tasks(p_grace_s DOUBLE PRECISION)
RETURNS SETOF TEXT
LANGUAGE sql STABLE AS $$
    SELECT id FROM tasks
    WHERE status IN ('pending', 'running')
      AND (lease_expires_at < clock_timestamp()
           OR (lease_owner IS NULL
               AND updated_at < clock_timestamp() - make_interval(secs => p_grace_s)))
    ORDER BY seq;
$$;

-- Hold subtasks of a task for the master's push workers (so pull workers leave them).
-- Only the master holding the task's lease calls it, so a hold of another master (one
-- that died) is taken over; a live pull worker's lease is not. Returns the ids held now.
CREATE OR REPLACE FUNCTION nadg_hold_subtasks(
    p_task_id TEXT, p_ids TEXT[], p_owner TEXT, p_lease_s DOUBLE PRECISION
) RETURNS SETOF TEXT
LANGUAGE sql AS $$
    WITH picked AS (
        SELECT id FROM subtasks
        WHERE task_id = p_task_id AND (p_ids IS NULL OR id = ANY (p_ids))
          AND status IN ('pending', 'running')
          AND (lease_owner IS NULL OR lease_owner LIKE 'master:%'
               OR lease_expires_at < clock_timestamp())
        FOR UPDATE SKIP LOCKED)
    UPDATE subtasks s SET lease_owner = p_owner,
           lease_expires_at = clock_timestamp() + make_interval(secs => p_lease_s)
    FROM picked WHERE s.id = picked.id
    RETURNING s.id;
$$;

-- Give subtasks this master holds to the pull workers: the hold ends and idle pull
-- workers are woken. Returns how many were released.
CREATE OR REPLACE FUNCTION nadg_release_subtasks(p_task_id TEXT, p_ids TEXT[], p_owner TEXT)
RETURNS INTEGER
LANGUAGE plpgsql AS $$
DECLARE
    n INTEGER;
BEGIN
    UPDATE subtasks SET lease_owner = NULL, lease_expires_at = NULL
    WHERE task_id = p_task_id AND id = ANY (p_ids) AND lease_owner = p_owner;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM pg_notify('nadg_work', '');
    END IF;
    RETURN n;
END
$$;

-- Enroll a pull worker: store the SHA-256 of its credential (a revoked name may be
-- enrolled again). False when the name holds a live credential already.
CREATE OR REPLACE FUNCTION nadg_pull_enroll(p_name TEXT, p_hash TEXT) RETURNS BOOLEAN
LANGUAGE sql AS $$
    WITH put AS (
        INSERT INTO pull_credentials (name, secret_hash) VALUES (p_name, p_hash)
        ON CONFLICT (name) DO UPDATE SET secret_hash = excluded.secret_hash,
               created_at = now(), revoked_at = NULL
        WHERE pull_credentials.revoked_at IS NOT NULL
        RETURNING 1)
    SELECT count(*) > 0 FROM put;
$$;

-- End a credential at once: refused from its next call; its leases go back to the queue
-- and its worker row is marked offline. False when the name has no live credential.
CREATE OR REPLACE FUNCTION nadg_pull_revoke(p_name TEXT) RETURNS BOOLEAN
LANGUAGE plpgsql AS $$
DECLARE
    n INTEGER;
BEGIN
    UPDATE pull_credentials SET revoked_at = now() WHERE name = p_name AND revoked_at IS NULL;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = 0 THEN
        RETURN FALSE;
    END IF;
    UPDATE subtasks SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL
    WHERE lease_owner = 'pull:' || p_name AND status = 'running';
    UPDATE worker_nodes SET status = 'offline' WHERE vm_url = 'pull://' || p_name;
    RETURN TRUE;
END
$$;
"""

NOTIFY = """\
-- Wake idle pull workers (LISTEN nadg_work) when a subtask goes back to the queue (the
-- master wakes them itself when it releases work: nadg_release_subtasks).
CREATE OR REPLACE FUNCTION nadg_notify_work() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('nadg_work', '');
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER nadg_subtask_queued AFTER UPDATE OF status ON subtasks FOR EACH ROW
    WHEN (NEW.status = 'pending' AND OLD.status IS DISTINCT FROM 'pending')
    EXECUTE FUNCTION nadg_notify_work();
"""

#: The functions a pull worker may call; every other ``nadg_*`` function of the schema is
#: for the tables' owner and the service role only.
PULL_FUNCTIONS = ("nadg_pull_hello", "nadg_pull_claim", "nadg_pull_extend", "nadg_pull_complete")


def _grants() -> str:
    pull = ", ".join(f"'{f}'" for f in PULL_FUNCTIONS)
    return f"""\
-- Who may call what: the pull functions nadg_pull (and anon on Supabase); every other
-- nadg_* function nobody but the owner and the service role. SECURITY DEFINER functions
-- run with search_path pinned to this schema, pg_temp last.
DO $$
DECLARE
    f RECORD;
BEGIN
    FOR f IN SELECT p.oid::regprocedure::text AS sig, p.proname AS name,
                    p.prosecdef AS definer
             FROM pg_proc p
             WHERE p.pronamespace = current_schema()::regnamespace
               AND p.proname LIKE 'nadg\\_%' LOOP
        IF f.definer THEN
            EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp', f.sig,
                           current_schema());
        END IF;
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f.sig);
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
            EXECUTE format('REVOKE ALL ON FUNCTION %s FROM anon', f.sig);
        END IF;
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
            EXECUTE format('REVOKE ALL ON FUNCTION %s FROM authenticated', f.sig);
        END IF;
        IF f.name IN ({pull}) THEN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'nadg_pull') THEN
                EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO nadg_pull', f.sig);
            END IF;
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
                EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO anon', f.sig);
            END IF;
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'nadg_pull') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO nadg_pull', current_schema());
    END IF;
END
$$;
"""


GRANTS = _grants()

#: Every lease routine, in creation order (after the tables and nadg_create_task).
LEASE_ROUTINES: tuple[str, ...] = (ROLE, WHO, HELLO, CLAIM, EXTEND, COMPLETE, MASTER, NOTIFY,
                                   GRANTS)
