"""Point time series and line profiles read from the cubes: /timeseries and /profile.

Cubes are found through pgstac (the `cubes` collection, by intersection with the point),
kept a few seconds per tile, so a new cube is found at once and a known one costs no
query; a new granule is visible as soon as its ingest has committed (the readers look at
the cube's recent segments on every request). Answers name the cube, the nearest pixel's
projected and lon/lat coordinates and its offset from the request, as the `itslive`
client does; formats: json, csv (the `itslive` client's export columns), netcdf. With
`fit`, /timeseries adds the pixel's annual values and seasonal curve (the composite fit).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import anyio
import numpy as np
import orjson
import pandas as pd
import psycopg
import xarray as xr
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import AfterValidator, BaseModel, Field, ValidationError
from pyproj import Geod, Transformer

from glacierflow.processing.composites.series import (
    ANNUAL,
    CURVE,
    FIT_INPUTS,
    SEASONAL,
    NoFit,
    SeriesFit,
    fit_series,
)
from glacierflow.processing.cubes.grid import CubePixel, locate, pixel_of, tile_of
from glacierflow.processing.cubes.layout import TIME_DIM
from glacierflow.processing.cubes.points import (
    DEFAULT_VARIABLES,
    CubeReader,
    PointSeries,
    SeriesFilter,
    check_variables,
)
from glacierflow.processing.cubes.store import CubeError, LivingCube, tile_from_name
from glacierflow.services.data import DataFiles
from glacierflow.settings import Settings

log = logging.getLogger(__name__)

MAX_PROFILE_POINTS = 1000
# a POST body may hold this much per point asked for (plus the filters) before it is refused
# unread: the points count is bounded before anything is parsed
BODY_BYTES_PER_POINT = 128
BODY_BYTES_FILTERS = 64 * 1024
# the catalog lookup of a point's cube: a fresh connection each time (none goes stale), and
# a deadline on the whole of it, connect and query, since a frozen server answers neither
DB_CONNECT_TIMEOUT_S = 2  # libpq's least
DB_STATEMENT_TIMEOUT_MS = 2000
DB_DEADLINE_S = 3.0
DB_LOOKUPS = 4  # at most this many lookups wait on the database at once
# after a failed lookup, cubes already known answer from memory (and unknown points get 503)
# this long without asking the database again
DB_RETRY_AFTER_S = 5
KNOWN_TILES = 4096
_GEOD = Geod(ellps="WGS84")


@lru_cache(maxsize=64)
def _transformer(source: int, target: int) -> Transformer:
    return Transformer.from_crs(f"EPSG:{source}", f"EPSG:{target}", always_xy=True)


class OutputFormat(StrEnum):
    json = "json"
    csv = "csv"
    netcdf = "netcdf"


class CatalogUnavailableError(RuntimeError):
    """The catalog database did not answer in time (stopped, frozen, unreachable)."""


def _unavailable() -> HTTPException:
    return HTTPException(
        503,
        "the catalog database is unavailable; try again shortly",
        headers={"Retry-After": str(DB_RETRY_AFTER_S)},
    )


@dataclass(frozen=True)
class Located:
    """A point resolved to a cube in a configured store and its nearest pixel."""

    lon: float
    lat: float
    cube: Path  # the cube's link in its store
    href: str  # the cube's path relative to the data directory
    pixel: CubePixel

    def describe(self, base: str) -> dict[str, object]:
        tile = self.pixel.tile
        lon, lat = _transformer(tile.epsg, 4326).transform(self.pixel.x, self.pixel.y)
        return {
            "cube": {"name": tile.name, "href": f"{base}/{self.href}", "epsg": tile.epsg},
            "requested_point": {"lon": self.lon, "lat": self.lat},
            "returned_point": {
                "lon": round(lon, 6),
                "lat": round(lat, 6),
                "x": self.pixel.x,
                "y": self.pixel.y,
                "row": self.pixel.row,
                "col": self.pixel.col,
                "epsg": tile.epsg,
                "offset_m": round(self.pixel.offset_m, 2),
            },
        }


class CubeFinder:
    """Which catalogued cube holds a point: pgstac, by intersection, remembered `ttl_s`, and
    kept (with the last answer) while the database is away. Only cubes in the configured
    stores are read: a catalog href anywhere else is refused and logged."""

    def __init__(self, dsn: str, collection: str, files: DataFiles, ttl_s: float = 5.0) -> None:
        self.dsn = dsn
        self.collection = collection
        self.files = files
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._lookups = ThreadPoolExecutor(DB_LOOKUPS, thread_name_prefix="cube-lookup")
        self._waiting = 0
        self._down_until = 0.0
        self._known: dict[str, tuple[float, list[tuple[Path, str]]]] = {}
        self._readers: dict[Path, CubeReader] = {}

    def close(self) -> None:
        self._lookups.shutdown(wait=False, cancel_futures=True)

    def _query(self, lon: float, lat: float) -> list[tuple[str, str | None]]:
        with psycopg.connect(
            self.dsn,
            autocommit=True,
            connect_timeout=DB_CONNECT_TIMEOUT_S,
            options=f"-c statement_timeout={DB_STATEMENT_TIMEOUT_MS}",
        ) as conn:
            return conn.execute(
                """
                SELECT id, content->'assets'->'data'->>'href' FROM pgstac.items
                WHERE collection = %s
                  AND ST_Intersects(geometry, ST_SetSRID(ST_MakePoint(%s, %s), 4326))
                ORDER BY id
                """,
                (self.collection, lon, lat),
            ).fetchall()

    def _lookup(self, lon: float, lat: float) -> list[tuple[str, str | None]]:
        """The query within DB_DEADLINE_S, whatever the server does; CatalogUnavailableError
        otherwise (a lookup stuck on a frozen server keeps its thread, not the request)."""
        with self._lock:
            if self._waiting >= DB_LOOKUPS:
                raise CatalogUnavailableError("every lookup thread waits on the database")
            self._waiting += 1
        try:
            future = self._lookups.submit(self._query, lon, lat)
            future.add_done_callback(lambda _: self._release())
        except RuntimeError as err:  # shut down
            self._release()
            raise CatalogUnavailableError(str(err)) from err
        try:
            return future.result(timeout=DB_DEADLINE_S)
        except (FutureTimeout, psycopg.Error) as err:
            raise CatalogUnavailableError(type(err).__name__) from err

    def _release(self) -> None:
        with self._lock:
            self._waiting -= 1

    def _candidates(self, lon: float, lat: float, key: str) -> list[tuple[Path, str]]:
        hit = self._known.get(key)
        now = time.monotonic()
        if hit and hit[0] > now:
            return hit[1]
        # while the database is away, cubes found before keep answering; that none was
        # found before is not kept: a 404 would then claim what nobody could check
        stale = hit[1] if hit else []
        if now < self._down_until:  # the database failed a moment ago: do not wait on it
            if stale:
                return stale
            raise CatalogUnavailableError("the database failed a moment ago")
        try:
            rows = self._lookup(lon, lat)
        except CatalogUnavailableError as err:
            log.warning("catalog lookup failed (%s); known cubes answer from memory", err)
            self._down_until = time.monotonic() + DB_RETRY_AFTER_S
            if stale:
                return stale
            raise
        found = [cube for _, href in rows if href and (cube := self.files.cube(href))]
        with self._lock:
            self._known.pop(key, None)
            self._known[key] = (now + self.ttl_s, found)
            if len(self._known) > KNOWN_TILES:  # the oldest lookup goes
                self._known.pop(next(iter(self._known)))
        return found

    def find(self, lon: float, lat: float) -> Located | None:
        """The cube and pixel of a point; None when no catalogued cube covers it."""
        canonical = locate(lon, lat)
        candidates = self._candidates(lon, lat, canonical.tile.name)
        for cube, href in sorted(candidates, key=lambda c: c[0].name != canonical.tile.name):
            tile = tile_from_name(cube.name)
            pixel = canonical if tile == canonical.tile else _pixel_in(tile, lon, lat)
            if pixel is not None:
                return Located(lon, lat, cube, href, pixel)
        return None

    def reader(self, cube: Path) -> CubeReader:
        with self._lock:
            if cube not in self._readers:
                self._readers[cube] = CubeReader(LivingCube(cube.parent, cube.name))
            return self._readers[cube]


def _pixel_in(tile, lon: float, lat: float) -> CubePixel | None:
    """The pixel of a point in a cube of another projection than its canonical one."""
    x, y = _transformer(4326, tile.epsg).transform(lon, lat)
    return pixel_of(tile, x, y) if tile_of(tile.epsg, x, y) == tile else None


# -- request parameters ------------------------------------------------------------------
def _utc(value: datetime) -> datetime:
    """Dates with an offset are moved to UTC; dates without one are UTC already (the
    cubes' mid_dates are)."""
    if value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC).replace(tzinfo=None)
    except OverflowError as err:
        raise ValueError("out of the range of dates once moved to UTC") from err


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
Days = Annotated[float, Field(ge=0, allow_inf_nan=False, description="days")]
MetresPerYear = Annotated[float, Field(ge=0, allow_inf_nan=False, description="m/yr")]
# strict: a JSON `false` is no coordinate (lax floats read booleans as 0 and 1)
Lon = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False, strict=True)]
Lat = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False, strict=True)]


