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


# read at single points by the time-series API: small tiles of whole histories
POINT_VARIABLES = ("v", "vx", "vy", "v_error")


@dataclass(frozen=True)
class ChunkLayout:
    """Chunks of the 3-D variables: the whole time axis (up to `max_time_chunk`) by
    `point_px` x `point_px` pixels for POINT_VARIABLES, `bulk_px` x `bulk_px` for the rest.

    With `shard_px`, the point variables' chunks are stored in Zarr v3 shards of
    `shard_px` x `shard_px` pixels (one file each): a point reads one pixel's history, a
    few tens of kilobytes, while a tile stays a few hundred files. Writing that many
    inner chunks needs the zarrs codec pipeline (set in this package's __init__):
    zarr-python's own spends about 0.24 ms per inner chunk, minutes per tile
    (BENCHMARKS.md).
    """

    point_px: int = 1
    bulk_px: int = 25
    shard_px: int | None = 50
    max_time_chunk: int | None = None
    cname: str = "zstd"
    clevel: int = 3
    shuffle: str = "shuffle"

    def __post_init__(self) -> None:
        if self.block % self.bulk_px or self.block % self.point_px:
            raise ValueError(f"{self}: shards must hold whole chunks")

    @property
    def block(self) -> int:
        """Pixels per side of a write: whole chunks and shards of every variable."""
        return self.shard_px or self.bulk_px

    def _time(self, n_time: int) -> int:
        n = max(n_time, 1)
        return min(n, self.max_time_chunk) if self.max_time_chunk else n

    def chunks(self, name: str, n_time: int, ny: int, nx: int) -> tuple[int, int, int]:
        side = self.point_px if name in POINT_VARIABLES else self.bulk_px
        return self._time(n_time), min(side, ny), min(side, nx)

    def shards(self, name: str, n_time: int, ny: int, nx: int) -> tuple[int, int, int] | None:
        if self.shard_px is None or name not in POINT_VARIABLES:
            return None
        return self._time(n_time), min(self.shard_px, ny), min(self.shard_px, nx)

    def compressor(self) -> BloscCodec:
        return BloscCodec(cname=self.cname, clevel=self.clevel, shuffle=self.shuffle)


# glacierflow's, for the history and the recent segments alike, so consolidation reads
# and writes aligned blocks (BENCHMARKS.md); ITS_LIVE's, the benchmark baseline
CUBE_LAYOUT = ChunkLayout()
ITS_LIVE_LAYOUT = ChunkLayout(
    point_px=10,
    bulk_px=10,
    shard_px=None,
    max_time_chunk=20000,
    cname="zlib",
    clevel=2,
)
