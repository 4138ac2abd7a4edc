"""STAC items of mosaics and composites against their files: statistics equal numpy's over
every pixel of each COG, the footprint holds the data (also across the antimeridian),
proj:* is what GDAL reads, the dates are the year (the summary: its window), and the
items are valid STAC with the projection, raster, render and datacube extensions.

Mosaics are written to the mosaic-products contract with known values
(tests/mosaic_products.py); the composite is a real one, fitted from a synthetic cube.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import shapely
from mosaic_products import MosaicProducts, valid_values, write_mosaic
from pyproj import Transformer
from shapely.geometry import shape
from stac_schemas import validate, validator

from glacierflow.catalog.items import FOOTPRINT_CELLS, composite_item, mosaic_item
from glacierflow.catalog.render import SPEED_COLORMAP_NAME, speed_render
from glacierflow.processing.composites.build import build_composite, write_composite
from glacierflow.processing.composites.fit import Options
from glacierflow.processing.composites.synthetic import synthetic_cube

CHECKER = validator()
SCHEMAS = "https://stac-extensions.github.io"


@pytest.fixture(scope="module")
def annual(tmp_path_factory: pytest.TempPathFactory) -> MosaicProducts:
    return write_mosaic(tmp_path_factory.mktemp("mosaic"), "TEST", 2023)


@pytest.fixture(scope="module")
def summary(annual: MosaicProducts) -> MosaicProducts:
    return write_mosaic(annual.netcdf.parent, "TEST", 0, seed=1)


@pytest.fixture(scope="module")
def composite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real composite of a small synthetic cube (2014-2024, 8 x 8 px, two pixels with
    too few pairs)."""
    cube, _ = synthetic_cube(n_pairs=600)
    data, _ = build_composite(cube, Options(window=(2016, 2022), intercept_year=2018))
    out = tmp_path_factory.mktemp("composite") / "ITS_LIVE_vel_EPSG3413_G0120_X0_Y0_composite.nc"
    write_composite(data, out)
    return out


def _served(item: pystac.Item) -> dict:
    """The item as the catalog serves it: with the `collection` link the API adds."""
    stac = item.to_dict(include_self_link=False)
    href = f"http://127.0.0.1/stac/collections/{item.collection_id}"
    stac["links"].append({"rel": "collection", "href": href, "type": "application/json"})
    return stac


def _valid_centres(path: Path) -> np.ndarray:
    """lon/lat of the centre of every valid pixel of a COG."""
    with rasterio.open(path) as src:
        data = src.read(1, masked=True)
        rows, cols = np.nonzero(~np.ma.getmaskarray(data) & np.isfinite(data.filled(0)))
        xs, ys = rasterio.transform.xy(src.transform, rows, cols)
        to_lonlat = Transformer.from_crs(src.crs, 4326, always_xy=True)
    return np.column_stack(to_lonlat.transform(np.asarray(xs), np.asarray(ys)))


# -- against the files --------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["annual", "summary"])
def test_statistics_are_numpys_over_every_pixel(which: str, request: pytest.FixtureRequest) -> None:
    products: MosaicProducts = request.getfixturevalue(which)
    item = mosaic_item(products)
    files = {**products.cogs, "v_3857": products.web_mercator}
    for key, path in files.items():
        (band,) = item.assets[key].extra_fields["bands"]
        values, pixels = valid_values(path)
        stats = band["statistics"]
        assert stats["minimum"] == values.min(), key
        assert stats["maximum"] == values.max(), key
        assert stats["mean"] == pytest.approx(values.mean(), rel=1e-12), key
        assert stats["stddev"] == pytest.approx(values.std(), rel=1e-9), key
        assert stats["valid_percent"] == pytest.approx(100 * values.size / pixels, rel=1e-12)
        with rasterio.open(path) as src:
            assert band["data_type"] == src.dtypes[0]
            nodata = src.nodata
        assert band["nodata"] == ("nan" if np.isnan(nodata) else nodata)
    assert item.assets["count"].extra_fields["bands"][0]["data_type"] == "uint16"
    assert item.assets["v"].extra_fields["bands"][0]["unit"] == "meter/year"


