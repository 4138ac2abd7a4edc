"""The demo: a Malaspina-like region processed end to end, checked against its truth, served.

It grows with the project; today it writes the region's Landsat-like and Sentinel-2-like
scenes (processing/scenes/region.py: a valley glacier spreading into a piedmont lobe, a
seasonal cycle, a surge in 2025, clouds) and catalogs them as scene items, pairs them,
runs the pipeline on Dask (`glacierflow run`'s stages: tracking, granules, cubes,
composites, mosaics, all catalogued), compares what /timeseries serves with the truth at a
few places, and serves everything on localhost. A second run reuses what exists.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import xarray as xr
from pyproj import Transformer

from glacierflow.catalog.database import catalog_database
from glacierflow.catalog.loader import init_catalog
from glacierflow.catalog.render import SPEED_COLORMAP_NAME, speed_render
from glacierflow.catalog.scenes import load_scenes, scene_item, scenes_from_catalog
from glacierflow.processing.composites.build import open_cube
from glacierflow.processing.composites.series import NoFit, fit_series
from glacierflow.processing.cubes.grid import locate
from glacierflow.processing.mosaics import MosaicProducts
from glacierflow.processing.mosaics.merge import SUMMARY_YEAR
from glacierflow.processing.scenes import Scene
from glacierflow.processing.scenes.pairing import PairRules, find_pairs
from glacierflow.processing.scenes.region import Acquisition, Region
from glacierflow.references import (
    ReferenceFigures,
    effect_table,
    mosaic_reference,
    reference_effect,
)
from glacierflow.run import TRACK_DEFAULTS, RunReport, dask_client, gather_results, run_pairs
from glacierflow.services.server import run
from glacierflow.settings import Settings

Say = Callable[[str], None]
DEMO_REGION = "DEMO"


@dataclass(frozen=True)
class DemoSize:
    """How much of the region the demo makes: its extent, its span and its pairs."""

    region: Region
    start: datetime
    end: datetime
    rules: PairRules


# 12 x 9 km over a year and a half: both autumns' slow-downs and the 2025 surge, ~130
# scenes and ~260 pairs, ~10 minutes on 2 cores
FULL = DemoSize(
    Region(width_m=12_000, height_m=9_000),
    datetime(2024, 6, 1, tzinfo=UTC),
    datetime(2025, 11, 1, tzinfo=UTC),
    PairRules(max_pairs_per_scene=2),
)
# a 3.6 x 2.9 km corner of the same world over a year, one pair per scene: the same
# stages and the same checks in about two minutes (`glacierflow demo --quick`, the tests)
QUICK = DemoSize(
    Region(width_m=3_600, height_m=2_880),
    datetime(2024, 9, 1, tzinfo=UTC),
    datetime(2025, 9, 1, tzinfo=UTC),
    PairRules(max_pairs_per_scene=1),
)
# the surge's fastest ice is ~2,500 m/yr: the search reaches a little beyond it
TRACK = replace(TRACK_DEFAULTS, max_speed_m_per_yr=3_000.0)
# a search sized for the glacier outside the surge, and the surge's long Landsat pairs it
# misses without a prior: what references add
REFERENCE_SEARCH = 1_200.0
REFERENCE_PAIRS = PairRules(dt_days={("oli", "oli"): (40.0, 70.0)}, max_pairs_per_scene=1)
# places of the validation table, as fractions of the region's width and height from its
# upper-left corner
PLACES = {
    "valley": (0.5, 0.12),
    "lobe centre": (0.5, 0.5),
    "lobe flank": (0.7, 0.6),
    "rock": (0.04, 0.06),
}


@dataclass(frozen=True)
class PlaceCheck:
    """What /timeseries serves at one place against the truth (m/yr)."""

    name: str
    lon: float
    lat: float
    layers: int
    median_error: float
    p90_error: float
    true_speed: float  # the truth's mean speed over the layers
    amplitude: tuple[float, float]  # seasonal amplitude of v: (served fit, truth's fit)
    surge: tuple[float, float]  # v of the layers in the surge over the others': (served, truth)

    def row(self) -> str:
        def pair(values: tuple[float, float], fmt: str) -> str:
            return " / ".join("-" if math.isnan(v) else format(v, fmt) for v in values)

        return (
            f"{self.name:<12} {self.layers:>6} {self.true_speed:>8.0f} {self.median_error:>8.1f} "
            f"{self.p90_error:>8.1f}   {pair(self.amplitude, '.0f'):>13}   "
            f"{pair(self.surge, '+.0%'):>15}"
        )


VALIDATION_HEADER = (
    f"{'place':<12} {'layers':>6} {'speed':>8} {'median':>8} {'p90':>8}   "
    f"{'amplitude':>13}   {'in the surge':>15}\n"
    f"{'':<12} {'':>6} {'(truth)':>8} {'error':>8} {'error':>8}   "
    f"{'served/truth':>13}   {'served/truth':>15}"
)


@dataclass(frozen=True)
class DemoOutcome:
    report: RunReport
    checks: list[PlaceCheck]
    references: list[ReferenceFigures]
    point: tuple[float, float]  # (lon, lat) on the valley's fast ice
    seconds: float


def run_demo(
    settings: Settings,
    say: Say = print,
    host: str = "127.0.0.1",
    port: int = 8000,
    serve: bool = True,
    size: DemoSize = FULL,
) -> DemoOutcome:
    """Build (or reuse) the demo region end to end, report it against the truth and
    (unless serve=False) serve everything on host:port until interrupted."""
    clock = time.perf_counter()
    region = size.region
    with catalog_database(settings.data_dir) as dsn:
        with dask_client(settings.dask_scheduler, settings.dask_workers) as client:
            init_catalog(dsn, settings.collection_ids)
            folder = settings.data_dir / "scenes" / DEMO_REGION
            scenes = write_scenes(region, size, folder, client, say)
            collection = settings.collection_id("scenes")
            load_scenes(dsn, [scene_item(s, settings.data_href, collection) for s in scenes])
            say(f"catalog: {len(scenes)} scene item(s) in collection '{collection}'")
            found = scenes_from_catalog(dsn, collection=collection, data_dir=settings.data_dir)
            pairs = find_pairs(found, size.rules)
            report = run_pairs(
                settings, pairs, dsn, template=TRACK, region=DEMO_REGION, client=client, say=say
            )
        say(report.table())
        checks = validate(region, settings.cube_store, say)
        references = reference_check(
            region, found, report, settings.data_dir / "reference-check", say
        )
        point = (checks[0].lon, checks[0].lat)
        seconds = time.perf_counter() - clock
        say(f"demo built in {seconds / 60:.1f} min")
        base = f"http://{host}:{port}"
        for line in map_urls(base, settings.collection_id("mosaics"), report.mosaics):
            say(line)
        history = f"{base}/timeseries?lon={point[0]:.4f}&lat={point[1]:.4f}"
        say(f"a point's history: {history}")
        say(f"with its annual values and seasonal curve: {history}&fit=true")
        say(f"the dashboard: {base}/  (click the glacier; STAC Browser: {base}/browser/)")
        if serve:
            run(settings, dsn, host, port, say=say)
    return DemoOutcome(report, checks, references, point, seconds)


def write_scenes(region: Region, size: DemoSize, folder: Path, client, say: Say) -> list[Scene]:
    """The region's scenes over the demo's span, written (or reused) as COGs, a Dask task
    per scene."""
    acquisitions = region.acquisitions(size.start, size.end)
    futures = {
        client.submit(Acquisition.write, a, folder, key=f"scene-{a.id}", retries=1): a.id
        for a in acquisitions
    }
    written, failed = gather_results(futures, "scenes", "scene", say)
    if failed:
        name, reason = next(iter(failed.items()))
        raise RuntimeError(f"{len(failed)} demo scene(s) could not be written: {name}: {reason}")
    scenes = sorted(written.values(), key=lambda s: (s.datetime, s.id))
    say(f"scenes: {len(scenes)} in {folder} (Landsat-like 15 m every 16 days, Sentinel-2-like "
        "10 m every 5 days, with clouds)")  # fmt: skip
    return scenes


def validate(region: Region, store: Path, say: Say) -> list[PlaceCheck]:
    """Served velocity against the truth at each of PLACES: every layer's vector error,
    and the seasonal amplitude and the surge as the fit recovers them from the served
    series and from the truth's own series on the same pairs."""
    x0, y0 = region.origin
    to_lonlat = Transformer.from_crs(region.epsg, 4326, always_xy=True)
    checks = []
    for name, (fx, fy) in PLACES.items():
        x, y = x0 + fx * region.width_m, y0 - fy * region.height_m
        lon, lat = to_lonlat.transform(x, y)
        checks.append(_check_place(region, store, name, float(lon), float(lat)))
    say("served velocity against the truth (m/yr; error: length of the vector difference, "
        "per layer of /timeseries):")  # fmt: skip
    say(VALIDATION_HEADER)
    for check in checks:
        say(check.row())
    return checks


