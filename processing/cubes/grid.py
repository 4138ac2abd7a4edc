"""ITS_LIVE's cube grid: which 100 km tile, in which projection, holds a point.

Projections as ITS_LIVE chose them (read off its cube catalog): polar stereographic
north (EPSG:3413) above 55°N, south (EPSG:3031) below 56°S, UTM zones in between. Tiles
are 100 km squares on a 100 km grid in that projection, named by their centre; cells are
120 m with pixel centres at x ≡ 52.5, y ≡ 67.5 (mod 120), so about 833 per side.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pyproj import Transformer

from glacierflow.processing.tracking.grid import ITS_LIVE_X_PHASE, ITS_LIVE_Y_PHASE

TILE_SIZE_M = 100_000
CELL_SIZE_M = 120.0
NORTH_POLAR_EPSG = 3413
SOUTH_POLAR_EPSG = 3031
NORTH_POLAR_FROM_LAT = 55.0
SOUTH_POLAR_FROM_LAT = -56.0


def cube_epsg(lon: float, lat: float) -> int:
    """The projection of the cubes that cover a point."""
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise ValueError(f"({lon}, {lat}) is not a longitude/latitude")
    if lat > NORTH_POLAR_FROM_LAT:
        return NORTH_POLAR_EPSG
    if lat < SOUTH_POLAR_FROM_LAT:
        return SOUTH_POLAR_EPSG
    zone = min(int((lon + 180.0) // 6) + 1, 60)
    return (32600 if lat >= 0 else 32700) + zone


@lru_cache(maxsize=128)
def _to_projected(epsg: int) -> Transformer:
    return Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)


@dataclass(frozen=True)
class CubeTile:
    """One cube: its projection and its 100 km square (projected metres)."""

    epsg: int
    x_min: int
    y_min: int

    @property
    def centre(self) -> tuple[int, int]:
        return self.x_min + TILE_SIZE_M // 2, self.y_min + TILE_SIZE_M // 2

    @property
    def name(self) -> str:
        """ITS_LIVE's name, e.g. ITS_LIVE_vel_EPSG3413_G0120_X-3350000_Y350000.zarr."""
        x, y = self.centre
        return f"ITS_LIVE_vel_EPSG{self.epsg}_G0120_X{x}_Y{y}.zarr"

    @property
    def x(self) -> np.ndarray:
        """Pixel-centre x coordinates, ascending."""
        phase = ITS_LIVE_X_PHASE % CELL_SIZE_M
        first = self.x_min + (phase - self.x_min) % CELL_SIZE_M
        return np.arange(first, self.x_min + TILE_SIZE_M, CELL_SIZE_M)

    @property
    def y(self) -> np.ndarray:
        """Pixel-centre y coordinates, descending (north-up)."""
        phase = ITS_LIVE_Y_PHASE % CELL_SIZE_M
        first = self.y_min + (phase - self.y_min) % CELL_SIZE_M
        return np.arange(first, self.y_min + TILE_SIZE_M, CELL_SIZE_M)[::-1]

    def contains(self, x: float, y: float) -> bool:
        return (
            self.x_min <= x < self.x_min + TILE_SIZE_M
            and self.y_min <= y < self.y_min + TILE_SIZE_M
        )


@dataclass(frozen=True)
class CubePixel:
    """Where a point falls: the cube, the nearest pixel and how far its centre is."""

    tile: CubeTile
    row: int
    col: int
    x: float  # the pixel centre, projected metres
    y: float
    offset_m: float  # from the requested point to the pixel centre


def tile_of(epsg: int, x: float, y: float) -> CubeTile:
    """The tile of a projected point."""
    return CubeTile(
        epsg,
        int(np.floor(x / TILE_SIZE_M)) * TILE_SIZE_M,
        int(np.floor(y / TILE_SIZE_M)) * TILE_SIZE_M,
    )


def locate(lon: float, lat: float) -> CubePixel:
    """The cube and nearest pixel of a longitude/latitude."""
    epsg = cube_epsg(lon, lat)
    x, y = _to_projected(epsg).transform(lon, lat)
    return pixel_of(tile_of(epsg, x, y), x, y)


def pixel_of(tile: CubeTile, x: float, y: float) -> CubePixel:
    """The pixel of `tile` nearest to a projected point (clamped to the tile's edge)."""
    xs, ys = tile.x, tile.y
    col = int(np.clip(np.rint((x - xs[0]) / CELL_SIZE_M), 0, len(xs) - 1))
    row = int(np.clip(np.rint((ys[0] - y) / CELL_SIZE_M), 0, len(ys) - 1))
    return CubePixel(
        tile, row, col, float(xs[col]), float(ys[row]), float(np.hypot(xs[col] - x, ys[row] - y))
    )
