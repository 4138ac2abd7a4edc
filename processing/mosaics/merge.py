"""Composites onto one mosaic grid (pure computation on arrays; no files).

A composite's variables for one year (or its climatology, ITS_LIVE's year "0000") are
taken under the mosaic's names, warped onto the mosaic's grid (nearest neighbour: every
mosaic pixel carries one composite pixel's values, never a blend) and, when the composite
is in another projection, carried into the mosaic's: vectors (vx, vy; dvx_dt, dvy_dt)
through the Jacobian of the projection change, component errors likewise, the seasonal
cycles of vx and vy as phasors (amplitude and phase of each component), and the speeds
along the flow (v, v_error, v_amp, v_amp_error, dv_dt) by the change of scale along it.

Overlaps follow ITS_LIVE's rule for merging mosaics (its itslive_annual_mosaics.py): at each
pixel the composite with the highest `count0` (valid pairs in the climatology window)
gives every variable, annual or summary; glacierflow breaks ties by the year's `count`,
then by the order of the composites, and a composite with a value (finite `v`) always beats
one without (whose pixel had too few pairs: its counts still show).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr
from affine import Affine
from pyproj import Transformer
from rasterio.warp import Resampling, reproject, transform_bounds

from glacierflow.processing.composites.fit import DAYS_PER_YEAR
from glacierflow.processing.cubes.reproject import jacobian, transform_errors, transform_vectors
from glacierflow.processing.tracking.grid import ITS_LIVE_X_PHASE, ITS_LIVE_Y_PHASE

SUMMARY_YEAR = 0
# the most pixels a mosaic may have (about 1,200 km square at 120 m): bounds memory
MAX_PIXELS = 100_000_000

ANNUAL = ("v", "vx", "vy", "v_error", "vx_error", "vy_error", "count")
# mosaic name <- composite name: ITS_LIVE's 0000 mosaics drop the climatology's zeros
SUMMARY = {
    "v": "v0",
    "vx": "vx0",
    "vy": "vy0",
    "v_error": "v0_error",
    "vx_error": "vx0_error",
    "vy_error": "vy0_error",
    "dv_dt": "dv_dt",
    "dvx_dt": "dvx_dt",
    "dvy_dt": "dvy_dt",
    "v_amp": "v_amp",
    "vx_amp": "vx_amp",
    "vy_amp": "vy_amp",
    "v_amp_error": "v_amp_error",
    "vx_amp_error": "vx_amp_error",
    "vy_amp_error": "vy_amp_error",
    "v_phase": "v_phase",
    "vx_phase": "vx_phase",
    "vy_phase": "vy_phase",
    "count": "count0",
    "outlier_percent": "outlier_percent",
}
PER_SENSOR = ("dt_max", "sensor_flag")
COUNTS = ("count",)
# speeds along the flow: scaled by the projection change's scale along the flow
ALONG_FLOW = ("v_error", "v_amp", "v_amp_error", "dv_dt")


class MergeError(ValueError):
    """Composites that cannot be mosaicked together, with the reason."""


@dataclass(frozen=True)
class Grid:
    """The mosaic's grid: one projection, square cells, pixel centres `x` (ascending) and
    `y` (descending)."""

    epsg: int
    x: np.ndarray
    y: np.ndarray

    @property
    def cell(self) -> float:
        return float(self.x[1] - self.x[0]) if len(self.x) > 1 else float(self.y[0] - self.y[1])

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.y), len(self.x)

    @property
    def transform(self) -> Affine:
        half = self.cell / 2
        return Affine(self.cell, 0, self.x[0] - half, 0, -self.cell, self.y[0] + half)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        half = self.cell / 2
        return self.x[0] - half, self.y[-1] - half, self.x[-1] + half, self.y[0] + half


@dataclass(frozen=True)
class Source:
    """One composite's fields for the mosaic, on its own grid."""

    epsg: int
    grid: Grid
    fields: dict[str, np.ndarray]  # mosaic name (or "dt_max/L8_L9") -> (y, x) float
    rank: np.ndarray  # (y, x): the overlap rule's order of the composites at each pixel


