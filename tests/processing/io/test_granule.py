"""Granules against ITS_LIVE: a granule tracked from a small synthetic pair is compared with
the real ITS_LIVE v02 sample granule (variables, dtypes, fill values, attributes, encoding,
grid), then read back with xarray; and a failed write leaves nothing behind.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr
from PIL import Image

from glacierflow.processing import synthetic
from glacierflow.processing.io.granule import FILL_INT16, read_granule, write_granule
from glacierflow.processing.pipeline import GranuleReport, TrackRequest, track_pair

ITSLIVE_VARIABLES = [
    "vx", "vy", "v", "v_error", "chip_size_width", "chip_size_height", "interp_mask",
    "mapping", "img_pair_info",
]  # fmt: skip
GRIDDED = [v for v in ITSLIVE_VARIABLES if v not in ("mapping", "img_pair_info")]
# what ../shared/FORMATS.md requires of img_pair_info and of vx/vy
PAIR_INFO_ATTRS = [
    "id_img1", "id_img2", "acquisition_date_img1", "acquisition_date_img2", "date_center",
    "date_dt", "mission_img1", "mission_img2", "satellite_img1", "satellite_img2", "sensor_img1",
    "sensor_img2", "time_standard_img1", "time_standard_img2", "latitude", "longitude",
    "roi_valid_percentage",
]  # fmt: skip
VELOCITY_ATTRS = [
    "error", "error_stationary", "error_modeled", "error_slow", "stable_shift",
    "stable_shift_flag", "stable_shift_stationary", "stable_count_stationary",
    "stable_shift_slow", "stable_count_slow", "units", "grid_mapping",
]  # fmt: skip
NAME = re.compile(r"^(?P<id1>.+)_X_(?P<id2>.+)_G0120V02_P(?P<valid>\d{3})\.nc$")
# the synthetic scenes go by Landsat Collection-2 product ids, as ITS_LIVE's inputs do
REF_ID = f"LC08_L1TP_009011_{synthetic.REF_TIME:%Y%m%d}_20240712_02_T1"
SEC_ID = f"LC09_L1GT_010011_{synthetic.SEC_TIME:%Y%m%d}_20240730_02_T2"


@pytest.fixture(scope="module")
def pair() -> synthetic.SyntheticPair:
    return synthetic.make_pair((300, 300), seed=11, clouds=1)  # the cloud leaves fill values


def _request(ref: Path, sec: Path, output: Path) -> TrackRequest:
    # synthetic pixels are 7.5 m: 16-64 px chips, a search of a few pixels
    return TrackRequest(
        ref=str(ref), sec=str(sec), output=output,
        chip_min_m=120, chip_max_m=480, max_speed_m_per_yr=2000,
    )  # fmt: skip


@pytest.fixture(scope="module")
def granule(
    pair: synthetic.SyntheticPair, tmp_path_factory: pytest.TempPathFactory
) -> GranuleReport:
    folder = tmp_path_factory.mktemp("granule")
    ref, sec = synthetic.write_geotiffs(pair, folder / "scenes", "syn")
    ref = ref.rename(ref.with_name(f"{REF_ID}.tif"))
    sec = sec.rename(sec.with_name(f"{SEC_ID}.tif"))
    return track_pair(_request(ref, sec, folder / "out"))


@pytest.fixture(scope="module")
def ours(granule: GranuleReport) -> netCDF4.Dataset:
    with netCDF4.Dataset(granule.path) as ds:
        yield ds


@pytest.fixture(scope="module")
def sample(itslive_granule: Path) -> netCDF4.Dataset:
    with netCDF4.Dataset(itslive_granule) as ds:
        yield ds


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split()]


# -- naming and files ------------------------------------------------------------------------


def test_name_follows_itslive_when_output_is_a_folder(granule: GranuleReport) -> None:
    files = sorted(p.name for p in granule.path.parent.iterdir())
    stem = granule.path.stem
    # no leftovers: the granule, its browse PNG and the PNG's georeferencing
    assert files == sorted(f"{stem}{s}" for s in (".nc", ".png", ".pgw", ".png.aux.xml"))
    match = NAME.match(granule.path.name)
    assert match, granule.path.name
    assert (match["id1"], match["id2"]) == (REF_ID, SEC_ID)
    assert int(match["valid"]) == math.floor(granule.valid_percentage)
    assert 50 < granule.valid_percentage < 100  # the cloud costs some nodes, not most


def test_sample_name_matches_the_same_pattern(itslive_granule: Path) -> None:
    """The pattern checked above is ITS_LIVE's own."""
    assert NAME.match(itslive_granule.name)


