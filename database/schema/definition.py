"""The registry and job store's tables: the one definition both dialects are made from.

To change the schema, edit this file (a new column of an existing table gets
``added=True``: Postgres then adds it in place), regenerate the committed Postgres file
with ``python -m database.schema --dialect postgres > database/schema.sql``, and run
``tests/database/test_schema.py`` (it fails while the file and this definition differ).
"""

from __future__ import annotations

from database.schema.model import NOW, Check, Column, Index, Ref, Table, Type

WORKER_STATUSES = ("active", "busy", "offline", "draining")
CIRCUIT_STATES = ("closed", "open", "half_open")
RUN_STATUSES = ("pending", "running", "completed", "failed", "cancelled")


def one_of(column: str, values: tuple[str, ...]) -> str:
    """``column IN ('a', 'b')``: the text of an enumeration check."""
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


WORKER_NODES = Table(
    "worker_nodes",
    comment="Workers",
    upgrades_in_place=True,  # the original NADG's table: id, vm_url, status, total_tasks, last_ping
    columns=(
        Column("id", Type.IDENTITY, primary_key=True),
        Column("vm_url", Type.TEXT, not_null=True, unique=True),
        Column("status", Type.TEXT, not_null=True, default="active"),
        Column("total_tasks", Type.INTEGER, not_null=True, default=0),
        Column("last_ping", Type.TIMESTAMP),
        Column("name", Type.TEXT, added=True),
        Column("capabilities", Type.JSON, not_null=True, default="[]", added=True),
        Column("max_concurrency", Type.INTEGER, not_null=True, default=4, added=True),
        Column("last_latency_ms", Type.FLOAT, added=True),
        Column("consecutive_failures", Type.INTEGER, not_null=True, default=0, added=True),
        Column("circuit_state", Type.TEXT, not_null=True, default="closed", added=True),
        Column("version", Type.TEXT, added=True),
        Column("created_at", Type.TIMESTAMP, default=NOW, added=True),
    ),
    checks=(
        Check("worker_nodes_status_check", one_of("status", WORKER_STATUSES)),
        Check("worker_nodes_circuit_check", one_of("circuit_state", CIRCUIT_STATES)),
        Check("worker_nodes_concurrency_check", "max_concurrency >= 1"),
    ),
    indexes=(
        # an original table may predate the UNIQUE constraint; upserts need the index
        Index("worker_nodes_vm_url_idx", ("vm_url",), unique=True, only=("postgres",)),
        Index("worker_nodes_status_idx", ("status",)),
    ),
)

WORKER_PINGS = Table(
    "worker_pings",
    columns=(
        Column("id", Type.IDENTITY, primary_key=True),
        Column("worker_id", Type.BIGINT, not_null=True, references=Ref("worker_nodes")),
        Column("at", Type.TIMESTAMP, not_null=True, default=NOW),
        Column("ok", Type.BOOL, not_null=True),
        Column("latency_ms", Type.FLOAT),
        Column("error", Type.TEXT),
    ),
    indexes=(Index("worker_pings_worker_at_idx", ("worker_id", "at DESC")),),
)

TASKS = Table(
    "tasks",
    comment="Jobs",
    columns=(
        Column("id", Type.TEXT, primary_key=True),
        # the order of tasks; SQLite numbers it in the INSERT (no identity columns there)
        Column("seq", Type.IDENTITY, unique=True),
        Column("command", Type.TEXT, not_null=True),
        Column("plan", Type.JSON, not_null=True, default="{}"),
        Column("status", Type.TEXT, not_null=True, default="pending"),
        Column("created_at", Type.TIMESTAMP, not_null=True, default=NOW),
        Column("updated_at", Type.TIMESTAMP, not_null=True, default=NOW),
        Column("started_at", Type.TIMESTAMP),
        Column("finished_at", Type.TIMESTAMP),
        Column("result_summary", Type.JSON),
        Column("error", Type.TEXT),
        Column("subtask_count", Type.INTEGER, not_null=True, default=0),
        # the master running the task holds it under a lease (several masters, one store)
        Column("lease_owner", Type.TEXT, added=True),
        Column("lease_expires_at", Type.TIMESTAMP, added=True),
    ),
    checks=(Check("tasks_status_check", one_of("status", RUN_STATUSES)),),
    indexes=(Index("tasks_status_seq_idx", ("status", "seq")),),
)