def test_a_mosaic_read_in_strips_and_traced_on_a_coarser_grid_is_exact(tmp_path: Path) -> None:
    """A mosaic taller than FOOTPRINT_CELLS: read in strips (the merged moments are exact),
    its footprint traced on cells of 2 x 2 pixels still holds every valid pixel."""
    products = write_mosaic(tmp_path, "TALL", 2020, shape=(FOOTPRINT_CELLS + 100, 200), seed=4)
    item = mosaic_item(products)
    stats = item.assets["vx"].extra_fields["bands"][0]["statistics"]
    values, _ = valid_values(products.cogs["vx"])
    assert stats["mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert stats["stddev"] == pytest.approx(values.std(), rel=1e-9)
    centres = _valid_centres(products.cogs["v"])
    assert shapely.covers(shape(item.geometry), shapely.points(centres)).all()


def test_footprint_and_bbox_hold_every_valid_pixel(annual: MosaicProducts) -> None:
    item = mosaic_item(annual)
    footprint = shape(item.geometry)
    assert footprint.is_valid, shapely.is_valid_reason(footprint)
    centres = _valid_centres(annual.cogs["v"])
    west, south, east, north = item.bbox
    assert np.all((centres[:, 0] >= west) & (centres[:, 0] <= east))
    assert np.all((centres[:, 1] >= south) & (centres[:, 1] <= north))
    assert shapely.covers(footprint, shapely.points(centres)).all()
    # ...and follows the data: the ellipse, not the raster's rectangle
    with rasterio.open(annual.cogs["v"]) as src:
        corner = Transformer.from_crs(src.crs, 4326, always_xy=True).transform(
            src.bounds.left + 240, src.bounds.top - 240
        )
    assert not footprint.contains(shapely.Point(corner))
    assert item.bbox == pytest.approx(list(footprint.bounds))


def test_projection_is_what_gdal_reads(annual: MosaicProducts) -> None:
    item = mosaic_item(annual)
    with rasterio.open(annual.cogs["v"]) as src:
        assert item.properties["proj:code"] == "EPSG:3413"
        assert item.properties["proj:shape"] == [src.height, src.width]
        assert item.properties["proj:transform"] == list(src.transform)[:6]
        assert item.properties["proj:bbox"] == list(src.bounds)
    mercator = item.assets["v_3857"].extra_fields
    with rasterio.open(annual.web_mercator) as src:
        assert mercator["proj:code"] == "EPSG:3857"
        assert mercator["proj:shape"] == [src.height, src.width]
        assert mercator["proj:transform"] == list(src.transform)[:6]
        assert mercator["proj:bbox"] == list(src.bounds)
    # the other assets share the item's projection: none of them says otherwise
    assert not any("proj:code" in a.extra_fields for k, a in item.assets.items() if k != "v_3857")


def test_an_annual_mosaic_is_its_year(annual: MosaicProducts) -> None:
    item = mosaic_item(annual)
    assert item.id == "ITS_LIVE_velocity_120m_TEST_2023_v02"
    assert item.datetime is None
    assert item.common_metadata.start_datetime == datetime(2023, 1, 1, tzinfo=UTC)
    assert item.common_metadata.end_datetime == datetime(2023, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert (item.properties["year"], item.properties["region"]) == (2023, "TEST")
    assert item.properties["product"] == "annual"
    assert item.collection_id == "mosaics"


def test_the_summary_spans_its_climatology_window(summary: MosaicProducts) -> None:
    item = mosaic_item(summary)
    assert item.id == "ITS_LIVE_velocity_120m_TEST_0000_v02"
    assert item.common_metadata.start_datetime == datetime(2023, 1, 1, tzinfo=UTC)
    assert item.common_metadata.end_datetime == datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert item.properties["year"] == 0 and item.properties["product"] == "summary"
    assert item.properties["climatology_years"] == [2023, 2024]


def test_a_summary_without_its_window_is_refused_naming_the_attribute(tmp_path: Path) -> None:
    products = write_mosaic(tmp_path, "TEST", 0, window=None)
    with pytest.raises(ValueError, match="climatology_years"):
        mosaic_item(products)


def test_assets_are_keyed_by_variable_with_hrefs_from_href_of(annual: MosaicProducts) -> None:
    root = annual.netcdf.parent
    item = mosaic_item(annual, lambda p: f"mosaics/{p.relative_to(root)}")
    assert set(item.assets) == {*annual.cogs, "v_3857", "data"}
    for key, path in annual.cogs.items():
        asset = item.assets[key]
        assert asset.href == f"mosaics/{path.name}"
        assert asset.media_type == "image/tiff; application=geotiff; profile=cloud-optimized"
        assert asset.roles == ["data"]
    assert item.assets["data"].href == f"mosaics/{annual.netcdf.name}"
    assert item.assets["data"].media_type == "application/x-netcdf"
    assert item.assets["v_3857"].href == f"mosaics/{annual.web_mercator.name}"
    # without href_of: absolute paths
    assert Path(mosaic_item(annual).assets["v"].href) == annual.cogs["v"].absolute()


def test_the_speed_render_is_the_tilers(annual: MosaicProducts) -> None:
    renders = mosaic_item(annual).properties["renders"]
    assert renders == {SPEED_COLORMAP_NAME: speed_render()}
    assert renders[SPEED_COLORMAP_NAME]["assets"] == ["v"]


def test_items_are_deterministic_and_valid_stac(
    annual: MosaicProducts, summary: MosaicProducts
) -> None:
    for products in (annual, summary):
        first, second = mosaic_item(products), mosaic_item(products)
        assert json.dumps(first.to_dict()) == json.dumps(second.to_dict())
        used = validate(_served(first), CHECKER)
        for extension in ("projection/v2.0.0", "raster/v2.0.0", "render/v2.0.0"):
            assert f"{SCHEMAS}/{extension}/schema.json" in used
        assert pystac.Item.from_dict(first.to_dict()).to_dict() == first.to_dict()


def test_a_mosaic_across_the_antimeridian_has_a_split_footprint_and_narrow_bbox(
    tmp_path: Path,
) -> None:
    """UTM zone 60N at 65° N: 180° is about 141 km east of the zone's centre (x = 641 km)."""
    products = write_mosaic(
        tmp_path, "DATELINE", 2023, epsg=32660, origin=(600_000.0, 7_230_000.0), shape=(300, 700)
    )
    item = mosaic_item(products)
    assert item.geometry["type"] == "MultiPolygon"
    west, _, east, _ = item.bbox
    assert west > east and 360 - (west - east) < 5
    lon = _valid_centres(products.cogs["v"])[:, 0]
    assert lon.max() > 179 and lon.min() < -179, "the data cross 180°"
    validate(_served(item), CHECKER)


# -- composites ---------------------------------------------------------------------------------


def test_a_composite_item_describes_its_netcdf(composite: Path) -> None:
    item = composite_item(composite, lambda p: f"composites/{p.name}")
    assert item.id == composite.stem and item.collection_id == "mosaics"
    assert item.properties["product"] == "composite"
    assert item.common_metadata.start_datetime == datetime(2014, 1, 1, tzinfo=UTC)
    assert item.common_metadata.end_datetime == datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert item.properties["climatology_years"] == [2016, 2022]
    assert item.assets["data"].href == f"composites/{composite.name}"
    variables = item.properties["cube:variables"]
    assert {"v", "vx", "vy", "v_error", "count", "v_amp", "v_phase", "dv_dt"} <= set(variables)
    assert variables["v"]["dimensions"] == ["time", "y", "x"]
    assert variables["v"]["unit"] == "meter/year"
    assert len(item.properties["cube:dimensions"]["time"]["values"]) == 11
    # the synthetic cube: x = 52.5 + 120 i, y = 67.5 + 120 (7 - j), EPSG:3413
    assert item.properties["proj:code"] == "EPSG:3413"
    assert item.properties["proj:shape"] == [8, 8]
    assert item.properties["proj:transform"] == [120.0, 0.0, -7.5, 0.0, -120.0, 967.5]
    assert item.properties["proj:bbox"] == [-7.5, 7.5, 952.5, 967.5]
    used = validate(_served(item), CHECKER)
    assert f"{SCHEMAS}/datacube/v2.2.0/schema.json" in used


def test_a_file_that_is_not_a_composite_is_refused_naming_what_it_lacks(
    annual: MosaicProducts,
) -> None:
    with pytest.raises(ValueError, match="not a composite: no time"):
        composite_item(annual.netcdf)
