"""Store settings and the backend factory :func:`open_store`.

Backend choice: Supabase when ``SUPABASE_URL`` and ``SUPABASE_SERVICE_KEY`` are both set
(with ``DATABASE_URL`` also set, schema.sql is applied through it on open), else Postgres
when ``DATABASE_URL`` is set, else SQLite at ``NADG_REGISTRY`` (default
``.nadg/registry.db``). One of the Supabase pair without the other is a
:class:`~database.store.StoreConfigError` naming the missing variable, never a fallback to
Postgres or SQLite: a half-configured operator would otherwise write to a registry nobody
reads. The choice is logged once per process; secrets never are.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from database.store import Store, StoreConfigError, StoreUnavailable

logger = logging.getLogger(__name__)

BackendName = Literal["supabase", "postgres", "sqlite"]
DEFAULT_REGISTRY = Path(".nadg") / "registry.db"

_logged: set[str] = set()


class StoreSettings(BaseSettings):
    """Where the registry and job store live (environment variables, `.env` if present)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    supabase_url: str | None = Field(default=None, validation_alias="SUPABASE_URL")
    supabase_service_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SUPABASE_SERVICE_KEY", "SUPABASE_KEY")
    )
    database_url: SecretStr | None = Field(default=None, validation_alias="DATABASE_URL")
    registry_path: Path = Field(default=DEFAULT_REGISTRY, validation_alias="NADG_REGISTRY")
    pool_max_size: int = Field(default=10, ge=1, validation_alias="NADG_DB_POOL_SIZE")
    connect_timeout_s: float = Field(default=10.0, gt=0, validation_alias="NADG_DB_TIMEOUT_S")

    @property
    def backend(self) -> BackendName:
        """Which backend these settings select; raises StoreConfigError when half set."""
        self.check_complete()
        if self._has_supabase_url and self._has_supabase_key:
            return "supabase"
        if self.database_url and self.database_url.get_secret_value():
            return "postgres"
        return "sqlite"

    @property
    def _has_supabase_url(self) -> bool:
        return bool(self.supabase_url and self.supabase_url.strip())

    @property
    def _has_supabase_key(self) -> bool:
        key = self.supabase_service_key
        return bool(key is not None and key.get_secret_value().strip())

    def check_complete(self) -> None:
        """Raise StoreConfigError, naming the missing variable, when only one of
        ``SUPABASE_URL`` and ``SUPABASE_SERVICE_KEY`` is set (blank counts as unset)."""
        has_url, has_key = self._has_supabase_url, self._has_supabase_key
        if has_url and not has_key:
            raise StoreConfigError(
                "SUPABASE_URL is set but SUPABASE_SERVICE_KEY is not: set SUPABASE_SERVICE_KEY"
                " to the project's service_role key (Supabase dashboard, Project Settings, API),"
                " or unset SUPABASE_URL to use DATABASE_URL or the local SQLite registry")
        if has_key and not has_url:
            raise StoreConfigError(
                "SUPABASE_SERVICE_KEY (or SUPABASE_KEY) is set but SUPABASE_URL is not: set"
                " SUPABASE_URL to the project's URL (https://<project>.supabase.co), or unset"
                " the key to use DATABASE_URL or the local SQLite registry")

    def describe(self) -> str:
        """A one-line description of the chosen backend, without secrets."""
        if self.backend == "supabase":
            return f"supabase ({self.supabase_url})"
        if self.backend == "postgres":
            return "postgres (DATABASE_URL)"
        return f"sqlite ({self.registry_path})"


def open_store(settings: StoreSettings | None = None) -> Store:
    """Open the configured backend; raises StoreUnavailable with the variable to fix
    (StoreConfigError when the settings are half set, SchemaOutdated when the database
    lacks the schema)."""
    if settings is None:
        try:
            settings = StoreSettings()
        except ValidationError as exc:
            raise StoreUnavailable(_describe_bad_settings(exc)) from exc
    backend = settings.backend
    if backend not in _logged:
        _logged.add(backend)
        logger.info("registry backend: %s", settings.describe())
    if backend == "supabase" and settings.supabase_url and settings.supabase_service_key:
        from database.backends.supabase import SupabaseStore

        schema_dsn = settings.database_url.get_secret_value() if settings.database_url else None
        return SupabaseStore(settings.supabase_url.strip(),
                             settings.supabase_service_key.get_secret_value(),
                             timeout_s=settings.connect_timeout_s, schema_dsn=schema_dsn or None)
    if backend == "postgres" and settings.database_url:
        from database.backends.postgres import PostgresStore

        return PostgresStore(settings.database_url.get_secret_value(),
                             max_size=settings.pool_max_size,
                             timeout_s=settings.connect_timeout_s)
    from database.backends.sqlite import SqliteStore

    return SqliteStore(settings.registry_path)


def _describe_bad_settings(exc: ValidationError) -> str:
    """One line naming each registry variable that does not parse (never its value)."""
    parts = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
    return "bad registry setting: " + "; ".join(parts) + "; fix or unset the variable"