class Filters(BaseModel):
    """Layer filters shared by GET and POST."""

    start: UtcDatetime | None = Field(
        None, description="first mid_date (ISO 8601; UTC unless an offset is given)"
    )
    end: UtcDatetime | None = Field(
        None, description="last mid_date (ISO 8601; UTC unless an offset is given)"
    )
    min_dt: Days | None = Field(None, description="shortest pair separation, days")
    max_dt: Days | None = Field(None, description="longest pair separation, days")
    sensors: list[str] | None = Field(None, description="mission + satellite: L8, S2A, S1A")
    missions: list[str] | None = Field(None, description="L (Landsat), S (Sentinel)")
    max_error: MetresPerYear | None = Field(None, description="largest v_error, m/yr")
    variables: list[str] | None = Field(None, description="default: the itslive client's")

    def series_filter(self) -> SeriesFilter:
        try:
            return SeriesFilter(
                start=self.start,
                end=self.end,
                min_dt=self.min_dt,
                max_dt=self.max_dt,
                sensors=frozenset(self.sensors) if self.sensors else None,
                missions=frozenset(self.missions) if self.missions else None,
                max_error=self.max_error,
            )
        except ValueError as err:
            raise HTTPException(422, str(err)) from err

    def variable_names(self) -> list[str]:
        try:
            return check_variables(self.variables or list(DEFAULT_VARIABLES))
        except ValueError as err:
            raise HTTPException(422, f"variables: {err}") from err