def test_browse_png_sits_beside_the_granule(granule: GranuleReport, ours: netCDF4.Dataset) -> None:
    vx = ours["vx"]
    vx.set_auto_mask(False)
    raw = vx[:]
    with Image.open(granule.path.with_suffix(".png")) as png:
        assert png.format == "PNG"
        assert png.mode == "RGBA"
        nx, ny = ours.dimensions["x"].size, ours.dimensions["y"].size
        scale = png.width // nx  # enlarged (nearest) to about 512 px across
        assert png.size == (nx * scale, ny * scale) and max(png.size) >= 512
        alpha = np.asarray(png)[::scale, ::scale, 3]
    np.testing.assert_array_equal(alpha == 0, raw == FILL_INT16)  # transparent where empty


def test_gdal_places_the_browse_png_on_the_granule_grid(
    granule: GranuleReport, ours: netCDF4.Dataset
) -> None:
    """rasterio (GDAL) reads the PNG's world file and CRS: the image covers exactly the
    granule's cells, in its projection (what QGIS does with it)."""
    import rasterio
    from pyproj import CRS

    x, y = ours["x"][:].data, ours["y"][:].data
    with rasterio.open(granule.path.with_suffix(".png")) as png:
        assert CRS.from_user_input(png.crs).to_epsg() == synthetic.EPSG
        scale = png.width // len(x)
        assert png.transform.a == pytest.approx(120.0 / scale)
        assert png.transform.e == pytest.approx(-120.0 / scale)
        west, south, east, north = png.bounds
    assert (west, east) == (pytest.approx(x[0] - 60), pytest.approx(x[-1] + 60))
    assert (south, north) == (pytest.approx(y[-1] - 60), pytest.approx(y[0] + 60))


def test_output_path_ending_in_nc_is_used_as_is(granule: GranuleReport, tmp_path: Path) -> None:
    scenes = granule.path.parents[1] / "scenes"
    target = tmp_path / "new" / "pair.nc"
    report = track_pair(_request(scenes / f"{REF_ID}.tif", scenes / f"{SEC_ID}.tif", target))
    assert report.path == target
    written = sorted(p.name for p in target.parent.iterdir())
    assert written == ["pair.nc", "pair.pgw", "pair.png", "pair.png.aux.xml"]


def test_a_granule_that_cannot_be_written_leaves_no_png(
    granule: GranuleReport, tmp_path: Path
) -> None:
    """A .nc path that is a directory: the write fails, and its browse image goes too."""
    target = tmp_path / "pair.nc"
    target.mkdir()
    with pytest.raises(OSError):
        write_granule(read_granule(granule.path), target)
    assert [p.name for p in tmp_path.iterdir()] == ["pair.nc"]
    assert not any(target.iterdir())


# -- conformance with the real ITS_LIVE granule --------------------------------------------


def test_itslive_variables_are_present(ours: netCDF4.Dataset, sample: netCDF4.Dataset) -> None:
    for name in ITSLIVE_VARIABLES:
        assert name in sample.variables, name  # the list is ITS_LIVE's
        assert name in ours.variables, name
    assert ours["vx"].dimensions == sample["vx"].dimensions == ("y", "x")


@pytest.mark.parametrize("name", ITSLIVE_VARIABLES)
def test_dtype_and_fill_value_match_itslive(
    ours: netCDF4.Dataset, sample: netCDF4.Dataset, name: str
) -> None:
    mine, theirs = ours[name], sample[name]
    if name in ("mapping", "img_pair_info"):
        # the sample's are string scalars; newer ITS_LIVE products (and ours) use int8
        assert theirs.dtype is str
        assert mine.dtype == np.int8 and mine.dimensions == ()
        return
    assert mine.dtype == theirs.dtype
    assert mine.getncattr("_FillValue") == theirs.getncattr("_FillValue")
    assert np.asarray(mine.getncattr("_FillValue")).dtype == theirs.dtype


