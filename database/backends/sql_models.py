"""The model store in SQL: model records and where they are deployed."""

from __future__ import annotations

from database.backends import rows
from database.backends.messages import duplicate_model, unknown_deployment_target
from database.backends.sql_base import ForeignKeyViolation, SqlBase, UniqueViolation
from database.models import DeploymentRecord, ModelRecord, utcnow
from database.store import StoreError


class SqlModels(SqlBase):
    """The ModelStore methods of the Store, in SQL."""

    def add_model(self, model: ModelRecord) -> ModelRecord:
        """Insert a model record (id chosen by the caller)."""
        try:
            with self._tx() as q:
                found = q.rows(
                    "INSERT INTO models (id, name, family, sha256, uri, labels, metrics,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
                    (model.id, model.name, model.family, model.sha256, model.uri,
                     self._json(list(model.labels)), self._json(model.metrics),
                     self._time(model.created_at or utcnow())),
                )
        except UniqueViolation as exc:
            raise StoreError(duplicate_model(model.id)) from exc
        return rows.model(found[0])

    def get_model(self, model_id: str) -> ModelRecord | None:
        """One model, if known."""
        with self._tx() as q:
            found = q.rows("SELECT * FROM models WHERE id = ?", (model_id,))
        return rows.model(found[0]) if found else None

    def list_models(self) -> list[ModelRecord]:
        """All models, newest first."""
        with self._tx() as q:
            found = q.rows("SELECT * FROM models ORDER BY created_at DESC, id")
        return [rows.model(r) for r in found]

    def record_deployment(self, model_id: str, worker_id: int) -> DeploymentRecord:
        """Record (or refresh) that ``worker_id`` has ``model_id``."""
        try:
            with self._tx() as q:
                found = q.rows(
                    "INSERT INTO model_deployments (model_id, worker_id, deployed_at)"
                    " VALUES (?, ?, ?) ON CONFLICT (model_id, worker_id)"
                    " DO UPDATE SET deployed_at = excluded.deployed_at RETURNING *",
                    (model_id, worker_id, self._now()),
                )
        except ForeignKeyViolation as exc:
            raise StoreError(unknown_deployment_target(model_id, worker_id)) from exc
        return rows.deployment(found[0])

    def list_deployments(self, model_id: str | None = None) -> list[DeploymentRecord]:
        """Deployments, of one model or all, newest first."""
        with self._tx() as q:
            if model_id is None:
                found = q.rows("SELECT * FROM model_deployments"
                               " ORDER BY deployed_at DESC, model_id, worker_id")
            else:
                found = q.rows("SELECT * FROM model_deployments WHERE model_id = ?"
                               " ORDER BY deployed_at DESC, worker_id", (model_id,))
        return [rows.deployment(r) for r in found]