FIT_DESCRIPTION = "also each pixel's annual values and seasonal curve (the composite fit)"


class PointsRequest(Filters):
    """POST /timeseries: at most GLACIERFLOW_TIMESERIES_MAX_POINTS points (100 by default)."""

    points: list[tuple[Lon, Lat]] = Field(..., min_length=1, description="[[lon, lat], ...]")
    format: Literal["json", "csv", "netcdf"] = "json"
    fit: bool = Field(False, strict=True, description=FIT_DESCRIPTION)


def _split(values: list[str] | None) -> list[str] | None:
    """Accept both ?variables=v,vx and ?variables=v&variables=vx."""
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def filter_query(
    start: Annotated[UtcDatetime | None, Query(description="UTC unless an offset is given")] = None,
    end: Annotated[UtcDatetime | None, Query(description="UTC unless an offset is given")] = None,
    min_dt: Annotated[float | None, Query(ge=0, allow_inf_nan=False, description="days")] = None,
    max_dt: Annotated[float | None, Query(ge=0, allow_inf_nan=False, description="days")] = None,
    sensors: Annotated[list[str] | None, Query(description="L8,S2A,...")] = None,
    missions: Annotated[list[str] | None, Query(description="L,S,...")] = None,
    max_error: Annotated[float | None, Query(ge=0, allow_inf_nan=False, description="m/yr")] = None,
    variables: Annotated[list[str] | None, Query(description="v,v_error,...")] = None,
) -> Filters:
    """The layer filters of a GET query, one dependency for every GET route."""
    return Filters(
        start=start,
        end=end,
        min_dt=min_dt,
        max_dt=max_dt,
        sensors=_split(sensors),
        missions=_split(missions),
        max_error=max_error,
        variables=_split(variables),
    )