@pytest.mark.parametrize("name", ["vx", "vy"])
def test_velocity_attributes_include_all_of_itslive(
    ours: netCDF4.Dataset, sample: netCDF4.Dataset, name: str
) -> None:
    missing = set(sample[name].ncattrs()) - set(ours[name].ncattrs())
    assert not missing


@pytest.mark.parametrize("name", ["vx", "vy"])
def test_velocity_attributes_required_by_formats(
    ours: netCDF4.Dataset, sample: netCDF4.Dataset, name: str
) -> None:
    for attr in VELOCITY_ATTRS:
        assert attr in sample[name].ncattrs(), attr
        assert attr in ours[name].ncattrs(), attr
    assert ours[name].units == sample[name].units == "meter/year"
    assert ours[name].grid_mapping == "mapping"
    assert ours[name].stable_shift_flag in (0, 1, 2)


@pytest.mark.parametrize("name", ["vx", "vy"])
def test_stable_shift_attributes_as_itslive_writes_them(
    ours: netCDF4.Dataset, sample: netCDF4.Dataset, name: str
) -> None:
    """No stable mask, no reference velocity: flag 0, and the error is the modelled one,
    as in ITS_LIVE's own flag-0 granule."""
    theirs = {a for a in sample[name].ncattrs() if a.startswith(("stable_", "error"))}
    assert theirs <= set(ours[name].ncattrs())
    for attr in ("stable_shift_flag", "stable_count_stationary", "stable_count_slow"):
        for ds in (ours, sample):
            assert np.issubdtype(np.asarray(ds[name].getncattr(attr)).dtype, np.integer), attr
    assert sample[name].stable_shift_flag == ours[name].stable_shift_flag == 0
    assert sample[name].error == sample[name].error_modeled
    assert ours[name].error == ours[name].error_modeled
    assert ours[name].stable_shift == 0
    assert ours[name].stable_count_stationary == ours[name].stable_count_slow == 0
    assert "no stable-surface mask and no reference velocity" in ours[name].stable_shift_description


def test_img_pair_info_attributes(
    ours: netCDF4.Dataset, sample: netCDF4.Dataset, pair: synthetic.SyntheticPair
) -> None:
    info = ours["img_pair_info"]
    for attr in PAIR_INFO_ATTRS:
        assert attr in sample["img_pair_info"].ncattrs(), attr
        assert attr in info.ncattrs(), attr
    fmt = "%Y%m%dT%H:%M:%S.%f"
    assert datetime.strptime(info.acquisition_date_img1, fmt) == pair.ref_time
    assert datetime.strptime(info.acquisition_date_img2, fmt) == pair.sec_time
    assert (
        datetime.strptime(info.date_center, fmt)
        == pair.ref_time + (pair.sec_time - pair.ref_time) / 2
    )
    # the sample writes its dates the same way
    datetime.strptime(sample["img_pair_info"].acquisition_date_img1, fmt)
    assert info.date_dt == pytest.approx(16.0)
    assert (info.id_img1, info.id_img2) == (REF_ID, SEC_ID)
    assert info.time_standard_img1 == info.time_standard_img2 == "UTC"
    assert 60 < info.latitude < 80 and -60 < info.longitude < -40  # west Greenland


def test_mapping_attributes(ours: netCDF4.Dataset, sample: netCDF4.Dataset) -> None:
    for attr in [
        "grid_mapping_name",
        "spatial_ref",
        "crs_wkt",
        "proj4text",
        "spatial_epsg",
        "GeoTransform",
    ]:
        assert attr in sample["mapping"].ncattrs(), attr
        assert attr in ours["mapping"].ncattrs(), attr
    assert (
        ours["mapping"].grid_mapping_name
        == sample["mapping"].grid_mapping_name
        == "polar_stereographic"
    )
    assert ours["mapping"].spatial_epsg == synthetic.EPSG


@pytest.mark.parametrize("name", [*GRIDDED, "vx_error", "vy_error", "reason"])
def test_compression_is_zlib_2_with_shuffle(
    ours: netCDF4.Dataset, sample: netCDF4.Dataset, name: str
) -> None:
    expected = {"zlib": True, "shuffle": True, "complevel": 2}
    if name in sample.variables:
        assert {k: sample[name].filters()[k] for k in expected} == expected
    assert {k: ours[name].filters()[k] for k in expected} == expected


