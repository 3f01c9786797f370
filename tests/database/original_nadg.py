"""The original NADG's Supabase schema, as existing projects still have it.

From the original tool's ``database/schema.sql`` (see /work/shared/ORIGINAL_NADG.md): one
``worker_nodes`` table, its two indexes and the optional ``task_history``; nothing more.
"""

from __future__ import annotations

from typing import Any

import psycopg

ORIGINAL_SCHEMA = """
CREATE TABLE worker_nodes (
    id SERIAL PRIMARY KEY,
    vm_url TEXT UNIQUE NOT NULL,
    status TEXT DEFAULT 'active', -- active | busy | offline
    total_tasks INTEGER DEFAULT 0,
    last_ping TIMESTAMPTZ DEFAULT now()
);
CREATE INDEX idx_worker_nodes_status ON worker_nodes (status);
CREATE INDEX idx_worker_nodes_last_ping ON worker_nodes (last_ping);
CREATE TABLE task_history (
    id SERIAL PRIMARY KEY,
    worker_id INTEGER REFERENCES worker_nodes (id),
    task_description TEXT,
    status TEXT CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    created_at TIMESTAMPTZ DEFAULT now(),
    completed_at TIMESTAMPTZ
);
INSERT INTO worker_nodes (vm_url, status, total_tasks)
VALUES ('https://alice-nadg-worker.hf.space', 'active', 7),
       ('https://bob-nadg-worker.hf.space', 'offline', 2);
"""


def create_original(admin: psycopg.Connection[Any], schema: str) -> None:
    """Give ``schema`` the original NADG tables with two workers in them."""
    with admin.transaction():
        admin.execute(f"SET LOCAL search_path TO {schema}")
        admin.execute(ORIGINAL_SCHEMA)
