"""The two types every pipeline stage shares: `Scene` and `Pair`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Scene:
    """One image that can be half of a pair.

    `tile` is the footprint key that repeat images share (Landsat WRS-2 path/row as
    "WRS2-063018", Sentinel-2 MGRS tile as "MGRS-07VCG"); scenes without one are paired
    by footprint overlap instead.
    """

    id: str
    href: str  # the band to track: a path, http(s):// or s3:// URL
    datetime: datetime  # acquisition time, timezone-aware UTC
    platform: str  # STAC `platform`, e.g. "landsat-8", "sentinel-2a", "sentinel-1a"
    instrument: str  # e.g. "oli", "msi", "c-sar"
    epsg: int
    footprint: dict[str, Any]  # GeoJSON geometry in lon/lat
    tile: str | None = None
    cloud_cover: float | None = None  # percent, None when unknown
    mask_href: str | None = None  # QA band (Sentinel-2 SCL, Landsat QA_PIXEL), if any
    collection: str | None = None  # the source collection the item came from
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Pair:
    """Two scenes of one footprint; `ref` is the earlier acquisition."""

    ref: Scene
    sec: Scene

    @property
    def id(self) -> str:
        """Deterministic, as ITS_LIVE's granule names are: the two scene ids joined by _X_."""
        return f"{self.ref.id}_X_{self.sec.id}"

    @property
    def dt_days(self) -> float:
        return (self.sec.datetime - self.ref.datetime).total_seconds() / 86_400.0
