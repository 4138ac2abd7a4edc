"""Where a mosaic lies: named regions, a user's bounding box, and the one projection each
gets; which cubes of a store it reaches.

The projection rule is the cube grid's (processing/cubes/grid.py), applied at the centre of
the region's longitude/latitude box: polar stereographic north (EPSG:3413) above 55°N,
south (EPSG:3031) below 56°S, else the UTM zone of the centre. A region inside one cube
projection is thus mosaicked in that projection without resampling; a region across
several (two UTM zones, a UTM zone and a polar one) gets the projection of its centre and
the other cubes are reprojected into it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rasterio.warp import transform_bounds

from glacierflow.processing.cubes.grid import TILE_SIZE_M, cube_epsg
from glacierflow.processing.cubes.store import cube_names, tile_from_name

# a region's name goes into file names and item ids
REGION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,31}$")


class RegionError(ValueError):
    """A region that cannot be mosaicked as given, with what to do instead."""


@dataclass(frozen=True)
class Region:
    """A named longitude/latitude box (west, south, east, north) and its projection."""

    name: str
    bbox: tuple[float, float, float, float]

    @property
    def epsg(self) -> int:
        west, south, east, north = self.bbox
        return cube_epsg((west + east) / 2, (south + north) / 2)


# The RGI first-order regions under ITS_LIVE's mosaic names (RGInnA), as longitude/latitude
# boxes around their glaciers (rounded outward to the degree). Regions that wrap the
# antimeridian or the globe (RGI 10 North Asia, 16 Low Latitudes) are left out: give
# them as several --bbox regions.
REGIONS: dict[str, Region] = {
    r.name: r
    for r in (
        Region("RGI01A", (-170.0, 52.0, -129.0, 71.0)),  # Alaska
        Region("RGI02A", (-133.0, 36.0, -104.0, 61.0)),  # Western Canada and USA
        Region("RGI03A", (-125.0, 74.0, -59.0, 84.0)),  # Arctic Canada North
        Region("RGI04A", (-95.0, 58.0, -59.0, 75.0)),  # Arctic Canada South
        Region("RGI05A", (-75.0, 59.0, -10.0, 84.0)),  # Greenland Periphery
        Region("RGI06A", (-25.0, 63.0, -13.0, 67.0)),  # Iceland
        Region("RGI07A", (10.0, 74.0, 34.0, 81.0)),  # Svalbard and Jan Mayen
        Region("RGI08A", (5.0, 59.0, 33.0, 71.0)),  # Scandinavia
        Region("RGI09A", (36.0, 70.0, 105.0, 82.0)),  # Russian Arctic
        Region("RGI11A", (-1.0, 42.0, 19.0, 48.0)),  # Central Europe
        Region("RGI12A", (38.0, 29.0, 55.0, 44.0)),  # Caucasus and Middle East
        Region("RGI13A", (64.0, 26.0, 105.0, 47.0)),  # Central Asia
        Region("RGI14A", (66.0, 29.0, 82.0, 38.0)),  # South Asia West
        Region("RGI15A", (76.0, 25.0, 104.0, 33.0)),  # South Asia East
        Region("RGI17A", (-76.0, -56.0, -67.0, -27.0)),  # Southern Andes
        Region("RGI18A", (166.0, -47.0, 176.0, -39.0)),  # New Zealand
        Region("RGI19A", (-180.0, -90.0, 180.0, -60.0)),  # Antarctic and Subantarctic
    )
}


def named_region(name: str) -> Region:
    """A region of the table, by name (case-insensitive)."""
    region = REGIONS.get(name.upper())
    if region is None:
        raise RegionError(
            f"unknown region {name!r}; known: {', '.join(REGIONS)} "
            "(or give --bbox W S E N with --region NAME for your own)"
        )
    return region


def bbox_region(name: str, bbox: tuple[float, float, float, float]) -> Region:
    """A user's region: a name for the files and a longitude/latitude box."""
    if not REGION_NAME.match(name):
        raise RegionError(
            f"region name {name!r}: use 1-32 letters, digits or '-' (it names the files)"
        )
    west, south, east, north = bbox
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise RegionError(
            f"bbox {bbox}: give west < east within -180..180 and south < north within -90..90"
        )
    return Region(name, bbox)


def cubes_in_region(store: Path, region: Region) -> list[Path]:
    """The cubes of a store (by their ITS_LIVE names) whose 100 km square meets the
    region's box, sorted by name: the box in the cube's projection meets the square, and
    the square's longitude/latitude box meets the region's (far outside its zone, a UTM
    projection folds distant boxes onto it)."""
    found = []
    for name in cube_names(store):
        tile = tile_from_name(name)
        square = (tile.x_min, tile.y_min, tile.x_min + TILE_SIZE_M, tile.y_min + TILE_SIZE_M)
        projected = transform_bounds("EPSG:4326", f"EPSG:{tile.epsg}", *region.bbox, 64)
        lonlat = transform_bounds(f"EPSG:{tile.epsg}", "EPSG:4326", *square, 64)
        if _overlap(projected, square) and _overlap_lonlat(lonlat, region.bbox):
            found.append(Path(store) / name)
    return found


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and a[2] > b[0] and a[1] < b[3] and a[3] > b[1]


def _overlap_lonlat(square: tuple[float, ...], bbox: tuple[float, ...]) -> bool:
    """`square` may cross the antimeridian (west > east, as rasterio gives it)."""
    west, south, east, north = square
    if west > east:
        return _overlap((west, south, 180.0, north), bbox) or _overlap(
            (-180.0, south, east, north), bbox
        )
    return _overlap(square, bbox)
