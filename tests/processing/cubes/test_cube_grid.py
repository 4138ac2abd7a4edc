"""The cube grid against ITS_LIVE's own cube catalog (3,086 real tiles)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import ITSLIVE_SAMPLES
from pyproj import Transformer

from glacierflow.processing.cubes.grid import CELL_SIZE_M, cube_epsg, locate


@pytest.fixture(scope="module")
def catalog() -> list[dict]:
    return json.loads((ITSLIVE_SAMPLES / "catalog_v02_rgi.json").read_text())["features"]


def test_every_catalog_tile_is_found_from_its_centre(catalog: list[dict]) -> None:
    """The centre of each real tile maps back to that tile: projection, bounds and name.
    ITS_LIVE's tiles overlap where projections meet (near 55°N and 56°S, and UTM tiles
    reaching past their zone's edge): there a point has a tile in each system, and only
    the tiles whose centre lies in their own zone are checked."""
    checked = 0
    for feature in catalog:
        props = feature["properties"]
        ring = np.array(props["geometry_epsg"]["coordinates"][0])
        centre_x, centre_y = ring[:4].mean(axis=0)
        lon, lat = np.array(feature["geometry"]["coordinates"][0])[:4].mean(axis=0)
        if abs(lat - 55) < 1.5 or abs(lat + 56) < 1.5:
            continue
        to_lonlat = Transformer.from_crs(f"EPSG:{props['epsg']}", "EPSG:4326", always_xy=True)
        lon, lat = to_lonlat.transform(centre_x, centre_y)
        if cube_epsg(lon, lat) != props["epsg"]:
            assert props["epsg"] > 30000  # only UTM tiles reach past their zone
            continue
        found = locate(lon, lat)
        assert found.tile.epsg == props["epsg"], (lon, lat)
        assert found.tile.x_min == ring[:, 0].min() and found.tile.y_min == ring[:, 1].min()
        assert props["zarr_url"].endswith("/" + found.tile.name)
        checked += 1
    assert checked > 2800


def test_pixels_are_on_itslive_centres_and_nearest() -> None:
    found = locate(-49.4604, 69.1117)  # Jakobshavn, as in the ITS_LIVE sample CSV
    assert found.tile.epsg == 3413
    assert re.fullmatch(r"ITS_LIVE_vel_EPSG3413_G0120_X-\d+_Y-\d+\.zarr", found.tile.name)
    assert found.x % 120 == pytest.approx(52.5) and found.y % 120 == pytest.approx(67.5)
    assert found.offset_m <= CELL_SIZE_M / np.sqrt(2)
    assert len(found.tile.x) in (833, 834) and len(found.tile.y) in (833, 834)
    assert found.tile.contains(found.x, found.y)


@pytest.mark.parametrize(
    ("lon", "lat", "epsg"),
    [(-146.9751, 61.1804, 3413), (-70.0, -50.0, 32719), (0.0, -80.0, 3031), (179.9, 10.0, 32660)],
)
def test_projection_choice(lon: float, lat: float, epsg: int) -> None:
    assert cube_epsg(lon, lat) == epsg


def test_not_a_longitude_latitude() -> None:
    with pytest.raises(ValueError, match="not a longitude/latitude"):
        cube_epsg(200.0, 10.0)
