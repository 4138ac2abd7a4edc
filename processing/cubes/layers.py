"""A granule cut into cube layers: one per 100 km tile its valid data reach.

A granule on the cube's grid (same projection, 120 m, ITS_LIVE's pixel-centre phase) is
sliced; any other granule is resampled onto the tile (bilinear for velocities, nearest for
the rest) with its vectors carried into the cube's projection (see reproject.py).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import netCDF4
import numpy as np
import rasterio.transform
import rasterio.warp
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.enums import Resampling

from glacierflow.processing.cubes.grid import (
    CELL_SIZE_M,
    TILE_SIZE_M,
    CubeTile,
    cube_epsg,
    tile_of,
)
from glacierflow.processing.cubes.layout import (
    ERROR_FIGURES,
    FILL_INT16,
    GRIDDED,
    PAIR_DATES,
    PAIR_STRINGS,
    error_variable,
)
from glacierflow.processing.cubes.reproject import jacobian, transform_errors, transform_vectors

REQUIRED = ("x", "y", "vx", "vy", "v", "mapping", "img_pair_info")
_TIME_FORMATS = ("%Y%m%dT%H:%M:%S.%f", "%Y%m%dT%H:%M:%S")
_VELOCITY = ("vx", "vy", "v_error")


class GranuleReadError(ValueError):
    """A file that cannot go into a cube, with the reason (names the file)."""


@dataclass
class Granule:
    """One granule's content, read once and cut into as many tiles as it reaches."""

    url: str
    crs: CRS
    x: np.ndarray  # pixel centres, ascending
    y: np.ndarray  # pixel centres, descending
    gridded: dict[str, np.ndarray]  # raw values with the cube's fill values
    figures: dict[str, float]  # 1-D per-layer floats: vx_error, vy_stable_shift, ...
    pair: dict[str, object]  # strings, dates, date_dt, roi_valid_percentage, flag
    mid_date: np.datetime64

    @property
    def valid(self) -> np.ndarray:
        return self.gridded["v"] != FILL_INT16

    @property
    def transform(self) -> Affine:
        spacing = float(self.x[1] - self.x[0]) if len(self.x) > 1 else CELL_SIZE_M
        return Affine(spacing, 0, self.x[0] - spacing / 2, 0, -spacing, self.y[0] + spacing / 2)


@dataclass
class Layer:
    """A granule on one tile: the window [row0:row0+h, col0:col0+w] of the tile it covers."""

    tile: CubeTile
    url: str
    mid_date: np.datetime64
    row0: int
    col0: int
    gridded: dict[str, np.ndarray]
    figures: dict[str, float]
    pair: dict[str, object] = field(default_factory=dict)


