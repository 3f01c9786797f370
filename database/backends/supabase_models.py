"""The model store on Supabase: model records and where they are deployed."""

from __future__ import annotations

from typing import Any

from database.backends import rows
from database.backends.messages import duplicate_model, unknown_deployment_target
from database.backends.supabase_base import ApiFailure, SupabaseBase, iso
from database.models import DeploymentRecord, ModelRecord, utcnow
from database.store import StoreError


class SupabaseModels(SupabaseBase):
    """The ModelStore methods of the Store, through PostgREST."""

    def add_model(self, model: ModelRecord) -> ModelRecord:
        """Insert a model record (id chosen by the caller)."""
        row = {"id": model.id, "name": model.name, "family": model.family,
               "sha256": model.sha256, "uri": model.uri, "labels": list(model.labels),
               "metrics": model.metrics, "created_at": iso(model.created_at or utcnow())}
        try:
            found = self._data(lambda: self._t("models").insert(row).execute())
        except ApiFailure as exc:
            if exc.code == "23505":
                raise StoreError(duplicate_model(model.id)) from exc
            raise
        return rows.model(found[0])

    def get_model(self, model_id: str) -> ModelRecord | None:
        """One model, if known."""
        found = self._data(lambda: self._t("models").select("*").eq("id", model_id).execute())
        return rows.model(found[0]) if found else None

    def list_models(self) -> list[ModelRecord]:
        """All models, newest first."""
        found = self._all(lambda: self._t("models").select("*").order("created_at", desc=True)
                          .order("id"))
        return [rows.model(r) for r in found]

    def record_deployment(self, model_id: str, worker_id: int) -> DeploymentRecord:
        """Record (or refresh) that ``worker_id`` has ``model_id`` (an upsert)."""
        row = {"model_id": model_id, "worker_id": worker_id, "deployed_at": iso(utcnow())}
        try:
            found = self._data(lambda: self._t("model_deployments")
                               .upsert(row, on_conflict="model_id,worker_id").execute())
        except ApiFailure as exc:
            if exc.code == "23503":
                raise StoreError(unknown_deployment_target(model_id, worker_id)) from exc
            raise
        return rows.deployment(found[0])

    def list_deployments(self, model_id: str | None = None) -> list[DeploymentRecord]:
        """Deployments, of one model or all, newest first."""

        def build() -> Any:
            q = self._t("model_deployments").select("*")
            if model_id is not None:
                q = q.eq("model_id", model_id)
            return q.order("deployed_at", desc=True).order("model_id").order("worker_id")

        return [rows.deployment(r) for r in self._all(build)]