def reference_check(
    region: Region, scenes: Sequence[Scene], report: RunReport, folder: Path, say: Say
) -> list[ReferenceFigures]:
    """Long Landsat pairs in the surge tracked without and with the region's summary
    mosaic as their prior, with a search sized for the glacier's usual speeds
    (REFERENCE_SEARCH): the prior, which centres each search on the expected
    displacement, keeps the surge in reach."""
    summary = next((m for m in report.mosaics if m.year == SUMMARY_YEAR), None)
    start, end = region.surge
    in_surge = [s for s in scenes if start <= s.datetime <= end]
    pairs = sorted(find_pairs(in_surge, REFERENCE_PAIRS), key=lambda p: (-p.dt_days, p.id))[:2]
    if summary is None or not pairs:
        say("reference velocities: no summary mosaic or no long pair in the surge to compare")
        return []
    template = replace(TRACK, max_speed_m_per_yr=REFERENCE_SEARCH)
    rows = reference_effect(region, pairs, mosaic_reference(summary), folder, template)
    say("long pairs in the surge without and with the summary mosaic as their prior (search "
        f"sized for {REFERENCE_SEARCH:,.0f} m/yr; errors against the truth, m/yr):")  # fmt: skip
    say(effect_table(rows))
    return rows


def _check_place(region: Region, store: Path, name: str, lon: float, lat: float) -> PlaceCheck:
    pixel = locate(lon, lat)
    series = open_cube(store / pixel.tile.name).isel(y=pixel.row, x=pixel.col).load()
    truth = _truth_series(region, series, pixel.tile.epsg, pixel.x, pixel.y)
    error = np.hypot(series["vx"].values - truth["vx"].values,
                     series["vy"].values - truth["vy"].values)  # fmt: skip
    measured = np.isfinite(error)
    # the truth's fit on the layers served there (a clouded layer is in neither)
    for variable in ("vx", "vy", "v"):
        truth[variable] = truth[variable].where(xr.DataArray(measured, dims="mid_date"))
    served_fit, true_fit = fit_series(series), fit_series(truth)
    return PlaceCheck(
        name=name,
        lon=lon,
        lat=lat,
        layers=int(measured.sum()),
        median_error=float(np.median(error[measured])) if measured.any() else math.nan,
        p90_error=float(np.percentile(error[measured], 90)) if measured.any() else math.nan,
        true_speed=float(truth["v"].mean()),
        amplitude=(_amplitude(served_fit), _amplitude(true_fit)),
        surge=_surge(region, series, truth, measured),
    )