def _date(text: object, path: Path, name: str) -> np.datetime64:
    for fmt in _TIME_FORMATS:
        try:
            when = datetime.strptime(str(text), fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
        return np.datetime64(when.replace(tzinfo=None), "ns")
    raise GranuleReadError(f"{path}: img_pair_info.{name} {text!r} is not a date")


# HDF5, under netCDF4, is not thread-safe: one reader at a time in a process (xarray does
# the same), while cube tasks run on threads
_HDF5_LOCK = threading.Lock()


def read_granule(path: Path, url: str | None = None) -> Granule:
    """Read a velocity granule; GranuleReadError names the file and what is wrong."""
    with _HDF5_LOCK:
        return _read_granule(path, url)


def _read_granule(path: Path, url: str | None) -> Granule:
    try:
        ds = netCDF4.Dataset(path)
    except OSError as err:
        raise GranuleReadError(f"{path}: not a readable NetCDF file ({err})") from err
    try:
        with ds:
            ds.set_auto_mask(False)
            missing = [name for name in REQUIRED if name not in ds.variables]
            if missing:
                raise GranuleReadError(f"{path}: not a velocity granule, no {', '.join(missing)}")
            try:
                crs = CRS.from_wkt(str(ds["mapping"].getncattr("crs_wkt")))
            except (AttributeError, ValueError) as err:
                raise GranuleReadError(f"{path}: mapping has no usable crs_wkt ({err})") from err
            x = np.asarray(ds["x"][:], dtype=np.float64)
            y = np.asarray(ds["y"][:], dtype=np.float64)
            gridded = {}
            for name, (dtype, fill, _) in GRIDDED.items():
                if name not in ds.variables:
                    gridded[name] = np.full((len(y), len(x)), fill, dtype=dtype)
                    continue
                var = ds[name]
                raw = np.asarray(var[:])
                own_fill = var.getncattr("_FillValue") if "_FillValue" in var.ncattrs() else None
                values = raw.astype(dtype, copy=True)
                if own_fill is not None and own_fill != fill:
                    values[raw == own_fill] = fill
                gridded[name] = values
            figures = {}
            for component in ("vx", "vy"):
                attrs = {k: ds[component].getncattr(k) for k in ds[component].ncattrs()}
                for figure, attr in ERROR_FIGURES.items():
                    figures[error_variable(component, figure)] = _float(attrs.get(attr))
            info = ds["img_pair_info"]
            pair_attrs = {k: info.getncattr(k) for k in info.ncattrs()}
            flag = (
                ds["vx"].getncattr("stable_shift_flag")
                if "stable_shift_flag" in ds["vx"].ncattrs()
                else 0
            )
    except (KeyError, IndexError, RuntimeError) as err:
        raise GranuleReadError(f"{path}: truncated or damaged granule ({err})") from err
    for name in (*PAIR_DATES, "date_dt"):
        if name not in pair_attrs:
            raise GranuleReadError(f"{path}: img_pair_info has no {name}")
    pair: dict[str, object] = {name: str(pair_attrs.get(name, "")) for name in PAIR_STRINGS}
    pair.update({name: _date(pair_attrs[name], path, name) for name in PAIR_DATES})
    pair["date_dt"] = _float(pair_attrs["date_dt"])
    pair["roi_valid_percentage"] = _float(pair_attrs.get("roi_valid_percentage"))
    pair["stable_shift_flag"] = int(flag)
    if len(y) > 1 and y[1] > y[0]:  # stored south-up: make it north-up
        y = y[::-1]
        gridded = {k: v[::-1] for k, v in gridded.items()}
    if len(x) > 1 and x[1] < x[0]:
        x = x[::-1]
        gridded = {k: v[:, ::-1] for k, v in gridded.items()}
    return Granule(
        url=url or str(Path(path).resolve()),
        crs=crs,
        x=x,
        y=y,
        gridded=gridded,
        figures=figures,
        pair=pair,
        mid_date=pair["date_center"],  # type: ignore[arg-type]
    )


def _float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def tiles_reached(granule: Granule, sample: int = 4) -> list[CubeTile]:
    """The cube tiles holding any of the granule's valid pixels, each in the projection
    ITS_LIVE uses where it lies (a granule near a zone border reaches both zones' cubes)."""
    rows, cols = np.nonzero(granule.valid)
    if rows.size == 0:
        return []
    keep = (rows % sample == 0) & (cols % sample == 0)
    if keep.sum() < 16:  # small or sparse: every valid pixel
        keep[:] = True
    xs, ys = granule.x[cols[keep]], granule.y[rows[keep]]
    lon, lat = Transformer.from_crs(granule.crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    tiles: set[CubeTile] = set()
    epsgs = np.array([cube_epsg(float(a), float(b)) for a, b in zip(lon, lat, strict=True)])
    for epsg in np.unique(epsgs):
        sel = epsgs == epsg
        if granule.crs.to_epsg() == epsg:
            px, py = xs[sel], ys[sel]
        else:
            to_cube = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
            px, py = to_cube.transform(lon[sel], lat[sel])
        half = CELL_SIZE_M * sample  # the cells between samples may reach the next tile
        for dx in (-half, 0.0, half):
            for dy in (-half, 0.0, half):
                corners = np.unique(
                    np.column_stack(
                        [np.floor((px + dx) / TILE_SIZE_M), np.floor((py + dy) / TILE_SIZE_M)]
                    ),
                    axis=0,
                )
                tiles.update(
                    tile_of(int(epsg), (i + 0.5) * TILE_SIZE_M, (j + 0.5) * TILE_SIZE_M)
                    for i, j in corners
                )
    return sorted(tiles, key=lambda t: (t.epsg, t.x_min, t.y_min))


def _aligned(granule: Granule, tile: CubeTile) -> bool:
    if granule.crs.to_epsg() != tile.epsg or len(granule.x) < 2 or len(granule.y) < 2:
        return False
    spacing_ok = np.isclose(granule.x[1] - granule.x[0], CELL_SIZE_M) and np.isclose(
        granule.y[0] - granule.y[1], CELL_SIZE_M
    )
    phase = (granule.x[0] - tile.x[0]) / CELL_SIZE_M, (tile.y[0] - granule.y[0]) / CELL_SIZE_M
    return bool(spacing_ok and all(np.isclose(p, round(p)) for p in phase))


def layer_on_tile(granule: Granule, tile: CubeTile) -> Layer | None:
    """The granule's layer on `tile`, cropped to its valid data; None where it has none."""
    if _aligned(granule, tile):
        gridded, figures = _sliced(granule, tile)
    else:
        gridded, figures = _resampled(granule, tile)
    valid = gridded["v"] != FILL_INT16
    if not valid.any():
        return None
    rows, cols = np.nonzero(valid.any(axis=1))[0], np.nonzero(valid.any(axis=0))[0]
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return Layer(
        tile=tile,
        url=granule.url,
        mid_date=granule.mid_date,
        row0=int(r0),
        col0=int(c0),
        gridded={k: np.ascontiguousarray(v[r0:r1, c0:c1]) for k, v in gridded.items()},
        figures=figures,
        pair=granule.pair,
    )


def _sliced(granule: Granule, tile: CubeTile) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    ny, nx = len(tile.y), len(tile.x)
    col = round((granule.x[0] - tile.x[0]) / CELL_SIZE_M)
    row = round((tile.y[0] - granule.y[0]) / CELL_SIZE_M)
    gh, gw = granule.valid.shape
    # overlap of the granule [row, row+gh) x [col, col+gw) with the tile [0, ny) x [0, nx)
    t0, t1 = max(row, 0), min(row + gh, ny)
    s0, s1 = max(col, 0), min(col + gw, nx)
    out = {}
    for name, (dtype, fill, _) in GRIDDED.items():
        block = np.full((ny, nx), fill, dtype=dtype)
        if t1 > t0 and s1 > s0:
            block[t0:t1, s0:s1] = granule.gridded[name][t0 - row : t1 - row, s0 - col : s1 - col]
        out[name] = block
    return out, dict(granule.figures)


def _resampled(granule: Granule, tile: CubeTile) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    ny, nx = len(tile.y), len(tile.x)
    dst_crs = CRS.from_epsg(tile.epsg)
    # resample only the part of the tile the granule's bounds reach
    h, w = granule.valid.shape
    left, bottom, right, top = rasterio.warp.transform_bounds(
        granule.crs,
        dst_crs,
        *rasterio.transform.array_bounds(h, w, granule.transform),
        densify_pts=21,
    )
    c0 = int(np.clip(np.floor((left - tile.x[0]) / CELL_SIZE_M), 0, nx))
    c1 = int(np.clip(np.ceil((right - tile.x[0]) / CELL_SIZE_M) + 1, 0, nx))
    r0 = int(np.clip(np.floor((tile.y[0] - top) / CELL_SIZE_M), 0, ny))
    r1 = int(np.clip(np.ceil((tile.y[0] - bottom) / CELL_SIZE_M) + 1, 0, ny))
    out: dict[str, np.ndarray] = {
        name: np.full((ny, nx), fill, dtype=dtype) for name, (dtype, fill, _) in GRIDDED.items()
    }
    if r1 <= r0 or c1 <= c0:
        return out, dict(granule.figures)
    window = _resampled_window(granule, tile, dst_crs, r0, r1, c0, c1)
    for name, values in window[0].items():
        out[name][r0:r1, c0:c1] = values
    return out, window[1]


def _resampled_window(
    granule: Granule, tile: CubeTile, dst_crs: CRS, r0: int, r1: int, c0: int, c1: int
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    ny, nx = r1 - r0, c1 - c0
    xs, ys = tile.x[c0:c1], tile.y[r0:r1]
    dst_transform = Affine(
        CELL_SIZE_M, 0, xs[0] - CELL_SIZE_M / 2, 0, -CELL_SIZE_M, ys[0] + CELL_SIZE_M / 2
    )
    out: dict[str, np.ndarray] = {}
    floats: dict[str, np.ndarray] = {}
    for name, (dtype, fill, _) in GRIDDED.items():
        source = granule.gridded[name]
        if name in _VELOCITY:
            src = np.where(source == fill, np.nan, source).astype(np.float32)
            dst = np.full((ny, nx), np.nan, dtype=np.float32)
            rasterio.warp.reproject(
                src,
                dst,
                src_transform=granule.transform,
                src_crs=granule.crs,
                src_nodata=np.nan,
                dst_transform=dst_transform,
                dst_crs=dst_crs,
                dst_nodata=np.nan,
                resampling=Resampling.bilinear,
            )
            floats[name] = dst
        else:
            dst = np.full((ny, nx), fill, dtype=dtype)
            rasterio.warp.reproject(
                source,
                dst,
                src_transform=granule.transform,
                src_crs=granule.crs,
                src_nodata=fill,
                dst_transform=dst_transform,
                dst_crs=dst_crs,
                dst_nodata=fill,
                resampling=Resampling.nearest,
            )
            out[name] = dst
    # vectors into the cube's axes, with the Jacobian at each cell's source position
    gx, gy = np.meshgrid(xs, ys)
    to_source = Transformer.from_crs(dst_crs, granule.crs, always_xy=True)
    to_cube = Transformer.from_crs(granule.crs, dst_crs, always_xy=True)
    sx, sy = to_source.transform(gx, gy)
    jac = jacobian(to_cube, sx, sy)
    vx, vy = transform_vectors(floats["vx"], floats["vy"], jac)
    ok = np.isfinite(vx) & np.isfinite(vy)
    out["vx"] = _to_int16(vx, ok)
    out["vy"] = _to_int16(vy, ok)
    out["v"] = _to_int16(np.hypot(vx, vy), ok)
    out["v_error"] = _to_int16(floats["v_error"], ok & np.isfinite(floats["v_error"]))
    # the 1-D figures with the Jacobian at the centre of the resampled window
    centre = tuple(float(np.asarray(j)[ny // 2, nx // 2]) for j in jac)
    figures = dict(granule.figures)
    for figure in ERROR_FIGURES:
        ex, ey = figures[error_variable("vx", figure)], figures[error_variable("vy", figure)]
        if figure.startswith("stable_shift"):
            nx_, ny_ = transform_vectors(np.float64(ex), np.float64(ey), centre)
        else:
            nx_, ny_ = transform_errors(ex, ey, centre)
        figures[error_variable("vx", figure)] = float(nx_)
        figures[error_variable("vy", figure)] = float(ny_)
    return out, figures


def _to_int16(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
    out = np.full(values.shape, FILL_INT16, dtype=np.int16)
    out[ok] = np.clip(np.rint(values[ok]), -32766, 32767).astype(np.int16)
    return out
