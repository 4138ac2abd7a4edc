"""Pair -> granule end to end (`track_pair`): accuracy against the known field, the time
order of the pair, the stable-ground shift (mask, prior, none), a velocity prior and masks
of unusable pixels, all through files on disk.

Synthetic pixels are 7.5 m and 16 days apart, so 1 px of motion is ~171 m/yr; chips of
120-480 m are 16-64 px.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from conftest import clouded_pair
from rasterio.warp import Resampling, calculate_default_transform, reproject

from glacierflow.processing import synthetic
from glacierflow.processing.io.scenes import SceneError
from glacierflow.processing.pipeline import GranuleReport, TrackRequest, track_pair
from glacierflow.processing.tracking.velocity import StableShift

YEARS = 16 / 365.25
M_PER_YR_PER_PX = synthetic.PIXEL_SIZE_M / YEARS


def _track(ref: Path, sec: Path, output: Path, **options) -> GranuleReport:
    settings = {"chip_min_m": 120, "chip_max_m": 480, "max_speed_m_per_yr": 2000, **options}
    return track_pair(TrackRequest(ref=str(ref), sec=str(sec), output=output, **settings))


def _with_shift_restored(ds: xr.Dataset) -> xr.Dataset:
    """The velocities before the stable-ground shift correction, from the recorded shift.

    A uniform reference velocity has no slower part: its slowest 25 % is all of it, so the
    correction (as in ITS_LIVE) removes the motion; the granule records what it removed.
    """
    return ds.assign(
        vx=ds["vx"] + ds["vx"].attrs["stable_shift"], vy=ds["vy"] + ds["vy"].attrs["stable_shift"]
    )


def _raster_like(path: Path, data: np.ndarray, pair: synthetic.SyntheticPair, **profile) -> Path:
    """A single-band GeoTIFF on the pair's grid (or another, via transform=)."""
    options = {"crs": f"EPSG:{pair.epsg}", "transform": pair.transform, **profile}
    with rasterio.open(
        path, "w", driver="GTiff", height=data.shape[0], width=data.shape[1], count=1,
        dtype=data.dtype, **options,
    ) as dst:  # fmt: skip
        dst.write(data, 1)
    return path


