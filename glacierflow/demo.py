"""The demo: a synthetic glacier region processed end to end, with its accuracy reported.

It grows with the project; today it makes a pair of scenes over a synthetic outlet
glacier (channel flow with shear margins, stable rock beside it, a cloud, an
illumination change), tracks it into an ITS_LIVE granule, checks it against the truth,
loads it into the STAC catalog and serves the STAC API on localhost.
A second run reuses the scenes and the granule that exist.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import xarray as xr

from glacierflow.catalog.database import catalog_database
from glacierflow.catalog.loader import init_catalog, load_granules
from glacierflow.processing import synthetic
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
    with catalog_database(settings.data_dir) as dsn:
        init_catalog(dsn, settings.collection_ids)
        report = load_granules(dsn, [path], settings.collection_id("granules"))
        collection = settings.collection_id("granules")
        say(f"catalog: {len(report.loaded)} granule item(s) in collection '{collection}'")
        if serve:
            run(settings, dsn, host, port, say=say)
    return path
