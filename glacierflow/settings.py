"""One settings object for the whole project, read from GLACIERFLOW_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where data live and how work runs; every field can be set as GLACIERFLOW_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="GLACIERFLOW_", env_file=".env", extra="ignore")

    data_dir: Path = Field(
        Path("data"), description="granules, cubes, mosaics, the embedded database"
    )
    threads: int = Field(2, ge=1, description="worker threads for one tracking job")
    track_memory_budget_mb: int = Field(
        2048,
        ge=64,
        description="memory one tracking job may use; its search window is clipped to fit",
    )
    dask_scheduler: str | None = Field(None, description="tcp://host:port of a Dask scheduler")
    collection_ids: dict[str, str] = Field(
        default_factory=dict,
        description='collection ids by kind, e.g. {"granules": "itslive-granules"} (JSON)',
    )
    cors_origins: list[str] = Field(["*"], description="origins allowed to call the HTTP API")
    stac_transactions_api_key: str | None = Field(
        None, description="enables STAC transactions, for requests carrying this X-API-Key"
    )

    cube_consolidate_after: int = Field(
        8,
        ge=1,
        description="recent segments a cube gathers before ingest folds them into its history",
    )

    @property
    def cube_store(self) -> Path:
        """Where `cube ingest` writes cubes unless --store says otherwise."""
        return self.data_dir / "cubes"

    def collection_id(self, kind: str) -> str:
        return self.collection_ids.get(kind, kind)

    @property
    def fftw_wisdom(self) -> Path:
        """FFTW plans measured once per machine and reused by every run."""
        return self.data_dir / "cache" / "fftw_wisdom.json"


@lru_cache
def get_settings() -> Settings:
    return Settings()
