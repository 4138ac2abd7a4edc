"""Mosaic build time for 4 cubes (issue 12): four full 100 km tiles (833 x 833 pixels of
120 m) in a 2 x 2 square, their composites merged into an annual mosaic and the summary.

    .venv/bin/python benchmarks/mosaic_build.py [--years 11] [--out DIR]
                                                [--cube-layers 0]

1. Writes the four tiles' composites (NetCDF, as `glacierflow composite` writes them:
   `--years` annual layers, the climatology, 4 sensor groups; smooth synthetic speeds,
   a third of each tile without data) — composites, not cubes: the fit's own cost is
   benchmarks/composite.py's.
2. Times `mosaic_from_composites` for one year and for the summary (0000): the merge
   (warp onto the mosaic grid, overlap rule), the NetCDF, one COG per variable and the
   Web-Mercator COG, with the time at which each step ended.
   a) the tiles straddle the UTM 32/33 border: the two in zone 33 are reprojected into
      zone 32 (vectors rotated);
   b) baseline, same run: the same four tiles all in zone 32 (no reprojection).
3. With --cube-layers N > 0, also the whole `build_mosaics` from four small synthetic cubes
   (100 x 100 pixels, N layers), composites built on Dask (one task per cube).
Prints wall times, CPU time and the peak RSS, and the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr
from pyproj import CRS

from glacierflow.processing.composites.build import ATTRS, write_composite
from glacierflow.processing.composites.fit import Options
from glacierflow.processing.composites.synthetic import synthetic_cube, write_cube
from glacierflow.processing.cubes.grid import CubeTile, tile_of
from glacierflow.processing.mosaics.build import build_mosaics, mosaic_from_composites
from glacierflow.processing.mosaics.merge import ANNUAL, PER_SENSOR, SUMMARY
from glacierflow.processing.mosaics.regions import Region

SENSORS = ["L7", "L8_L9", "S1A_S1B", "S2A_S2B"]
FIRST_YEAR = 2014
# at 46-47°N, zone 32's tiles from x = 600 to 700 km cover ~10.3-11.6°E, zone 33's from 200
# to 300 km ~11.0-12.4°E: side by side with a strip of overlap, as cubes at a zone border
STRADDLING = [(32632, 600_000, 5_200_000), (32632, 600_000, 5_100_000),
              (32633, 200_000, 5_200_000), (32633, 200_000, 5_100_000)]  # fmt: skip
ONE_ZONE = [(32632, 600_000, 5_200_000), (32632, 600_000, 5_100_000),
            (32632, 700_000, 5_200_000), (32632, 700_000, 5_100_000)]  # fmt: skip
REGION = Region("bench", (10.0, 45.5, 13.0, 47.5))  # centre 11.5°E: zone 32 (EPSG:32632)


def synthetic_composite(tile: CubeTile, years: int, seed: int) -> xr.Dataset:
    """A full tile's composite with every variable of `glacierflow composite`."""
    rng = np.random.default_rng(seed)
    x, y = tile.x, tile.y
    ny, nx = len(y), len(x)
    yy, xx = np.mgrid[0:ny, 0:nx] / max(ny, nx)
    speed = (50 + 2000 * np.exp(-((yy - 0.5) ** 2) * 30) * (0.5 + xx)).astype(np.float32)
    speed[(xx + yy) > 1.4] = np.nan  # a third without data
    angle = rng.uniform(-np.pi, np.pi)
    time_ = np.array([f"{FIRST_YEAR + i}-01-01" for i in range(years)], dtype="datetime64[ns]")
    field = lambda scale=1.0: speed * scale  # noqa: E731
    data = {}
    for name in ANNUAL:
        layers = np.stack([field(1 + 0.02 * i) for i in range(years)])
        if name == "vx":
            layers = layers * np.cos(angle)
        elif name == "vy":
            layers = layers * np.sin(angle)
        elif name.endswith("error"):
            layers = layers * 0.02 + 3
        elif name == "count":
            layers = np.nan_to_num(layers / 10).astype(np.uint32)
        data[name] = (("time", "y", "x"), layers.astype(layers.dtype), ATTRS[name])
    for source in SUMMARY.values():
        value = field(0.1 if "amp" in source or "dt" in source else 1.0)
        if source == "count0":
            value = np.nan_to_num(speed / 2 + rng.integers(0, 50, speed.shape)).astype(np.uint32)
        elif source.endswith("phase"):
            value = np.where(np.isfinite(speed), 180.0, np.nan).astype(np.float32)
        data[source] = (("y", "x"), value, ATTRS[source])
    for name in PER_SENSOR:
        data[name] = (("sensor", "y", "x"), np.stack([field(0.0) + 100] * len(SENSORS)))
    crs = CRS.from_epsg(tile.epsg)
    data["mapping"] = ((), np.int8(0), {"spatial_epsg": tile.epsg, "crs_wkt": crs.to_wkt()})
    return xr.Dataset(
        data,
        coords={"time": time_, "sensor": SENSORS, "y": y, "x": x},
        attrs={"climatology_years": f"{FIRST_YEAR}-{FIRST_YEAR + years - 1}",
               "intercept_date": f"{FIRST_YEAR}-01-01", "projection": str(tile.epsg)},
    )  # fmt: skip


