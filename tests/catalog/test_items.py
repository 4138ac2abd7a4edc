"""STAC items built from granule files: identity, dates, projection, the valid-data footprint
(also across the antimeridian), assets, JSON round trips, and files that are not granules.

Granules are real: tracked from synthetic pairs (`granule_files`) and ITS_LIVE's own sample.
"""

from __future__ import annotations

import copy
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import netCDF4
import numpy as np
import pystac
import pytest
import rasterio
import shapely
import xarray as xr
from affine import Affine
from conftest import ServedRegion, write_granule
from pyproj import CRS, Transformer
from shapely.geometry import shape
from stac_schemas import validate, validator

from glacierflow.catalog.items import NotAGranuleError, cube_item, granule_item
from glacierflow.processing.cubes.store import cube_names
from glacierflow.settings import Settings

CHECKER = validator()

NC_TIME = "%Y%m%dT%H:%M:%S.%f"


def _pair_info(path: Path) -> dict[str, object]:
    with netCDF4.Dataset(path) as ds:
        info = ds["img_pair_info"]
        return {k: info.getncattr(k) for k in info.ncattrs()}


def _nc_time(text: object) -> datetime:
    return datetime.strptime(str(text), NC_TIME).replace(tzinfo=UTC)


def _valid(path: Path) -> np.ndarray:
    with xr.open_dataset(path, mask_and_scale=False) as ds:
        return ds["v"].values != ds["v"].attrs["_FillValue"]


def _projected(geometry: dict, crs: str | CRS) -> shapely.Geometry:
    """A lon/lat GeoJSON geometry in the granule's map CRS (pieces split at 180° rejoin)."""
    to_map = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    flat = shapely.transform(shape(geometry), lambda xy: np.column_stack(to_map.transform(*xy.T)))
    return shapely.union_all(shapely.get_parts(flat).tolist())


def _lonlats(geometry: dict) -> np.ndarray:
    return shapely.get_coordinates(shape(geometry))


def _rewrite(source: Path, target: Path, change) -> Path:
    """A copy of a granule with `change(dataset)` applied (raw values, attributes kept)."""
    with xr.open_dataset(source, decode_cf=False) as ds:
        change(ds.load()).to_netcdf(target)
    return target


@pytest.fixture(scope="module")
def july(granule_files: dict[str, Path]) -> Path:
    """Our granule with clouds: some cells have no vector."""
    return granule_files["july"]


# -- identity, dates, figures -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["july", "august", "east", "itslive"])
def test_id_and_dates_come_from_the_file(granule_files: dict[str, Path], name: str) -> None:
    path = granule_files[name]
    info = _pair_info(path)
    item = granule_item(path)
    assert item.id == path.stem
    assert item.collection_id == "granules"
    assert item.datetime == _nc_time(info["date_center"])
    assert item.common_metadata.start_datetime == _nc_time(info["acquisition_date_img1"])
    assert item.common_metadata.end_datetime == _nc_time(info["acquisition_date_img2"])
    assert item.properties["date_dt"] == pytest.approx(float(info["date_dt"]))
    assert item.properties["percent_valid_pixels"] == pytest.approx(
        float(info["roi_valid_percentage"])
    )


def test_our_granule_figures(granule_files: dict[str, Path]) -> None:
    july = granule_item(granule_files["july"])
    assert july.datetime == datetime(2024, 7, 9, 12, tzinfo=UTC)
    assert july.properties["start_datetime"] == "2024-07-01T12:00:00+00:00"
    assert july.properties["end_datetime"] == "2024-07-17T12:00:00+00:00"
    assert july.properties["date_dt"] == 16.0
    valid = _valid(granule_files["july"])
    assert 0 < valid.mean() < 1, "the july pair's clouds leave cells without a vector"
    assert july.properties["percent_valid_pixels"] == pytest.approx(100 * valid.mean(), abs=0.05)
    assert granule_item(granule_files["august"]).properties["percent_valid_pixels"] == 100.0


def test_collection_id_is_the_one_asked_for(july: Path) -> None:
    assert granule_item(july, "itslive-granules").collection_id == "itslive-granules"


