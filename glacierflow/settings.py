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
    dask_scheduler: str | None = Field(None, description="tcp://host:port of a Dask scheduler")

    @property
    def fftw_wisdom(self) -> Path:
        """FFTW plans measured once per machine and reused by every run."""
        return self.data_dir / "cache" / "fftw_wisdom.json"


@lru_cache
def get_settings() -> Settings:
    return Settings()
