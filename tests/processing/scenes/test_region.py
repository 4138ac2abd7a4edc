"""The demo region: its truth (zero on rock, ~2,500 m/yr at most, slowest in autumn, a surge
year), its scenes (COGs with the tags the tracker reads, two sensors' grids and revisits,
clouds and masks) and, tracked with the real tracker, granules that match the truth.

Landsat-like pixels are 15 m, 16 days apart (1 px = 342 m/yr); Sentinel-2-like 10 m,
5 days apart (1 px = 730 m/yr).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from rio_cogeo.cogeo import cog_validate

from glacierflow.processing.io.scenes import describe
from glacierflow.processing.scenes import Scene
from glacierflow.processing.scenes.region import LANDSAT, SENTINEL2, Region

REGION = Region()
SMALL = Region(width_m=6_000, height_m=4_800, seed=3, clear_days=1.0)


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def _grid(region: Region, n: int = 241) -> tuple[np.ndarray, np.ndarray]:
    x0, y0, x1, y1 = region.bounds
    return np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n))


# -- the truth --------------------------------------------------------------------------------


def test_truth_is_zero_on_rock_and_peaks_near_2500_m_per_yr_in_the_surge() -> None:
    xx, yy = _grid(REGION)
    rock = REGION.ice(xx, yy) == 0
    assert 0.3 < rock.mean() < 0.8  # stable terrain beside the valley and around the lobe
    peak = 0.0
    for day in range(0, 730, 5):
        vx, vy = REGION.true_velocity(xx, yy, _utc(2024, 1, 1) + timedelta(days=day))
        speed = np.hypot(vx, vy)
        assert np.all(speed[rock] == 0)
        peak = max(peak, float(speed.max()))
    assert 2_400 <= peak <= 2_500
    # far beyond the region (outside the valley) the ground is still
    vx, vy = REGION.true_velocity(np.array([400_000.0]), np.array([6_600_000.0]), _utc(2025, 4, 1))
    assert vx[0] == vy[0] == 0


def test_slowest_in_autumn_and_the_surge_year_faster() -> None:
    days = np.arange("2024-01-01", "2025-01-01", dtype="datetime64[D]")
    factor = REGION.speed_factor(days)
    slowest = days[int(np.argmin(factor))].astype(datetime)
    assert slowest.month in (9, 10, 11), slowest
    assert factor.max() / factor.min() == pytest.approx(1.25 / 0.75, rel=1e-3)
    x, y = np.array([528_000.0]), np.array([6_662_000.0])  # in the valley
    year = {
        n: np.mean(
            [
                np.hypot(*REGION.true_velocity(x, y, _utc(n, 1, 1) + timedelta(days=d)))
                for d in range(365)
            ]
        )
        for n in (2024, 2025)
    }
    assert year[2025] > 1.2 * year[2024]


def test_flow_time_is_the_integral_of_the_speed_factor() -> None:
    for when in (_utc(2024, 3, 1), _utc(2025, 4, 10), _utc(2025, 11, 30)):
        hour = timedelta(hours=1)
        rate = (REGION.flow_time(when + hour) - REGION.flow_time(when - hour)) / (2 / 24 / 365.25)
        assert rate == pytest.approx(REGION.speed_factor(when), rel=1e-6)


def test_pair_velocity_follows_the_particle() -> None:
    xx, yy = _grid(REGION, 41)
    # there and back again along the streamlines
    fx, fy = REGION.advect(xx, yy, 0.8)
    bx, by = REGION.advect(fx, fy, -0.8)
    assert np.abs(bx - xx).max() < 0.05 and np.abs(by - yy).max() < 0.05
    # a one-day pair measures the velocity at its middle (the particle moves ~3 m)
    t1, t2 = _utc(2024, 6, 1), _utc(2024, 6, 2)
    vx, vy = REGION.pair_velocity(xx, yy, t1, t2)
    tx, ty = REGION.true_velocity(xx, yy, t1 + (t2 - t1) / 2)
    assert np.abs(vx - tx).max() < 3.0 and np.abs(vy - ty).max() < 3.0
    # a year with the surge in it: faster on average, never faster than the fastest
    # streamline's mean of s(t)
    t1, t2 = _utc(2024, 9, 1), _utc(2025, 9, 1)
    mean_factor = (REGION.flow_time(t2) - REGION.flow_time(t1)) / ((t2 - t1).days / 365.25)
    fastest = np.hypot(*REGION.pair_velocity(xx, yy, t1, t2)).max()
    assert 1.2 * REGION.peak_speed < fastest <= mean_factor * REGION.peak_speed + 1e-6


def test_region_sizes_must_fit_the_grid() -> None:
    with pytest.raises(ValueError, match="multiple of 120 m"):
        Region(width_m=5_000)
    with pytest.raises(ValueError, match="at least 1,200 m"):
        Region(height_m=600)


# -- the scenes -------------------------------------------------------------------------------


def test_two_sensors_with_their_revisits_and_realistic_ids() -> None:
    acquisitions = REGION.acquisitions(_utc(2024, 1, 1), _utc(2025, 1, 1))
    landsat = [a for a in acquisitions if a.sensor is LANDSAT]
    sentinel = [a for a in acquisitions if a.sensor is SENTINEL2]
    assert len(landsat) == 23 and len(sentinel) == 73
    for series, days in ((landsat, 16), (sentinel, 5)):
        gaps = {round((b.when - a.when).total_seconds() / 86400) for a, b in pairwise(series)}
        assert gaps == {days}
    assert all(re.fullmatch(r"LC08_L1TP_063018_\d{8}_\d{8}_02_T1", a.id) for a in landsat)
    assert all(re.fullmatch(r"S2[AB]_07VCG_\d{8}_0_L2A", a.id) for a in sentinel)
    assert {a.platform for a in sentinel} == {"sentinel-2a", "sentinel-2b"}
    assert all(20 <= a.when.hour <= 21 for a in acquisitions)  # morning overpasses in Alaska
    assert acquisitions == sorted(acquisitions, key=lambda a: a.when)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Scene]]:
    folder = tmp_path_factory.mktemp("region")
    region = Region(width_m=2_400, height_m=1_920, clear_days=0.0)
    return folder, region.write_scenes(folder, _utc(2024, 6, 1), _utc(2024, 6, 20))


def test_scenes_are_cogs_with_the_tags_the_tracker_reads(written) -> None:
    _, scenes = written
    assert {s.platform for s in scenes} == {"landsat-8", "sentinel-2a", "sentinel-2b"}
    for scene in scenes:
        for path in (scene.href, scene.mask_href):
            valid, errors, _ = cog_validate(path)
            assert valid, errors
        with rasterio.open(scene.href) as src:
            pixel = 15.0 if scene.platform == "landsat-8" else 10.0
            assert src.res == (pixel, pixel) and src.crs.to_epsg() == 32607
            assert src.dtypes[0] == "uint16" and src.nodata == 0
            assert src.overviews(1) or max(src.shape) <= 512  # overviews down to one tile
        info = describe(scene.href)
        assert info.acquired == scene.datetime
        assert (info.mission, info.satellite) == (
            ("L", "8") if scene.platform == "landsat-8" else ("S", scene.platform[-2:].upper())
        )


def test_clouds_are_in_the_images_the_masks_and_the_cover(written) -> None:
    _, scenes = written
    for scene in scenes:
        assert 0 < scene.cloud_cover < 100
        with rasterio.open(scene.href) as band, rasterio.open(scene.mask_href) as mask:
            cloud = mask.read(1) != 0
            dn = band.read(1).astype(float)
        assert 100 * cloud.mean() == pytest.approx(scene.cloud_cover, abs=0.01)
        assert dn[cloud].mean() > dn[~cloud].mean() + 1000  # clouds are bright


def test_a_second_write_keeps_what_is_there(written) -> None:
    folder, scenes = written
    region = Region(width_m=2_400, height_m=1_920, clear_days=0.0)
    before = {s.href: Path(s.href).stat().st_mtime_ns for s in scenes}
    again = region.write_scenes(folder, _utc(2024, 6, 1), _utc(2024, 6, 20))
    assert again == scenes
    assert {s.href: Path(s.href).stat().st_mtime_ns for s in again} == before


# -- tracked against the truth ----------------------------------------------------------------
# Tolerances (m/yr) of the vector error on a clear small region (6 x 4.8 km: its margins and
# lobe strain 4x faster than the default region's), inside the ice (away from the shear
# margins, where a chip straddles the shear) and on rock, and of the mean error (bias).
# Measured: ice median 16-24, p90 33-44, bias 1.6-5.8; rock median 4-11, p90 9-21.
# For scale: 0.1 px is 34 m/yr for the 16-day Landsat pair, 73 m/yr for a 5-day one.
TOLERANCE = {
    "ice_median": 30,
    "ice_p90": 60,
    "ice_bias": 10,
    "rock_median": 15,
    "rock_p90": 30,
}


@pytest.mark.parametrize(
    ("ref_sensor", "sec_sensor", "start"),
    [
        (LANDSAT, LANDSAT, _utc(2024, 6, 10)),
        (SENTINEL2, SENTINEL2, _utc(2025, 4, 1)),  # in the surge
        (LANDSAT, SENTINEL2, _utc(2024, 8, 20)),  # 15 m against 10 m
    ],
    ids=["landsat", "sentinel-2-surge", "cross-sensor"],
)
def test_granules_match_the_path_mean_truth(
    tmp_path: Path, ref_sensor, sec_sensor, start: datetime
) -> None:
    ref = SMALL.acquisitions(start, start + timedelta(days=40), [ref_sensor])[0]
    after = ref.when + timedelta(days=1)
    sec = SMALL.acquisitions(after, after + timedelta(days=40), [sec_sensor])[0]
    a, b = ref.write(tmp_path), sec.write(tmp_path)
    granule, figures = SMALL.track(a, b, tmp_path / "granules")
    assert figures["valid_fraction"] > 0.95
    assert figures["ice_nodes"] > 100 and figures["rock_nodes"] > 100
    assert figures["truth_max"] > 600  # the ice really moves
    for name, limit in TOLERANCE.items():
        assert figures[name] < limit, figures
    # the comparison sees a granule that is wrong: 100 m/yr too fast eastward
    with xr.open_dataset(granule) as ds:
        wrong = SMALL.granule_figures(ds.assign(vx=ds["vx"] + 100), a.datetime, b.datetime)
    assert 90 < wrong["ice_bias"] < 110 and wrong["rock_median"] > 85
