"""Plain `xarray.open_zarr(cube)`, default arguments, as a user without glacierflow reads a
cube: glacierflow's layout against ITS_LIVE's (20000 x 10 x 10 chunks, zlib) in the same
run.

    .venv/bin/python benchmarks/cube_xarray.py [--layers 20000] [--short 100] [--repeat 3]

1. A long cube: LAYERS layers with data in a 150 x 150-pixel window of the tile (seasonal
   speeds with 30 m/yr of noise, 30 % empty), written straight with the layout code
   (`write_zarr`), not by ingesting granules. Read: one point's whole series, and a
   100 x 100-pixel window's whole history, not aligned with any chunk.
2. A short cube: SHORT layers over the whole tile. Read: one whole layer.

Each read runs in a fresh Python process that imports xarray only (zarr-python's own codec
pipeline, dask's default threaded scheduler), opens the cube and reads `v`; it prints
the open and read times, the dask chunks of `v`, and its peak memory (VmHWM). The
figure is the median over REPEAT processes. Files are in the page cache (just written).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import dask.array
import numpy as np
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import landsat8_pair

from glacierflow.processing.cubes.grid import CubeTile
from glacierflow.processing.cubes.layers import Layer
from glacierflow.processing.cubes.layout import (
    CUBE_LAYOUT,
    GRIDDED,
    ITS_LIVE_LAYOUT,
    TIME_DIM,
    ChunkLayout,
    layer_figure_names,
)
from glacierflow.processing.cubes.store import WINDOW_ATTR, layers_dataset, write_zarr

TILE = CubeTile(3413, -200_000, -2_300_000)
LONG_WINDOW = (425, 575, 425, 575)  # rows, cols holding data in the long cube
READ_WINDOW = (440, 540, 455, 555)  # the 100 x 100 window read: 3 x 3 chunks of 50 px
POINT = (487, 512)
LAYOUTS = {"glacierflow": CUBE_LAYOUT, "ITS_LIVE": ITS_LIVE_LAYOUT}

READ = r"""
import json, re, sys, time
import xarray as xr
t0 = time.perf_counter()
ds = xr.open_zarr(sys.argv[1])
opened = time.perf_counter()
v = ds["v"]
what = json.loads(sys.argv[2])
values = v.isel({k: slice(*s) if isinstance(s, list) else s for k, s in what.items()}).values
done = time.perf_counter()
print(json.dumps({
    "open_s": opened - t0, "read_s": done - opened, "chunks": v.data.npartitions,
    "rss_mb": int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read())[1]) / 1024,
    "mb": values.nbytes / 1e6,
}))
"""


def pair_layers(n: int, row: int, col: int) -> list[Layer]:
    """n layers of one pixel each (the 1-D metadata); the 3-D values come lazily."""
    start = datetime(2014, 1, 1, 12)
    gridded = {name: np.full((1, 1), fill, dtype) for name, (dtype, fill, _) in GRIDDED.items()}
    figures = dict.fromkeys(layer_figure_names(), 5.0)
    layers = []
    for k in range(n):
        centre = start + timedelta(hours=7 * k)
        pair = landsat8_pair(centre, 16.0)
        url = f"bench/granule_{k:06d}.nc"
        layers.append(Layer(TILE, url, pair["date_center"], row, col, gridded, figures, pair))
    return layers


def _speeds(
    block: np.ndarray, window: tuple[int, int, int, int], block_info: dict | None = None
) -> np.ndarray:
    """One block of seasonal speeds, 30 % empty; fill outside the window."""
    (t0, t1), (r0, r1), (c0, c1) = block_info[None]["array-location"]
    wr0, wr1, wc0, wc1 = window
    out = np.full(block.shape, -32767, np.int16)
    rows = slice(max(r0, wr0) - r0, max(min(r1, wr1) - r0, 0))
    cols = slice(max(c0, wc0) - c0, max(min(c1, wc1) - c0, 0))
    rng = np.random.default_rng(r0 * 1000 + c0)
    shape = out[:, rows, cols].shape
    season = 1 + 0.3 * np.sin(2 * np.pi * np.arange(t0, t1) / 52)[:, None, None]
    values = (800 * season).astype(np.int16) + rng.integers(-30, 30, shape, dtype=np.int16)
    out[:, rows, cols] = np.where(rng.integers(0, 10, shape, dtype=np.uint8) < 3, -32767, values)
    return out


def synthetic_cube(n: int, window: tuple[int, int, int, int]) -> xr.Dataset:
    """A cube Dataset of n layers with data in `window`, built lazily block by block."""
    r0, _, c0, _ = window
    ds = layers_dataset(TILE, pair_layers(n, r0, c0))
    shape = (n, len(TILE.y), len(TILE.x))
    speeds = dask.array.map_blocks(
        functools.partial(_speeds, window=window),
        dask.array.empty(shape, np.int16, chunks=(n, 50, 50)),
        dtype=np.int16,
    )
    for name, (dtype, fill, _) in GRIDDED.items():
        data = (
            speeds
            if name in ("v", "vx", "vy", "v_error")
            else dask.array.full(shape, fill, dtype=dtype, chunks=(n, 50, 50))
        )
        ds[name] = ds[name].copy(data=data)
    ds.attrs[WINDOW_ATTR] = json.dumps(list(window))
    return ds


def write(ds: xr.Dataset, path: Path, layout: ChunkLayout) -> tuple[float, float]:
    t0 = time.perf_counter()
    with dask.config.set(scheduler="threads"):
        write_zarr(ds, path, layout)
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return time.perf_counter() - t0, size / 1e6


def read(path: Path, what: dict, repeat: int) -> dict:
    """Median figures of `repeat` fresh processes reading `what` of `v`."""
    runs = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", READ, str(path), json.dumps(what)],
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(out.stdout))
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def report(label: str, figures: dict) -> None:
    print(
        f"  {label:34s} open {figures['open_s']:5.2f} s  read {figures['read_s']:6.2f} s  "
        f"{figures['chunks']:6d} dask chunks  {figures['mb']:6.1f} MB  "
        f"peak {figures['rss_mb']:5.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layers", type=int, default=20_000)
    parser.add_argument("--short", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    r0, r1, c0, c1 = READ_WINDOW
    with tempfile.TemporaryDirectory() as tmp:
        for name, layout in LAYOUTS.items():
            print(f"{name}: 3-D chunks {layout.chunks(args.layers, 834, 834)}")
            path = Path(tmp) / f"{name}-long.zarr"
            seconds, mb = write(synthetic_cube(args.layers, LONG_WINDOW), path, layout)
            print(
                f"  {args.layers} layers, data {LONG_WINDOW}: {seconds:.0f} s to write, {mb:.0f} MB"
            )
            report("one point's series", read(path, {"y": POINT[0], "x": POINT[1]}, args.repeat))
            window = {"y": [r0, r1], "x": [c0, c1]}
            report("100 x 100 window, whole history", read(path, window, args.repeat))
            path = Path(tmp) / f"{name}-short.zarr"
            seconds, mb = write(synthetic_cube(args.short, (0, 834, 0, 834)), path, layout)
            print(f"  {args.short} layers, whole tile: {seconds:.0f} s to write, {mb:.0f} MB")
            layer = {TIME_DIM: args.short // 2}
            report("one whole layer", read(path, layer, args.repeat))


if __name__ == "__main__":
    main()