def _truth_series(region: Region, series: xr.Dataset, epsg: int, x: float, y: float) -> xr.Dataset:
    """The series as the pixel's pairs should have measured it, in the cube's projection:
    each pair's path-mean velocity, carried from the region's UTM through the projection."""
    to_region = Transformer.from_crs(epsg, region.epsg, always_xy=True)
    to_cube = Transformer.from_crs(region.epsg, epsg, always_xy=True)
    ux, uy = to_region.transform(x, y)
    vx, vy = [], []
    for t1, t2 in zip(
        series["acquisition_date_img1"].values, series["acquisition_date_img2"].values,
        strict=True,
    ):  # fmt: skip
        first, second = (_utc(t) for t in (t1, t2))
        tx, ty = region.pair_velocity(np.array([ux]), np.array([uy]), first, second)
        # one year's displacement through the projection: its local rotation and scale
        ex, ey = to_cube.transform(ux + float(tx[0]), uy + float(ty[0]))
        vx.append(ex - x)
        vy.append(ey - y)
    truth = series.copy()
    truth["vx"] = ("mid_date", np.asarray(vx, dtype=np.float32))
    truth["vy"] = ("mid_date", np.asarray(vy, dtype=np.float32))
    truth["v"] = np.hypot(truth["vx"], truth["vy"])
    return truth


def _utc(value: np.datetime64) -> datetime:
    seconds = (value - np.datetime64("1970-01-01T00:00:00")) / np.timedelta64(1, "s")
    return datetime.fromtimestamp(float(seconds), tz=UTC)


def _amplitude(fit) -> float:
    return math.nan if isinstance(fit, NoFit) else float(fit.seasonal["v_amp"])


def _surge(
    region: Region, served: xr.Dataset, truth: xr.Dataset, measured: np.ndarray
) -> tuple[float, float]:
    """How much faster the layers centred in the surge are than the others, as a fraction
    (+0.4: 40 % faster), in the served series and in the truth on the same layers."""
    start, end = (np.datetime64(t.replace(tzinfo=None)) for t in region.surge)
    middle = served["mid_date"].values
    during = measured & (middle >= start) & (middle < end)
    others = measured & ~during
    if not during.any() or not others.any():
        return math.nan, math.nan
    return tuple(
        float(np.nanmean(v[during]) / np.nanmean(v[others]) - 1)
        for v in (served["v"].values, truth["v"].values)
    )


def map_urls(base: str, collection: str, mosaics: list[MosaicProducts]) -> list[str]:
    """Where to look at the mosaics: their items, and for the latest year an XYZ tile
    template (the speed colormap), QGIS's WMTS capabilities and the colormap's legend."""
    lines = [f"mosaic item: {base}/stac/collections/{collection}/items/{p.netcdf.stem}"
             for p in mosaics]  # fmt: skip
    years = [p for p in mosaics if p.year != SUMMARY_YEAR]
    if not years:
        return lines
    latest = max(years, key=lambda p: p.year)
    item = f"{base}/tiles/collections/{collection}/items/{latest.netcdf.stem}"
    render = speed_render()
    query = urlencode(
        {
            "assets": render["assets"],
            "expression": render["expression"],
            "rescale": [",".join(f"{v:g}" for v in pair) for pair in render["rescale"]],
            "colormap_name": render["colormap_name"],
        },
        doseq=True,
    )
    legend = f"{base}/tiles/legend/{SPEED_COLORMAP_NAME}"
    xyz = f"{item}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png?{query}"
    return [
        *lines,
        f"map tiles of {latest.year} (XYZ): {xyz}",
        f"QGIS (WMTS): {item}/WMTSCapabilities.xml",
        f"legend: {legend}.png (JSON: {legend})",
    ]
