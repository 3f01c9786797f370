"""The worker's settings: one pydantic-settings class, read from the environment.

Names follow the original NADG tool (``NADG_AUTH_TOKEN``, ``WORKER_ID``, ``PORT``).
Registry variables (``DATABASE_URL``, ``SUPABASE_URL``, ``NADG_REGISTRY``) are read by the
database package; the worker only looks at whether one of them is set.
"""

from __future__ import annotations

import os
import socket

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Environment variables that configure a registry backend (see ``database.open_store``).
REGISTRY_ENV_VARS = ("DATABASE_URL", "SUPABASE_URL", "NADG_REGISTRY")


class InsecureStartRefused(RuntimeError):
    """The worker has no token and ``NADG_ALLOW_INSECURE=1`` is not set."""


def _default_worker_id() -> str:
    return f"worker-{socket.gethostname()}"


class WorkerSettings(BaseSettings):
    """Everything one worker process is configured with."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    auth_token: SecretStr | None = Field(default=None, validation_alias="NADG_AUTH_TOKEN")
    allow_insecure: bool = Field(default=False, validation_alias="NADG_ALLOW_INSECURE")
    worker_id: str = Field(default_factory=_default_worker_id, validation_alias="WORKER_ID")
    port: int = Field(default=7860, ge=1, le=65_535, validation_alias="PORT")
    public_url: str | None = Field(
        default=None, validation_alias=AliasChoices("NADG_PUBLIC_URL", "public_url")
    )
    space_host: str | None = Field(default=None, validation_alias="SPACE_HOST")

    capacity: int = Field(default=2, ge=1, le=64, validation_alias="NADG_CAPACITY",
                          description="subtasks run at once (thread pool size)")
    queue_size: int = Field(default=8, ge=0, le=10_000, validation_alias="NADG_QUEUE_SIZE",
                            description="subtasks waiting for a slot before 503")
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024,
                                validation_alias="NADG_MAX_BODY_BYTES")
    model_cache_size: int = Field(default=3, ge=1, le=64, validation_alias="NADG_MODEL_CACHE")
    head_cache_size: int = Field(default=64, ge=1, le=10_000, validation_alias="NADG_HEAD_CACHE")
    embed_model: str | None = Field(default=None, validation_alias="NADG_EMBED_MODEL",
                                    description="HF id or path; None = the embedded MiniLM")
    generate_model: str | None = Field(default=None, validation_alias="NADG_GENERATE_MODEL")
    embed_batch_size: int = Field(default=32, ge=1, le=1024, validation_alias="NADG_EMBED_BATCH")
    torch_threads: int | None = Field(default=None, ge=1, le=256,
                                      validation_alias="NADG_TORCH_THREADS")

    sandbox_memory_mb: int = Field(default=1024, ge=64, validation_alias="NADG_SANDBOX_MEMORY_MB")
    sandbox_output_bytes: int = Field(default=1_000_000, ge=1024,
                                      validation_alias="NADG_SANDBOX_OUTPUT_BYTES")
    sandbox_file_bytes: int = Field(default=16 * 1024 * 1024, ge=1024,
                                    validation_alias="NADG_SANDBOX_FILE_BYTES")
    sandbox_max_procs: int = Field(default=32, ge=1, validation_alias="NADG_SANDBOX_MAX_PROCS")
    sandbox_python: str | None = Field(default=None, validation_alias="NADG_SANDBOX_PYTHON",
                                       description="interpreter for sandboxed code")

    log_level: str = Field(default="INFO", validation_alias="NADG_LOG_LEVEL")
    self_register: bool = Field(default=True, validation_alias="NADG_REGISTER",
                           description="self-register when a registry and URL are known")
    ping_interval_s: float = Field(default=60.0, gt=0.0, validation_alias="NADG_PING_INTERVAL_S")

    @property
    def resolved_public_url(self) -> str | None:
        """``NADG_PUBLIC_URL``, else ``https://$SPACE_HOST`` on a Space, else None."""
        if self.public_url:
            return self.public_url.rstrip("/")
        if self.space_host:
            return f"https://{self.space_host}"
        return None

    @property
    def registry_configured(self) -> bool:
        """True when one of the registry variables is set in the environment."""
        return any(os.environ.get(name) for name in REGISTRY_ENV_VARS)

    @property
    def token(self) -> str | None:
        """The shared token as a plain string (None in insecure mode)."""
        return self.auth_token.get_secret_value() if self.auth_token else None

    def check_secure(self) -> None:
        """Raise :class:`InsecureStartRefused` if there is no token and no explicit opt-out."""
        if not self.token and not self.allow_insecure:
            raise InsecureStartRefused(
                "NADG_AUTH_TOKEN is not set: refusing to start a worker that anyone could "
                "use. Set NADG_AUTH_TOKEN to the grid's shared secret, or set "
                "NADG_ALLOW_INSECURE=1 for a local test grid on loopback only."
            )
