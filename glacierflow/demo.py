"""The demo: a synthetic glacier region processed end to end, with its accuracy reported.

It grows with the project; today it makes a pair of scenes over a synthetic outlet
glacier (channel flow with shear margins, stable rock beside it, a cloud, an
illumination change), tracks it into an ITS_LIVE granule, checks it against the truth,
adds two years of granules with a seasonal cycle, ingests them all into a datacube,
fits the cube's annual composite, builds the region's mosaics (each year and the summary),
catalogs granule, cube, composite and mosaics, and serves the STAC API, /timeseries and
the map tiles on localhost. A second run reuses the scenes, granules, composite and
mosaics that exist.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import xarray as xr
from pyproj import Transformer

from glacierflow.catalog.database import catalog_database
from glacierflow.catalog.loader import (
    init_catalog,
    load_composites,
    load_cubes,
    load_granules,
    load_mosaics,
)
from glacierflow.catalog.render import SPEED_COLORMAP_NAME, speed_render
from glacierflow.processing import synthetic
from glacierflow.processing.composites.build import build_composite, open_cube, write_composite
from glacierflow.processing.composites.fit import MIN_PAIRS, Options
from glacierflow.processing.composites.series import NoFit, fit_series
from glacierflow.processing.cubes.ingest import ingest
from glacierflow.processing.mosaics import MosaicProducts
from glacierflow.processing.mosaics.build import (
    composite_path,
    existing_mosaic,
    mosaic_from_composites,
)
from glacierflow.processing.mosaics.merge import SUMMARY_YEAR
from glacierflow.processing.pipeline import TrackRequest, track_pair
from glacierflow.services.server import run
from glacierflow.settings import Settings

DEMO_SHAPE = (1200, 1200)


def demo_motion() -> synthetic.Motion:
    """The demo region: an outlet glacier 3.6 km wide flowing east at up to ~1000 m/yr."""
    field = synthetic.channel_flow(centre_row=600, half_width=240, peak_px=6.0, margin_px=8.0)
    return synthetic.Motion(field)


def demo_pair() -> synthetic.SyntheticPair:
    """The demo scenes: natural-image texture, 3 % noise, an illumination change, a cloud."""
    return synthetic.make_pair(
        DEMO_SHAPE,
        demo_motion().field,
        texture="natural",
        noise=0.03,
        seed=7,
        radiometric=True,
        clouds=1,
    )


def run_demo(
    settings: Settings,
    say: Callable[[str], None] = print,
    host: str = "127.0.0.1",
    port: int = 8000,
    serve: bool = True,
) -> Path:
    """Build (or reuse) the demo granule, report how close it is to the truth, catalog it
    and (unless serve=False) serve everything on host:port until interrupted."""
    root = settings.data_dir / "demo"
    ref, sec = (root / "scenes" / f"demo_{k}.tif" for k in ("ref", "sec"))
    if not (ref.exists() and sec.exists()):
        say(f"writing synthetic scenes to {root / 'scenes'}")
        ref, sec = synthetic.write_geotiffs(demo_pair(), root / "scenes", "demo")
    granules = root / "granules"
    existing = sorted(granules.glob("*.nc"))
    if existing:
        say(f"reusing {existing[0]}")
        path = existing[0]
    else:
        request = TrackRequest(
            ref=str(ref),
            sec=str(sec),
            output=granules,
            chip_min_m=120,
            chip_max_m=480,
            max_speed_m_per_yr=2000,
            threads=settings.threads,
            wisdom=settings.fftw_wisdom,
        )
        report = track_pair(request, progress=say)
        say(f"wrote {report.path} in {report.seconds['total']:.2f} s ({report.nodes} nodes)")
        path = report.path
    with xr.open_dataset(path) as ds:
        accuracy = synthetic.granule_accuracy(ds, demo_motion())
    say(f"accuracy against the known field: {accuracy.summary()}")
    series = seasonal_granules(path, root / "series", say)
    cubes = ingest(
        [path, *series],
        settings.cube_store,
        force_consolidate=True,  # the demo's cube whole for plain Zarr readers at once
        progress=say,
        url_of=settings.public_href,
    )
    cube_paths = [settings.cube_store / name for name in cubes.cubes]
    for cube in cube_paths:
        say(demo_composite(cube, root / "composites"))
    composites = [composite_path(cube, root / "composites") for cube in cube_paths]
    mosaics = demo_mosaics(composites, root / "mosaics", say)
    with catalog_database(settings.data_dir) as dsn:
        init_catalog(dsn, settings.collection_ids)
        report = load_granules(dsn, [path], settings.collection_id("granules"), settings.data_href)
        collection = settings.collection_id("granules")
        say(f"catalog: {len(report.loaded)} granule item(s) in collection '{collection}'")
        ids = load_cubes(dsn, cube_paths, settings.collection_id("cubes"), settings.data_href)
        say(f"catalog: {len(ids)} cube item(s) in collection '{settings.collection_id('cubes')}'")
        collection = settings.collection_id("mosaics")
        ids = load_composites(dsn, composites, collection, settings.data_href)
        mosaic_ids = load_mosaics(dsn, mosaics, collection, settings.data_href)
        say(
            f"catalog: {len(mosaic_ids)} mosaic item(s) and {len(ids)} composite item(s) in "
            f"collection '{collection}'"
        )
        for line in map_urls(f"http://{host}:{port}", collection, mosaics):
            say(line)
        lon, lat = demo_point(path)
        history = f"http://{host}:{port}/timeseries?lon={lon:.4f}&lat={lat:.4f}"
        say(f"a point's history: {history}")
        say(f"with its annual values and seasonal curve: {history}&fit=true")
        say(f"  (there: {point_fit(cube_paths, lon, lat)})")
        if serve:
            run(settings, dsn, host, port, say=say)
    return path


SERIES_START = datetime(2023, 1, 3, 12)


# m/yr, per component: about a 16-day Landsat pair's error
SERIES_NOISE = 15.0


def seasonal_granules(tracked: Path, folder: Path, say: Callable[[str], None]) -> list[Path]:
    """Two years of granules (16-day pairs every 24 days) whose velocity is the tracked
    granule's, sped up 30 % each summer: a seasonal cycle for the cube and /timeseries.
    They are made from the tracked granule, not tracked themselves (the demo stays quick)."""
    existing = sorted(folder.glob("*.nc"))
    if existing:
        return existing
    with xr.open_dataset(tracked) as ds:
        vx0, vy0 = ds["vx"].values, ds["vy"].values

    def seasonal(x, y, centre: datetime):
        boost = 1 + 0.3 * max(0.0, math.sin(2 * math.pi * (centre.timetuple().tm_yday - 80) / 365))
        # each pair's own measurement noise, as real granules have (the composite's outlier
        # filter reads the series' spread: without noise, winter's identical values leave
        # none, and every summer pair would look like an outlier)
        noise = np.random.default_rng(centre.toordinal()).normal(0, SERIES_NOISE, (2, *vx0.shape))
        return vx0 * boost + noise[0], vy0 * boost + noise[1]

    files = []
    for k in range(30):
        ref = SERIES_START + timedelta(days=24 * k)
        files.append(
            synthetic.granule_copy(tracked, folder, ref, ref + timedelta(days=16), seasonal)
        )
    say(f"wrote {len(files)} seasonal granules to {folder}")
    return files


# the demo's series spans 2023-2024: its climatology window (ITS_LIVE's, 2014-2022, would
# hold none of it)
COMPOSITE_OPTIONS = Options(window=(2023, 2024), intercept_year=2024)


def demo_composite(cube: Path, folder: Path) -> str:
    """The cube's annual composite in `folder` (made once, atomically; reused after), and
    one line of its figures."""
    out = composite_path(cube, folder)
    if out.exists():
        made = f"reusing {out}"
    else:
        data, _ = build_composite(open_cube(cube), COMPOSITE_OPTIONS)
        write_composite(data, out)
        made = f"wrote {out}"
    with xr.open_dataset(out) as composite:
        seen = int(composite.attrs["pixels_with_data"])
        too_few = int(composite.attrs["pixels_too_few_pairs"])
        layers = int(composite["count0"].max())
        line = (
            f"composite: {made}; {seen - too_few} of {seen} pixels fitted, {too_few} left "
            f"NaN with fewer than the {MIN_PAIRS} pairs the fit needs once outliers are set "
            f"aside (the cube holds {layers} layers)"
        )
        if seen == too_few:
            return line
        v = composite["v"].median(("y", "x")).values
        years = composite["time"].dt.year.values
        annual = ", ".join(f"{y} {m:.0f}" for y, m in zip(years, v, strict=True))
        return (
            f"{line}; fitted pixels' median v (m/yr) {annual}, v_amp "
            f"{float(composite['v_amp'].median()):.0f} m/yr, v_phase day "
            f"{float(composite['v_phase'].median()):.0f}"
        )


DEMO_REGION = "DEMO"


def demo_mosaics(
    composites: list[Path], folder: Path, say: Callable[[str], None]
) -> list[MosaicProducts]:
    """The demo region's mosaics in `folder`: each year of its composites, then the summary
    (0000); made from the composites, reused while newer than all of them."""
    with xr.open_dataset(composites[0]) as composite:
        years = sorted({int(y) for y in composite["time"].dt.year.values})
    years.append(SUMMARY_YEAR)
    newest = max(path.stat().st_mtime for path in composites)
    existing = [existing_mosaic(folder, DEMO_REGION, year, newest) for year in years]
    if all(existing):
        say(f"mosaics: reusing {len(existing)} in {folder}")
        return existing
    products = mosaic_from_composites(composites, years, folder, DEMO_REGION)
    say(
        f"mosaics: wrote {len(products)} in {folder} (years {', '.join(map(str, years[:-1]))} "
        "and the summary 0000), each a NetCDF, a COG per variable and a Web-Mercator COG of v"
    )
    return products


def map_urls(base: str, collection: str, mosaics: list[MosaicProducts]) -> list[str]:
    """Where to look at the mosaics: their items, and for the latest year an XYZ tile
    template (the speed colormap), QGIS's WMTS capabilities and the colormap's legend."""
    lines = [f"mosaic item: {base}/stac/collections/{collection}/items/{p.netcdf.stem}"
             for p in mosaics]  # fmt: skip
    latest = max((p for p in mosaics if p.year != SUMMARY_YEAR), key=lambda p: p.year)
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


def point_fit(cubes: list[Path], lon: float, lat: float) -> str:
    """What /timeseries?fit=true finds at a point (the same fit, on the cube's pixel)."""
    for path in cubes:
        cube = open_cube(path)
        epsg = int(cube["mapping"].attrs["spatial_epsg"])
        x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
        xs, ys = cube["x"].values, cube["y"].values
        if min(xs) <= x <= max(xs) and min(ys) <= y <= max(ys):
            fit = fit_series(cube.sel(x=x, y=y, method="nearest").load())
            if isinstance(fit, NoFit):
                return f"no fit: {fit.reason}"
            annual = ", ".join(
                f"{year} {v:.0f}" for year, v in zip(fit.years, fit.annual["v"], strict=True)
            )
            return (
                f"v (m/yr) {annual}; v_amp {fit.seasonal['v_amp']:.0f} m/yr, "
                f"v_phase day {fit.seasonal['v_phase']:.0f}"
            )
    return "no cube holds it"


def demo_point(granule: Path) -> tuple[float, float]:
    """A point on the fast centre line of the demo glacier (lon, lat)."""
    with xr.open_dataset(granule) as ds:
        speed = ds["v"].values
        row, col = np.unravel_index(np.nanargmax(np.nan_to_num(speed, nan=-1)), speed.shape)
        x, y = float(ds["x"].values[col]), float(ds["y"].values[row])
        epsg = int(ds["mapping"].attrs["spatial_epsg"])
    return Transformer.from_crs(epsg, 4326, always_xy=True).transform(x, y)