def composite_grid(composite: xr.Dataset) -> Grid:
    """The composite's grid, from its coordinates and `mapping`."""
    epsg = int(composite["mapping"].attrs.get("spatial_epsg", 0) or 0)
    if not epsg:
        epsg = int(str(composite.attrs.get("projection", "0")) or 0)
    if not epsg:
        raise MergeError("the composite names no projection (mapping.spatial_epsg)")
    x, y = composite["x"].values.astype(float), composite["y"].values.astype(float)
    if len(x) < 2 or len(y) < 2:
        raise MergeError("the composite has fewer than 2 pixels a side")
    if not (np.allclose(np.diff(x), x[1] - x[0]) and np.allclose(np.diff(y), x[0] - x[1])):
        raise MergeError("the composite's grid is not regular with square, north-up cells")
    return Grid(epsg, x, y)


def composite_years(composite: xr.Dataset) -> list[int]:
    return [int(y) for y in composite["time"].dt.year.values]


def source_of(composite: xr.Dataset, year: int) -> Source | None:
    """The composite's fields for `year` (SUMMARY_YEAR: the climatology) under the
    mosaic's names, or None when it has no such year."""
    grid = composite_grid(composite)
    count0 = composite["count0"].values.astype(np.float64)
    fields: dict[str, np.ndarray] = {}
    if year == SUMMARY_YEAR:
        for name, source in SUMMARY.items():
            fields[name] = _float(composite[source].values)
        labels = [str(s) for s in composite["sensor"].values]
        for name in PER_SENSOR:
            for i, label in enumerate(labels):
                fields[f"{name}/{label}"] = _float(composite[name].values[i])
        count = np.zeros_like(count0)
    else:
        years = composite_years(composite)
        if year not in years:
            return None
        one = composite.isel(time=years.index(year))
        for name in ANNUAL:
            fields[name] = _float(one[name].values)
        count = fields["count"]
    pairs = np.nan_to_num(count0) + np.nan_to_num(count.astype(np.float64)) * 2.0**-32
    # a value beats no value; among pixels without one (too few pairs), the count decides
    rank = np.where(np.isfinite(fields["v"]), 1 + pairs, np.where(pairs > 0, pairs * 2.0**-22, -1))
    return Source(grid.epsg, grid, fields, rank)


