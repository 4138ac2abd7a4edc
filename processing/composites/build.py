"""A cube's annual composite: read the cube block by block, fit (fit.py), write NetCDF.

The output follows ITS_LIVE's composites: annual `v, vx, vy, v_error, vx_error, vy_error,
count` on (time, y, x), with time the 1 January of each year; the climatology `v0, vx0,
vy0, *_error, dv_dt, dvx_dt, dvy_dt, v_amp, vx_amp, vy_amp, *_amp_error, v_phase,
vx_phase, vy_phase, count0, outlier_percent` on (y, x); `dt_max` and `sensor_flag` on
(sensor, y, x); the cube's `mapping`, `landice` and `floatingice`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from glacierflow.processing.composites.fit import (
    Options,
    Pairs,
    composite_block,
    decimal_year,
)
from glacierflow.processing.io.staging import staged

# ITS_LIVE's systematic error added to vx/vy_error by stable_shift_flag (m/yr)
CO_REGISTRATION_ERROR = {0: 100.0, 1: 5.0, 2: 20.0}
# satellite_img1 -> ITS_LIVE's sensor group label (the `sensor` dimension)
SENSOR_GROUPS = {
    "4": "L4_L5",
    "5": "L4_L5",
    "7": "L7",
    "8": "L8_L9",
    "9": "L8_L9",
    "1A": "S1A_S1B",
    "1B": "S1A_S1B",
    "1C": "S1A_S1B",
    "2A": "S2A_S2B",
    "2B": "S2A_S2B",
    "2C": "S2A_S2B",
}
BLOCK_PX = 50  # the cube's own chunk side: each block is one read per variable

ANNUAL = ("v", "vx", "vy", "v_error", "vx_error", "vy_error", "count")
PER_SENSOR = ("dt_max", "sensor_flag")
ATTRS: dict[str, dict[str, str]] = {
    "v": {"description": "mean annual velocity: hypotenuse of vx and vy", "units": "meter/year"},
    "vx": {"description": "mean annual vx of the least-squares fit", "units": "meter/year"},
    "vy": {"description": "mean annual vy of the least-squares fit", "units": "meter/year"},
    "v_error": {"description": "error of v", "units": "meter/year"},
    "vx_error": {"description": "error of vx", "units": "meter/year"},
    "vy_error": {"description": "error of vy", "units": "meter/year"},
    "count": {"description": "image pairs in the fit overlapping the year", "units": "1"},
    "v0": {"description": "climatological velocity: hypotenuse of vx0, vy0", "units": "meter/year"},
    "vx0": {"description": "climatological vx: line fit through annual vx", "units": "meter/year"},
    "vy0": {"description": "climatological vy: line fit through annual vy", "units": "meter/year"},
    "v0_error": {"description": "error of v0", "units": "meter/year"},
    "vx0_error": {"description": "error of vx0", "units": "meter/year"},
    "vy0_error": {"description": "error of vy0", "units": "meter/year"},
    "dv_dt": {"description": "trend of v along the flow (vx0, vy0)", "units": "meter/year^2"},
    "dvx_dt": {"description": "trend of annual vx", "units": "meter/year^2"},
    "dvy_dt": {"description": "trend of annual vy", "units": "meter/year^2"},
    "v_amp": {"description": "seasonal amplitude along the flow", "units": "meter/year"},
    "vx_amp": {"description": "seasonal amplitude of vx", "units": "meter/year"},
    "vy_amp": {"description": "seasonal amplitude of vy", "units": "meter/year"},
    "v_amp_error": {"description": "error of v_amp", "units": "meter/year"},
    "vx_amp_error": {"description": "error of vx_amp", "units": "meter/year"},
    "vy_amp_error": {"description": "error of vy_amp", "units": "meter/year"},
    "v_phase": {"description": "day of the seasonal maximum along the flow", "units": "day"},
    "vx_phase": {"description": "day of the seasonal maximum of vx", "units": "day"},
    "vy_phase": {"description": "day of the seasonal maximum of vy", "units": "day"},
    "count0": {"description": "valid image pairs with mid-date in the window", "units": "1"},
    "outlier_percent": {
        "description": "share of count0 left out of the window's fit (outliers, dt_max)",
        "units": "percent",
    },
    "dt_max": {"description": "longest dt kept per sensor group (NaN: no limit)", "units": "day"},
    "sensor_flag": {
        "description": "1 where the sensor group was left out of the fit",
        "flag_values": "0 1",
        "flag_meanings": "included excluded",
    },
}
COPIED = ("mapping", "landice", "floatingice")


class CompositeError(ValueError):
    """A cube that cannot be composited, with the reason."""


@dataclass(frozen=True)
class Summary:
    """What a composite run found."""

    years: tuple[int, int]
    pixels_with_data: int
    pixels_fitted: int

    @property
    def too_few_pairs(self) -> int:
        """Pixels with some data but too few pairs for a fit (left NaN)."""
        return self.pixels_with_data - self.pixels_fitted


def cube_pairs(cube: xr.Dataset) -> tuple[Pairs, np.ndarray]:
    """The fit's view of the cube's layers and the order (by mid-date) that gives it."""
    missing = [
        name
        for name in (
            "vx",
            "vy",
            "vx_error",
            "vy_error",
            "acquisition_date_img1",
            "acquisition_date_img2",
            "satellite_img1",
        )
        if name not in cube.variables
    ]
    if missing:
        raise CompositeError(f"not a velocity cube: no {', '.join(missing)}")
    if cube.sizes.get("mid_date", 0) == 0:
        raise CompositeError("the cube has no layers")
    first = cube["acquisition_date_img1"].values.astype("datetime64[ms]")
    second = cube["acquisition_date_img2"].values.astype("datetime64[ms]")
    start, stop = decimal_year(first), decimal_year(second)
    dt_days = (second - first) / np.timedelta64(1, "D")
    order = np.argsort((start + stop) / 2, kind="stable")
    errors = []
    for component in ("vx", "vy"):
        error = cube[f"{component}_error"].values.astype(np.float64)
        slow = f"{component}_error_slow"  # ITS_LIVE prefers it where it exists
        if slow in cube.variables:
            slow_error = cube[slow].values.astype(np.float64)
            error = np.where(np.isfinite(slow_error), slow_error, error)
        if "stable_shift_flag" in cube.variables:
            flag = cube["stable_shift_flag"].values
            for value, extra in CO_REGISTRATION_ERROR.items():
                error = np.where(flag == value, error + extra, error)
        errors.append(error)
    # older ITS_LIVE cubes store Landsat numbers as floats: 8.0 or "8."
    satellites = (str(s).strip().removesuffix(".0").removesuffix(".") for s in
                  cube["satellite_img1"].values.tolist())  # fmt: skip
    group = np.array([SENSOR_GROUPS.get(s, s) for s in satellites])
    usable = (stop > start) & np.isfinite(errors[0]) & np.isfinite(errors[1])
    usable &= (errors[0] > 0) & (errors[1] > 0)
    order = order[usable[order]]
    if order.size == 0:
        raise CompositeError("no layer has dates and errors the fit can use")
    pairs = Pairs(
        start[order], stop[order], dt_days[order], errors[0][order], errors[1][order],
        group[order],
    )  # fmt: skip
    return pairs, order


def _velocity(cube: xr.Dataset, name: str, ys: slice, xs: slice, order: np.ndarray) -> np.ndarray:
    """(pixels, pairs) float values of a block, NaN for no data."""
    block = cube[name].isel(y=ys, x=xs).values  # (time, y, x)
    values = block.astype(np.float32)
    if np.issubdtype(block.dtype, np.integer):  # read without decoding: drop the fill value
        fill = cube[name].attrs.get("_FillValue", cube[name].encoding.get("_FillValue"))
        values[block == fill] = np.nan
    return np.ascontiguousarray(values[order].reshape(len(order), -1).T)


def build_composite(
    cube: xr.Dataset,
    options: Options | None = None,
    block_px: int = BLOCK_PX,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> tuple[xr.Dataset, Summary]:
    """The composite of a cube (an xarray Dataset in ITS_LIVE's layout), block by block
    on `workers` threads (default: one per CPU)."""
    options = options or Options()
    pairs, order = cube_pairs(cube)
    years = pairs.years
    groups = pairs.groups
    ny, nx = cube.sizes["y"], cube.sizes["x"]
    out: dict[str, np.ndarray] = {}
    shapes = {"annual": (len(years), ny, nx), "sensor": (len(groups), ny, nx)}
    blocks = [(r, c) for r in range(0, ny, block_px) for c in range(0, nx, block_px)]

    def one_block(corner: tuple[int, int]) -> tuple[slice, slice, dict[str, np.ndarray], int]:
        r, c = corner
        ys, xs = slice(r, min(r + block_px, ny)), slice(c, min(c + block_px, nx))
        vx = _velocity(cube, "vx", ys, xs, order)
        vy = _velocity(cube, "vy", ys, xs, order)
        seen = int((np.isfinite(vx) & np.isfinite(vy)).any(axis=1).sum())
        return ys, xs, composite_block(vx, vy, pairs, options), seen

    with_data = 0
    # numpy, BLAS and bottleneck work outside the GIL: blocks run on threads
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        for done, (ys, xs, result, seen) in enumerate(pool.map(one_block, blocks), 1):
            with_data += seen
            h, w = ys.stop - ys.start, xs.stop - xs.start
            for name, value in result.items():
                kind = "annual" if name in ANNUAL else "sensor" if name in PER_SENSOR else "pixel"
                if name not in out:  # every pixel is in exactly one block: no fill needed
                    dtype = np.float32 if value.dtype.kind == "f" else value.dtype
                    out[name] = np.empty(shapes.get(kind, (ny, nx)), dtype)
                if kind == "pixel":
                    out[name][ys, xs] = value.reshape(h, w)
                else:
                    out[name][:, ys, xs] = value.T.reshape(-1, h, w)
            if progress:
                progress(done, len(blocks))
    fitted = int(np.isfinite(out["vx"]).any(axis=0).sum())
    summary = Summary((int(years[0]), int(years[-1])), with_data, fitted)
    return _dataset(cube, out, years, groups, options, summary), summary


def _dataset(
    cube: xr.Dataset,
    out: dict[str, np.ndarray],
    years: np.ndarray,
    groups: list[str],
    options: Options,
    summary: Summary,
) -> xr.Dataset:
    time = np.array([f"{y}-01-01" for y in years], dtype="datetime64[ns]")
    data = {}
    for name, value in out.items():
        dims = (
            ("time", "y", "x")
            if name in ANNUAL
            else ("sensor", "y", "x")
            if name in PER_SENSOR
            else ("y", "x")
        )
        if name in ("count", "count0"):
            value = np.nan_to_num(value).astype(np.uint32)
        attrs = dict(ATTRS[name])
        if name != "sensor_flag" and not name.startswith("count"):
            attrs["grid_mapping"] = "mapping"
        data[name] = xr.Variable(dims, value, attrs)
    for name in COPIED:
        if name in cube.variables:
            data[name] = cube[name].variable.load()
    first, last = options.window
    attrs = {
        "Conventions": "CF-1.8",
        "title": "glacierflow annual velocity composite (ITS_LIVE method)",
        "climatology_years": f"{first}-{last}",
        "intercept_date": f"{options.intercept_year}-01-01",
        "pixels_with_data": summary.pixels_with_data,
        "pixels_too_few_pairs": summary.too_few_pairs,
    }
    for name in ("projection", "latitude", "longitude", "geo_polygon", "proj_polygon"):
        if name in cube.attrs:
            attrs[name] = cube.attrs[name]
    coords = {
        "time": xr.Variable("time", time, {"description": "1 January of the composite's year"}),
        "sensor": xr.Variable("sensor", np.array(groups, dtype=object)),
        "y": cube["y"].variable,
        "x": cube["x"].variable,
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)


def write_composite(composite: xr.Dataset, path: Path) -> None:
    """Write NetCDF atomically (see `staged`)."""
    encoding = {
        name: {"zlib": True, "complevel": 2, "shuffle": True}
        for name in composite.data_vars
        if composite[name].ndim > 0
    }
    with staged(Path(path)) as temporary:
        composite.to_netcdf(temporary, encoding=encoding, engine="netcdf4")


def open_cube(path: Path) -> xr.Dataset:
    """A cube folder: a glacierflow living cube (its recent layers included) or any
    ITS_LIVE-layout Zarr store."""
    from glacierflow.processing.cubes.store import CubeError, LivingCube

    path = Path(path)
    if not path.exists():
        raise CompositeError(f"{path.name}: no such cube")
    if path.is_symlink():
        try:
            return LivingCube(path.parent, path.name).open()
        except CubeError as err:
            raise CompositeError(str(err)) from err
    try:
        return xr.open_zarr(path)
    except (OSError, ValueError, KeyError) as err:
        raise CompositeError(f"{path.name}: not a readable Zarr cube ({err})") from err
