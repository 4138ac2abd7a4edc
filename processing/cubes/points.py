"""Point time series read from a living cube: the whole history of one pixel in one call.

Per cube version (history + recent segments) the 1-D per-layer metadata are read once and
kept; a point then costs one chunk read per 3-D variable and part. Filters select layers
by date, pair separation, sensor and error before anything is formatted.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import xarray as xr
import zarr
from zarr.core.sync import sync as zarr_sync

from glacierflow.processing.cubes.layout import (
    GRIDDED,
    PAIR_DATES,
    PAIR_STRINGS,
    POINT_GROUP,
    POINT_VARIABLES,
    TIME_DIM,
    layer_figure_names,
)
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
    *PAIR_DATES,
    *PAIR_STRINGS,
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
        if self.start and self.end and _naive_utc(self.start) > _naive_utc(self.end):
            raise ValueError(f"start {self.start:%Y-%m-%d} is after end {self.end:%Y-%m-%d}")
        if self.min_dt is not None and self.max_dt is not None and self.min_dt > self.max_dt:
            raise ValueError(f"min_dt {self.min_dt} is larger than max_dt {self.max_dt}")


def _naive_utc(value: datetime) -> datetime:
    """The cubes' dates are UTC without an offset: an aware bound is moved to UTC."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def check_variables(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in VARIABLES]
    if unknown:
        raise ValueError(f"unknown variable(s) {', '.join(unknown)}; known: {', '.join(VARIABLES)}")
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class PointSeries:
    """One pixel's layers, time-sorted: numpy columns (3-D variables as float, NaN where
    empty), their attributes, and the mid_dates also as ISO text (formatted once per cube
    version, not per request)."""

    time: np.ndarray  # datetime64[ns]
    time_text: np.ndarray  # ISO 8601, millisecond precision (object)
    columns: dict[str, np.ndarray]
    attrs: dict[str, dict]

    def __len__(self) -> int:
        return len(self.time)

    def to_dataset(self) -> xr.Dataset:
        return xr.Dataset(
            {name: (TIME_DIM, v, self.attrs.get(name, {})) for name, v in self.columns.items()},
            coords={TIME_DIM: self.time},
        )


@dataclass
class _Part:
    """One zarr store of the cube (the history or a segment), opened for point reads."""

    arrays: dict[str, zarr.Array]
    window: tuple[int, int, int, int]
    layers: xr.Dataset  # the 1-D variables, decoded, in memory

    async def read(self, name: str, row: int, col: int) -> np.ndarray:
        dtype, fill = GRIDDED[name][0], GRIDDED[name][1]
        r0, r1, c0, c1 = self.window
        if not (r0 <= row < r1 and c0 <= col < c1):  # nothing was ever written there
            return np.full(self.layers.sizes[TIME_DIM], fill, dtype=dtype)
        return np.asarray(await self.arrays[name].async_array.getitem((slice(None), row, col)))


def _open_part(path) -> _Part:
    group = zarr.open_group(path, mode="r", use_consolidated=True)
    arrays = {name: group[name] for name in GRIDDED}
    if POINT_GROUP in group:  # one pixel a chunk: a point reads its series only
        arrays.update({name: group[POINT_GROUP][name] for name in POINT_VARIABLES})
    with xr.open_zarr(path, consolidated=True, decode_timedelta=False) as ds:
        layers = ds[[n for n in LAYER_VARIABLES if n in ds]].load()
        for name in layers.data_vars:  # numpy's StringDType: plain str for filtering
            if layers[name].dtype.kind == "T":
                layers[name] = layers[name].astype(object).astype(str)
        r0, r1, c0, c1 = (int(v) for v in json.loads(ds.attrs[WINDOW_ATTR]))
    return _Part(arrays, (r0, r1, c0, c1), layers)


@dataclass(frozen=True)
class _Layers:
    """The 1-D metadata of every part, concatenated and time-sorted, as numpy."""

    order: np.ndarray  # concatenated part order -> time order
    time: np.ndarray
    time_text: np.ndarray
    columns: dict[str, np.ndarray]
    attrs: dict[str, dict]
    sensor: np.ndarray  # mission + satellite, e.g. L8, S2A