SUBTASKS = Table(
    "subtasks",
    columns=(
        Column("id", Type.TEXT, primary_key=True),
        Column("task_id", Type.TEXT, not_null=True, references=Ref("tasks")),
        Column("idx", Type.INTEGER, not_null=True),
        Column("kind", Type.TEXT, not_null=True),
        Column("payload", Type.JSON, not_null=True, default="{}"),
        Column("status", Type.TEXT, not_null=True, default="pending"),
        Column("attempts", Type.INTEGER, not_null=True, default=0),
        Column("worker_id", Type.BIGINT,
               references=Ref("worker_nodes", on_delete="SET NULL")),
        Column("result", Type.JSON),
        Column("error", Type.TEXT),
        Column("created_at", Type.TIMESTAMP, default=NOW),
        Column("started_at", Type.TIMESTAMP),
        Column("finished_at", Type.TIMESTAMP),
        # who holds the subtask now (``pull:NAME`` or ``master:ID``) and until when
        Column("lease_owner", Type.TEXT, added=True),
        Column("lease_expires_at", Type.TIMESTAMP, added=True),
    ),
    checks=(Check("subtasks_status_check", one_of("status", RUN_STATUSES)),),
    unique=(("task_id", "idx"),),
    indexes=(
        Index("subtasks_task_status_idx", ("task_id", "status")),
        # Postgres only: on SQLite every subtask write would pay for it, and it serves
        # nothing but the rare removal of a worker
        Index("subtasks_worker_idx", ("worker_id",), only=("postgres",)),
        # what pull workers claim from: pending or leased subtasks, by lease expiry
        Index("subtasks_claim_idx", ("status", "lease_expires_at"), only=("postgres",)),
    ),
)

PULL_CREDENTIALS = Table(
    "pull_credentials",
    comment="Pull workers' credentials (only their SHA-256 is stored)",
    columns=(
        Column("name", Type.TEXT, primary_key=True),
        Column("secret_hash", Type.TEXT, not_null=True, unique=True),
        Column("worker_id", Type.BIGINT, references=Ref("worker_nodes", on_delete="SET NULL")),
        Column("created_at", Type.TIMESTAMP, not_null=True, default=NOW),
        Column("revoked_at", Type.TIMESTAMP),
    ),
)

MODELS = Table(
    "models",
    comment="Models",
    columns=(
        Column("id", Type.TEXT, primary_key=True),
        Column("name", Type.TEXT, not_null=True),
        Column("family", Type.TEXT, not_null=True),
        Column("sha256", Type.TEXT, not_null=True),
        Column("uri", Type.TEXT, not_null=True),
        Column("labels", Type.JSON, not_null=True, default="[]"),
        Column("metrics", Type.JSON, not_null=True, default="{}"),
        Column("created_at", Type.TIMESTAMP, not_null=True, default=NOW),
    ),
)

MODEL_DEPLOYMENTS = Table(
    "model_deployments",
    columns=(
        Column("model_id", Type.TEXT, not_null=True, references=Ref("models")),
        Column("worker_id", Type.BIGINT, not_null=True, references=Ref("worker_nodes")),
        Column("deployed_at", Type.TIMESTAMP, not_null=True, default=NOW),
    ),
    primary_key=("model_id", "worker_id"),
    indexes=(Index("model_deployments_worker_idx", ("worker_id",)),),
)

#: Every table, in creation order (a table comes after those it references).
TABLES: tuple[Table, ...] = (WORKER_NODES, WORKER_PINGS, TASKS, SUBTASKS, MODELS,
                             MODEL_DEPLOYMENTS, PULL_CREDENTIALS)