def timed_mosaics(composites: list[Path], year: int, out: Path) -> None:
    events: list[tuple[float, str]] = []
    started, cpu = time.perf_counter(), time.process_time()
    mosaic_from_composites(
        composites, [year], out, REGION,
        progress=lambda m: events.append((time.perf_counter() - started, m)),
    )  # fmt: skip
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    merged = max(t for t, m in events if "merged" in m)
    (netcdf,) = out.glob(f"*_{year:04d}_v02.nc")
    cogs = sorted(out.glob(f"*_{year:04d}_v02_*.tif"))
    with xr.open_dataset(netcdf) as ds:
        shape = f"{ds.sizes['x']} x {ds.sizes['y']} px, {len(ds.data_vars)} variables"
    size = sum(p.stat().st_size for p in [netcdf, *cogs]) / 2**20
    print(f"  {year:04d}: {wall:6.1f} s wall, {cpu:6.1f} CPU-s  (merge {merged:.1f} s, "
          f"NetCDF + {len(cogs)} COGs {wall - merged:.1f} s); {shape}; {size:.0f} MiB")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--years", type=int, default=11)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--cube-layers", type=int, default=0)
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="mosaic-bench-"))
    print(f"load average before: {os.getloadavg()}")
    for label, layout in (("a) two UTM zones (2 of 4 tiles reprojected)", STRADDLING),
                          ("b) baseline: one UTM zone (no reprojection)", ONE_ZONE)):  # fmt: skip
        folder = root / label[0]
        shutil.rmtree(folder, ignore_errors=True)
        paths = []
        t0 = time.perf_counter()
        for seed, (epsg, x0, y0) in enumerate(layout):
            tile = tile_of(epsg, x0 + 1, y0 + 1)
            path = folder / "composites" / tile.name.replace(".zarr", "_composite.nc")
            write_composite(synthetic_composite(tile, args.years, seed), path)
            paths.append(path)
        print(f"{label}: 4 composites of {len(tile.y)} x {len(tile.x)} px x {args.years} years "
              f"written in {time.perf_counter() - t0:.1f} s")  # fmt: skip
        for year in (FIRST_YEAR + args.years - 1, 0):
            timed_mosaics(paths, year, folder / "mosaics")
    if args.cube_layers:
        folder = root / "cubes"
        shutil.rmtree(folder, ignore_errors=True)
        cubes = []
        for seed, (epsg, x0, y0) in enumerate(STRADDLING):
            cube, _ = synthetic_cube(ny=100, nx=100, n_pairs=args.cube_layers, seed=seed,
                                     coverage=0.7, sparse_pixels=0)  # fmt: skip
            cube = cube.assign_coords(x=cube.x + x0 + 40_000, y=cube.y + y0 + 40_000)
            cube["mapping"].attrs.update(spatial_epsg=epsg, crs_wkt=CRS.from_epsg(epsg).to_wkt())
            path = folder / "store" / tile_of(epsg, x0 + 1, y0 + 1).name
            write_cube(cube, str(path))
            cubes.append(path)
        t0, cpu = time.perf_counter(), time.process_time()
        build_mosaics(cubes, [2024, 0], folder / "mosaics", REGION, options=Options(),
                      progress=lambda _: None)  # fmt: skip
        print(f"c) build_mosaics from 4 cubes of 100 x 100 px x {args.cube_layers} layers "
              f"(composites included), year 2024 + 0000: {time.perf_counter() - t0:.1f} s "
              f"wall, {time.process_time() - cpu:.1f} CPU-s (this process's threads)")  # fmt: skip
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak RSS {peak:.2f} GiB; load average after: {os.getloadavg()}")
    if not args.out:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