def _sorted_layers(parts: list[_Part]) -> _Layers:
    layers = xr.concat([p.layers for p in parts], dim=TIME_DIM)
    order = np.argsort(layers[TIME_DIM].values, kind="stable")
    layers = layers.isel({TIME_DIM: order})
    time = layers[TIME_DIM].values.astype("datetime64[ns]")
    text = np.array(np.datetime_as_string(time.astype("datetime64[ms]"), unit="ms"), dtype=object)
    columns = {name: layers[name].values for name in layers.data_vars}
    sensor = np.char.add(columns["mission_img1"].astype(str), columns["satellite_img1"].astype(str))
    attrs = {name: dict(layers[name].attrs) for name in layers.data_vars}
    return _Layers(order, time, text, columns, attrs, sensor)


class CubeReader:
    """Point reads from one cube; reopens only when its content has changed."""

    def __init__(self, cube: LivingCube) -> None:
        self.cube = cube
        self._lock = threading.Lock()
        self._version: tuple[str, ...] | None = None
        self._parts: list[_Part] = []
        self._layers: _Layers | None = None

    def _current(self) -> tuple[Snapshot, list[_Part], _Layers]:
        snap: Snapshot = self.cube.snapshot()
        if not snap.parts:
            raise CubeError(f"{self.cube.name} holds no layers yet")
        with self._lock:
            if snap.version != self._version:
                parts = [_open_part(p) for p in snap.parts]
                self._parts, self._layers = parts, _sorted_layers(parts)
                self._version = snap.version
            return snap, self._parts, self._layers  # type: ignore[return-value]

    def series(self, row: int, col: int, variables: list[str], query: SeriesFilter) -> PointSeries:
        """The layers at one pixel that pass `query`, time-sorted. Layers without a speed
        there are left out. The chunks of every variable and part are read concurrently.

        A consolidation deletes the parts it replaced once the new history is published,
        and Zarr reads a deleted chunk as fill values, not as an error; so after reading,
        the parts read must all still be current (a part leaves the cube before it is
        deleted, and never comes back): otherwise the read is done again on the new
        version."""
        wanted = sorted({*[v for v in variables if v in GRIDDED], "v", "v_error"})
        for _ in range(5):
            try:
                snap, parts, layers = self._current()
                raw = dict(zip(wanted, zarr_sync(_read_all(parts, wanted, row, col)), strict=True))
            except FileNotFoundError:  # consolidated while we opened it: read the new version
                continue
            if set(snap.parts) <= set(self.cube.snapshot().parts):
                break
        else:
            raise CubeError(f"{self.cube.name}: changing too fast to read; try again")
        # filter on the stored integers, then decode only the layers kept
        v = raw["v"][layers.order]
        keep = (v != GRIDDED["v"][1]) & _layer_mask(layers, query)
        if query.max_error is not None:
            error = raw["v_error"][layers.order]
            keep &= (error != GRIDDED["v_error"][1]) & (error <= query.max_error)
        index = layers.order[keep]
        columns, attrs = {}, {}
        for name in variables:
            if name in GRIDDED:
                kept = raw[name][index]
                columns[name] = np.where(kept == GRIDDED[name][1], np.nan, kept.astype(np.float32))
                attrs[name] = {"units": "meter/year"}
            else:
                columns[name], attrs[name] = layers.columns[name][keep], layers.attrs[name]
        return PointSeries(layers.time[keep], layers.time_text[keep], columns, attrs)


async def _read_all(parts: list[_Part], names: list[str], row: int, col: int) -> list:
    """Each variable's whole series at (row, col), parts concatenated in part order."""
    reads = [[part.read(name, row, col) for part in parts] for name in names]
    flat = await asyncio.gather(*[r for per_name in reads for r in per_name])
    n = len(parts)
    return [np.concatenate(flat[k * n : (k + 1) * n]) for k in range(len(names))]


def _layer_mask(layers: _Layers, query: SeriesFilter) -> np.ndarray:
    keep = np.ones(len(layers.time), dtype=bool)
    if query.start or query.end:  # in microseconds: any datetime fits, not in nanoseconds
        time = layers.time.astype("datetime64[us]")
        if query.start:
            keep &= time >= np.datetime64(_naive_utc(query.start), "us")
        if query.end:
            keep &= time <= np.datetime64(_naive_utc(query.end), "us")
    dt = layers.columns["date_dt"]
    if query.min_dt is not None:
        keep &= dt >= query.min_dt
    if query.max_dt is not None:
        keep &= dt <= query.max_dt
    if query.missions:
        keep &= np.isin(layers.columns["mission_img1"].astype(str), sorted(query.missions))
    if query.sensors:
        keep &= np.isin(layers.sensor, sorted(query.sensors))
    return keep