@pytest.mark.parametrize("name", ["july", "itslive"])
def test_projection_fields_match_the_file(granule_files: dict[str, Path], name: str) -> None:
    path = granule_files[name]
    props = granule_item(path).properties
    with xr.open_dataset(path) as ds:
        x, y = ds["x"].values, ds["y"].values
        epsg = CRS.from_wkt(ds["mapping"].attrs["crs_wkt"]).to_epsg()
    assert props["proj:code"] == f"EPSG:{epsg}"
    assert props["proj:shape"] == [len(y), len(x)]
    transform = Affine(*props["proj:transform"])
    # every node's centre is where the file's coordinates put it
    assert transform * (0.5, 0.5) == pytest.approx((x[0], y[0]))
    assert transform * (len(x) - 0.5, len(y) - 0.5) == pytest.approx((x[-1], y[-1]))
    west, south, east, north = props["proj:bbox"]
    assert (west, east) == pytest.approx((x[0] - 60, x[-1] + 60))
    assert (south, north) == pytest.approx((y[-1] - 60, y[0] + 60))
    assert props["gsd"] == 120.0


def test_projection_agrees_with_gdal(july: Path) -> None:
    props = granule_item(july).properties
    assert props["proj:code"] == "EPSG:3413"
    with rasterio.open(f"netcdf:{july}:v") as src:
        assert props["proj:shape"] == [src.height, src.width]
        assert Affine(*props["proj:transform"]).almost_equals(src.transform)
        assert props["proj:bbox"] == pytest.approx(list(src.bounds))
        assert src.crs.to_epsg() == 3413


# -- the footprint ----------------------------------------------------------------------------


def test_footprint_is_a_valid_lonlat_polygon_inside_the_bbox(july: Path) -> None:
    item = granule_item(july)
    footprint = shape(item.geometry)
    assert item.geometry["type"] == "Polygon"
    assert footprint.is_valid, shapely.is_valid_reason(footprint)
    lonlat = _lonlats(item.geometry)
    assert np.all(np.abs(lonlat[:, 0]) <= 180) and np.all(np.abs(lonlat[:, 1]) <= 90)
    assert shapely.box(*item.bbox).buffer(1e-9).covers(footprint)
    assert item.bbox == pytest.approx(list(footprint.bounds))
    # RFC 7946: exterior rings counter-clockwise
    assert shapely.is_ccw(footprint.exterior)


def test_footprint_follows_the_valid_cells(july: Path) -> None:
    item = granule_item(july)
    valid = _valid(july)
    footprint = _projected(item.geometry, "EPSG:3413")
    grid = shapely.box(*item.properties["proj:bbox"])
    cell = 120.0 * 120.0
    assert footprint.area < grid.area - 0.5 * (~valid).sum() * cell
    assert footprint.area == pytest.approx(valid.sum() * cell, rel=0.05)
    with xr.open_dataset(july) as ds:
        xx, yy = np.meshgrid(ds["x"].values, ds["y"].values)
    inside = shapely.contains_xy(footprint, xx, yy)
    assert (inside == valid).mean() > 0.97, "node centres in the footprint are the valid ones"


def test_footprint_of_a_fully_valid_granule_is_its_grid(granule_files: dict[str, Path]) -> None:
    item = granule_item(granule_files["august"])
    footprint = _projected(item.geometry, "EPSG:3413")
    grid = shapely.box(*item.properties["proj:bbox"])
    assert footprint.symmetric_difference(grid).area < 0.005 * grid.area


def test_itslive_sample_has_no_valid_cell_and_a_footprint_covering_its_grid(
    itslive_granule: Path,
) -> None:
    item = granule_item(itslive_granule)
    props = item.properties
    assert props["percent_valid_pixels"] == 0
    assert not _valid(itslive_granule).any()
    assert props["proj:code"] == "EPSG:3031"
    assert props["proj:shape"] == [1879, 2016]
    assert props["date_dt"] == pytest.approx(49.03003619277778)
    assert item.datetime == datetime(1984, 12, 31, 1, 13, 56, 940528, tzinfo=UTC)
    assert (props["mission_img1"], props["satellite_img1"], props["sensor_img1"]) == ("L", "5", "T")
    footprint = shape(item.geometry)
    assert footprint.is_valid
    grid = shapely.box(*props["proj:bbox"])
    projected = _projected(item.geometry, "EPSG:3031")
    assert projected.symmetric_difference(grid).area < 0.005 * grid.area
    # the sample's own centre point lies inside
    info = _pair_info(itslive_granule)
    assert footprint.contains(shapely.Point(info["longitude"], info["latitude"]))
    assert "thumbnail" not in item.assets  # no browse image beside the sample


