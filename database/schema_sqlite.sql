-- NEXUS Grid registry and job store, SQLite flavour (the embedded default backend).
-- Keep in sync with schema.sql (Postgres/Supabase): same tables, columns and checks.
-- Timestamps are ISO 8601 UTC text with microseconds; JSON columns hold JSON text.

CREATE TABLE IF NOT EXISTS worker_nodes (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    vm_url               TEXT NOT NULL UNIQUE,
    status               TEXT NOT NULL DEFAULT 'active'
                         CHECK (status IN ('active', 'busy', 'offline', 'draining')),
    total_tasks          INTEGER NOT NULL DEFAULT 0,
    last_ping            TEXT,
    name                 TEXT,
    capabilities         TEXT NOT NULL DEFAULT '[]',
    max_concurrency      INTEGER NOT NULL DEFAULT 4 CHECK (max_concurrency >= 1),
    last_latency_ms      REAL,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    circuit_state        TEXT NOT NULL DEFAULT 'closed'
                         CHECK (circuit_state IN ('closed', 'open', 'half_open')),
    version              TEXT,
    created_at           TEXT
);
CREATE INDEX IF NOT EXISTS worker_nodes_status_idx ON worker_nodes (status);

CREATE TABLE IF NOT EXISTS worker_pings (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    worker_id  INTEGER NOT NULL REFERENCES worker_nodes (id) ON DELETE CASCADE,
    at         TEXT NOT NULL,
    ok         INTEGER NOT NULL,
    latency_ms REAL,
    error      TEXT
);
CREATE INDEX IF NOT EXISTS worker_pings_worker_at_idx ON worker_pings (worker_id, at DESC);

CREATE TABLE IF NOT EXISTS tasks (
    id             TEXT PRIMARY KEY,
    seq            INTEGER NOT NULL UNIQUE,
    command        TEXT NOT NULL,
    plan           TEXT NOT NULL DEFAULT '{}',
    status         TEXT NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    started_at     TEXT,
    finished_at    TEXT,
    result_summary TEXT,
    error          TEXT,
    subtask_count  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tasks_status_seq_idx ON tasks (status, seq);

CREATE TABLE IF NOT EXISTS subtasks (
    id          TEXT PRIMARY KEY,
    task_id     TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    payload     TEXT NOT NULL DEFAULT '{}',
    status      TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    worker_id   INTEGER REFERENCES worker_nodes (id) ON DELETE SET NULL,
    result      TEXT,
    error       TEXT,
    created_at  TEXT,
    started_at  TEXT,
    finished_at TEXT,
    UNIQUE (task_id, idx)
);
CREATE INDEX IF NOT EXISTS subtasks_task_status_idx ON subtasks (task_id, status);

CREATE TABLE IF NOT EXISTS models (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    family     TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    uri        TEXT NOT NULL,
    labels     TEXT NOT NULL DEFAULT '[]',
    metrics    TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS model_deployments (
    model_id    TEXT NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    worker_id   INTEGER NOT NULL REFERENCES worker_nodes (id) ON DELETE CASCADE,
    deployed_at TEXT NOT NULL,
    PRIMARY KEY (model_id, worker_id)
);
CREATE INDEX IF NOT EXISTS model_deployments_worker_idx ON model_deployments (worker_id);