QueryFilters = Annotated[Filters, Depends(filter_query)]


def _points_request(body: bytes, max_points: int) -> PointsRequest:
    """The POST body, its points counted before the rest is validated."""
    try:  # Python's parser: 1e999, NaN and Infinity reach the model, which names them
        data = json.loads(body)
    except (ValueError, RecursionError) as err:
        raise HTTPException(422, f"body: not JSON ({err})") from err
    if not isinstance(data, dict):
        raise HTTPException(422, 'body: a JSON object {"points": [[lon, lat], ...], ...}')
    points = data.get("points")
    if isinstance(points, list) and len(points) > max_points:
        raise HTTPException(422, f"points: at most {max_points} per request, {len(points)} given")
    try:
        return PointsRequest.model_validate(data)
    except ValidationError as err:
        errors = err.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from err


# -- formatting ----------------------------------------------------------------------------
Fit = SeriesFit | NoFit
# a point's answer: where, its series, and its fit when asked for
Answer = tuple[Located, PointSeries, Fit | None]


def _column(values: np.ndarray) -> list | np.ndarray:
    """One JSON column: numbers stay numpy (orjson writes them in C); empty values null."""
    if np.issubdtype(values.dtype, np.datetime64):
        return np.datetime_as_string(values.astype("datetime64[ms]"), unit="ms").tolist()
    if np.issubdtype(values.dtype, np.floating):
        finite = np.isfinite(values)
        present = values[finite]
        if not np.array_equal(present, np.rint(present)):
            return np.round(values.astype(np.float64), 3)
        # whole numbers (the int16 velocities): integers, 10x faster to write, a third shorter
        if finite.all():
            return values.astype(np.int64)
        return [int(v) if ok else None for v, ok in zip(values, finite, strict=True)]
    if values.dtype.kind in "OUT":
        return values.astype(str).tolist()
    return values


def _json(body: object) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json"
    )


def _series_json(located: Located, series: PointSeries, base: str) -> dict[str, object]:
    columns = {TIME_DIM: series.time_text.tolist()}
    columns.update({name: _column(values) for name, values in series.columns.items()})
    units = {name: attrs.get("units") for name, attrs in series.attrs.items()}
    return {
        **located.describe(base),
        "count": len(series),
        "units": {k: v for k, v in units.items() if v},
        "time_series": columns,
    }


_CSV_NAMES = {
    "v": "v [m/yr]",
    "v_error": "v_error [m/yr]",
    "vx": "vx [m/yr]",
    "vx_error": "vx_error [m/yr]",
    "vy": "vy [m/yr]",
    "vy_error": "vy_error [m/yr]",
    "date_dt": "date_dt [days]",
    "mission_img1": "mission",
    "satellite_img1": "satellite",
}


