"""Masks of unusable pixels on issue 11's hard scene: subset figures with and without the
cloud masks given, and what masked NCC costs.

Each case tracks the hard scene (`synthetic.hard_scene`, default settings,
`--max-speed 6400`) as `glacierflow track` does, from GeoTIFFs to the granule, once
without masks and once with `--ref-mask/--sec-mask` (the scene's cloud masks, as QA bands
would give them). Goals (issue 11 #2): with the masks, <= 5 % of the nodes under the
cloud keep a vector and clear ground has RMSE <= 0.5 px. The cloud-free variant of the
same scene is tracked too, for the error its clear-ground nodes have without any cloud.
First, what a masked chip costs: masked NCC against the unmasked FFT NCC, chips/s, on
the tracker's chip and search shapes (the tracker takes the masked path only for chips
that hold unusable pixels).

    .venv/bin/python benchmarks/tracker_masks.py [--size 1000] [--texture fractal natural]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import xarray as xr

from glacierflow.processing import synthetic
from glacierflow.processing.pipeline import TrackRequest, track_pair
from glacierflow.processing.tracking.correlation import masked_ncc_surfaces, ncc_surfaces


def core_cost(repeat: int = 3) -> None:
    rng = np.random.default_rng(0)
    n = 1024
    print("| chip px | search +- px | unmasked chips/s | masked chips/s | ratio |")
    print("|---|---|---|---|---|")
    for chip, radius in ((32, 38), (32, 4), (64, 4)):
        span = chip + 2 * radius
        windows = rng.standard_normal((n, span, span)).astype(np.float32)
        templates = windows[:, radius : radius + chip, radius : radius + chip].copy()
        t_valid = rng.random(templates.shape) > 0.3
        w_valid = rng.random(windows.shape) > 0.3
        ncc_surfaces(templates, windows)  # plans
        plain = min(_timed(ncc_surfaces, templates, windows) for _ in range(repeat))
        masked = min(
            _timed(masked_ncc_surfaces, templates, t_valid, windows, w_valid, chip * chip // 2)
            for _ in range(repeat)
        )
        print(f"| {chip} | {radius} | {n / plain:.0f} | {n / masked:.0f} | {masked / plain:.1f}x |")


def _timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def _mask_file(scene: synthetic.HardScene, cloud: np.ndarray, path: Path) -> Path:
    with rasterio.open(
        path, "w", driver="GTiff", height=cloud.shape[0], width=cloud.shape[1], count=1,
        dtype="uint8", crs=f"EPSG:{scene.epsg}", transform=scene.transform,
    ) as dst:  # fmt: skip
        dst.write(cloud.astype(np.uint8), 1)
    return path


def run(size: int, texture: str, folder: Path) -> None:
    scene = synthetic.hard_scene(size, texture=texture)
    ref, sec = synthetic.write_geotiffs(scene, folder, f"hard_{texture}")
    masks = {
        "ref_mask": str(_mask_file(scene, scene.ref_cloud, folder / "ref_cloud.tif")),
        "sec_mask": str(_mask_file(scene, scene.sec_cloud, folder / "sec_cloud.tif")),
    }
    # the same glacier without the cloud: its granule is judged on the clouded scene's
    # subsets (the truth is the same field)
    clear = synthetic.hard_scene(size, texture=texture, cloud=False)
    cases = [
        ("no masks", (ref, sec), {}),
        ("cloud masks", (ref, sec), masks),
        ("cloud-free scene", synthetic.write_geotiffs(clear, folder, "clear"), {}),
    ]
    for label, (ref, sec), extra in cases:
        request = TrackRequest(
            ref=str(ref), sec=str(sec), output=folder / "hard.nc", max_speed_m_per_yr=6400,
            **extra,
        )  # fmt: skip
        report = track_pair(request)
        with xr.open_dataset(report.path) as granule:
            figures = synthetic.subset_figures(granule, scene)
        beside = figures["beside_cloud"]
        under = figures["under_cloud"]
        print(
            f"| {texture} | {label} | {100 * under.valid_fraction:.1f} ({under.nodes}) | "
            f"{beside.rmse_px:.3f} | {100 * beside.valid_fraction:.1f} | "
            f"{figures['ice_interior'].rmse_px:.3f} | {figures['stable_rock'].rmse_px:.3f} | "
            f"{figures['all'].rmse_px:.3f} | "
            f"{report.seconds['track']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1000, help="the scene's size, pixels")
    parser.add_argument("--texture", nargs="+", default=["fractal", "natural"])
    args = parser.parse_args()
    core_cost()
    print(
        f"\n| texture ({args.size}^2) | masks | under the cloud: valid % (nodes) | "
        "clear ground beside the cloud: RMSE px | valid % | ice interior beside it: RMSE px | "
        "stable rock RMSE px | all nodes RMSE px | track s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for texture in args.texture:
            run(args.size, texture, Path(tmp))
