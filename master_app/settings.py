"""The master's settings: one pydantic-settings object per process, from the environment."""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from nexus_common.protocol import MAX_TIMEOUT_S, MIN_TIMEOUT_S
from nexus_common.signing import check_secret


class MasterSettings(BaseSettings):
    """Everything the orchestrator reads from the environment (names from the original NADG).

    Dispatcher knobs have defaults that suit a handful of workers on the internet; tests
    shrink the timings.
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    gemini_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("GEMINI_API_KEY", "GOOGLE_API_KEY")
    )
    gemini_model: str = Field(default="gemini-2.5-flash", validation_alias="NADG_GEMINI_MODEL")
    gemini_base_url: str | None = Field(default=None, validation_alias="NADG_GEMINI_BASE_URL")
    gemini_timeout_s: float = Field(default=60.0, gt=0, validation_alias="NADG_GEMINI_TIMEOUT_S")
    gemini_retries: int = Field(default=4, ge=0, validation_alias="NADG_GEMINI_RETRIES")
    gemini_max_retry_delay_s: float = Field(
        default=60.0, ge=0, validation_alias="NADG_GEMINI_MAX_RETRY_DELAY_S"
    )

    auth_token: str | None = Field(default=None, validation_alias="NADG_AUTH_TOKEN")

    @field_validator("auth_token")
    @classmethod
    def _strong_secret(cls, value: str | None) -> str | None:
        """A grid secret under 32 bytes is refused at start, with how to make one."""
        if value:
            check_secret(value)
        return value

    # The Streamlit master's login (master_app/ui/auth_config.py says how they combine).
    ui_password: SecretStr | None = Field(default=None, validation_alias="NADG_UI_PASSWORD")
    ui_password_hash: SecretStr | None = Field(default=None,
                                               validation_alias="NADG_UI_PASSWORD_HASH")
    ui_viewer_password: SecretStr | None = Field(default=None,
                                                 validation_alias="NADG_UI_VIEWER_PASSWORD")
    ui_viewer_password_hash: SecretStr | None = Field(
        default=None, validation_alias="NADG_UI_VIEWER_PASSWORD_HASH")
    ui_operators: str = Field(default="", validation_alias="NADG_UI_OPERATORS")
    ui_viewers: str = Field(default="", validation_alias="NADG_UI_VIEWERS")
    ui_address: str | None = Field(default=None, validation_alias="NADG_UI_ADDRESS")
    ui_login_free_failures: int = Field(default=5, ge=1, le=100,
                                        validation_alias="NADG_UI_LOGIN_FAILURES")
    ui_login_lockout_s: float = Field(default=30.0, gt=0, le=86_400,
                                      validation_alias="NADG_UI_LOGIN_LOCKOUT_S")

    # Data intake.
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, gt=0,
                                  validation_alias="NADG_MAX_UPLOAD_BYTES")
    max_rows: int = Field(default=200_000, gt=0, validation_alias="NADG_MAX_ROWS")

    # Dispatcher knobs.
    # Bounded as the wire protocol bounds Subtask.timeout_s: a value outside made every
    # run fail building its subtasks, after the task was already marked running.
    subtask_timeout_s: float = Field(default=120.0, ge=MIN_TIMEOUT_S, le=MAX_TIMEOUT_S,
                                     validation_alias="NADG_SUBTASK_TIMEOUT_S")
    max_attempts: int = Field(default=4, ge=1, validation_alias="NADG_MAX_ATTEMPTS")
    backoff_base_s: float = Field(default=0.2, ge=0, validation_alias="NADG_BACKOFF_BASE_S")
    backoff_max_s: float = Field(default=10.0, ge=0, validation_alias="NADG_BACKOFF_MAX_S")
    circuit_failures: int = Field(default=3, ge=1, validation_alias="NADG_CIRCUIT_FAILURES")
    circuit_cooldown_s: float = Field(default=15.0, ge=0,
                                      validation_alias="NADG_CIRCUIT_COOLDOWN_S")
    all_down_grace_s: float = Field(default=30.0, ge=0, validation_alias="NADG_ALL_DOWN_GRACE_S")
    hedge_factor: float = Field(default=3.0, ge=1.0, validation_alias="NADG_HEDGE_FACTOR")
    hedge_min_s: float = Field(default=2.0, ge=0, validation_alias="NADG_HEDGE_MIN_S")
    hedge_min_samples: int = Field(default=3, ge=1, validation_alias="NADG_HEDGE_MIN_SAMPLES")
    hedging: bool = Field(default=True, validation_alias="NADG_HEDGING")
    batch_max: int = Field(default=16, ge=1, le=256, validation_alias="NADG_BATCH_MAX")
    pipeline: int = Field(
        default=4, ge=1, le=16, validation_alias="NADG_PIPELINE",
        description="subtasks sent to a worker per slot it has while subtasks are short "
                    "(0.1 s or less on average): above 1, the next batch waits in the "
                    "worker's queue while its slots run, so no slot idles for a round trip; "
                    "a worker whose queue cannot hold them answers busy and is kept to its "
                    "slots; 1 keeps every worker to its slots")
    task_deadline_s: float | None = Field(default=None, gt=0,
                                          validation_alias="NADG_TASK_DEADLINE_S")
    max_connections: int = Field(default=100, ge=1, validation_alias="NADG_MAX_CONNECTIONS")
    task_lease_s: float = Field(default=30.0, ge=1.0, le=3600.0,
                                validation_alias="NADG_TASK_LEASE_S",
                                description="a master holds a running task this long, renewed"
                                            " while it runs; another master adopts it after")


@lru_cache(maxsize=1)
def get_settings() -> MasterSettings:
    """The process's settings, built once on first use (never at import time)."""
    return MasterSettings()