def _series_csv(located: Located, series: PointSeries, header: bool = True) -> str:
    """The itslive client's export: mid_date,lat,lon,v [m/yr],...,mission,satellite,epsg,
    then any other variable asked for under its own name."""
    frame = series.to_dataset().to_dataframe()
    # as text: the float format below is for velocities, not coordinates
    frame.insert(0, "lon", f"{located.lon:.4f}")
    frame.insert(0, "lat", f"{located.lat:.4f}")
    if "date_dt" in frame:
        frame["date_dt"] = np.rint(frame["date_dt"].astype(float)).astype("Int64")
    frame["epsg"] = located.pixel.tile.epsg
    frame = frame.rename(columns=_CSV_NAMES)
    first = ["lat", "lon", *[c for c in _CSV_NAMES.values() if c in frame], "epsg"]
    frame = frame[first + [c for c in frame.columns if c not in first]]
    return frame.to_csv(header=header, index_label=TIME_DIM, float_format="%.1f")


def _series_netcdf(datasets: list[Answer]) -> bytes:
    parts = []
    for located, series, fit in datasets:
        info = located.describe("")["returned_point"]
        data = series.to_dataset()
        if fit is not None:
            data = data.merge(_fit_dataset(fit))
        part = data.expand_dims(point=1).assign_coords(
            lon=("point", [located.lon]),
            lat=("point", [located.lat]),
            cube=("point", [located.pixel.tile.name]),
            x=("point", [info["x"]]),
            y=("point", [info["y"]]),
            offset_m=("point", [info["offset_m"]]),
        )
        parts.append(part)
    ds = xr.concat(parts, dim="point", join="outer") if len(parts) > 1 else parts[0]
    return _netcdf_bytes(ds, "glacierflow point time series")


# -- the fit in each format ------------------------------------------------------------------
_FIT_UNITS = {
    **{name: "meter/year" for name in (*ANNUAL, *SEASONAL, *CURVE) if name != "count"},
    **{name: "day of year of the maximum" for name in SEASONAL if name.endswith("_phase")},
    "count": "pairs overlapping the year",
}


def _number(value: float) -> float | None:
    return round(value, 3) if np.isfinite(value) else None


def _fit_json(fit: Fit | None) -> dict[str, object]:
    """The point's extra keys: `fit` (null with `fit_reason` when there is none)."""
    if fit is None:
        return {}
    if isinstance(fit, NoFit):
        return {"fit": None, "fit_reason": fit.reason}
    curve_time = np.datetime_as_string(fit.curve_time, unit="D").tolist()
    return {
        "fit": {
            "pairs": fit.pairs,
            **{name: _number(value) for name, value in fit.seasonal.items()},
            "annual": {"year": fit.years.tolist()}
            | {name: _column(values) for name, values in fit.annual.items()},
            "curve": {"time": curve_time} | {name: _column(fit.curve[name]) for name in CURVE},
            "units": _FIT_UNITS,
        }
    }


def _fit_csv(items: list[Answer]) -> str:
    """Three sections after the points, each a blank row, a title row (`[seasonal fit]`,
    `[annual fit]`, `[fit curve]`) and a table: one file a spreadsheet opens as it is;
    rows say their point by lat, lon."""
    seasonal, annual, curve = [], [], []
    for located, _, fit in items:
        where = {"lat": f"{located.lat:.4f}", "lon": f"{located.lon:.4f}"}
        if isinstance(fit, NoFit):
            seasonal.append({**where, "pairs": None, "note": fit.reason})
            continue
        seasonal.append({**where, "pairs": fit.pairs, **fit.seasonal, "note": ""})
        annual.append(pd.DataFrame({**where, "year": fit.years, **fit.annual}))
        curve.append(pd.DataFrame({**where, "date": fit.curve_time.astype(str), **fit.curve}))
    units = {name: f"{name} [m/yr]" for name in (*ANNUAL, *SEASONAL) if name != "count"}
    units |= {name: f"{name} [day of year]" for name in SEASONAL if name.endswith("_phase")}
    sections = (
        ("seasonal fit", [pd.DataFrame(seasonal)], ["pairs", *SEASONAL, "note"]),
        ("annual fit", annual, ["year", *ANNUAL]),
        ("fit curve", curve, ["date", *CURVE]),
    )
    text = ""
    for title, frames, names in sections:
        table = pd.concat(frames) if frames else pd.DataFrame()
        table = table.reindex(columns=["lat", "lon", *names])
        for whole in {"pairs", "count"} & set(names):
            table[whole] = table[whole].astype("Int64")
        text += f"\n[{title}]\n" + table.rename(columns=units).to_csv(
            index=False, float_format="%.1f"
        )
    return text