def _float(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def grid_covering(epsg: int, grids: list[Grid], cell: float) -> Grid:
    """The smallest grid in `epsg`, on ITS_LIVE's pixel phase (centres at x ≡ 52.5,
    y ≡ 67.5 mod 120), that holds every grid given."""
    left, bottom, right, top = np.inf, np.inf, -np.inf, -np.inf
    for g in grids:
        b = g.bounds
        if g.epsg != epsg:
            b = transform_bounds(f"EPSG:{g.epsg}", f"EPSG:{epsg}", *b, densify_pts=64)
        left, bottom = min(left, b[0]), min(bottom, b[1])
        right, top = max(right, b[2]), max(top, b[3])
    x_edge = (ITS_LIVE_X_PHASE - cell / 2) % cell
    y_edge = (ITS_LIVE_Y_PHASE - cell / 2) % cell
    left = np.floor((left - x_edge) / cell) * cell + x_edge
    right = np.ceil((right - x_edge) / cell) * cell + x_edge
    bottom = np.floor((bottom - y_edge) / cell) * cell + y_edge
    top = np.ceil((top - y_edge) / cell) * cell + y_edge
    nx, ny = round((right - left) / cell), round((top - bottom) / cell)
    if nx * ny > MAX_PIXELS:
        raise MergeError(
            f"the mosaic would be {nx} x {ny} pixels, more than {MAX_PIXELS:,}: "
            "split the region into smaller boxes"
        )
    x = left + cell / 2 + cell * np.arange(nx)
    y = top - cell / 2 - cell * np.arange(ny)
    return Grid(epsg, x, y)


@dataclass
class Mosaic:
    """The merge so far: each field on the whole grid, and the rank that placed it."""

    grid: Grid
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    rank: np.ndarray | None = None

    def add(self, source: Source) -> None:
        """Warp `source` onto the grid and keep it where it ranks above what is there."""
        window = _window(self.grid, source.grid)
        if window is None:
            return
        rows, cols = window
        sub = Grid(self.grid.epsg, self.grid.x[cols], self.grid.y[rows])
        names = list(source.fields)
        stack = np.stack([source.fields[n] for n in names])
        values = _warp(stack, source.grid, sub)
        rank = _warp(source.rank[None], source.grid, sub, nodata=-1.0)[0]
        fields = dict(zip(names, values, strict=True))
        if source.epsg != self.grid.epsg:
            carry_into(fields, source.epsg, sub)
        if self.rank is None:
            self.rank = np.full(self.grid.shape, -1.0)
        better = rank > self.rank[rows, cols]
        self.rank[rows, cols][better] = rank[better]
        for name, value in fields.items():
            if name not in self.fields:
                self.fields[name] = np.full(self.grid.shape, np.nan, np.float32)
            self.fields[name][rows, cols][better] = value[better]

    def sensors(self, name: str) -> tuple[list[str], np.ndarray]:
        """A per-sensor field as (labels, (sensor, y, x) array)."""
        labels = sorted(k.split("/", 1)[1] for k in self.fields if k.startswith(f"{name}/"))
        return labels, np.stack([self.fields[f"{name}/{label}"] for label in labels])


def _window(grid: Grid, source: Grid) -> tuple[slice, slice] | None:
    """The rows and columns of `grid` that `source` covers."""
    b = source.bounds
    if source.epsg != grid.epsg:
        b = transform_bounds(f"EPSG:{source.epsg}", f"EPSG:{grid.epsg}", *b, densify_pts=64)
    left, top = grid.bounds[0], grid.bounds[3]
    c0 = max(int(np.floor((b[0] - left) / grid.cell)), 0)
    c1 = min(int(np.ceil((b[2] - left) / grid.cell)), len(grid.x))
    r0 = max(int(np.floor((top - b[3]) / grid.cell)), 0)
    r1 = min(int(np.ceil((top - b[1]) / grid.cell)), len(grid.y))
    if c0 >= c1 or r0 >= r1:
        return None
    return slice(r0, r1), slice(c0, c1)


def _warp(stack: np.ndarray, source: Grid, target: Grid, nodata: float = np.nan) -> np.ndarray:
    out = np.full((stack.shape[0], *target.shape), nodata, stack.dtype)
    reproject(
        stack,
        out,
        src_transform=source.transform,
        src_crs=f"EPSG:{source.epsg}",
        src_nodata=nodata,
        dst_transform=target.transform,
        dst_crs=f"EPSG:{target.epsg}",
        dst_nodata=nodata,
        resampling=Resampling.nearest,
    )
    return out


def carry_into(fields: dict[str, np.ndarray], source_epsg: int, grid: Grid) -> None:
    """Fields of a composite in `source_epsg`, already warped onto `grid`, into the grid's
    projection (in place): the Jacobian of source -> grid at each pixel."""
    xx, yy = np.meshgrid(grid.x, grid.y)
    back = Transformer.from_crs(f"EPSG:{grid.epsg}", f"EPSG:{source_epsg}", always_xy=True)
    xs, ys = back.transform(xx, yy)
    forward = Transformer.from_crs(f"EPSG:{source_epsg}", f"EPSG:{grid.epsg}", always_xy=True)
    jac = jacobian(forward, xs, ys)
    speed = fields["v"]
    fields["vx"], fields["vy"] = transform_vectors(fields["vx"], fields["vy"], jac)
    fields["vx_error"], fields["vy_error"] = transform_errors(
        fields["vx_error"], fields["vy_error"], jac
    )
    fields["v"] = np.hypot(fields["vx"], fields["vy"]).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(speed > 0, fields["v"] / speed, 1.0)
    for name in ALONG_FLOW:
        if name in fields:
            fields[name] = fields[name] * scale
    if "dvx_dt" in fields:
        fields["dvx_dt"], fields["dvy_dt"] = transform_vectors(
            fields["dvx_dt"], fields["dvy_dt"], jac
        )
        fields["vx_amp_error"], fields["vy_amp_error"] = transform_errors(
            fields["vx_amp_error"], fields["vy_amp_error"], jac
        )
        # a component's seasonal cycle A·cos(2π(t - φ)) is the phasor A·e^(2πiφ): linear
        turn = 2j * np.pi / DAYS_PER_YEAR
        px = fields["vx_amp"] * np.exp(turn * fields["vx_phase"])
        py = fields["vy_amp"] * np.exp(turn * fields["vy_phase"])
        qx, qy = transform_vectors(px, py, jac)
        for axis, q in (("x", qx), ("y", qy)):
            fields[f"v{axis}_amp"] = np.abs(q)
            fields[f"v{axis}_phase"] = np.mod(np.angle(q) / turn.imag, DAYS_PER_YEAR)
    for name, value in fields.items():
        fields[name] = np.asarray(value, dtype=np.float32)
