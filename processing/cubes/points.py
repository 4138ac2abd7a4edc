"""Point time series read from a living cube: the whole history of one pixel in one call.

Per cube version (history + recent segments) the 1-D per-layer metadata are read once and
kept; a point then costs one chunk read per 3-D variable and part. Filters select layers
by date, pair separation, sensor and error before anything is formatted.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import xarray as xr
import zarr

from glacierflow.processing.cubes.layout import GRIDDED, TIME_DIM, layer_figure_names
from glacierflow.processing.cubes.store import (
    WINDOW_ATTR,
    CubeError,
    LivingCube,
    Snapshot,
)

LAYER_VARIABLES = (
    *layer_figure_names(),
    "date_dt",
    "roi_valid_percentage",
    "stable_shift_flag",
    "acquisition_date_img1",
    "acquisition_date_img2",
    "date_center",
    "satellite_img1",
    "satellite_img2",
    "mission_img1",
    "mission_img2",
    "sensor_img1",
    "sensor_img2",
    "granule_url",
)
VARIABLES = (*GRIDDED, *LAYER_VARIABLES)
# the itslive client's defaults (get_time_series, export_csv)
DEFAULT_VARIABLES = (
    "v",
    "v_error",
    "vx",
    "vx_error",
    "vy",
    "vy_error",
    "date_dt",
    "mission_img1",
    "satellite_img1",
)


@dataclass(frozen=True)
class SeriesFilter:
    """Which layers a query wants; None means no bound."""

    start: datetime | None = None
    end: datetime | None = None
    min_dt: float | None = None  # days
    max_dt: float | None = None
    sensors: frozenset[str] | None = None  # mission + satellite: L8, L9, S2A, S1A ...
    missions: frozenset[str] | None = None  # L, S, N
    max_error: float | None = None  # v_error, m/yr

    def __post_init__(self) -> None:
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"start {self.start:%Y-%m-%d} is after end {self.end:%Y-%m-%d}")
        if self.min_dt is not None and self.max_dt is not None and self.min_dt > self.max_dt:
            raise ValueError(f"min_dt {self.min_dt} is larger than max_dt {self.max_dt}")


def check_variables(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in VARIABLES]
    if unknown:
        raise ValueError(f"unknown variable(s) {', '.join(unknown)}; known: {', '.join(VARIABLES)}")
    return list(dict.fromkeys(names))


@dataclass
class _Part:
    """One zarr store of the cube (the history or a segment), opened for point reads."""

    arrays: dict[str, zarr.Array]
    window: tuple[int, int, int, int]
    layers: xr.Dataset  # the 1-D variables, decoded, in memory

    def read(self, name: str, row: int, col: int) -> np.ndarray:
        fill = GRIDDED[name][1]
        r0, r1, c0, c1 = self.window
        n = self.layers.sizes[TIME_DIM]
        if not (r0 <= row < r1 and c0 <= col < c1):  # nothing was ever written there
            return np.full(n, fill, dtype=GRIDDED[name][0])
        return self.arrays[name][:, row, col]


def _open_part(path) -> _Part:
    group = zarr.open_group(path, mode="r", use_consolidated=True)
    arrays = {name: group[name] for name in GRIDDED}
    with xr.open_zarr(path, consolidated=True, decode_timedelta=False) as ds:
        layers = ds[[n for n in LAYER_VARIABLES if n in ds]].load()
        for name in layers.data_vars:  # numpy's StringDType: plain str for filtering
            if layers[name].dtype.kind == "T":
                layers[name] = layers[name].astype(object).astype(str)
        r0, r1, c0, c1 = (int(v) for v in json.loads(ds.attrs[WINDOW_ATTR]))
    return _Part(arrays, (r0, r1, c0, c1), layers)


class CubeReader:
    """Point reads from one cube; reopens only when its content has changed."""

    def __init__(self, cube: LivingCube) -> None:
        self.cube = cube
        self._lock = threading.Lock()
        self._version: tuple[str, ...] | None = None
        self._parts: list[_Part] = []
        self._layers: xr.Dataset | None = None
        self._order: np.ndarray | None = None

    def _current(self) -> tuple[list[_Part], xr.Dataset, np.ndarray]:
        snap: Snapshot = self.cube.snapshot()
        if not snap.parts:
            raise CubeError(f"{self.cube.path} holds no layers yet")
        with self._lock:
            if snap.version != self._version:
                parts = [_open_part(p) for p in snap.parts]
                layers = xr.concat([p.layers for p in parts], dim=TIME_DIM)
                order = np.argsort(layers[TIME_DIM].values, kind="stable")
                self._parts, self._layers, self._order = (
                    parts,
                    layers.isel({TIME_DIM: order}),
                    order,
                )
                self._version = snap.version
            return self._parts, self._layers, self._order  # type: ignore[return-value]

    def series(self, row: int, col: int, variables: list[str], query: SeriesFilter) -> xr.Dataset:
        """The layers at one pixel that pass `query`, time-sorted; 3-D variables as float
        with NaN where there is no value. Layers without a speed there are left out."""
        for _ in range(5):
            try:
                parts, layers, order = self._current()
                raw = {
                    name: np.concatenate([p.read(name, row, col) for p in parts])[order]
                    for name in {*[v for v in variables if v in GRIDDED], "v", "v_error"}
                }
                break
            except FileNotFoundError:  # consolidated while we read: read the new version
                with self._lock:
                    self._version = None
        else:
            raise CubeError(f"{self.cube.path}: changing too fast to read; try again")
        values = {
            name: np.where(a == GRIDDED[name][1], np.nan, a.astype(np.float32))
            for name, a in raw.items()
        }
        keep = np.isfinite(values["v"]) & _layer_mask(layers, query)
        if query.max_error is not None:
            keep &= values["v_error"] <= query.max_error
        out = xr.Dataset(coords={TIME_DIM: layers[TIME_DIM].values[keep]})
        for name in variables:
            if name in GRIDDED:
                out[name] = (TIME_DIM, values[name][keep], {"units": "meter/year"})
            else:
                out[name] = (TIME_DIM, layers[name].values[keep], layers[name].attrs)
        return out


def _layer_mask(layers: xr.Dataset, query: SeriesFilter) -> np.ndarray:
    keep = np.ones(layers.sizes[TIME_DIM], dtype=bool)
    when = layers[TIME_DIM].values
    if query.start:
        keep &= when >= np.datetime64(query.start.replace(tzinfo=None), "ns")
    if query.end:
        keep &= when <= np.datetime64(query.end.replace(tzinfo=None), "ns")
    dt = layers["date_dt"].values
    if query.min_dt is not None:
        keep &= dt >= query.min_dt
    if query.max_dt is not None:
        keep &= dt <= query.max_dt
    mission = layers["mission_img1"].values.astype(str)
    if query.missions:
        keep &= np.isin(mission, sorted(query.missions))
    if query.sensors:
        sensor = np.char.add(mission, layers["satellite_img1"].values.astype(str))
        keep &= np.isin(sensor, sorted(query.sensors))
    return keep
