"""From a new scene to its velocities in the cube that /timeseries reads, in watch mode.

Usage: first build the demo in a data directory (`glacierflow demo --no-serve`), then

    GLACIERFLOW_DATA_DIR=DIR .venv/bin/python benchmarks/watch_latency.py

`glacierflow watch`'s loop (glacierflow.watch.watch, polling every --interval seconds)
runs over the demo's catalog. Once its first round has passed over the pairs already
done, the demo region's next Sentinel-2 acquisition after the demo's span is written and
its scene item loaded into the catalog, as `glacierflow scenes import` or a POST through
the STAC transactions API would; the clock starts there. It stops when the new pair's
layer is in the cube, read as /timeseries reads it (the living cube with its recent
segments). Printed: seconds to the layer, and the round's own stage times.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

import numpy as np

from glacierflow.catalog.database import catalog_database
from glacierflow.catalog.scenes import load_scenes, scene_item, scenes_from_catalog
from glacierflow.demo import DEMO_REGION, FULL, TRACK
from glacierflow.processing.composites.build import open_cube
from glacierflow.processing.cubes.store import cube_names
from glacierflow.processing.scenes.pairing import find_pairs
from glacierflow.processing.scenes.region import SENTINEL2
from glacierflow.run import RunReport
from glacierflow.settings import Settings
from glacierflow.watch import watch

GOAL_S = 300.0  # issue 13: a new scene's velocities in /timeseries within 5 minutes


def _layers_with(store: Path, when: np.datetime64) -> int:
    """Layers of the store's cubes whose second image is `when` (to the second)."""
    found = 0
    for name in cube_names(store):
        dates = open_cube(store / name)["acquisition_date_img2"].values
        found += int((dates.astype("datetime64[s]") == when).sum())
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=10.0, help="watch's poll, seconds")
    args = parser.parse_args()
    settings = Settings()
    region = FULL.region
    new = next(a for a in region.acquisitions(FULL.end, FULL.end.replace(year=2026),
                                              (SENTINEL2,)))  # fmt: skip
    folder = settings.data_dir / "scenes" / DEMO_REGION
    when = np.datetime64(new.when.replace(tzinfo=None), "s")
    print(f"load average {os.getloadavg()[0]:.1f}; new scene {new.id}")
    with catalog_database(settings.data_dir) as dsn:
        collection = settings.collection_id("scenes")

        def pairs_now():
            found = scenes_from_catalog(dsn, collection=collection, data_dir=settings.data_dir)
            return find_pairs(found, FULL.rules)

        rounds: list[tuple[float, RunReport]] = []
        stop = threading.Event()
        loop = threading.Thread(
            target=watch,
            args=(settings, dsn, pairs_now),
            kwargs={
                "interval_s": args.interval,
                "stop": stop,
                "template": TRACK,
                "region": DEMO_REGION,
                "on_round": lambda report: rounds.append((time.perf_counter(), report)),
                "say": lambda _: None,
            },
            daemon=True,
        )
        loop.start()
        while not rounds:  # the first round: every pair known, done before
            time.sleep(0.5)
        print(f"first round: {len(rounds[0][1].done_before)} pairs done before")
        clock = time.perf_counter()
        scene = new.write(folder)
        load_scenes(dsn, [scene_item(scene, settings.data_href, collection)])
        start = time.perf_counter()  # the scene has arrived: catalogued
        written = start - clock
        while _layers_with(settings.cube_store, when) == 0:
            if time.perf_counter() - start > 2 * GOAL_S:
                break
            time.sleep(1.0)
        visible = time.perf_counter() - start
        while len(rounds) < 2:
            time.sleep(0.5)
        stop.set()
        loop.join(120)
    report = rounds[1][1]
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items())
    print(f"scene written and catalogued: {written:.1f} s")
    print(f"new pair(s) tracked: {len(report.tracked)}; the round's stages: {stages}")
    print(f"scene catalogued -> layer in the cube /timeseries reads: {visible:.1f} s "
          f"(goal {GOAL_S:.0f} s); round done (composites, mosaics refreshed): "
          f"{rounds[1][0] - start:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
