"""All configuration, from TINYTRAIN_* environment variables (one class, read once)."""

from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TINYTRAIN_", extra="ignore")

    database_url: str = Field("sqlite:///tinytrain.db", description="SQLAlchemy URL of the job database.")
    executor: Literal["local", "celery"] = Field("local", description="local: a process pool in serve; celery.")
    broker_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL of the Celery broker.")
    lease_seconds: float = Field(30.0, gt=0, description="A running job or chunk not heard from this long is re-run.")
    redispatch_seconds: float = Field(
        60.0, gt=0, description="A queued run sent this long ago is sent again (then after 2x, 4x, ... 64x)."
    )
    max_attempts: int = Field(3, ge=1, description="Runs of a job or chunk before it fails with worker_lost.")
    local_workers: int = Field(2, ge=1, description="Processes of the local executor's pool.")
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Largest request body (413 above).")
    max_points: int = Field(10_000_000, ge=1, description="Most points in one dataset.")
    body_timeout_seconds: float = Field(
        30.0, gt=0, description="A request body that sends nothing for this long is a 408."
    )
    max_epochs: int = Field(1_000_000, ge=1, description="Most epochs of one job.")
    max_predict_points: int = Field(100_000, ge=1, description="Most x values in one predict request.")
    max_work: int = Field(
        10**11, ge=1, description="Most points x epochs of one job (of a sweep: summed over its trials)."
    )
    max_trials: int = Field(10_000, ge=1, description="Most trials of one sweep.")
    max_chunk_history: int = Field(
        10**7, ge=1, description="Most loss-history entries (trials x longest run) of one chunk, held in memory."
    )
    sweep_chunk_trials: int = Field(
        1024, ge=1, description="Trials per chunk of a sweep: one engine call, claimed by one worker."
    )
    max_active_jobs_per_owner: int = Field(
        100, ge=1, description="Most queued + running jobs and sweeps of one owner (429)."
    )
    max_streams_per_owner: int = Field(
        200, ge=1, description="Most open event streams of one owner in each serve process (429 beyond)."
    )
    stream_bytes_per_second_per_owner: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        description="Bytes per second one owner's event streams may send in each serve process (a long "
        "history replays at this pace).",
    )
    max_waiting_per_owner: int = Field(
        100,
        ge=0,
        description="Most requests of one owner waiting with Prefer: wait in each serve process; "
        "beyond it a request is answered at once (its preference not applied).",
    )
    rate_limit: str = Field("50/second", description="Requests per API key, e.g. 40/second or 600/minute (429).")
    request_threads: int = Field(4, ge=1, description="Threads running the sync routes (writes, lists, predict).")
    progress_interval_seconds: float = Field(0.25, gt=0, description="How often a run writes progress.")
    max_storage_bytes_per_owner: int = Field(
        2**30,
        ge=0,
        description="Most bytes of datasets (16 a point) and loss histories one owner stores, "
        "what their queued and running runs will store counted (429).",
    )
    retention_days: float | None = Field(
        None, gt=0, description="Finished jobs and sweeps are deleted this long after they finished; None: kept."
    )
    auth_failure_limit: str = Field(
        "20/minute",
        description="Failed authentications (bad keys) per client address, e.g. 20/minute (429 before any lookup).",
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="Bearer token of /metrics and the workers' metrics ports; unset or empty: they are open.",
    )
    webhook_retry_seconds: Annotated[list[Annotated[float, Field(ge=0)]], NoDecode] = Field(
        [5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 28800],
        min_length=1,
        description="Seconds between a webhook delivery's tries, comma-separated; after the last, the endpoint is off.",
    )
    webhook_timeout_seconds: float = Field(10.0, gt=0, description="How long a webhook receiver has to answer.")
    webhook_allow_private: bool = Field(
        False, description="Let webhook URLs reach loopback, private and link-local addresses (tests, private nets)."
    )
    max_webhooks_per_owner: int = Field(16, ge=1, description="Most webhook endpoints of one owner.")

    @field_validator("webhook_retry_seconds", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return [float(v) for v in value.split(",")] if isinstance(value, str) else value


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings()
