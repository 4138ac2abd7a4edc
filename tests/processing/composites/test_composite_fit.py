"""The composite fit's parts: the year fractions, the outlier filters, the dt_max filter and
the Sentinel-2 rule, each on a case whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from glacierflow.processing.composites.build import build_composite, cube_pairs
from glacierflow.processing.composites.fit import (
    Pairs,
    decimal_year,
    design_matrix,
    dt_max_filter,
    running_median_inliers,
    year_fractions,
)
from glacierflow.processing.composites.synthetic import synthetic_cube


def test_a_pair_counts_toward_each_year_by_the_part_it_covers() -> None:
    start = decimal_year(np.array(["2017-07-02T12:00", "2018-03-01"], "datetime64[ms]"))
    stop = decimal_year(np.array(["2018-07-02T12:00", "2018-03-17"], "datetime64[ms]"))
    fractions = year_fractions(start, stop, np.array([2016, 2017, 2018]))
    np.testing.assert_allclose(fractions[0], [0, 0.5, 0.5], atol=2e-3)
    np.testing.assert_allclose(fractions[1], [0, 0, 16 / 365], atol=1e-6)


def test_the_seasonal_columns_integrate_to_nothing_over_a_whole_year() -> None:
    pairs = Pairs(
        np.array([2015.0, 2016.25]),
        np.array([2016.0, 2016.5]),
        np.array([365.0, 91.0]),
        np.ones(2),
        np.ones(2),
        np.array(["L8_L9"] * 2),
    )
    design = design_matrix(pairs, pairs.years)
    np.testing.assert_allclose(design[0, :2], 0, atol=1e-12)
    # from t = 0.25 to 0.5: ∫sin(2πt) = +1/(2π), ∫cos(2πt) = -1/(2π)
    np.testing.assert_allclose(design[1, :2], [1 / (2 * np.pi), -1 / (2 * np.pi)])


def test_pairs_must_come_in_mid_date_order() -> None:
    with pytest.raises(ValueError, match="mid-date order"):
        Pairs(np.array([2016.0, 2015.0]), np.array([2016.1, 2015.1]), *[np.ones(2)] * 3,
              np.array(["L7", "L7"]))  # fmt: skip


def test_running_median_drops_a_spike_and_keeps_the_rest() -> None:
    rng = np.random.default_rng(1)
    v = (1000 + rng.normal(0, 10, (3, 200))).astype(np.float32)
    v[0, 50] = 5000
    v[1, :] = np.nan
    valid = np.isfinite(v)
    valid[2, ::3] = False  # gaps: the median runs over the valid pairs only
    v[2, 100] = -3000
    keep = running_median_inliers(v, valid)
    assert not keep[0, 50] and keep[0].sum() == 199
    assert not keep[1].any()
    assert not keep[2, 100] and keep[2].sum() == valid[2].sum() - 1
    assert not (keep & ~valid).any()


def test_dt_max_cuts_long_pairs_that_read_slow() -> None:
    """Long Landsat pairs read 30 % slow (decorrelation): the filter stops Landsat at the
    first long bin that differs; Sentinel-1, unbiased, keeps everything; a pixel slower
    than 50 m/yr is left alone."""
    rng = np.random.default_rng(2)
    n = 600
    dt_days = rng.choice([6, 12, 16, 32, 48, 96, 160, 200, 300, 400], n)
    mid = np.sort(rng.uniform(2015, 2020, n))
    start = mid - dt_days / 365.25 / 2
    group = np.array(["L8_L9", "S1A_S1B"])[rng.integers(0, 2, n)]
    pairs = Pairs(start, start + dt_days / 365.25, dt_days, np.ones(n), np.ones(n), group)
    speed = np.array([1000.0, 20.0])[:, None] * np.ones((2, n))
    slow_landsat = (group == "L8_L9") & (dt_days >= 128)
    speed[:, slow_landsat] *= 0.7
    vx = (speed + rng.normal(0, 5, speed.shape)).astype(np.float32)
    vy = rng.normal(0, 5, speed.shape).astype(np.float32)
    drop, dt_max = dt_max_filter(vx, vy, np.ones_like(vx, bool), pairs, ["L8_L9", "S1A_S1B"])
    assert dt_max[0, 0] == 128 and np.isnan(dt_max[0, 1])
    assert (drop[0] == slow_landsat).all()
    assert np.isnan(dt_max[1]).all() and not drop[1].any()


def test_sentinel2_inflating_the_seasonal_cycle_is_left_out() -> None:
    """Sentinel-2 pairs with a spurious seasonal swing as large as the speed, in phase with
    the true one: where that more than doubles the amplitude (three pixels of four), the
    fit without Sentinel-2 is kept, sensor_flag says so and the amplitude is the true one
    again; the fourth pixel (a large true amplitude) keeps the inflated fit, as ITS_LIVE's
    rule does."""
    cube, truth = synthetic_cube(ny=2, nx=2, n_pairs=1500, sparse_pixels=0, seed=3)
    s2 = cube["satellite_img1"].values == "2A"
    t = decimal_year(cube["mid_date"].values)[s2, None]
    swing = truth.v0 * np.cos(2 * np.pi * (t - truth.phase / 365.25))  # (S2 pairs, pixels)
    for name, trig in (("vx", np.cos), ("vy", np.sin)):
        extra = swing * trig(truth.direction)
        cube[name].values[s2] += extra.reshape(-1, 2, 2).astype(np.float32)
    composite, _ = build_composite(cube)
    flag = composite["sensor_flag"].sel(sensor="S2A_S2B").values.ravel()
    assert flag.tolist() == [1, 1, 1, 0]
    assert (composite["sensor_flag"].sel(sensor="L8_L9").values == 0).all()
    amplitude = composite["v_amp"].values.ravel()
    np.testing.assert_allclose(amplitude[:3], truth.amplitude[:3], rtol=0.1)
    assert amplitude[3] > 1.5 * truth.amplitude[3]
    assert np.isnan(composite["dt_max"].sel(sensor="S2A_S2B").values.ravel()[:3]).all()


def test_sensor_groups_read_itslive_satellite_spellings() -> None:
    """ITS_LIVE's cubes spell Landsat 8 as "8", "8." or 8.0 (float): one group."""
    cube, _ = synthetic_cube(ny=2, nx=2, n_pairs=40, sparse_pixels=0)
    spellings = np.array(["8", "8.", "8.0", "9", "2B", "1A", "7", "5"] * 5, dtype=object)
    cube["satellite_img1"] = ("mid_date", spellings)
    pairs, _ = cube_pairs(cube)
    assert pairs.groups == ["L4_L5", "L7", "L8_L9", "S1A_S1B", "S2A_S2B"]
    cube["satellite_img1"] = ("mid_date", np.full(40, 8.0))
    assert cube_pairs(cube)[0].groups == ["L8_L9"]
