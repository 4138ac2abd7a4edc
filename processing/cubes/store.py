"""The living cube: a time-contiguous history plus append-only recent segments.

On disk, for a store folder STORE and a cube NAME (ITS_LIVE's tile name)::

    STORE/NAME                            symlink -> .glacierflow/NAME/history-000007.zarr
    STORE/.glacierflow/NAME/history-000007.zarr   every layer of segments 1..7, sorted by
                                                  mid_date, chunked for point reads
    STORE/.glacierflow/NAME/recent/000008.zarr    a batch of layers appended since
    STORE/.glacierflow/NAME/staging/              work in progress (removed when found)
    STORE/.glacierflow/NAME/lock                  one writer at a time

Why: appending to time-contiguous chunks rewrites every chunk of the history, so an
ingest writes a new segment instead (a few files) and a consolidation rewrites the history
now and then (`consolidate`). Every change is made in `staging/` and published by one
atomic rename (a segment into `recent/`, or the NAME symlink onto a new history), so a
process killed at any moment leaves each cube with its old or its new content, never a
mix; what a rename publishes is on disk first (fsync), so a power cut cannot undo it.
`xarray.open_zarr(STORE/NAME)` reads the history in ITS_LIVE's layout; `LivingCube.open` and
the time-series API add the recent segments (one call, the whole series). Plain readers
see the segments once they are folded into the history: by ingest after
`consolidate_after` segments, by `glacierflow cube consolidate`, or by the background
consolidator that ingest starts (background.py) GLACIERFLOW_CUBE_CONSOLIDATE_DELAY_S later.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import uuid
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dask.array
import numpy as np
import xarray as xr
import zarr
from pyproj import CRS, Transformer

from glacierflow.processing.cubes.grid import CELL_SIZE_M, TILE_SIZE_M, CubeTile
from glacierflow.processing.cubes.layers import Layer
from glacierflow.processing.cubes.layout import (
    CUBE_LAYOUT,
    GRIDDED,
    PAIR_DATES,
    PAIR_STRINGS,
    POINT_GROUP,
    POINT_VARIABLES,
    TIME_DIM,
    TIME_UNITS,
    ChunkLayout,
    layer_figure_names,
)
from glacierflow.processing.io.granule import mapping_attrs

# ITS_LIVE's readers expect consolidated metadata; zarr warns on every write that Zarr v3
# has not standardised it yet
warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")

STATE_DIR = ".glacierflow"
_HISTORY = re.compile(r"^history-(\d{6})\.zarr$")
_SEGMENT = re.compile(r"^(\d{6})\.zarr$")
_CUBE_NAME = re.compile(r"^ITS_LIVE_vel_EPSG(\d+)_G0120_X(-?\d+)_Y(-?\d+)\.zarr$")
# layers per segment: bounds the memory of one batch (~9 MB a layer on a full tile)
MAX_SEGMENT_LAYERS = 32
# the rows and columns [r0, r1, c0, c1) of the tile that hold data (JSON), kept so that
# writes touch those chunks only
WINDOW_ATTR = "glacierflow_data_window"


class CubeError(RuntimeError):
    """A cube that cannot be read or written as asked, with the reason."""


def tile_from_name(name: str) -> CubeTile:
    """The tile of an ITS_LIVE cube name."""
    match = _CUBE_NAME.match(name)
    if not match:
        raise CubeError(f"{name!r} is not an ITS_LIVE cube name")
    epsg, x, y = (int(g) for g in match.groups())
    return CubeTile(epsg, x - TILE_SIZE_M // 2, y - TILE_SIZE_M // 2)


@dataclass(frozen=True)
class Snapshot:
    """One consistent view of a cube: a history and the segments appended after it."""

    history: Path | None
    through: int  # the last segment folded into the history
    segments: tuple[Path, ...]

    @property
    def parts(self) -> tuple[Path, ...]:
        return ((self.history,) if self.history else ()) + self.segments

    @property
    def version(self) -> tuple[str, ...]:
        """Changes whenever the cube's content does (cache key for readers)."""
        return tuple(p.name for p in self.parts)


