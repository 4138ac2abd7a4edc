"""Tracker accuracy against truth on synthetic 1000 x 1000 pairs (16 px grid and chips).

Prints, per case, the valid percentage and the error of measured vectors (RMSE, 99th
percentile, max; pixels), then the three sub-pixel estimators side by side, then the
bias across a sharp rock/ice shear margin, then issue 11's hard scenes subset by subset,
tracked as `glacierflow track` does with its default settings and `--max-speed 6400`.

    .venv/bin/python benchmarks/tracker_accuracy.py [--hard-only] [--size 1000] \
        [--autorift /work/autorift]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import track_synthetic

from glacierflow.processing import synthetic
from glacierflow.processing.pipeline import TrackRequest, track_pair
from glacierflow.processing.tracking.tracker import SubpixelMethod

SHAPE = (1000, 1000)
UNIFORM = synthetic.uniform(0.3, -0.7)
CASES = [
    ("uniform, fractal, 2% noise", dict(field=UNIFORM, texture="fractal", noise=0.02)),
    ("uniform, natural, 2% noise", dict(field=UNIFORM, texture="natural", noise=0.02)),
    (
        "channel flow (smooth margins), fractal",
        dict(field=synthetic.channel_flow(500, 350, 6.0), noise=0.02),
    ),
    ("vortex, fractal", dict(field=synthetic.vortex((500, 500), 200, 5.0), noise=0.02)),
    ("uniform, fractal, radiometric change", dict(field=UNIFORM, noise=0.02, radiometric=True)),
    ("uniform, fractal, 3 cloud holes", dict(field=UNIFORM, noise=0.02, clouds=3)),
    ("uniform, fractal, heavy noise (std = texture)", dict(field=UNIFORM, noise=1.0)),
    (
        "uniform, natural, heavy noise (std = texture)",
        dict(field=UNIFORM, texture="natural", noise=1.0),
    ),
]


def _row(name: str, result, err: np.ndarray, seconds: float) -> str:
    valid = result.valid
    e = err[valid]
    chips = np.bincount(result.chip_px[valid].ravel() // 16, minlength=5)[[1, 2, 4]]
    return (
        f"| {name} | {100 * valid.mean():.1f} | {np.sqrt(np.mean(e**2)):.4f} | "
        f"{np.percentile(e, 99):.3f} | {e.max():.3f} | {'/'.join(map(str, chips))} | "
        f"{seconds:.2f} |"
    )


def cases() -> None:
    print("| case | valid % | RMSE px | p99 px | max px | chips 16/32/64 | track s |")
    print("|---|---|---|---|---|---|---|")
    for k, (name, spec) in enumerate(CASES):
        pair = synthetic.make_pair(SHAPE, seed=100 + k, **spec)
        t0 = time.perf_counter()
        result, err = track_synthetic(pair)
        print(_row(name, result, err, time.perf_counter() - t0), flush=True)


def estimators() -> None:
    print("\n| sub-pixel estimator | texture | RMSE px | p99 px | max px | track s |")
    print("|---|---|---|---|---|---|")
    for texture in ("fractal", "natural"):
        pair = synthetic.make_pair(SHAPE, UNIFORM, texture=texture, noise=0.02, seed=200)
        for method in SubpixelMethod:
            track_synthetic(pair, subpixel=method)  # warm-up: plans
            t0 = time.perf_counter()
            result, err = track_synthetic(pair, subpixel=method)
            e = err[result.valid]
            print(
                f"| {method} | {texture} | {np.sqrt(np.mean(e**2)):.4f} | "
                f"{np.percentile(e, 99):.3f} | {e.max():.3f} | {time.perf_counter() - t0:.2f} |",
                flush=True,
            )


def shear_margin() -> None:
    """Nodes whose chips straddle a sharp margin (1 px wide) between rock and fast ice."""
    field = synthetic.channel_flow(500, 300, 6.0, margin_px=1.0, exponent=8.0)
    pair = synthetic.make_pair(SHAPE, field, noise=0.02, seed=300)
    result, _ = track_synthetic(pair)
    rows = np.arange(result.rows.shape[0]) * 16 + 7.0
    truth_cols = field(rows, np.zeros_like(rows))[1]
    print("\n| distance from margin (px, + = on ice) | true px | measured px (median) | bias px |")
    print("|---|---|---|---|")
    distance = 300 - np.abs(rows - 500)
    for d, t, i in sorted(zip(distance, truth_cols, range(len(rows)), strict=True)):
        if abs(d) <= 40:
            measured = np.nanmedian(result.cols[i])
            print(f"| {d:+.0f} | {t:.3f} | {measured:.3f} | {measured - t:+.3f} |")


HARD_CASES = [
    ("fractal, cloud", dict(texture="fractal", cloud=True)),
    ("natural, cloud", dict(texture="natural", cloud=True)),
    ("fractal, no cloud", dict(texture="fractal", cloud=False)),
    ("natural, no cloud", dict(texture="natural", cloud=False)),
]
SUBSET_NAMES = {
    "margins": "shear margins, no cloud",
    "ice_interior": "ice interior beside the cloud",
    "beside_cloud": "clear ground beside the moving cloud",
    "under_cloud": "under the cloud",
    "stable_rock": "stable rock, clear",
    "all": "all nodes",
}


# 7.5 m pixels, 16 days, --max-speed 6400: the search radius track_pair sets
SEARCH_PX = 39


def _autorift(
    folder_of_runner: Path, scene: synthetic.HardScene, folder: Path
) -> tuple[dict, float]:
    """autoRIFT (built outside the project; its own Python) on the same pair, with the same
    chips, search and node spacing; its vectors as it delivers them (no stable-ground
    correction). The runner (`run_autorift.py` in --autorift DIR, the same one
    tracker_speed.py runs) puts nodes at pixel edges 16 k (k >= 1) and saves the last run's
    dx, dy with --out; the time is that of its second run (numba compiled)."""
    np.save(folder / "ref.npy", scene.ref)
    np.save(folder / "sec.npy", scene.sec)
    out = folder / "autorift.npz"
    options = ["--spacing", "16", "--chip-min", "32", "--chip-max", "128"]
    run = subprocess.run(
        ["/usr/bin/python3", str(folder_of_runner / "run_autorift.py"), str(folder / "ref.npy"),
         str(folder / "sec.npy"), *options, "--search", str(SEARCH_PX), "--out", str(out)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    seconds = float(run.stdout.split("seconds")[-1].split()[0])
    with np.load(out) as vectors:
        dx, dy = vectors["dx"], vectors["dy"]
    rows = 16.0 * np.arange(1, dx.shape[0] + 1)
    cols = 16.0 * np.arange(1, dx.shape[1] + 1)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    true_rows, true_cols = scene.field(rr, cc)
    errors = np.hypot(-dy - true_rows, dx - true_cols)  # autoRIFT's dy: + rows up
    return synthetic.node_subset_figures(errors, rows, cols, scene), seconds


def hard_scenes(size: int, autorift: Path | None) -> None:
    """Issue 11's hard scene and its variants: every subset's valid %, RMSE and the share
    of valid vectors more than 1 px wrong, as the granule delivers them (and autoRIFT's,
    given its runner; where autoRIFT stops, the table says so and goes on)."""
    print(
        f"\n| hard scene ({size}^2) | subset | tracker | nodes | valid % | RMSE px |"
        " valid > 1 px wrong % | track s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, spec in HARD_CASES:
            scene = synthetic.hard_scene(size, **spec)
            ref, sec = synthetic.write_geotiffs(scene, folder, "hard")
            request = TrackRequest(
                ref=str(ref), sec=str(sec), output=folder / "hard.nc", max_speed_m_per_yr=6400
            )
            report = track_pair(request)
            with xr.open_dataset(report.path) as granule:
                runs = [("glacierflow", synthetic.subset_figures(granule, scene))]
            seconds = {"glacierflow": report.seconds["track"]}
            if autorift:
                try:
                    figures, seconds["autoRIFT"] = _autorift(autorift, scene, folder)
                    runs.append(("autoRIFT", figures))
                except subprocess.CalledProcessError as failed:  # its own sys.exit messages
                    reason = (failed.stdout + failed.stderr).strip().splitlines()[-1:]
                    print(f"| {name} | (autoRIFT stopped: {' '.join(reason)}) |")
            for key, label in SUBSET_NAMES.items():
                for tracker, figures in runs:
                    f = figures[key]
                    if f.nodes == 0:
                        continue
                    print(
                        f"| {name} | {label} | {tracker} | {f.nodes} | "
                        f"{100 * f.valid_fraction:.1f} | {f.rmse_px:.3f} | "
                        f"{100 * f.wrong_fraction:.1f} | {seconds[tracker]:.1f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hard-only", action="store_true", help="only the hard scenes")
    parser.add_argument("--size", type=int, default=1000, help="hard scenes' size, pixels")
    parser.add_argument(
        "--autorift", type=Path, help="folder with run_autorift.py: autoRIFT side by side"
    )
    args = parser.parse_args()
    if not args.hard_only:
        cases()
        estimators()
        shear_margin()
    hard_scenes(args.size, args.autorift)