def test_grid_is_itslive_aligned(ours: netCDF4.Dataset, sample: netCDF4.Dataset) -> None:
    for ds in (sample, ours):
        x, y = ds["x"][:].data, ds["y"][:].data
        assert x.dtype == y.dtype == np.float64
        np.testing.assert_array_equal(x % 120, 52.5)
        np.testing.assert_array_equal(y % 120, 67.5)
        np.testing.assert_array_equal(np.diff(x), 120.0)
        np.testing.assert_array_equal(np.diff(y), -120.0)  # north-up


def test_sample_geotransform_is_centre_based(sample: netCDF4.Dataset) -> None:
    """What the granule's GeoTransform means, on ITS_LIVE's own file."""
    x, y = sample["x"][:].data, sample["y"][:].data
    assert _floats(sample["mapping"].GeoTransform) == [x[0], 120.0, 0.0, y[0], 0.0, -120.0]


def test_geotransform_is_centre_based(ours: netCDF4.Dataset) -> None:
    x, y = ours["x"][:].data, ours["y"][:].data
    assert _floats(ours["mapping"].GeoTransform) == [x[0], 120.0, 0.0, y[0], 0.0, -120.0]


def test_global_attributes(ours: netCDF4.Dataset, sample: netCDF4.Dataset) -> None:
    assert ours.Conventions == sample.Conventions == "CF-1.8"
    for attr in ["title", "date_created", "scene_pair_type", "satellite", "motion_detection_method",
                 "institution", "source", "references"]:  # fmt: skip
        assert attr in sample.ncattrs(), attr
        assert attr in ours.ncattrs(), attr
    assert ours.scene_pair_type == "optical"


# -- attribute-by-attribute parity with ITS_LIVE's sample -----------------------------------

# What ITS_LIVE's sample has and ours does not, or has otherwise, and why. Keys are
# (variable, attribute); "" is the file itself.
NOT_WRITTEN = {
    ("", "autoRIFT_software_version"): "names autoRIFT, which did not make this granule; "
    "glacierflow_software_version says what did",
    ("", "autoRIFT_parameter_file"): "the URL of autoRIFT's per-region parameter shapefile; "
    "glacierflow reads no such file, its parameters are the parameter_* attributes",
}
WRITTEN_OTHERWISE = {
    ("mapping", "crs_wkt"): "WKT2 (CF-1.8 allows it; WKT1 loses datum ensembles); spatial_ref "
    "keeps the WKT1 that ITS_LIVE's tools parse",
}
# Formats of text attributes: the sample's value and ours must both match.
FORMATS = {
    "date_created": r"\d{2}-[A-Z][a-z]{2}-\d{4} \d{2}:\d{2}:\d{2}",
    "acquisition_date_img[12]|date_center": r"\d{8}T\d{2}:\d{2}:\d{2}\.\d{1,6}",
    "processing_date_img[12]": r"\d{8}",
    "collection_category_img[12]": r"T1|T2|RT",
    "correction_level_img[12]": r"L1(TP|GT|GS)",
    "mission_img[12]": r"[LSN]",
    "satellite_img[12]": r"\d|[12][A-D]",
    "sensor_img[12]": r"[COTEM]|MSI|C-SAR",
    "time_standard_img[12]": r"UTC",
    "satellite": r"(Landsat \d|Sentinel-[12][A-D])(, (Landsat \d|Sentinel-[12][A-D]))*",
    "GeoTransform": r"(-?\d+\.\d+ ){5}-?\d+\.\d+",
    "spatial_ref": r"PROJCS\[.*",
    "crs_wkt": r"PROJ(CS|CRS)\[.*",
    "proj4text": r"\+proj=\S+( \+\S+)*",
    "GDAL_AREA_OR_POINT": "Area",
    "Conventions": "CF-1.8",
    "chip_size_coordinates": r"image projection geometry: width = x, height = y",
}


def _kind(value: object) -> str:
    """What a reader sees: text, a number (integer or not: the sample's 0 shifts are
    integers where a real shift is a float) or an array of one dtype."""
    if isinstance(value, str):
        return "text"
    if isinstance(value, np.ndarray) and value.ndim:
        return f"array of {value.dtype}"
    assert isinstance(value, int | float | np.number), type(value)
    return "number"