def _fit_dataset(fit: Fit) -> xr.Dataset:
    """The fit as variables on their own dimensions, `year` and `curve_time` (empty, with
    `fit_note` saying why, when there is no fit)."""
    note = fit.reason if isinstance(fit, NoFit) else ""
    if isinstance(fit, NoFit):
        fit = SeriesFit.empty()
    data = {f"annual_{n}": ("year", v, {"units": _FIT_UNITS[n]}) for n, v in fit.annual.items()}
    data |= {n: ((), v, {"units": _FIT_UNITS[n]}) for n, v in fit.seasonal.items()}
    data |= {f"curve_{n}": ("curve_time", fit.curve[n], {"units": "meter/year"}) for n in CURVE}
    data |= {"fit_pairs": ((), fit.pairs), "fit_note": ((), note)}
    coords = {"year": fit.years, "curve_time": fit.curve_time.astype("datetime64[ns]")}
    return xr.Dataset(data, coords=coords)


def _netcdf_bytes(ds: xr.Dataset, title: str) -> bytes:
    """A NetCDF4 file's bytes (strings as text, no leftover encodings)."""
    ds = ds.copy()
    ds.attrs = {"title": title, "Conventions": "CF-1.8"}
    for name in ds.variables:
        ds[name].encoding = {}
        if ds[name].dtype.kind in "OT":
            ds[name] = ds[name].astype(str)
    handle, path = tempfile.mkstemp(suffix=".nc")
    os.close(handle)
    try:
        ds.to_netcdf(path, engine="netcdf4")
        return Path(path).read_bytes()
    finally:
        os.unlink(path)


def _respond(fmt: OutputFormat, items: list[Answer], single: bool, base: str) -> Response:
    if fmt is OutputFormat.csv:
        text = "".join(_series_csv(loc, s, header=i == 0) for i, (loc, s, _) in enumerate(items))
        if any(fit is not None for _, _, fit in items):
            text += _fit_csv(items)
        return Response(text, media_type="text/csv")
    if fmt is OutputFormat.netcdf:
        return Response(_series_netcdf(items), media_type="application/x-netcdf")
    body = [_series_json(loc, s, base) | _fit_json(fit) for loc, s, fit in items]
    return _json(body[0] if single else {"results": body})


# -- profiles --------------------------------------------------------------------------------
def parse_line(text: str) -> list[tuple[float, float]]:
    """'LON LAT,LON LAT,...' -> vertices; ValueError says what is wrong."""
    pairs = text.split(",")
    if len(pairs) > MAX_PROFILE_POINTS:
        raise ValueError(f"at most {MAX_PROFILE_POINTS} vertices, {len(pairs)} given")
    vertices = []
    for pair in pairs:
        parts = pair.split()
        if len(parts) != 2:
            raise ValueError(f"{pair.strip()[:40]!r} is not 'LON LAT'")
        lon, lat = float(parts[0]), float(parts[1])
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise ValueError(f"({lon}, {lat}) is not a longitude/latitude")
        vertices.append((lon, lat))
    if len(vertices) < 2:
        raise ValueError("a line needs at least two vertices")
    return vertices


