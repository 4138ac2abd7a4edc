"""Reference velocities for new pairs, as ITS_LIVE uses them.

Once a region has a summary mosaic (year 0000, the composites' climatology), a new pair
is tracked with it as its prior: its vx/vy COGs centre each node's search on the expected
displacement, and their slowest 25 % are the stable ground whose mean motion is taken off
(when no stable-surface mask is given). Pairs tracked before the region has one get no
prior; a later `run` or `watch` round uses what the earlier ones built.

The choice is pure (`choose_reference`: candidates and a footprint in, one candidate or
None out); `summary_mosaics` reads the candidates from the catalog's `mosaics`
collection. `reference_effect` measures what a reference changes on the demo region's
pairs against their truth.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shapely.geometry import shape

from glacierflow.processing.pipeline import TrackRequest
from glacierflow.processing.scenes import Pair

if TYPE_CHECKING:
    from glacierflow.processing.mosaics import MosaicProducts
    from glacierflow.processing.scenes.region import Region

MIN_OVERLAP = 0.5  # a reference covers a pair when it holds this share of its footprint


@dataclass(frozen=True)
class ReferenceMosaic:
    """A summary mosaic that can serve as a prior: its item id, its vx and vy COGs (paths
    the tracker opens), where it has data (GeoJSON, lon/lat) and when it was built."""

    id: str
    vx: str
    vy: str
    footprint: dict[str, Any]
    updated: datetime


def choose_reference(
    candidates: Sequence[ReferenceMosaic],
    footprint: Mapping[str, Any],
    min_overlap: float = MIN_OVERLAP,
) -> ReferenceMosaic | None:
    """The newest candidate covering at least `min_overlap` of `footprint` (a pair's,
    GeoJSON lon/lat); None when none does. Equally new ones: the larger cover, then the
    id, so that the choice does not depend on the candidates' order."""
    area = shape(footprint)
    if area.is_empty or area.area == 0:
        return None
    covering = [
        (c.updated, shape(c.footprint).intersection(area).area / area.area, c.id, c)
        for c in candidates
    ]
    covering = [entry for entry in covering if entry[1] >= min_overlap]
    if not covering:
        return None
    return max(covering, key=lambda e: (e[0], e[1], e[2]))[3]


def reference_from_item(item: Mapping[str, Any], data_dir: Path) -> ReferenceMosaic | None:
    """The candidate of a `mosaics` item: a summary mosaic with vx and vy COGs (others,
    annual mosaics and composites, give None); hrefs relative to the data directory come
    back under `data_dir`."""
    from glacierflow.catalog.scenes import _local

    properties = item.get("properties") or {}
    assets = item.get("assets") or {}
    if properties.get("product") != "summary" or not {"vx", "vy"} <= assets.keys():
        return None
    updated = properties.get("updated") or properties.get("end_datetime")
    return ReferenceMosaic(
        id=str(item["id"]),
        vx=_local(assets["vx"]["href"], data_dir),
        vy=_local(assets["vy"]["href"], data_dir),
        footprint=item["geometry"],
        updated=datetime.fromisoformat(str(updated).replace("Z", "+00:00")),
    )


def mosaic_reference(products: MosaicProducts) -> ReferenceMosaic:
    """The candidate of a summary mosaic's files, without a catalog (a run's own
    `RunReport.mosaics`, the demo's): its footprint is the COGs' extent."""
    import rasterio
    from rasterio.warp import transform_geom
    from shapely.geometry import box, mapping

    with rasterio.open(products.cogs["vx"]) as cog:
        extent = transform_geom(cog.crs, "EPSG:4326", mapping(box(*cog.bounds)))
    return ReferenceMosaic(
        id=products.netcdf.stem,
        vx=str(products.cogs["vx"]),
        vy=str(products.cogs["vy"]),
        footprint=extent,
        updated=datetime.fromtimestamp(products.netcdf.stat().st_mtime, UTC),
    )


def summary_mosaics(dsn: str, collection: str, data_dir: Path) -> list[ReferenceMosaic]:
    """Every summary mosaic of the catalog's `collection` (the settings' `mosaics`)."""
    import psycopg

    query = (
        "SELECT content_hydrate(items) FROM items WHERE collection = %s "
        "AND content->'properties'->>'product' = 'summary' ORDER BY id"
    )
    with psycopg.connect(dsn, options="-c search_path=pgstac,public") as conn:
        rows = conn.execute(query, [collection]).fetchall()
    found = (reference_from_item(row[0], Path(data_dir)) for row in rows)
    return [ref for ref in found if ref is not None]


def with_reference(template: TrackRequest, reference: ReferenceMosaic | None) -> TrackRequest:
    """A pair's tracking template with the reference as its prior (as it is without one)."""
    if reference is None:
        return template
    return replace(template, prior_vx=reference.vx, prior_vy=reference.vy)


# -- what a reference changes: the demo region's pairs against their truth --------------
@dataclass(frozen=True)
class ReferenceFigures:
    """One pair tracked one way: error figures against the truth (m/yr, as
    `Region.granule_figures` gives them) and the seconds tracking took."""

    pair: str
    dt_days: float
    with_reference: bool
    max_speed_m_per_yr: float
    seconds: float
    figures: dict[str, float]


def reference_effect(
    region: Region,
    pairs: Sequence[Pair],
    reference: ReferenceMosaic,
    output: Path,
    template: TrackRequest | None = None,
) -> list[ReferenceFigures]:
    """Track each pair of the region's scenes without and with `reference` as its prior,
    as `run` does (`track_task`: everything else as `template` has it, the run's defaults;
    the scenes' cloud masks given) into `output`, and compare each granule with the
    region's truth. A pair whose granule `output` holds is not tracked again (its time is
    then ~0): give a fresh folder to time it."""
    import xarray as xr

    from glacierflow.run import TRACK_DEFAULTS, track_task

    template = template or TRACK_DEFAULTS
    rows = []
    for pair in pairs:
        for used in (False, True):
            request = with_reference(template, reference if used else None)
            clock = time.perf_counter()
            path = track_task(pair, Path(output) / ("with" if used else "without"), request)
            seconds = time.perf_counter() - clock
            with xr.open_dataset(path) as granule:
                figures = region.granule_figures(granule, pair.ref.datetime, pair.sec.datetime)
            rows.append(
                ReferenceFigures(
                    pair.id, pair.dt_days, used, template.max_speed_m_per_yr, seconds, figures
                )
            )
    return rows


def effect_table(rows: Sequence[ReferenceFigures]) -> str:
    """`reference_effect`'s rows as a Markdown table (errors in m/yr against the truth)."""
    lines = [
        "| pair | dt (days) | search (m/yr) | reference | track s | ice median / p90 "
        "| margins median / p90 | rock median / p90 | valid % | fastest truth |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        f = row.figures
        lines.append(
            f"| {row.pair} | {row.dt_days:.0f} | {row.max_speed_m_per_yr:,.0f} "
            f"| {'yes' if row.with_reference else 'no'} | {row.seconds:.1f} "
            f"| {f['ice_median']:.0f} / {f['ice_p90']:.0f} "
            f"| {f['margins_median']:.0f} / {f['margins_p90']:.0f} "
            f"| {f['rock_median']:.0f} / {f['rock_p90']:.0f} "
            f"| {100 * f['valid_fraction']:.0f} | {f['truth_max']:,.0f} |"
        )
    return "\n".join(lines)