def _attributes(ds: netCDF4.Dataset) -> dict[tuple[str, str], object]:
    found = {("", a): ds.getncattr(a) for a in ds.ncattrs()}
    for name, var in ds.variables.items():
        found.update({(name, a): var.getncattr(a) for a in var.ncattrs()})
    return found


def test_every_attribute_of_itslive_is_ours_in_the_same_type_and_format(
    ours: netCDF4.Dataset, sample: netCDF4.Dataset
) -> None:
    """Every global and variable attribute of ITS_LIVE's sample granule is in ours, as text
    or number alike, text in the same format, except the few listed with a reason."""
    mine, theirs = _attributes(ours), _attributes(sample)
    assert set(NOT_WRITTEN) | set(WRITTEN_OTHERWISE) <= set(theirs)  # the lists are about it
    missing = set(theirs) - set(mine) - set(NOT_WRITTEN)
    assert not missing, sorted(missing)
    for key, value in theirs.items():
        if key in NOT_WRITTEN:
            assert key not in mine, key
            continue
        assert _kind(mine[key]) == _kind(value), (key, mine[key], value)
        for names, pattern in FORMATS.items():
            if re.fullmatch(names, key[1]) and key not in WRITTEN_OTHERWISE:
                assert re.fullmatch(pattern, value, re.S), ("sample", key, value)
                assert re.fullmatch(pattern, mine[key], re.S), ("ours", key, mine[key])


def test_every_variable_of_itslive_is_ours_with_its_dims_and_dtype(
    ours: netCDF4.Dataset, sample: netCDF4.Dataset
) -> None:
    for name, var in sample.variables.items():
        assert name in ours.variables, name
        assert ours[name].dimensions == var.dimensions, name
        if name not in ("mapping", "img_pair_info"):  # see test_dtype_and_fill_value...
            assert ours[name].dtype == var.dtype, name


def test_img_pair_info_carries_the_landsat_product_ids_parts(ours: netCDF4.Dataset) -> None:
    info = ours["img_pair_info"]
    assert (info.mission_img1, info.satellite_img1, info.sensor_img1) == ("L", "8", "C")
    assert (info.mission_img2, info.satellite_img2, info.sensor_img2) == ("L", "9", "C")
    assert (info.path_img1, info.row_img1, info.path_img2, info.row_img2) == (9, 11, 10, 11)
    assert (info.correction_level_img1, info.correction_level_img2) == ("L1TP", "L1GT")
    assert (info.collection_category_img1, info.collection_category_img2) == ("T1", "T2")
    assert info.collection_number_img1 == info.collection_number_img2 == 2.0
    assert (info.processing_date_img1, info.processing_date_img2) == ("20240712", "20240730")
    assert ours.satellite == "Landsat 8, Landsat 9"


def test_scenes_without_a_landsat_product_id_get_no_invented_path_or_row(
    granule: GranuleReport, tmp_path: Path, pair: synthetic.SyntheticPair
) -> None:
    ref, sec = synthetic.write_geotiffs(pair, tmp_path / "scenes", "syn")
    with netCDF4.Dataset(track_pair(_request(ref, sec, tmp_path / "out")).path) as ds:
        info = ds["img_pair_info"]
        assert not {a for a in info.ncattrs() if a.startswith(("path_", "row_"))}
        # the synthetic scenes' tags say they imitate Landsat 8 OLI
        assert (info.mission_img1, info.satellite_img1, info.sensor_img1) == ("L", "8", "C")
        assert ds.satellite == "Landsat 8"


def test_polar_stereographic_mapping_as_itslive_writes_it(
    ours: netCDF4.Dataset, sample: netCDF4.Dataset
) -> None:
    from pyproj import CRS

    for ds, lat in ((sample, -90.0), (ours, 90.0)):  # Antarctica; our synthetic Greenland
        mapping = ds["mapping"]
        assert mapping.latitude_of_projection_origin == lat
        assert mapping.scale_factor_at_projection_origin == 1
        cf = {a: mapping.getncattr(a) for a in mapping.ncattrs() if a != "crs_wkt"}
        assert CRS.from_cf(cf).to_epsg() == mapping.spatial_epsg  # readable as CF alone
    assert ours["mapping"].latitude_of_origin == 70.0  # EPSG:3413's true-scale latitude


