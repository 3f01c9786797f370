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

#: The generation model a worker uses when neither the subtask nor NADG_GENERATE_MODEL
#: names one: a small instruct model with a chat template (about 0.7 GB in bfloat16,
#: downloaded from the Hugging Face Hub on first use and cached).
DEFAULT_GENERATE_MODEL = "HuggingFaceTB/SmolLM2-360M-Instruct"

#: Environment variables that configure a registry backend (see ``database.open_store``).
REGISTRY_ENV_VARS = ("DATABASE_URL", "SUPABASE_URL", "SUPABASE_SERVICE_KEY", "SUPABASE_KEY",
                     "NADG_REGISTRY")


class InsecureStartRefused(RuntimeError):
    """The worker has no token and ``NADG_ALLOW_INSECURE=1`` is not set."""


def _default_worker_id() -> str:
    return f"worker-{socket.gethostname()}"


class WorkerSettings(BaseSettings):
    """Everything one worker process is configured with."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    auth_token: SecretStr | None = Field(default=None, validation_alias="NADG_AUTH_TOKEN")
    allow_insecure: bool = Field(default=False, validation_alias="NADG_ALLOW_INSECURE")
    compat_v1: bool = Field(default=False, validation_alias="NADG_COMPAT_V1",
                            description="serve the original NADG worker API (GET /, "
                                        "POST /execute-python, the original /execute body)")
    auth_token_previous: SecretStr | None = Field(
        default=None, validation_alias="NADG_AUTH_TOKEN_PREVIOUS",
        description="the grid secret before a rotation, accepted until it is unset")
    worker_key: SecretStr | None = Field(
        default=None, validation_alias="NADG_WORKER_KEY",
        description="this worker's own key (`nexus worker-key URL`) instead of the grid secret")
    worker_key_previous: SecretStr | None = Field(default=None,
                                                  validation_alias="NADG_WORKER_KEY_PREVIOUS")
    docs: bool = Field(default=False, validation_alias="NADG_DOCS",
                       description="serve /docs, /redoc, /openapi.json (behind auth)")
    auth_max_skew_s: float = Field(default=60.0, gt=0.0, le=3600.0,
                                   validation_alias="NADG_AUTH_MAX_SKEW_S")
    nonce_cache_size: int = Field(default=100_000, ge=100, validation_alias="NADG_NONCE_CACHE")
    auth_fail_burst: int = Field(default=10, ge=1, validation_alias="NADG_AUTH_FAIL_BURST")
    auth_fail_per_minute: float = Field(default=10.0, gt=0.0,
                                        validation_alias="NADG_AUTH_FAIL_PER_MINUTE")
    legacy_per_minute: float = Field(default=60.0, gt=0.0,
                                     validation_alias="NADG_LEGACY_PER_MINUTE")
    legacy_burst: int = Field(default=10, ge=1, validation_alias="NADG_LEGACY_BURST")
    signed_rate_per_s: float = Field(default=2000.0, ge=0.0, validation_alias="NADG_SIGNED_RATE",
                                     description="signed requests a second per address; 0 = "
                                                 "no limit")
    signed_burst: int = Field(default=4000, ge=1, validation_alias="NADG_SIGNED_BURST")
    worker_id: str = Field(default_factory=_default_worker_id, validation_alias="WORKER_ID")
    port: int = Field(default=7860, ge=1, le=65_535, validation_alias="PORT")
    host: str = Field(default="0.0.0.0", validation_alias="NADG_HOST",
                      description="address `python worker_node/main.py` listens on")
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
    generate_model: str = Field(default=DEFAULT_GENERATE_MODEL,
                                validation_alias="NADG_GENERATE_MODEL",
                                description="HF id (downloaded on first use) or local path")
    generate_batch_size: int = Field(default=8, ge=1, le=256,
                                     validation_alias="NADG_GENERATE_BATCH")
    device: str = Field(default="auto", validation_alias="NADG_DEVICE",
                        description="auto (CUDA when present), cpu, cuda or cuda:N")
    dtype: str = Field(default="auto", validation_alias="NADG_DTYPE",
                       description="auto (bf16/fp16 on CUDA, fp32 on CPU) or a dtype name")
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
    sandbox_level: str = Field(default="auto", validation_alias="NADG_SANDBOX_LEVEL",
                               pattern="^(auto|namespaces|landlock|uid|process)$",
                               description="strongest isolation level to use")
    sandbox_allow_weak: bool = Field(default=False, validation_alias="NADG_SANDBOX_ALLOW_WEAK")
    sandbox_network: bool = Field(default=False, validation_alias="NADG_SANDBOX_NETWORK",
                                  description="let sandboxed code reach the network")
    sandbox_disk_mb: int = Field(default=64, ge=1, validation_alias="NADG_SANDBOX_DISK_MB",
                                 description="total bytes a run may write")

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

    @property
    def has_secret(self) -> bool:
        """True when the worker verifies requests (a grid secret or its own key)."""
        return bool(self.token or self.worker_key)

    def check_secure(self) -> None:
        """Raise :class:`InsecureStartRefused` if there is no secret and no explicit
        opt-out, or a secret is too short or malformed."""
        from nexus_common.signing import WeakSecret, check_secret, parse_worker_key

        for name, value in (("NADG_AUTH_TOKEN", self.auth_token),
                            ("NADG_AUTH_TOKEN_PREVIOUS", self.auth_token_previous)):
            if value is not None and value.get_secret_value():
                try:
                    check_secret(value.get_secret_value(), name)
                except WeakSecret as exc:
                    raise InsecureStartRefused(f"refusing to start: {exc}") from None
        for name, value in (("NADG_WORKER_KEY", self.worker_key),
                            ("NADG_WORKER_KEY_PREVIOUS", self.worker_key_previous)):
            if value is not None and value.get_secret_value():
                try:
                    parse_worker_key(value.get_secret_value(), name)
                except ValueError as exc:
                    raise InsecureStartRefused(f"refusing to start: {exc}") from None
        if not self.has_secret and not self.allow_insecure:
            raise InsecureStartRefused(
                "NADG_AUTH_TOKEN is not set: refusing to start a worker that anyone could "
                "use. Set NADG_AUTH_TOKEN to the grid's shared secret, or set "
                "NADG_ALLOW_INSECURE=1 for a local test grid on loopback only."
            )
