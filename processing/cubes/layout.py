"""What a cube holds and how it is laid out on disk: ITS_LIVE's variables, glacierflow's
chunks.

Variables, types, fill values and attributes follow ITS_LIVE's cubes (../shared/FORMATS.md),
so ITS_LIVE users' code reads our cubes unchanged. The chunking differs, on measurement
(BENCHMARKS.md): the velocities are chunked one pixel by the whole history, in shards of
50 x 50 pixels, so a point's series is one small read instead of ITS_LIVE's 20000 x 10 x 10
chunk, a hundred times larger.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from zarr.codecs import BloscCodec

FILL_INT16 = -32767
TIME_DIM = "mid_date"
TIME_UNITS = "days since 1970-01-01"

# 3-D (mid_date, y, x) variables: dtype, fill value, attributes
GRIDDED: dict[str, tuple[type, int, dict[str, str]]] = {
    "v": (np.int16, FILL_INT16, {"description": "velocity magnitude", "units": "meter/year"}),
    "vx": (
        np.int16,
        FILL_INT16,
        {"description": "velocity component in x direction", "units": "meter/year"},
    ),
    "vy": (
        np.int16,
        FILL_INT16,
        {"description": "velocity component in y direction", "units": "meter/year"},
    ),
    "v_error": (
        np.int16,
        FILL_INT16,
        {"description": "velocity magnitude error", "units": "meter/year"},
    ),
    "chip_size_width": (
        np.uint16,
        0,
        {"description": "width of search template (chip)", "units": "m"},
    ),
    "chip_size_height": (
        np.uint16,
        0,
        {"description": "height of search template (chip)", "units": "m"},
    ),
    "interp_mask": (
        np.uint8,
        0,
        {
            "description": "true where values have been interpolated",
            "flag_meanings": "measured interpolated",
        },
    ),
}

# 1-D (mid_date) float32 figures taken from each granule's vx/vy attributes (ITS_LIVE names)
ERROR_FIGURES = {
    "error": "error",
    "error_stationary": "error_stationary",
    "error_modeled": "error_modeled",
    "error_slow": "error_slow",
    "stable_shift": "stable_shift",
    "stable_shift_stationary": "stable_shift_stationary",
    "stable_shift_slow": "stable_shift_slow",
}
PAIR_STRINGS = (
    "satellite_img1",
    "satellite_img2",
    "mission_img1",
    "mission_img2",
    "sensor_img1",
    "sensor_img2",
)
PAIR_DATES = ("acquisition_date_img1", "acquisition_date_img2", "date_center")


def layer_figure_names() -> list[str]:
    """The 1-D per-layer float32 variables, e.g. vx_error, vy_stable_shift_slow."""
    names = []
    for component in ("vx", "vy"):
        for suffix in ERROR_FIGURES:
            names.append(f"{component}_{suffix}" if suffix != "error" else f"{component}_error")
    return names


def error_variable(component: str, figure: str) -> str:
    """ITS_LIVE's 1-D name of a vx/vy attribute: error -> vx_error, stable_shift ->
    vx_stable_shift, error_slow -> vx_error_slow."""
    return f"{component}_{figure}"


# read at single points by the time-series API: kept again, one pixel a chunk, in POINT_GROUP
POINT_VARIABLES = ("v", "vx", "vy", "v_error")
POINT_GROUP = "point_series"


@dataclass(frozen=True)
class ChunkLayout:
    """Chunks of the 3-D variables: the whole time axis (up to `max_time_chunk`) by
    `side_px` x `side_px` pixels, what xarray makes its dask chunks of.

    With `point_px`, POINT_VARIABLES are written a second time in POINT_GROUP, in chunks of
    `point_px` x `point_px` pixels stored in Zarr v3 shards of `side_px` x `side_px` (one
    file each): a point reads one pixel's history, a few tens of kilobytes. xarray cannot
    read that copy by default: it makes a dask chunk of every inner chunk (a full tile:
    695,556 of them). Writing that many inner chunks needs the zarrs codec pipeline (set
    in this package's __init__): zarr-python's own spends about 0.24 ms per inner chunk,
    minutes per tile (BENCHMARKS.md).
    """

    side_px: int = 50
    point_px: int | None = 1
    max_time_chunk: int | None = None
    cname: str = "zstd"
    clevel: int = 3
    shuffle: str = "shuffle"

    def __post_init__(self) -> None:
        if self.point_px and self.side_px % self.point_px:
            raise ValueError(f"{self}: shards must hold whole chunks")

    def _time(self, n_time: int) -> int:
        n = max(n_time, 1)
        return min(n, self.max_time_chunk) if self.max_time_chunk else n

    def chunks(self, n_time: int, ny: int, nx: int) -> tuple[int, int, int]:
        """Every 3-D variable's chunks (and the point copy's shards)."""
        return self._time(n_time), min(self.side_px, ny), min(self.side_px, nx)

    def point_chunks(self, n_time: int, ny: int, nx: int) -> tuple[int, int, int] | None:
        """The point copy's chunks, inside shards of `chunks`; None: no point copy."""
        if self.point_px is None:
            return None
        return self._time(n_time), min(self.point_px, ny), min(self.point_px, nx)

    def compressor(self) -> BloscCodec:
        return BloscCodec(cname=self.cname, clevel=self.clevel, shuffle=self.shuffle)


# glacierflow's, for the history and the recent segments alike, so consolidation reads
# and writes aligned blocks (BENCHMARKS.md); ITS_LIVE's, the benchmark baseline
CUBE_LAYOUT = ChunkLayout()
ITS_LIVE_LAYOUT = ChunkLayout(
    side_px=10,
    point_px=None,
    max_time_chunk=20000,
    cname="zlib",
    clevel=2,
)