def test_chip_sizes_say_the_pixel_size_they_are_counted_in(ours: netCDF4.Dataset) -> None:
    assert ours["chip_size_width"].x_pixel_size == 7.5  # the synthetic scenes' pixels
    assert ours["chip_size_height"].y_pixel_size == 7.5


@pytest.mark.parametrize("name", ["x", "y"])
def test_coordinates_have_no_fill_value(
    ours: netCDF4.Dataset, sample: netCDF4.Dataset, name: str, tmp_path: Path
) -> None:
    """CF: coordinate variables must not have missing values; a granule read and written
    again (as granule_copy does) keeps none either."""
    for ds in (ours, sample):
        assert "_FillValue" not in ds[name].ncattrs()
    copy = synthetic.granule_copy(
        Path(ours.filepath()), tmp_path, synthetic.REF_TIME, synthetic.SEC_TIME,
        lambda x, y, centre: (np.ones_like(x), np.ones_like(x)),
    )  # fmt: skip
    with netCDF4.Dataset(copy) as again:
        assert "_FillValue" not in again[name].ncattrs()


def test_global_author_and_software_version(ours: netCDF4.Dataset) -> None:
    from importlib.metadata import version

    assert ours.author and ours.glacierflow_software_version == version("glacierflow")
    assert ours.parameter_chip_sizes_px  # the parameters the tracker ran with


# -- reading it back ---------------------------------------------------------------------------


def test_xarray_decodes_fill_as_nan(granule: GranuleReport, ours: netCDF4.Dataset) -> None:
    vx_var = ours["vx"]
    vx_var.set_auto_mask(False)
    raw = vx_var[:]
    fill = raw == FILL_INT16
    assert fill.any() and not fill.all()  # the cloud
    with xr.open_dataset(granule.path) as ds:
        assert set(ITSLIVE_VARIABLES) <= set(ds.variables)
        vx = ds["vx"].values
        assert np.issubdtype(vx.dtype, np.floating)
        np.testing.assert_array_equal(np.isnan(vx), fill)
        np.testing.assert_array_equal(vx[~fill], raw[~fill])
        assert ds["vx"].attrs["grid_mapping"] == "mapping"


# -- crash safety ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"not": "serialisable"},
        np.array([{"not": "serialisable"}], dtype=object),
    ],
    ids=["dict", "object-array"],
)
def test_failed_write_leaves_no_granule_and_no_temporary(
    granule: GranuleReport, tmp_path: Path, bad: object
) -> None:
    broken = read_granule(granule.path)
    broken["vx"].attrs["bad"] = bad  # refused by netCDF4 mid-write
    target = tmp_path / "out" / "broken.nc"
    with pytest.raises(TypeError):
        write_granule(broken, target)
    left = [p.name for p in target.parent.iterdir()]
    assert not [n for n in left if n.endswith(".nc") or ".tmp" in n or n.startswith(".")], left


def test_failed_rewrite_keeps_the_previous_granule(granule: GranuleReport, tmp_path: Path) -> None:
    target = tmp_path / "granule.nc"
    write_granule(read_granule(granule.path), target)
    before = target.read_bytes()
    broken = read_granule(granule.path)
    broken["vx"].attrs["bad"] = np.array([{}], dtype=object)
    with pytest.raises(TypeError):
        write_granule(broken, target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "granule.nc", "granule.pgw", "granule.png", "granule.png.aux.xml"
    ]  # fmt: skip


def test_a_granule_read_back_writes_the_same_file(granule: GranuleReport, tmp_path: Path) -> None:
    """read_granule then write_granule (as synthetic.granule_copy does) keeps every variable's
    values, dtype, fill value, compression and attributes, and the global attributes."""
    copy = write_granule(read_granule(granule.path), tmp_path / "copy.nc")
    with netCDF4.Dataset(granule.path) as a, netCDF4.Dataset(copy) as b:
        assert a.__dict__ == b.__dict__
        assert list(a.dimensions) == list(b.dimensions)
        assert list(a.variables) == list(b.variables)
        for name, var in a.variables.items():
            other = b[name]
            var.set_auto_mask(False)
            other.set_auto_mask(False)
            assert (var.dtype, var.dimensions) == (other.dtype, other.dimensions), name
            assert var.filters() == other.filters(), name
            np.testing.assert_equal(var.__dict__, other.__dict__)
            np.testing.assert_array_equal(var[...], other[...])