def sample_line(vertices: list[tuple[float, float]], spacing: float) -> list[tuple[float, ...]]:
    """Points every `spacing` metres along the geodesic polyline: (lon, lat, distance_m)."""
    out = [(vertices[0][0], vertices[0][1], 0.0)]
    carried = 0.0  # distance already walked past the last sample at the segment start
    total = 0.0
    for (lon0, lat0), (lon1, lat1) in itertools.pairwise(vertices):
        azimuth, _, length = _GEOD.inv(lon0, lat0, lon1, lat1)
        along = spacing - carried
        while along <= length + 1e-6:
            lon, lat, _ = _GEOD.fwd(lon0, lat0, azimuth, along)
            out.append((lon, lat, total + along))
            if len(out) > MAX_PROFILE_POINTS:
                raise ValueError(
                    f"the line needs more than {MAX_PROFILE_POINTS} samples at {spacing} m; "
                    "use a larger spacing"
                )
            along += spacing
        carried = length - (along - spacing)
        total += length
    return out


def _profile(
    samples, finder: CubeFinder, variables: list[str], query: SeriesFilter, base: str
) -> xr.Dataset:
    located = [(distance, finder.find(lon, lat)) for lon, lat, distance in samples]
    if not any(loc for _, loc in located):
        raise HTTPException(404, "no cube covers any point of the line")
    columns = []
    for distance, loc in located:
        if loc is None:
            continue
        series = _read(finder, loc, variables, query, base)
        columns.append(
            series.to_dataset()
            .expand_dims(distance=[distance])
            .assign_coords(lon=("distance", [loc.lon]), lat=("distance", [loc.lat]))
        )
    profile = xr.concat(columns, dim="distance", join="outer")
    profile["distance"].attrs["units"] = "m"
    return profile


def _read(
    finder: CubeFinder, loc: Located, variables: list[str], query: SeriesFilter, base: str
) -> PointSeries:
    """A pixel's series, with granule URLs for the granules' server paths; 503 (the reason
    logged, not shown: it names server paths) when the cube cannot be read now."""
    try:
        series = finder.reader(loc.cube).series(loc.pixel.row, loc.pixel.col, variables, query)
    except (CubeError, OSError) as err:
        log.warning("cube %s unreadable: %s", loc.pixel.tile.name, err)
        raise HTTPException(
            503, f"cube {loc.pixel.tile.name} cannot be read now; try again shortly"
        ) from err
    if "granule_url" in series.columns:
        urls = [finder.files.url(u, base) or Path(u).name for u in series.columns["granule_url"]]
        columns = {**series.columns, "granule_url": np.array(urls, dtype=object)}
        series = dataclasses.replace(series, columns=columns)
    return series


def _profile_json(profile: xr.Dataset) -> dict[str, object]:
    return {
        "distance_m": _column(profile["distance"].values),
        "lon": _column(profile["lon"].values),
        "lat": _column(profile["lat"].values),
        TIME_DIM: _column(profile[TIME_DIM].values),
        "values": {
            name: [_column(row) for row in profile[name].transpose(TIME_DIM, "distance").values]
            for name in profile.data_vars
            if profile[name].dims == ("distance", TIME_DIM) and profile[name].dtype.kind in "fiu"
        },
    }


# -- the router --------------------------------------------------------------------------------
# every route answers json, csv or netcdf (`format`): declared for clients and the fuzzer
_FORMATS = {200: {"content": {"text/csv": {}, "application/x-netcdf": {}}}}


