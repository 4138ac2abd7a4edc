"""Reference velocities: the demo region's pairs tracked without and with a prior.

A first pipeline run (`run_pairs`, one Dask worker, no catalog) on a season of the
region's Landsat-like pairs (16-64 days, March-November 2024: the composites
fit pixels with at least 30 pairs) makes cubes, composites
and the summary mosaic; its vx/vy COGs are then the prior of later pairs (as `run` does
once a region has a summary mosaic). Each later pair is tracked without and with it
(`glacierflow.references.reference_effect`: the run's tracker defaults, cloud masks
given), once with the default search (10,000 m/yr) and once with a narrow one sized
for the region's usual speeds (`--narrow`, m/yr), and compared with the truth: median
and 90th percentile of the vector error (m/yr) inside the ice, in the shear margins and
on rock, the share of nodes with a vector, and the seconds tracking took.

    .venv/bin/python benchmarks/references.py [--width 6000 --height 4800] [--narrow 1500]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from glacierflow.processing.scenes import Pair
from glacierflow.processing.scenes.pairing import PairRules, find_pairs
from glacierflow.processing.scenes.region import LANDSAT, Region
from glacierflow.references import effect_table, mosaic_reference, reference_effect
from glacierflow.run import TRACK_DEFAULTS, run_pairs
from glacierflow.settings import Settings

LANDSAT_WINDOW = PairRules(dt_days={("oli", "oli"): (16, 64)}, max_pairs_per_scene=4)
CASES = (  # (what, reference acquisition, days to the secondary)
    ("summer", datetime(2024, 6, 20, tzinfo=UTC), 32),
    ("surge", datetime(2025, 3, 20, tzinfo=UTC), 32),
    ("surge, long", datetime(2025, 3, 20, tzinfo=UTC), 64),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=float, default=6_000.0)
    parser.add_argument("--height", type=float, default=4_800.0)
    parser.add_argument("--narrow", type=float, default=1_500.0, help="m/yr")
    args = parser.parse_args()
    region = Region(width_m=args.width, height_m=args.height, clear_days=1.0)
    with tempfile.TemporaryDirectory(prefix="references-") as tmp:
        folder = Path(tmp)
        clock = time.perf_counter()
        season = region.write_scenes(
            folder / "scenes",
            datetime(2024, 3, 1, tzinfo=UTC),
            datetime(2024, 12, 1, tzinfo=UTC),
            [LANDSAT],
        )
        first = find_pairs(season, LANDSAT_WINDOW)
        print(f"first run: {len(season)} scenes, {len(first)} pairs", flush=True)
        settings = Settings(data_dir=folder / "data", dask_workers=1)
        report = run_pairs(settings, first, None, region="DEMO", say=lambda _: None)
        (summary,) = [m for m in report.mosaics if m.year == 0]
        reference = mosaic_reference(summary)
        print(f"first run and its summary mosaic: {time.perf_counter() - clock:.0f} s\n")
        later = []
        for _, start, days in CASES:  # days: a multiple of the 16-day revisit
            passes = region.acquisitions(start, start + timedelta(days=days + 16), [LANDSAT])
            ref, sec = (
                passes[0].write(folder / "scenes"),
                passes[days // 16].write(folder / "scenes"),
            )
            later.append(Pair(ref, sec))
        rows = []
        for speed in (TRACK_DEFAULTS.max_speed_m_per_yr, args.narrow):
            template = replace(TRACK_DEFAULTS, max_speed_m_per_yr=speed)
            rows += reference_effect(
                region, later, reference, folder / f"effect-{speed:g}", template
            )
        print(effect_table(rows))


if __name__ == "__main__":
    main()