@pytest.fixture(scope="module")
def antimeridian_granule(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A granule in EPSG:3031 whose grid straddles x = 0 south of the pole: 180° E/W."""
    return write_granule(
        tmp_path_factory.mktemp("antimeridian"),
        "dateline",
        datetime(2024, 1, 1, 12),
        datetime(2024, 1, 17, 12),
        origin=(-1200.0, -1638720.0),  # lon 180 at lat -75 is x = 0, y = -1638783
        epsg=3031,
    )


def test_footprint_across_the_antimeridian_is_split(antimeridian_granule: Path) -> None:
    item = granule_item(antimeridian_granule)
    assert item.geometry["type"] == "MultiPolygon"
    footprint = shape(item.geometry)
    assert footprint.is_valid, shapely.is_valid_reason(footprint)
    lon = _lonlats(item.geometry)[:, 0]
    assert np.all((lon >= -180) & (lon <= 180))
    assert lon.max() > 179.9 and lon.min() < -179.9, "one part on each side of 180°"
    assert np.all(np.abs(lon) > 179.9), "no part wraps the long way around the globe"
    for part in shapely.get_parts(footprint):
        assert shapely.is_ccw(part.exterior)
    # back in the map CRS, the two parts are the whole grid again
    projected = _projected(item.geometry, "EPSG:3031")
    grid = shapely.box(*item.properties["proj:bbox"])
    assert projected.symmetric_difference(grid).area < 0.01 * grid.area


def test_bbox_across_the_antimeridian_is_narrow(antimeridian_granule: Path) -> None:
    west, _, east, _ = granule_item(antimeridian_granule).bbox
    assert west > east
    assert 360 - (west - east) < 1  # a few km wide, not 360°


# -- assets, JSON -----------------------------------------------------------------------------


def test_assets_are_the_granule_and_its_browse_image(july: Path) -> None:
    item = granule_item(july)
    data, thumb = item.assets["data"], item.assets["thumbnail"]
    assert data.href == str(july.resolve())
    assert data.media_type == "application/x-netcdf"
    assert data.roles == ["data"]
    assert thumb.media_type == pystac.MediaType.PNG
    assert "thumbnail" in thumb.roles
    assert Path(thumb.href) == july.with_suffix(".png").resolve()
    assert Path(thumb.href).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_asset_hrefs_follow_a_given_href(july: Path) -> None:
    href = "https://data.example.org/granules/" + july.name
    item = granule_item(july, href=href)
    assert item.assets["data"].href == href
    assert item.assets["thumbnail"].href == href.removesuffix(".nc") + ".png"


def test_no_thumbnail_without_a_browse_image(july: Path, tmp_path: Path) -> None:
    alone = Path(shutil.copy(july, tmp_path / july.name))
    assert set(granule_item(alone).assets) == {"data"}


@pytest.mark.parametrize("name", ["july", "itslive"])
def test_item_json_is_strict_and_round_trips_through_pystac(
    granule_files: dict[str, Path], name: str
) -> None:
    item = granule_item(granule_files[name])
    d = item.to_dict()
    text = json.dumps(d, allow_nan=False)  # NaN/Infinity are not JSON
    assert json.loads(text) == d
    again = pystac.Item.from_dict(copy.deepcopy(d)).to_dict()
    assert again == d
    assert d["stac_version"] == pystac.get_stac_version()
    assert any("projection" in uri for uri in d["stac_extensions"])


@pytest.mark.parametrize("name", ["july", "east", "itslive"])
def test_items_are_deterministic(granule_files: dict[str, Path], name: str) -> None:
    path = granule_files[name]
    assert granule_item(path).to_dict() == granule_item(path).to_dict()


# -- files that are not granules ---------------------------------------------------------------


def test_a_file_that_is_not_netcdf(tmp_path: Path) -> None:
    text = tmp_path / "notes.nc"
    text.write_text("velocity: fast\n")
    with pytest.raises(NotAGranuleError, match="not a NetCDF file"):
        granule_item(text)


def test_a_truncated_granule(july: Path, tmp_path: Path) -> None:
    broken = tmp_path / july.name
    broken.write_bytes(july.read_bytes()[:2000])
    with pytest.raises(NotAGranuleError, match="not a NetCDF file"):
        granule_item(broken)


def test_a_netcdf_without_velocities(july: Path, tmp_path: Path) -> None:
    other = _rewrite(july, tmp_path / "novx.nc", lambda ds: ds.drop_vars(["vx", "vy"]))
    with pytest.raises(NotAGranuleError, match=r"no vx, vy variable"):
        granule_item(other)


def test_a_netcdf_of_something_else(tmp_path: Path) -> None:
    path = tmp_path / "temperature.nc"
    xr.Dataset({"t2m": (("y", "x"), np.zeros((3, 4), "f4"))}).to_netcdf(path)
    with pytest.raises(NotAGranuleError) as caught:
        granule_item(path)
    assert "vx, vy, v, mapping, img_pair_info" in str(caught.value)


def test_an_unreadable_date(july: Path, tmp_path: Path) -> None:
    def spoil(ds: xr.Dataset) -> xr.Dataset:
        ds["img_pair_info"].attrs["date_center"] = "yesterday"
        return ds

    with pytest.raises(NotAGranuleError, match="unreadable date 'yesterday'"):
        granule_item(_rewrite(july, tmp_path / "date.nc", spoil))


def test_a_missing_date_is_named(july: Path, tmp_path: Path) -> None:
    def spoil(ds: xr.Dataset) -> xr.Dataset:
        del ds["img_pair_info"].attrs["date_center"]
        return ds

    with pytest.raises(NotAGranuleError, match="date_center"):
        granule_item(_rewrite(july, tmp_path / "nodate.nc", spoil))


def test_a_granule_without_coordinates(july: Path, tmp_path: Path) -> None:
    path = _rewrite(july, tmp_path / "nox.nc", lambda ds: ds.drop_vars("x"))
    with pytest.raises(NotAGranuleError, match="x"):
        granule_item(path)


def test_a_south_up_grid_has_the_same_footprint(july: Path, tmp_path: Path) -> None:
    flipped = _rewrite(july, tmp_path / "southup.nc", lambda ds: ds.isel(y=slice(None, None, -1)))
    ours, theirs = granule_item(july), granule_item(flipped)
    assert theirs.bbox == pytest.approx(ours.bbox)
    difference = shape(theirs.geometry).symmetric_difference(shape(ours.geometry))
    assert difference.area < 0.01 * shape(ours.geometry).area


def _as_served(item: pystac.Item) -> dict:
    """The item as the catalog stores it, with the `collection` link the STAC API adds
    (it infers self, parent, root and collection links; STAC requires the collection
    link beside a `collection` field). The served items are checked as they come in
    tests/services/test_stac_validity.py."""
    stac = item.to_dict(include_self_link=False)
    assert not any(link["rel"] == "collection" for link in stac["links"])
    href = f"http://127.0.0.1/stac/collections/{item.collection_id}"
    stac["links"].append({"rel": "collection", "href": href, "type": "application/json"})
    return stac


@pytest.mark.parametrize("name", ["july", "august", "east", "itslive"])
def test_granule_items_are_valid_stac_with_their_extensions(
    granule_files: dict[str, Path], name: str
) -> None:
    used = validate(_as_served(granule_item(granule_files[name])), CHECKER)
    assert "https://stac-extensions.github.io/projection/v2.0.0/schema.json" in used


def test_the_cube_item_is_valid_stac_with_null_datetime_and_rfc3339_dates(
    served_region: ServedRegion,
) -> None:
    store = Settings(data_dir=served_region.data_dir).cube_store
    (name,) = cube_names(store)
    stac = _as_served(cube_item(store / name))
    used = validate(stac, CHECKER)
    assert "https://stac-extensions.github.io/datacube/v2.2.0/schema.json" in used
    properties = stac["properties"]
    assert properties["datetime"] is None
    for name in ("start_datetime", "end_datetime", "updated"):
        assert datetime.fromisoformat(properties[name]).tzinfo is not None, name
