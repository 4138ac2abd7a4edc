"""The demo region: what a scene costs to make, against what tracking a pair of them costs
(the baseline: the work each scene feeds), and how close granules come to the truth.

For each sensor, `--scenes` acquisitions of the default 24 x 18 km region (clear skies) are
rendered and written as COGs (the first also makes the textures: reported apart); then
one pair per case is tracked with `track_pair` (240-960 m chips, 120 m posting, cloud
masks given) and compared with `Region.pair_velocity` at every node: median and 90th
percentile of the vector error (m/yr) inside the ice (away from the shear margins), in
the margins and on rock, and the mean error (bias) inside the ice.

    .venv/bin/python benchmarks/region.py [--scenes 3] [--width 24000 --height 18000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from glacierflow.processing.scenes.region import LANDSAT, SENTINEL2, Region

CASES = (  # (name, reference sensor, secondary sensor, start, days to the secondary)
    ("landsat 16 d, june", LANDSAT, LANDSAT, datetime(2024, 6, 10, tzinfo=UTC), 16),
    ("landsat 32 d, october", LANDSAT, LANDSAT, datetime(2024, 10, 1, tzinfo=UTC), 32),
    ("sentinel-2 5 d, surge", SENTINEL2, SENTINEL2, datetime(2025, 4, 1, tzinfo=UTC), 5),
    ("sentinel-2 60 d, summer", SENTINEL2, SENTINEL2, datetime(2024, 7, 1, tzinfo=UTC), 60),
    ("landsat x sentinel-2", LANDSAT, SENTINEL2, datetime(2024, 8, 20, tzinfo=UTC), 3),
)


def generation(region: Region, folder: Path, count: int) -> dict[str, float]:
    print("| sensor | pixels | first scene s (textures) | next scenes s/scene | Mpx/s |")
    print("|---|---|---|---|---|")
    per_scene = {}
    for sensor in (LANDSAT, SENTINEL2):
        start = datetime(2024, 6, 1, tzinfo=UTC)
        acquisitions = region.acquisitions(start, start + timedelta(days=400), [sensor])
        times = []
        for acquisition in acquisitions[: count + 1]:
            t = time.perf_counter()
            acquisition.write(folder)
            times.append(time.perf_counter() - t)
        pixels = int(region.width_m / sensor.pixel_m) * int(region.height_m / sensor.pixel_m)
        per_scene[sensor.name] = float(np.median(times[1:]))
        print(
            f"| {sensor.name} | {pixels / 1e6:.2f} M | {times[0]:.1f} | "
            f"{per_scene[sensor.name]:.2f} | {pixels / 1e6 / per_scene[sensor.name]:.1f} |"
        )
    return per_scene


def accuracy(region: Region, folder: Path) -> dict[str, float]:
    print()
    print(
        "| pair | dt d | track s | ice median / p90 | ice bias | margins median / p90 "
        "| rock median / p90 | truth max |"
    )
    print("|---|---|---|---|---|---|---|---|")
    tracked = {}
    for name, first, second, start, days in CASES:
        ref = region.acquisitions(start, start + timedelta(days=30), [first])[0]
        after = ref.when + timedelta(days=days - 0.5)
        sec = region.acquisitions(after, after + timedelta(days=30), [second])[0]
        a, b = ref.write(folder), sec.write(folder)
        t = time.perf_counter()
        _, f = region.track(a, b, folder / "granules")
        tracked[name] = time.perf_counter() - t
        print(
            f"| {name} | {(b.datetime - a.datetime).total_seconds() / 86_400:.0f} "
            f"| {tracked[name]:.1f} | {_cell(f, 'ice')} | {f['ice_bias']:.1f} "
            f"| {_cell(f, 'margins')} | {_cell(f, 'rock')} | {f['truth_max']:.0f} |"
        )
    return tracked


def _cell(figures: dict[str, float], subset: str) -> str:
    return f"{figures[subset + '_median']:.0f} / {figures[subset + '_p90']:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=3, help="scenes timed per sensor")
    parser.add_argument("--width", type=float, default=24_000.0)
    parser.add_argument("--height", type=float, default=18_000.0)
    args = parser.parse_args()
    region = Region(width_m=args.width, height_m=args.height, clear_days=1.0)
    with tempfile.TemporaryDirectory(prefix="region-bench-") as tmp:
        per_scene = generation(region, Path(tmp) / "timed", args.scenes)
        tracked = accuracy(region, Path(tmp) / "pairs")
    same = {"landsat": "landsat 16 d, june", "sentinel-2": "sentinel-2 5 d, surge"}
    print()
    for sensor, case in same.items():
        ratio = per_scene[sensor] / tracked[case]
        print(f"{sensor}: one scene costs {ratio:.2f} x tracking one pair of them ({case})")


if __name__ == "__main__":
    main()