def _left_half_stable(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rock on the left half (cols < 150), ice moving 1.5 px east beyond cols 180."""
    ramp = np.clip((np.asarray(cols, dtype=np.float64) - 150) / 30, 0, 1)
    speed = 1.5 * ramp * ramp * (3 - 2 * ramp)  # smoothstep
    return np.zeros_like(speed), speed


# -- accuracy --------------------------------------------------------------------------------


def test_uniform_shift_is_measured_accurately(tmp_path: Path) -> None:
    pair = synthetic.make_pair((600, 600), synthetic.uniform(0.3, -0.7), noise=0.02, seed=21)
    ref, sec = synthetic.write_geotiffs(pair, tmp_path / "scenes", "acc")
    report = _track(ref, sec, tmp_path / "out")
    assert report.valid_percentage >= 99
    with xr.open_dataset(report.path) as ds:
        # no stable mask, no reference velocity: nothing is subtracted, as delivered
        assert ds["vx"].attrs["stable_shift_flag"] == 0
        assert ds["vx"].attrs["stable_shift"] == ds["vy"].attrs["stable_shift"] == 0
        accuracy = synthetic.granule_accuracy(ds, pair)
    assert accuracy.measured >= 0.95 * report.nodes
    assert accuracy.rmse_px < 0.05, accuracy.summary()
    assert accuracy.max_px < 0.5, accuracy.summary()


def test_glacier_beside_stable_rock_is_accurate_as_written(tmp_path: Path) -> None:
    """With real stable ground the shift correction must not bias the written velocities."""
    field = synthetic.channel_flow(centre_row=300, half_width=150, peak_px=4.0, margin_px=40)
    pair = synthetic.make_pair((600, 600), field, noise=0.02, seed=22)
    ref, sec = synthetic.write_geotiffs(pair, tmp_path / "scenes", "glacier")
    report = _track(ref, sec, tmp_path / "out")
    with xr.open_dataset(report.path) as ds:
        assert abs(ds["vx"].attrs["stable_shift"]) < 0.05 * M_PER_YR_PER_PX
        accuracy = synthetic.granule_accuracy(ds, pair)
        assert float(ds["v"].max()) == pytest.approx(4.0 * M_PER_YR_PER_PX, rel=0.05)
    assert accuracy.valid_fraction >= 0.98
    assert accuracy.rmse_px < 0.05, accuracy.summary()


def test_sec_in_another_crs_is_tracked_on_ref_grid(tmp_path: Path) -> None:
    field = synthetic.channel_flow(centre_row=200, half_width=100, peak_px=3.0, margin_px=30)
    pair = synthetic.make_pair((400, 400), field, noise=0.02, seed=27)
    ref, sec = synthetic.write_geotiffs(pair, tmp_path / "scenes", "utm")
    sec_utm = tmp_path / "scenes" / "utm_sec_32624.tif"
    with rasterio.open(sec) as src:
        transform, width, height = calculate_default_transform(
            src.crs, "EPSG:32624", src.width, src.height, *src.bounds
        )
        profile = {**src.profile, "crs": "EPSG:32624", "transform": transform}
        with rasterio.open(sec_utm, "w", **{**profile, "width": width, "height": height}) as dst:
            reproject(
                rasterio.band(src, 1), rasterio.band(dst, 1),
                resampling=Resampling.cubic, src_nodata=np.nan, dst_nodata=np.nan,
            )  # fmt: skip
            dst.update_tags(**src.tags())
    report = _track(ref, sec_utm, tmp_path / "out")
    with xr.open_dataset(report.path) as ds:
        assert ds["mapping"].attrs["spatial_epsg"] == synthetic.EPSG  # REF's grid
        accuracy = synthetic.granule_accuracy(ds, pair)
    # two cubic resamplings cost little: ~0.04 px on the original grid too
    assert accuracy.valid_fraction >= 0.98
    assert accuracy.rmse_px < 0.06, accuracy.summary()


# -- the pair's times --------------------------------------------------------------------------


@pytest.fixture
def scenes(tmp_path: Path) -> tuple[Path, Path]:
    pair = synthetic.make_pair((300, 300), seed=23)
    return synthetic.write_geotiffs(pair, tmp_path / "scenes", "order")


def test_secondary_must_be_later(scenes: tuple[Path, Path], tmp_path: Path) -> None:
    ref, sec = scenes
    with pytest.raises(SceneError, match="not after") as info:
        _track(sec, ref, tmp_path / "out")  # swapped
    assert str(ref) in str(info.value) and str(sec) in str(info.value)
    assert not (tmp_path / "out").exists()  # refused before any work


def test_identical_times_are_refused(scenes: tuple[Path, Path], tmp_path: Path) -> None:
    ref, sec = scenes
    when = "2024-07-01T12:00:00"
    with pytest.raises(SceneError, match="not after"):
        _track(ref, sec, tmp_path / "out", ref_time=when, sec_time=when)
    assert not (tmp_path / "out").exists()


def test_time_overrides_set_the_interval(scenes: tuple[Path, Path], tmp_path: Path) -> None:
    """Twice the interval, half the speed: the flags are what the velocities are computed from."""
    ref, sec = scenes
    base = _track(ref, sec, tmp_path / "a.nc")
    longer = _track(
        ref, sec, tmp_path / "b.nc", ref_time="2024-07-01T12:00", sec_time="2024-08-02T12:00"
    )
    with xr.open_dataset(base.path) as a, xr.open_dataset(longer.path) as b:
        assert b["img_pair_info"].attrs["date_dt"] == pytest.approx(32.0)
        restored_a, restored_b = _with_shift_restored(a), _with_shift_restored(b)
        np.testing.assert_allclose(restored_b["vx"], restored_a["vx"] / 2, atol=1.0)


# -- stable-ground mask and prior ----------------------------------------------------------


def test_stable_mask_sets_flag_1_and_keeps_the_motion(tmp_path: Path) -> None:
    pair = synthetic.make_pair((300, 300), _left_half_stable, noise=0.02, seed=24)
    ref, sec = synthetic.write_geotiffs(pair, tmp_path / "scenes", "mask")
    mask = np.zeros((300, 300), np.uint8)
    mask[:, :150] = 1
    mask_path = _raster_like(tmp_path / "rock.tif", mask, pair)

    report = _track(ref, sec, tmp_path / "out", stable_mask=str(mask_path))
    with xr.open_dataset(report.path) as ds:
        attrs = ds["vx"].attrs
        assert attrs["stable_shift_flag"] == 1
        # exactly the measured (not interpolated) nodes of the left half were used
        left = ds["x"].values < synthetic.ORIGIN_X + 150 * synthetic.PIXEL_SIZE_M
        measured = (ds["interp_mask"].fillna(0).values != 1) & np.isfinite(ds["vx"].values)
        assert attrs["stable_count_stationary"] == (measured & left[None, :]).sum() > 100
        assert abs(attrs["stable_shift_stationary"]) < 0.05 * M_PER_YR_PER_PX
        accuracy = synthetic.granule_accuracy(ds, pair)
        ice = ds["vx"].sel(x=slice(synthetic.ORIGIN_X + 200 * synthetic.PIXEL_SIZE_M, None))
        assert float(ice.median()) == pytest.approx(1.5 * M_PER_YR_PER_PX, rel=0.03)
    assert accuracy.rmse_px < 0.05, accuracy.summary()


def _drift_scenes(folder: Path) -> tuple[synthetic.SyntheticPair, Path, Path]:
    """A uniform 3.4 px drift east: all of it moving ice, no stable ground."""
    pair = synthetic.make_pair((300, 300), synthetic.uniform(0.0, 3.4), noise=0.02, seed=28)
    return pair, *synthetic.write_geotiffs(pair, folder / "scenes", "drift")


def test_without_mask_or_reference_the_drift_is_delivered_intact_flag_0(tmp_path: Path) -> None:
    pair, ref, sec = _drift_scenes(tmp_path)
    report = _track(ref, sec, tmp_path / "out")
    with xr.open_dataset(report.path) as ds:
        for name in ("vx", "vy"):
            attrs = ds[name].attrs
            assert attrs["stable_shift_flag"] == 0
            assert attrs["stable_shift"] == 0
            assert attrs["stable_count_stationary"] == attrs["stable_count_slow"] == 0
            assert (
                "no stable-surface mask and no reference velocity"
                in (attrs["stable_shift_description"])
            )
            # as in ITS_LIVE's own flag-0 granules: the error is the modelled one
            assert attrs["error"] == attrs["error_modeled"]
        assert float(ds["vx"].median()) == pytest.approx(3.4 * M_PER_YR_PER_PX, rel=0.01)
        accuracy = synthetic.granule_accuracy(ds, pair)
    assert accuracy.rmse_px < 0.05, accuracy.summary()


def test_slowest_measured_shift_only_when_asked_for(tmp_path: Path) -> None:
    _, ref, sec = _drift_scenes(tmp_path)
    report = _track(ref, sec, tmp_path / "out", stable_shift=StableShift.SLOWEST_MEASURED)
    with xr.open_dataset(report.path) as ds:
        attrs = ds["vx"].attrs
        assert attrs["stable_shift_flag"] == 2
        assert attrs["stable_shift"] == pytest.approx(3.4 * M_PER_YR_PER_PX, rel=0.01)
        assert "measured" in attrs["stable_shift_description"]
        assert abs(float(ds["vx"].median())) < 0.05 * M_PER_YR_PER_PX  # as asked: gone
        assert ds.attrs["parameter_stable_shift"] == "slowest-measured"


def test_stable_mask_on_a_drifting_scene_reads_rock_zero_flag_1(tmp_path: Path) -> None:
    """Rock on the left (still), ice drifting 3.4 px on the right, everything offset by a
    coregistration error of 0.4 px: the mask's median takes the offset out."""

    def field(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        _, ice = _left_half_stable(rows, cols)
        return np.zeros_like(ice), 0.4 + ice * 3.4 / 1.5

    pair = synthetic.make_pair((300, 300), field, noise=0.02, seed=29)
    ref, sec = synthetic.write_geotiffs(pair, tmp_path / "scenes", "rock")
    mask = np.zeros((300, 300), np.uint8)
    mask[:, :140] = 1
    report = _track(
        ref, sec, tmp_path / "out", stable_mask=str(_raster_like(tmp_path / "r.tif", mask, pair))
    )
    with xr.open_dataset(report.path) as ds:
        assert ds["vx"].attrs["stable_shift_flag"] == 1
        assert ds["vx"].attrs["stable_shift"] == pytest.approx(0.4 * M_PER_YR_PER_PX, rel=0.05)
        assert "stable-surface mask" in ds["vx"].attrs["stable_shift_description"]
        rock = ds["vx"].sel(x=slice(None, synthetic.ORIGIN_X + 130 * synthetic.PIXEL_SIZE_M))
        ice = ds["vx"].sel(x=slice(synthetic.ORIGIN_X + 200 * synthetic.PIXEL_SIZE_M, None))
        assert abs(float(rock.median())) < 0.03 * M_PER_YR_PER_PX
        assert float(ice.median()) == pytest.approx(3.4 * M_PER_YR_PER_PX, rel=0.02)


def test_reference_velocity_gives_flag_2(tmp_path: Path) -> None:
    """Without a stable mask, the prior's slowest 25 % are the stable ground."""
    pair = synthetic.make_pair((300, 300), _left_half_stable, noise=0.02, seed=24)
    ref, sec = synthetic.write_geotiffs(pair, tmp_path / "scenes", "reference")
    rows, cols = np.mgrid[0:300, 0:300] + 0.5
    _, d_cols = _left_half_stable(rows, cols)
    vx = (d_cols * M_PER_YR_PER_PX).astype(np.float32)
    prior_vx = _raster_like(tmp_path / "prior_vx.tif", vx, pair)
    prior_vy = _raster_like(tmp_path / "prior_vy.tif", np.zeros_like(vx), pair)
    report = _track(ref, sec, tmp_path / "out", prior_vx=str(prior_vx), prior_vy=str(prior_vy))
    with xr.open_dataset(report.path) as ds:
        attrs = ds["vx"].attrs
        assert attrs["stable_shift_flag"] == 2
        assert attrs["stable_count_slow"] > 50
        assert attrs["stable_count_stationary"] == 0
        assert "reference velocity" in attrs["stable_shift_description"]
        assert abs(attrs["stable_shift"]) < 0.05 * M_PER_YR_PER_PX
        accuracy = synthetic.granule_accuracy(ds, pair)
    assert accuracy.rmse_px < 0.05, accuracy.summary()


def test_prior_reaches_motion_beyond_the_search_window(tmp_path: Path) -> None:
    pair = synthetic.make_pair((300, 300), synthetic.uniform(0.2, 12.4), noise=0.02, seed=25)
    ref, sec = synthetic.write_geotiffs(pair, tmp_path / "scenes", "prior")
    # 300 m/yr is ~2 px in 16 days; the motion is 12.4 px (~2120 m/yr)
    slow = {"max_speed_m_per_yr": 300}
    alone = _track(ref, sec, tmp_path / "alone", **slow)
    assert alone.valid_percentage < 10

    # the prior on a coarser 75 m grid, 12 px east: within the search of the truth
    coarse = rasterio.transform.from_origin(synthetic.ORIGIN_X, synthetic.ORIGIN_Y, 75, 75)
    vx = np.full((30, 30), 12.0 * M_PER_YR_PER_PX, np.float32)
    prior_vx = _raster_like(tmp_path / "prior_vx.tif", vx, pair, transform=coarse)
    prior_vy = _raster_like(tmp_path / "prior_vy.tif", np.zeros_like(vx), pair, transform=coarse)
    report = _track(
        ref, sec, tmp_path / "out", prior_vx=str(prior_vx), prior_vy=str(prior_vy), **slow
    )
    assert report.valid_percentage > 95
    with xr.open_dataset(report.path) as ds:
        accuracy = synthetic.granule_accuracy(_with_shift_restored(ds), pair)
    assert accuracy.rmse_px < 0.05, accuracy.summary()
    assert accuracy.max_px < 0.5, accuracy.summary()


# -- damaged input -----------------------------------------------------------------------------


def test_damaged_tile_outside_the_checked_windows_names_the_file(tmp_path: Path) -> None:
    pair = synthetic.make_pair((600, 600), seed=26)
    good, sec = synthetic.write_geotiffs(pair, tmp_path / "scenes", "damaged")
    # 16 px tiles: tile (5, 5) covers pixels 80-95, between the checked windows (0-63, 178-241)
    ref = tmp_path / "scenes" / "damaged_tile.tif"
    with rasterio.open(good) as src:
        profile = {**src.profile, "blockxsize": 16, "blockysize": 16}
        with rasterio.open(ref, "w", **profile) as dst:
            dst.write(src.read(1), 1)
            dst.update_tags(**src.tags())
    with rasterio.open(ref) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_5_5", "TIFF", bidx=1))
        size = int(ds.get_tag_item("BLOCK_SIZE_5_5", "TIFF", bidx=1))
    data = bytearray(ref.read_bytes())
    data[offset : offset + size] = b"\xff" * size  # not a deflate stream any more
    ref.write_bytes(bytes(data))

    with pytest.raises(SceneError) as info:
        _track(ref, sec, tmp_path / "out")
    assert str(ref) in str(info.value)
    assert not list(tmp_path.glob("out/*.nc"))


# -- masks of unusable pixels ------------------------------------------------------------------


@pytest.fixture
def clouded(tmp_path: Path) -> tuple[synthetic.SyntheticPair, Path, Path, np.ndarray, np.ndarray]:
    pair, ref_cloud, sec_cloud = clouded_pair((300, 300), seed=34)
    return (
        pair,
        *synthetic.write_geotiffs(pair, tmp_path / "scenes", "cloudy"),
        ref_cloud,
        sec_cloud,
    )


def _nodes_under(ds: xr.Dataset, pair: synthetic.SyntheticPair, *clouds: np.ndarray) -> np.ndarray:
    cols = ((ds["x"].values - pair.origin[0]) / pair.pixel_size).astype(int)
    rows = ((pair.origin[1] - ds["y"].values) / pair.pixel_size).astype(int)
    return np.logical_or.reduce([c[np.ix_(rows, cols)] for c in clouds])


def test_masks_keep_the_cloud_out_of_the_granule(clouded, tmp_path: Path) -> None:
    pair, ref, sec, ref_cloud, sec_cloud = clouded
    ref_mask = _raster_like(tmp_path / "ref_mask.tif", ref_cloud.astype(np.uint8), pair)
    # the SEC mask on a coarser grid, as a 15 m QA band would be: resampled (nearest)
    coarse = rasterio.transform.from_origin(synthetic.ORIGIN_X, synthetic.ORIGIN_Y, 15, 15)
    sec_mask = _raster_like(
        tmp_path / "sec_mask.tif", sec_cloud[::2, ::2].astype(np.uint8) * 9, pair, transform=coarse
    )
    report = _track(ref, sec, tmp_path / "out", ref_mask=str(ref_mask), sec_mask=str(sec_mask))
    with xr.open_dataset(report.path) as ds:
        under = _nodes_under(ds, pair, ref_cloud, sec_cloud)
        valid = np.isfinite(ds["vx"].values)
        assert under.sum() > 10
        assert valid[under].mean() <= 0.05
        assert np.all(ds["reason"].values[under & ~valid] == 1)  # nodata
        assert valid[~under].mean() > 0.9
        assert ds.attrs["parameter_masks"] == "ref sec"
        accuracy = synthetic.granule_accuracy(ds, pair)
    assert accuracy.rmse_px < 0.05, accuracy.summary()


def test_unmasked_cloud_is_not_nodata(clouded, tmp_path: Path) -> None:
    """The same pair without its masks: what the masks are for."""
    pair, ref, sec, ref_cloud, sec_cloud = clouded
    report = _track(ref, sec, tmp_path / "out")
    with xr.open_dataset(report.path) as ds:
        under = _nodes_under(ds, pair, ref_cloud, sec_cloud)
        assert (ds["reason"].values[under] == 1).mean() < 0.5  # not known as unusable
        assert ds.attrs["parameter_masks"] == "none"


@pytest.mark.parametrize("flag", ["ref_mask", "sec_mask"])
def test_bad_mask_files_are_named(clouded, tmp_path: Path, flag: str) -> None:
    pair, ref, sec, _, _ = clouded
    missing = tmp_path / "no_such_mask.tif"
    with pytest.raises(SceneError, match=f"--{flag.replace('_', '-')}.*no_such_mask.tif"):
        _track(ref, sec, tmp_path / "out", **{flag: str(missing)})
    two_bands = tmp_path / "two.tif"
    with rasterio.open(
        two_bands, "w", driver="GTiff", height=10, width=10, count=2, dtype="uint8",
        crs=f"EPSG:{pair.epsg}", transform=pair.transform,
    ) as dst:  # fmt: skip
        dst.write(np.zeros((2, 10, 10), np.uint8))
    with pytest.raises(SceneError, match="2 bands"):
        _track(ref, sec, tmp_path / "out", **{flag: str(two_bands)})
    far = rasterio.transform.from_origin(synthetic.ORIGIN_X + 1e6, synthetic.ORIGIN_Y, 7.5, 7.5)
    elsewhere = _raster_like(
        tmp_path / "far.tif", np.zeros((10, 10), np.uint8), pair, transform=far
    )
    with pytest.raises(SceneError, match="do not overlap"):
        _track(ref, sec, tmp_path / "out", **{flag: str(elsewhere)})
    assert not (tmp_path / "out").exists()


def test_a_prior_in_another_projection_is_turned_onto_the_grid_s_axes(tmp_path: Path) -> None:
    """A summary mosaic in polar stereographic (EPSG:3413) lends its vectors to a UTM 7N
    pair: there, its axes are turned by about 96 degrees from UTM's."""
    from pyproj import CRS, Transformer

    from glacierflow.processing.cubes.reproject import jacobian, transform_vectors
    from glacierflow.processing.pipeline import _prior_on_grid
    from glacierflow.processing.tracking.grid import node_grid

    utm, polar = CRS.from_epsg(32607), CRS.from_epsg(3413)
    truth = (300.0, -400.0)  # m/yr along UTM's axes, everywhere
    # the 3413 raster: a 120 m grid over the UTM box, the vectors along its own axes
    to_polar = Transformer.from_crs(utm, polar, always_xy=True)
    xs, ys = to_polar.transform(
        [516_000, 522_000, 516_000, 522_000], [6_660_000] * 2 + [6_666_000] * 2
    )
    left, top = min(xs) - 1_200, max(ys) + 1_200
    width, height = [int((max(v) - min(v) + 2_400) // 120) for v in (xs, ys)]
    px, py = np.meshgrid(left + 60 + 120 * np.arange(width), top - 60 - 120 * np.arange(height))
    ux, uy = Transformer.from_crs(polar, utm, always_xy=True).transform(px, py)
    jac = jacobian(to_polar, ux, uy)
    vectors = transform_vectors(np.full(px.shape, truth[0]), np.full(px.shape, truth[1]), jac)
    paths = []
    for name, values in zip(("vx", "vy"), vectors, strict=True):
        paths.append(str(tmp_path / f"{name}.tif"))
        with rasterio.open(
            paths[-1], "w", driver="GTiff", width=width, height=height, count=1,
            dtype="float32", crs=polar, transform=rasterio.Affine(120, 0, left, 0, -120, top),
        ) as dst:  # fmt: skip
            dst.write(values.astype(np.float32), 1)
    grid = node_grid(rasterio.Affine(15, 0, 516_000, 0, -15, 6_666_000), (400, 400), 120.0)
    vx, vy = _prior_on_grid(paths[0], paths[1], utm, grid)
    np.testing.assert_allclose(vx, truth[0], atol=1.0)
    np.testing.assert_allclose(vy, truth[1], atol=1.0)
    assert np.hypot(*vectors).min() > 490  # the lengths agree, the components do not:
    assert np.abs(vectors[0] - truth[0]).min() > 100  # read as they are, they would be wrong
