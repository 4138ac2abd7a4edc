"""One settings object for the whole project, read from GLACIERFLOW_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from pydantic import AnyUrl, Field, UrlConstraints, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

MIN_API_KEY_LENGTH = 16
COLLECTION_KINDS = ("scenes", "granules", "cubes", "mosaics")


class SettingsError(ValueError):
    """A setting that cannot be used as given; commands exit 2 with its message."""


PublicUrl = Annotated[AnyUrl, UrlConstraints(allowed_schemes=["http", "https", "s3", "gs", "file"])]


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
    dask_workers: int | None = Field(
        None,
        ge=1,
        description="processes of the local Dask cluster when no scheduler is set "
        "(default: one per core)",
    )
    collection_ids: dict[str, str] = Field(
        default_factory=dict,
        description='collection ids by kind, e.g. {"cubes": "itslive-cubes"} (JSON); a '
        "changed id moves the collection's items",
    )
    cors_origins: list[str] = Field(["*"], description="origins allowed to call the HTTP API")
    stac_transactions_api_key: str | None = Field(
        None,
        description="enables STAC transactions, for requests carrying this X-API-Key "
        f"(at least {MIN_API_KEY_LENGTH} printable ASCII characters)",
    )
    stac_filter_max_length: int = Field(
        20_000,
        ge=100,
        description="characters in a STAC search's filter, query, intersects or q parameter "
        "(POST bodies are bounded by max_body_bytes)",
    )
    stac_filter_max_depth: int = Field(
        20,
        ge=2,
        le=200,  # cql2's parser overflows its stack near 1,500 levels and slows well before
        description="nesting levels in a STAC filter (brackets, and chained operators in CQL2 "
        "text) or in any JSON a STAC request carries",
    )
    database_connect_timeout_s: float = Field(
        2.0, gt=0, description="the HTTP API's wait for a catalog database connection"
    )
    database_statement_timeout_s: float = Field(
        2.0, gt=0, description="the HTTP API's limit on one catalog query (503 beyond)"
    )
    max_body_bytes: int = Field(
        1 << 20, ge=1, description="largest request body the HTTP API reads (413 beyond)"
    )

    cube_consolidate_after: int = Field(
        8,
        ge=1,
        description="recent segments a cube gathers before ingest folds them into its history",
    )
    cube_consolidate_delay_s: float = Field(
        300,
        ge=0,
        description="seconds after an ingest before a background process folds the recent "
        "segments it left into the cube's history, where plain Zarr readers see them",
    )
    public_data_url: PublicUrl | None = Field(
        None,
        description="where clients reach the data directory's files: https://… (a proxy, a "
        "CDN), s3://… or gs://… (a mirror), file:///… (clients on this machine); default: "
        "the API's own /data route",
    )
    timeseries_max_points: int = Field(
        100, ge=1, le=10_000, description="points one POST /timeseries may ask for"
    )
    dashboard_basemap_url: str | None = Field(
        None,
        description="the dashboard's basemap: an XYZ raster tile URL with {z}, {x} and {y} "
        "(e.g. https://tile.openstreetmap.org/{z}/{x}/{y}.png); none by default, so that it "
        "works offline",
    )
    dashboard_basemap_attribution: str = Field(
        "", description="the credit line the basemap's provider asks for (HTML allowed)"
    )

    @field_validator("collection_ids")
    @classmethod
    def _known_kinds_distinct_ids(cls, ids: dict[str, str]) -> dict[str, str]:
        """A misspelt kind would be ignored and two kinds sharing an id would mix their
        items: both refused."""
        unknown = sorted(set(ids) - set(COLLECTION_KINDS))
        if unknown:
            raise ValueError(
                f"unknown collection kind(s) {', '.join(unknown)}; the kinds are "
                f"{', '.join(COLLECTION_KINDS)}"
            )
        every = [ids.get(kind, kind) for kind in COLLECTION_KINDS]
        if len(set(every)) < len(every) or not all(i.strip() for i in every):
            raise ValueError(f"collection ids must be distinct and not empty: {every}")
        return ids

    @field_validator("dashboard_basemap_url")
    @classmethod
    def _tile_template(cls, url: str | None) -> str | None:
        """A URL the map cannot fill in would leave an empty map with no word why: refused."""
        if url is None or not url.strip():
            return None
        missing = [part for part in ("{z}", "{x}", "{y}") if part not in url]
        if missing or not url.startswith(("http://", "https://", "/")):
            raise ValueError(
                "must be an http(s) URL (or a path on this server) with {z}, {x} and {y}, "
                f"e.g. https://tile.openstreetmap.org/{{z}}/{{x}}/{{y}}.png; got {url!r}"
            )
        return url

    @property
    def cube_store(self) -> Path:
        """Where `cube ingest` writes cubes unless --store says otherwise."""
        return self.data_dir / "cubes"

    def transactions_key(self) -> str | None:
        """The key that guards STAC writes, or None when writes are off.

        A set but empty (or short) key would open writes to anyone who guesses it: refused.
        """
        key = self.stac_transactions_api_key
        if key is None:
            return None
        if len(key) < MIN_API_KEY_LENGTH or not (key.isascii() and key.isprintable()):
            raise SettingsError(
                f"GLACIERFLOW_STAC_TRANSACTIONS_API_KEY must be at least {MIN_API_KEY_LENGTH} "
                "printable ASCII characters (it has "
                f"{len(key)}); unset it to keep transactions off"
            )
        if key != key.strip():
            raise SettingsError(
                "GLACIERFLOW_STAC_TRANSACTIONS_API_KEY starts or ends with spaces, which an "
                "X-API-Key header cannot carry"
            )
        return key

    def data_href(self, path: Path) -> str | None:
        """How the catalog stores a data file's href: its path relative to the data directory
        (POSIX), which the API turns into a URL per request; None for a file outside it,
        which the API cannot serve."""
        path = Path(path).absolute()
        try:  # the file's own name, not what it links to: a cube is named by its link
            relative = (
                path.parent.resolve().joinpath(path.name).relative_to(self.data_dir.resolve())
            )
        except ValueError:
            return None
        return relative.as_posix()

    def public_href(self, path: Path) -> str | None:
        """A data file's href for places no request rewrites (a cube's `granule_url`): the
        public data URL when set, else the path relative to the data directory."""
        relative = self.data_href(path)
        if relative is None or self.public_data_url is None:
            return relative
        return f"{str(self.public_data_url).rstrip('/')}/{quote(relative)}"

    def collection_id(self, kind: str) -> str:
        return self.collection_ids.get(kind, kind)

    @property
    def fftw_wisdom(self) -> Path:
        """FFTW plans measured once per machine and reused by every run."""
        return self.data_dir / "cache" / "fftw_wisdom.json"


@lru_cache
def get_settings() -> Settings:
    """The settings from the environment; a value that cannot be used is a SettingsError
    naming its variable (commands exit 2 with it, instead of pydantic's traceback)."""
    try:
        return Settings()
    except ValidationError as err:
        problems = [
            f"GLACIERFLOW_{'_'.join(str(part) for part in e['loc']).upper()}: {e['msg']}"
            for e in err.errors(include_url=False)
        ]
        raise SettingsError("; ".join(problems)) from None
    except PydanticSettingsError as err:  # a complex value (JSON) that does not parse
        field = str(err).split('"')[1] if '"' in str(err) else ""
        raise SettingsError(f"GLACIERFLOW_{field.upper()}: not valid JSON ({err})") from None