def timeseries_router(
    settings: Settings, dsn: str, files: DataFiles
) -> tuple[APIRouter, CubeFinder]:
    """GET/POST /timeseries and GET /profile; the finder is closed by the app on exit.

    Catalog and cube reads, formatting and encoding run in worker threads, never on the
    event loop; a POST body is read only up to what its points count allows."""
    finder = CubeFinder(dsn, settings.collection_id("cubes"), files)
    max_points = settings.timeseries_max_points
    router = APIRouter(tags=["time series"])

    def series_at(lon: float, lat: float, filters: Filters, base: str, fit: bool) -> Answer:
        try:
            located = finder.find(lon, lat)
        except CatalogUnavailableError as err:
            raise _unavailable() from err
        if located is None:
            raise HTTPException(
                404,
                f"no cube covers lon {lon}, lat {lat} (the catalogued cubes are listed at "
                f"/stac/collections/{finder.collection}/items)",
            )
        names, query = filters.variable_names(), filters.series_filter()
        if not fit:
            return located, _read(finder, located, names, query, base), None
        # the fit's inputs are read along, then only what was asked for is shown
        series = _read(finder, located, list(dict.fromkeys([*names, *FIT_INPUTS])), query, base)
        shown = dataclasses.replace(
            series,
            columns={name: series.columns[name] for name in names},
            attrs={name: series.attrs[name] for name in names if name in series.attrs},
        )
        return located, shown, fit_series(series.to_dataset())

    @router.get("/timeseries", summary="A point's whole history", responses=_FORMATS)
    def timeseries(
        request: Request,
        lon: Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False)],
        lat: Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False)],
        filters: QueryFilters,
        format: OutputFormat = OutputFormat.json,
        fit: Annotated[bool, Query(description=FIT_DESCRIPTION)] = False,
    ) -> Response:
        """The nearest pixel's velocity series from the cube that holds (lon, lat)."""
        base = files.base_url(request)
        answer = series_at(lon, lat, filters, base, fit)
        return _respond(format, [answer], single=True, base=base)

    @router.post(
        "/timeseries",
        summary="Several points' histories",
        responses=_FORMATS,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": PointsRequest.model_json_schema()}},
            }
        },
    )
    async def timeseries_points(request: Request) -> Response:
        """Body: {"points": [[lon, lat], ...], filters..., "format": "json|csv|netcdf",
        "fit": false}; at most GLACIERFLOW_TIMESERIES_MAX_POINTS points."""
        limit = max_points * BODY_BYTES_PER_POINT + BODY_BYTES_FILTERS
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise HTTPException(
                    413, f"the body is over {limit} bytes, more than {max_points} points need"
                )
        base = files.base_url(request)

        def answer() -> Response:
            asked = _points_request(bytes(body), max_points)
            items = [series_at(lon, lat, asked, base, asked.fit) for lon, lat in asked.points]
            return _respond(OutputFormat(asked.format), items, single=False, base=base)

        return await anyio.to_thread.run_sync(answer)

    @router.get("/profile", summary="Time x distance along a line (Hovmöller)", responses=_FORMATS)
    def profile(
        request: Request,
        line: Annotated[
            str,
            Query(
                max_length=64 * MAX_PROFILE_POINTS,
                description="LON LAT,LON LAT,... (2 to 1000 vertices)",
            ),
        ],
        filters: QueryFilters,
        spacing: Annotated[
            float, Query(gt=0, allow_inf_nan=False, description="metres between samples")
        ] = 120.0,
        format: OutputFormat = OutputFormat.json,
    ) -> Response:
        """Samples the polyline every `spacing` metres (at most 1000 samples); each sample's
        nearest pixel."""
        filters.variables = filters.variables or ["v"]  # a profile's default: speed only
        try:
            samples = sample_line(parse_line(line), spacing)
        except ValueError as err:
            raise HTTPException(422, f"line: {err}") from err
        names = filters.variable_names()
        try:
            profile = _profile(
                samples, finder, names, filters.series_filter(), files.base_url(request)
            )
        except CatalogUnavailableError as err:
            raise _unavailable() from err
        if format is OutputFormat.netcdf:
            return Response(
                _netcdf_bytes(profile, "glacierflow velocity profile (time x distance)"),
                media_type="application/x-netcdf",
            )
        if format is OutputFormat.csv:
            frame = profile.to_dataframe().dropna(subset=["v"] if "v" in names else None)
            return Response(frame.to_csv(float_format="%.1f"), media_type="text/csv")
        return _json(_profile_json(profile))

    return router, finder
