"""Composite throughput and memory on an 833 x 833 x 5,000 cube (issue 12), measured on a
fraction of its blocks and extrapolated; the same fit one pixel at a time as the baseline.

    .venv/bin/python benchmarks/composite.py [--layers 5000] [--blocks 4] [--workers 2]
                                             [--loop-pixels 20]

1. Draws one 50 x 50-pixel block of a synthetic cube (processing/composites/synthetic.py:
   `--layers` pairs over 2014-2024, four sensors, 70 % coverage, 5 % outliers).
2. Times `composite_block` on it once alone, then `--blocks` times on `--workers` threads
   as `build_composite` runs them (every block of a cube costs the same: the work is set
   by pixels x layers), and extrapolates the better to the 278 blocks of an 833 x 833
   tile. Peak memory: tracemalloc's peak during one block (numpy's allocations
   included) times the workers, plus the whole tile's output arrays and the blocks read.
3. Baseline, same run: `composite_block` on single pixels (a Python loop per pixel, the
   shape of ITS_LIVE's code), `--loop-pixels` of them, per pixel.
4. Truth of the whole block against the synthetic answer (worst pixel).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from glacierflow.processing.composites.build import SENSOR_GROUPS, build_composite, cube_pairs
from glacierflow.processing.composites.fit import Options, composite_block
from glacierflow.processing.composites.synthetic import synthetic_cube

TILE_PX = 833
BLOCK_PX = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=5000)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--loop-pixels", type=int, default=20)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument(
        "--export-case",
        metavar="NPZ",
        help="Only write the truth-test cube, its answer and glacierflow's composite of it "
        "to NPZ, for benchmarks/composite_itslive.py",
    )
    parser.add_argument(
        "--outlier-share", type=float, default=0.05, help="of the exported case [0.05]"
    )
    args = parser.parse_args()
    if args.export_case:
        export_case(args.export_case, args.outlier_share)
        return

    started = time.perf_counter()
    cube, truth = synthetic_cube(
        ny=BLOCK_PX, nx=BLOCK_PX, n_pairs=args.layers, coverage=0.7, sparse_pixels=0
    )
    pairs, order = cube_pairs(cube)
    n_pix = BLOCK_PX * BLOCK_PX
    vx = np.ascontiguousarray(cube["vx"].values[order].reshape(len(order), -1).T)
    vy = np.ascontiguousarray(cube["vy"].values[order].reshape(len(order), -1).T)
    drawn = time.perf_counter() - started
    print(f"synthetic block {BLOCK_PX}x{BLOCK_PX}x{args.layers}: {drawn:.1f} s")
    print(f"years {pairs.years[0]}-{pairs.years[-1]}, sensor groups {pairs.groups}, "
          f"valid values {np.isfinite(vx).mean():.0%}")  # fmt: skip

    options = Options()
    tracemalloc.start()
    t0 = time.perf_counter()
    result = composite_block(vx, vy, pairs, options)
    times = [time.perf_counter() - t0]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # the rest on `--workers` threads, as build_composite runs them
    t0, cpu0 = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(lambda _: composite_block(vx, vy, pairs, options), range(args.blocks)))
    threaded = (time.perf_counter() - t0) / args.blocks
    cpu = (time.process_time() - cpu0) / args.blocks
    load = os.getloadavg()[0]
    per_block = min(times[0], threaded)
    rate = n_pix * args.layers / per_block
    tile_pixels = TILE_PX * TILE_PX
    tile_blocks = tile_pixels / n_pix
    whole = per_block * tile_blocks
    # the composite's arrays for the whole tile (float32; annual ones per year)
    annual = 7 * len(pairs.years) * tile_pixels * 4
    per_pixel = (len(result) - 7) * tile_pixels * 4 + 2 * len(pairs.groups) * tile_pixels * 4
    # one block as read from the cube: int16 vx, vy plus their float32 copies
    block_read = 2 * n_pix * args.layers * (2 + 4)
    memory = args.workers * (peak + block_read) + annual + per_pixel
    print(f"batched: one block alone {times[0]:.2f} s; {args.blocks} blocks on {args.workers} "
          f"threads {threaded:.2f} s per block, {cpu:.2f} CPU-s per block "
          f"(load average {load:.1f} on {os.cpu_count()} CPUs)")  # fmt: skip
    print(f"  CPU-bound estimate on {args.workers} idle cores: "
          f"{cpu * tile_blocks / args.workers / 60:.1f} min for the whole cube")  # fmt: skip
    print(f"  throughput {rate / 1e6:.2f} M pixel-layers/s; whole {TILE_PX}x{TILE_PX}x"
          f"{args.layers} cube ~{whole / 60:.1f} min ({tile_blocks:.0f} blocks)")  # fmt: skip
    print(f"  peak memory: {args.workers} x (fit of one block {peak / 2**20:.0f} MiB "
          f"(tracemalloc) + block read {block_read / 2**20:.0f} MiB) + tile outputs "
          f"{(annual + per_pixel) / 2**20:.0f} MiB = {memory / 2**30:.2f} GiB")  # fmt: skip

    loop_times = []
    for p in range(args.loop_pixels):
        t0 = time.perf_counter()
        composite_block(vx[p : p + 1], vy[p : p + 1], pairs, options)
        loop_times.append(time.perf_counter() - t0)
    per_pixel_loop = statistics.median(loop_times)
    print(f"baseline, one pixel at a time: {per_pixel_loop * 1e3:.0f} ms per pixel, "
          f"{args.layers / per_pixel_loop / 1e6:.3f} M pixel-layers/s; whole cube "
          f"~{per_pixel_loop * tile_pixels / 3600:.1f} h "
          f"(batched is {per_pixel_loop * n_pix / per_block:.0f}x faster)")  # fmt: skip

    v = result["v"]
    worst_annual = np.nanmax(np.abs(v - truth.annual) / truth.annual)
    worst_amp = np.nanmax(np.abs(result["v_amp"] - truth.amplitude) / truth.amplitude)
    days = (result["v_phase"] - truth.phase + 365.25 / 2) % 365.25 - 365.25 / 2
    worst_trend = np.nanmax(np.abs(result["dv_dt"] - truth.trend) / np.abs(truth.trend))
    fitted = np.isfinite(result["v0"]).mean()
    print(f"truth over the block ({fitted:.0%} of pixels fitted): annual worst "
          f"{worst_annual:.2%}, amplitude worst {worst_amp:.1%}, phase worst "
          f"{np.nanmax(np.abs(days)):.1f} d, trend worst {worst_trend:.1%}")  # fmt: skip
    assert set(pairs.groups) <= set(SENSOR_GROUPS.values())


def export_case(path: str, outlier_share: float) -> None:
    """The truth test's cube (tests/processing/composites), its truth and our composite,
    as plain arrays that ITS_LIVE's functions can take."""
    cube, truth = synthetic_cube(sparse_pixels=0, outlier_share=outlier_share)
    pairs, order = cube_pairs(cube)
    t0 = time.perf_counter()
    composite, _ = build_composite(cube, workers=1)
    seconds = time.perf_counter() - t0
    n_time = len(order)

    def per_pixel(name: str) -> np.ndarray:
        values = composite[name].values
        return values.reshape(values.shape[0], -1).T if values.ndim == 3 else values.ravel()

    np.savez(
        path,
        vx=cube["vx"].values[order].reshape(n_time, -1).T,
        vy=cube["vy"].values[order].reshape(n_time, -1).T,
        start=cube["acquisition_date_img1"].values[order].astype("datetime64[s]").astype(str),
        stop=cube["acquisition_date_img2"].values[order].astype("datetime64[s]").astype(str),
        date_dt=cube["date_dt"].values[order],
        error_x=pairs.error_x,
        error_y=pairs.error_y,
        group=pairs.group,
        **{f"truth_{k}": getattr(truth, k) for k in ("years", "annual", "v0", "trend",
                                                      "amplitude", "phase")},
        **{f"ours_{k}": per_pixel(k) for k in ("v", "v0", "dv_dt", "v_amp", "v_phase")},
        ours_years=composite["time"].dt.year.values,
        ours_seconds=seconds,
    )  # fmt: skip
    print(f"{path}: {cube.sizes['y']}x{cube.sizes['x']}x{n_time}, ours {seconds:.2f} s")


if __name__ == "__main__":
    main()