class LivingCube:
    """One cube in a store folder."""

    def __init__(self, store: Path, name: str) -> None:
        self.store = Path(store)
        self.name = name
        self.tile = tile_from_name(name)
        self.path = self.store / name
        self.state = self.store / STATE_DIR / name

    # -- reading ---------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.path.is_symlink() or self.path.exists()

    def snapshot(self) -> Snapshot:
        """The current history and the segments after it (no lock: both are published
        atomically; a reader that loses a race with a consolidation simply asks again)."""
        if not self.path.is_symlink():
            if self.path.exists():
                raise CubeError(f"{self.path} is not a glacierflow cube (not a symlink)")
            return Snapshot(None, 0, ())
        target = self.path.parent / os.readlink(self.path)
        match = _HISTORY.match(target.name)
        through = int(match.group(1)) if match else 0
        recent = self.state / "recent"
        names = sorted(os.listdir(recent)) if recent.is_dir() else []
        segments = tuple(
            recent / n for n in names if (m := _SEGMENT.match(n)) and int(m.group(1)) > through
        )
        return Snapshot(target, through, segments)

    def open(self, chunks: dict[str, int] | None = None) -> xr.Dataset:
        """The whole cube as one Dataset in ITS_LIVE's layout, sorted by mid_date (lazy:
        dask blocks of 50 x 50 pixels by default, aligned with every part's chunks)."""
        side = CUBE_LAYOUT.side_px
        chunks = chunks or {TIME_DIM: -1, "y": side, "x": side}
        for _ in range(5):
            snap = self.snapshot()
            try:
                return open_snapshot(snap, chunks)
            except FileNotFoundError:  # a consolidation replaced what we were opening
                continue
        raise CubeError(f"{self.path}: changing too fast to read; try again")

    def open_history(self) -> xr.Dataset:
        """What `xarray.open_zarr(self.path)` shows: the history, without the recent
        segments that the background consolidation has not folded in yet."""
        for _ in range(5):
            snap = self.snapshot()
            try:
                return open_snapshot(Snapshot(snap.history, snap.through, ()))
            except FileNotFoundError:  # a consolidation replaced what we were opening
                continue
        raise CubeError(f"{self.path}: changing too fast to read; try again")

    def pending_layer_count(self) -> int:
        """Layers in recent segments: served by glacierflow's readers, not yet in the
        history."""
        count = 0
        for segment in self.snapshot().segments:
            try:
                group = zarr.open_group(segment, mode="r", use_consolidated=True)
            except FileNotFoundError:  # folded into the history while we counted
                continue
            count += group[TIME_DIM].shape[0]
        return count

    def contents(self) -> tuple[set[str], set[np.datetime64]]:
        """Granule URLs and mid_dates already in the cube."""
        urls: set[str] = set()
        dates: set[np.datetime64] = set()
        for part in self.snapshot().parts:
            with xr.open_zarr(part, consolidated=True) as ds:
                urls.update(str(u) for u in ds["granule_url"].values)
                dates.update(ds[TIME_DIM].values.astype("datetime64[ns]"))
        return urls, dates

    # -- writing ---------------------------------------------------------------------------
    @contextmanager
    def locked(self) -> Iterator[None]:
        """One writer at a time; what a dead writer left in staging/ is removed."""
        self.state.mkdir(parents=True, exist_ok=True)
        with open(self.state / "lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                shutil.rmtree(self.state / "staging", ignore_errors=True)
                (self.state / "staging").mkdir()
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def append(self, layers: Sequence[Layer], skipped: dict[str, str] | None = None) -> int:
        """Publish `layers` (call under `locked()`): as the history of a new cube, else as
        recent segments of at most MAX_SEGMENT_LAYERS layers. Returns the segments written
        (a new cube's first batch goes straight into its history)."""
        if not layers:
            return 0
        batches = [
            layers[i : i + MAX_SEGMENT_LAYERS] for i in range(0, len(layers), MAX_SEGMENT_LAYERS)
        ]
        snap = self.snapshot()
        if snap.history is None:  # a new cube: its first batch is its history
            self.publish_history(layers_dataset(self.tile, batches[0], skipped), 0, CUBE_LAYOUT)
            snap, batches = self.snapshot(), batches[1:]
        seq = max([snap.through, *(int(p.stem) for p in snap.segments)])
        for batch in batches:
            seq += 1
            staged = self._staged()
            write_zarr(layers_dataset(self.tile, batch), staged, CUBE_LAYOUT)
            flush_tree(staged)
            (self.state / "recent").mkdir(exist_ok=True)
            os.rename(staged, self.state / "recent" / f"{seq:06d}.zarr")  # the commit
            flush_folder(self.state / "recent")
        return len(batches)

    def consolidate(self, skipped: dict[str, str] | None = None) -> bool:
        """Fold the recent segments into a new time-sorted history (call under `locked()`).
        False when there was nothing to fold."""
        snap = self.snapshot()
        if not snap.segments:
            return False
        through = int(snap.segments[-1].stem)
        side = CUBE_LAYOUT.side_px  # aligned with the chunks of every part
        blocks = {TIME_DIM: -1, "y": side, "x": side}
        ds = open_snapshot(snap, chunks=blocks).chunk(blocks)  # one time block after concat
        ds.attrs["skipped_granules"] = _skipped_attr(ds.attrs, skipped)
        ds.attrs["date_updated"] = _now()
        self.publish_history(ds, through, CUBE_LAYOUT)
        for segment in snap.segments:
            shutil.rmtree(segment, ignore_errors=True)
        return True

    def _staged(self) -> Path:
        return self.state / "staging" / f"{uuid.uuid4().hex}.zarr"

    def publish_history(self, ds: xr.Dataset, through: int, layout: ChunkLayout) -> None:
        """Make `ds` the cube's history, holding segments up to `through` (under `locked()`):
        written in staging, renamed, then the cube's symlink replaced in one step."""
        staged = self._staged()
        ds.attrs["url"] = self.name  # its folder is the server's business, not a reader's
        write_zarr(ds, staged, layout)
        flush_tree(staged)
        target = self.state / f"history-{through:06d}.zarr"
        shutil.rmtree(target, ignore_errors=True)  # a leftover of a writer that died
        os.rename(staged, target)
        flush_folder(self.state)
        link = self.state / "staging" / f"{uuid.uuid4().hex}.link"
        os.symlink(os.path.relpath(target, self.path.parent), link)
        previous = self.snapshot().history
        os.replace(link, self.path)  # the commit: readers now see the new history
        flush_folder(self.path.parent)
        if previous and previous != target:
            shutil.rmtree(previous, ignore_errors=True)


def flush_tree(tree: Path) -> None:
    """A file, or every file and folder of a tree, written to disk (fsync) before it is
    published, so the rename that publishes it survives a power cut, not only a kill."""
    if tree.is_file():
        _fsync(tree, os.O_RDONLY)
    for folder, _, files in os.walk(tree):
        for name in files:
            _fsync(os.path.join(folder, name), os.O_RDONLY)
        flush_folder(folder)


def flush_folder(folder: str | Path) -> None:
    """A folder's entries (a rename, a new name) written to disk."""
    _fsync(folder, os.O_RDONLY | os.O_DIRECTORY)


def _fsync(path: str | Path, flags: int) -> None:
    handle = os.open(path, flags)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


# ITS_LIVE's form of date_created / date_updated (its granules and cubes): 30-Nov-2026 10:28:11
DATE_ATTR_FORMAT = "%d-%b-%Y %H:%M:%S"


def _now() -> str:
    return datetime.now(UTC).strftime(DATE_ATTR_FORMAT)


def _skipped_attr(attrs: dict, skipped: dict[str, str] | None) -> str:
    known = json.loads(attrs.get("skipped_granules") or "{}")
    known.update(skipped or {})
    return json.dumps(known, sort_keys=True)


def open_snapshot(snap: Snapshot, chunks: dict[str, int] | None = None) -> xr.Dataset:
    """History and segments as one Dataset sorted by mid_date (lazy)."""
    if not snap.parts:
        raise CubeError("the cube has no layers yet")
    parts = [
        xr.open_zarr(p, consolidated=True, chunks=chunks, decode_timedelta=False)
        for p in snap.parts
    ]
    if len(parts) == 1:
        return parts[0]
    attrs = dict(parts[0].attrs)
    merged = xr.concat(
        parts,
        dim=TIME_DIM,
        data_vars="minimal",
        coords="minimal",
        compat="override",
        join="override",
        combine_attrs="override",
    )
    merged = merged.isel({TIME_DIM: np.argsort(merged[TIME_DIM].values, kind="stable")})
    attrs[WINDOW_ATTR] = json.dumps(_union(json.loads(p.attrs[WINDOW_ATTR]) for p in parts))
    merged.attrs = attrs
    return merged


def write_zarr(ds: xr.Dataset, path: Path, layout: ChunkLayout) -> None:
    """Write a cube Dataset as consolidated Zarr v3 with the layout's chunks, and its
    point copy (POINT_GROUP) when the layout has one.

    Only the chunks inside the data window (attribute WINDOW_ATTR) are written: zarr
    spends about half a millisecond on every chunk, even one it finds empty, and a tile
    has tens of thousands of them."""
    n, ny, nx = ds.sizes[TIME_DIM], ds.sizes["y"], ds.sizes["x"]
    chunks, point_chunks = layout.chunks(n, ny, nx), layout.point_chunks(n, ny, nx)
    encoding: dict[str, dict] = {}
    for name, (dtype, fill, _) in GRIDDED.items():
        encoding[name] = {
            "dtype": np.dtype(dtype),
            "chunks": chunks,
            "compressors": [layout.compressor()],
            "_FillValue": fill,
            "fill_value": fill,  # what zarr returns for chunks never written
        }
    for name in ds.data_vars:
        if ds[name].dims == (TIME_DIM,):
            encoding[name] = {"chunks": (max(n, 1),), "compressors": [layout.compressor()]}
    for name in PAIR_DATES:
        encoding[name].update(units=TIME_UNITS, dtype="float64")
    encoding[TIME_DIM] = {"units": TIME_UNITS, "dtype": "float64", "chunks": (max(n, 1),)}
    ds = ds.drop_encoding()  # what it was read with does not decide how it is written
    block = layout.side_px  # whole chunks and shards of every variable
    r0, r1, c0, c1 = json.loads(ds.attrs[WINDOW_ATTR])
    rows = slice(r0 // block * block, min(-(-r1 // block) * block, ny))
    cols = slice(c0 // block * block, min(-(-c1 // block) * block, nx))
    template = ds.copy()
    for name, (dtype, fill, _) in GRIDDED.items():
        template[name] = ds[name].copy(
            data=dask.array.full(ds[name].shape, fill, dtype=dtype, chunks=(-1, block, block))
        )
    template.to_zarr(
        path, mode="w-", encoding=encoding, consolidated=False, zarr_format=3, compute=False
    )
    if point_chunks:
        point_encoding = {
            name: {**encoding[name], "chunks": point_chunks, "shards": chunks}
            for name in POINT_VARIABLES
        }
        points = template[list(POINT_VARIABLES)].drop_vars([TIME_DIM, "y", "x"])
        points.to_zarr(
            path,
            group=POINT_GROUP,
            mode="w-",
            encoding=point_encoding,
            consolidated=False,
            zarr_format=3,
            compute=False,
        )
    whole = {TIME_DIM: slice(None), "y": slice(None), "x": slice(None)}
    ds.drop_vars([*GRIDDED, "mapping"]).to_zarr(path, mode="r+", region=whole, consolidated=False)
    if rows.stop > rows.start and cols.stop > cols.start:
        region = ds[list(GRIDDED)].isel(y=rows, x=cols).drop_vars([TIME_DIM, "y", "x"])
        region = region.chunk({TIME_DIM: -1, "y": block, "x": block})  # whole chunks each
        where = {TIME_DIM: slice(None), "y": rows, "x": cols}
        writes = [region.to_zarr(path, mode="r+", region=where, consolidated=False, compute=False)]
        if point_chunks:  # in the same computation: each block is read or made once
            writes.append(
                region[list(POINT_VARIABLES)].to_zarr(
                    path,
                    group=POINT_GROUP,
                    mode="r+",
                    region=where,
                    consolidated=False,
                    compute=False,
                )
            )
        dask.compute(*writes)
    zarr.consolidate_metadata(path, zarr_format=3)


def _window(layers: Sequence[Layer]) -> list[int]:
    """Rows and columns [r0, r1, c0, c1) of the tile that hold any layer's data."""
    r0 = min(layer.row0 for layer in layers)
    c0 = min(layer.col0 for layer in layers)
    r1 = max(layer.row0 + layer.gridded["v"].shape[0] for layer in layers)
    c1 = max(layer.col0 + layer.gridded["v"].shape[1] for layer in layers)
    return [r0, r1, c0, c1]


def _union(windows: Iterable[list[int]]) -> list[int]:
    ws = np.array(list(windows))
    return [int(ws[:, 0].min()), int(ws[:, 1].max()), int(ws[:, 2].min()), int(ws[:, 3].max())]


def layers_dataset(
    tile: CubeTile, layers: Sequence[Layer], skipped: dict[str, str] | None = None
) -> xr.Dataset:
    """A cube Dataset (ITS_LIVE's variables and attributes) holding `layers`."""
    ny, nx = len(tile.y), len(tile.x)
    order = np.argsort([np.datetime64(layer.mid_date, "ns") for layer in layers], kind="stable")
    layers = [layers[i] for i in order]
    n = len(layers)
    dims3 = (TIME_DIM, "y", "x")
    data: dict[str, xr.Variable] = {}
    r0, r1, c0, c1 = window = _window(layers)
    for name, (dtype, fill, attrs) in GRIDDED.items():
        # only the window holds data: a full tile is ~9 MB a layer, padded lazily instead
        block = np.full((n, r1 - r0, c1 - c0), fill, dtype=dtype)
        for k, layer in enumerate(layers):
            values = layer.gridded[name]
            top, left = layer.row0 - r0, layer.col0 - c0
            block[k, top : top + values.shape[0], left : left + values.shape[1]] = values
        padded = dask.array.pad(
            dask.array.from_array(block, chunks=-1),
            ((0, 0), (r0, ny - r1), (c0, nx - c1)),
            constant_values=fill,
        )
        data[name] = xr.Variable(dims3, padded, {**attrs, "grid_mapping": "mapping"})
    for name in layer_figure_names():
        values = np.array([layer.figures.get(name, np.nan) for layer in layers], np.float32)
        data[name] = xr.Variable(TIME_DIM, values, {"units": "meter/year"})
    data["stable_shift_flag"] = xr.Variable(
        TIME_DIM,
        np.array([layer.pair["stable_shift_flag"] for layer in layers], np.uint8),
        {"description": "0 = no correction; 1 = stable surface mask; 2 = slowest 25%"},
    )
    data["date_dt"] = xr.Variable(
        TIME_DIM,
        np.array([layer.pair["date_dt"] for layer in layers], np.float32),
        {"description": "time separation between acquisition of image 1 and 2", "units": "days"},
    )
    data["roi_valid_percentage"] = xr.Variable(
        TIME_DIM,
        np.array([layer.pair["roi_valid_percentage"] for layer in layers], np.float32),
        {"description": "percentage of pixels with a valid velocity in the granule"},
    )
    for name in PAIR_DATES:
        values = np.array([layer.pair[name] for layer in layers], "datetime64[ns]")
        data[name] = xr.Variable(TIME_DIM, values)
    for name in PAIR_STRINGS:
        data[name] = xr.Variable(TIME_DIM, _strings(str(layer.pair[name]) for layer in layers))
    data["granule_url"] = xr.Variable(TIME_DIM, _strings(layer.url for layer in layers))
    crs = CRS.from_epsg(tile.epsg)
    corner = (
        tile.x[0] - CELL_SIZE_M / 2,
        CELL_SIZE_M,
        0.0,
        tile.y[0] + CELL_SIZE_M / 2,
        0.0,
        -CELL_SIZE_M,
    )
    data["mapping"] = xr.Variable((), np.int8(0), mapping_attrs(crs, corner))
    coords = {
        TIME_DIM: xr.Variable(
            TIME_DIM,
            np.array([layer.mid_date for layer in layers], "datetime64[ns]"),
            {"description": "midpoint of image 1 and image 2 acquisition date"},
        ),
        "y": xr.Variable("y", tile.y, {"standard_name": "projection_y_coordinate", "units": "m"}),
        "x": xr.Variable("x", tile.x, {"standard_name": "projection_x_coordinate", "units": "m"}),
    }
    attrs = _cube_attrs(tile, skipped)
    attrs[WINDOW_ATTR] = json.dumps(window)
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _strings(values: Iterable[str]) -> np.ndarray:
    """Variable-length strings (Zarr v3's `string` type), not fixed-width UTF-32."""
    return np.array(list(values), dtype=object)


def _cube_attrs(tile: CubeTile, skipped: dict[str, str] | None) -> dict[str, object]:
    to_lonlat = Transformer.from_crs(f"EPSG:{tile.epsg}", "EPSG:4326", always_xy=True)
    x0, y0 = tile.x_min, tile.y_min
    x1, y1 = x0 + TILE_SIZE_M, y0 + TILE_SIZE_M
    ring = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
    lonlat = [tuple(round(v, 6) for v in to_lonlat.transform(x, y)) for x, y in ring]
    lon, lat = to_lonlat.transform(*tile.centre)
    now = _now()
    return {
        "Conventions": "CF-1.8",
        "title": "glacierflow velocity datacube (ITS_LIVE layout)",
        "institution": "glacierflow",
        "projection": str(tile.epsg),
        "proj_polygon": json.dumps(ring),
        "geo_polygon": json.dumps(lonlat),
        "latitude": round(lat, 2),
        "longitude": round(lon, 2),
        "date_created": now,
        "date_updated": now,
        "skipped_granules": json.dumps(skipped or {}, sort_keys=True),
        "GDAL_AREA_OR_POINT": "Area",
    }


def cube_names(store: Path) -> list[str]:
    """The cubes in a store folder."""
    if not Path(store).is_dir():
        return []
    return sorted(n for n in os.listdir(store) if _CUBE_NAME.match(n))
