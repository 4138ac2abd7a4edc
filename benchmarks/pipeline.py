"""`glacierflow run`'s throughput (issue 13): pairs per hour per core, for tracking alone and
for the whole pipeline, and its scaling from one to two Dask worker processes.

    .venv/bin/python benchmarks/pipeline.py [--pairs 8] [--size 600] [--out DIR]

Makes `--pairs` synthetic pairs of `--size`² px scenes (7.5 m pixels, one footprint, 16
days each, one every 45 days) and times, in one run:
  a) baseline: `track_pair` on each pair in turn in this process (one thread): tracking
     alone, no Dask;
  b) `run_pairs` on a LocalCluster of 1 worker process (one thread): every stage (track,
     catalog the granules, ingest into the cube, composite, mosaics, catalog them), in a
     fresh data directory and catalog;
  c) the same on 2 worker processes.
Prints each stage's wall time, pairs per hour per core (a: pairs per hour of CPU time;
b, c: tracking stage: pairs / tracking wall / workers; whole pipeline: pairs / total wall
/ workers), the 2-worker speed-up, and the load average before and after (the machine may
be shared: wall times then stretch).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from support import catalog_server, fresh_catalog

from glacierflow.processing import synthetic
from glacierflow.processing.scenes import Pair, Scene
from glacierflow.run import TRACK_DEFAULTS, dask_client, run_pairs, track_task
from glacierflow.settings import Settings

TEMPLATE = replace(
    TRACK_DEFAULTS, chip_min_m=120, chip_max_m=480, max_speed_m_per_yr=2000, threads=1
)
FIRST = datetime(2023, 3, 1, 12, tzinfo=UTC)


def make_pairs(folder: Path, count: int, size: int) -> list[Pair]:
    footprint = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
    pairs = []
    for k in range(count):
        times = FIRST + timedelta(days=45 * k), FIRST + timedelta(days=45 * k + 16)
        made = synthetic.make_pair(
            (size, size), synthetic.uniform(0.3, -0.7), seed=k, ref_time=times[0], sec_time=times[1]
        )
        paths = synthetic.write_geotiffs(made, folder, f"B{k:03d}")
        scenes = [
            Scene(p.stem, str(p), t, "landsat-8", "oli", synthetic.EPSG, footprint)
            for p, t in zip(paths, times, strict=True)
        ]
        pairs.append(Pair(*scenes))
    return pairs


def tracking_alone(pairs: list[Pair], out: Path) -> tuple[float, float]:
    """Wall and CPU seconds (numpy's BLAS may use more than one core here; a Dask worker's
    is held to one thread)."""
    wall, cpu = time.perf_counter(), time.process_time()
    for pair in pairs:
        track_task(pair, out, TEMPLATE)
    return time.perf_counter() - wall, time.process_time() - cpu


def pipeline(pairs: list[Pair], data_dir: Path, dsn: str, workers: int) -> dict[str, float]:
    settings = Settings(data_dir=data_dir, dask_workers=workers)
    with dask_client(None, workers) as client:
        start = time.perf_counter()
        report = run_pairs(
            settings, pairs, dsn, template=TEMPLATE, client=client, say=lambda _: None
        )
        total = time.perf_counter() - start
    assert report.ok and len(report.tracked) == len(pairs), report.table()
    return {**report.seconds, "total": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--size", type=int, default=600)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="pipeline-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {os.getloadavg()}")
    print(f"{args.pairs} pairs of {args.size} x {args.size} px")
    pairs = make_pairs(root / "scenes", args.pairs, args.size)
    wall, cpu = tracking_alone(pairs, root / "alone")
    n = len(pairs)
    print(
        f"a) tracking alone, 1 process: {wall:.1f} s wall, {cpu:.1f} s CPU: "
        f"{n / cpu * 3600:.0f} pairs per CPU-hour"
    )
    rows = {}
    with catalog_server(root) as server:
        for workers in (1, 2):
            dsn = fresh_catalog(server, f"pipeline_bench_{workers}")
            rows[workers] = pipeline(pairs, root / f"data{workers}", dsn, workers)
    for label, workers in (("b", 1), ("c", 2)):
        s = rows[workers]
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in s.items() if k != "total")
        print(
            f"{label}) run_pairs, {workers} worker(s): {s['total']:.1f} s ({stages}); "
            f"tracking {n / s['track'] * 3600 / workers:.0f} pairs/h/core, whole pipeline "
            f"{n / s['total'] * 3600 / workers:.0f} pairs/h/core"
        )
    print(
        f"2 workers vs 1: tracking {rows[1]['track'] / rows[2]['track']:.2f}x, whole pipeline "
        f"{rows[1]['total'] / rows[2]['total']:.2f}x faster"
    )
    print(f"load average after: {os.getloadavg()}")
    if not args.out:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
