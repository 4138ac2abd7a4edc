from __future__ import annotations

import numpy as np
import pytest

from glacierflow.processing.tracking.tracker import Reason, TrackResult
from glacierflow.processing.tracking.velocity import (
    DAYS_PER_YEAR,
    StableShift,
    glaft_static_terrain,
    to_velocity,
)


def _result(rows: np.ndarray, cols: np.ndarray) -> TrackResult:
    shape = rows.shape
    return TrackResult(
        rows=rows,
        cols=cols,
        sigma_rows=np.full(shape, 0.01),
        sigma_cols=np.full(shape, 0.01),
        zncc=np.ones(shape, np.float32),
        chip_px=np.full(shape, 16),
        reason=np.zeros(shape, np.uint8),
        interpolated=np.zeros(shape, bool),
    )


def test_signs_and_units() -> None:
    # one pixel (15 m) right and one pixel down over 36.525 days: +150 m/yr east, -150 north
    rows = np.ones((10, 10))
    cols = np.ones((10, 10))
    vel = to_velocity(_result(rows, cols), (15.0, 15.0), 36.525)
    assert np.allclose(vel.vx, 150.0) and np.allclose(vel.vy, -150.0)


def test_stable_mask_removes_a_coregistration_shift() -> None:
    cols = np.zeros((20, 20))
    cols[:, 10:] = 2.0  # the glacier moves 2 px east; everything is offset by 0.1 px
    cols += 0.1
    rows = np.zeros((20, 20)) + 0.1
    rock = np.zeros((20, 20), bool)
    rock[:, :10] = True
    vel = to_velocity(_result(rows, cols), (15.0, 15.0), 365.25, stable_mask=rock)
    assert vel.stable_shift_flag == 1
    assert np.allclose(vel.vx[:, :10], 0) and np.allclose(vel.vx[:, 10:], 30.0)
    assert np.allclose(vel.vy, 0)
    assert vel.stationary[0].shift == pytest.approx(1.5)
    assert vel.v_error.shape == (20, 20) and np.all(vel.v_error > 0)
    assert vel.quality["valid_percentage"] == 100.0


def test_nonpositive_dt_is_an_error() -> None:
    with pytest.raises(ValueError, match="positive"):
        to_velocity(_result(np.zeros((3, 3)), np.zeros((3, 3))), (15.0, 15.0), 0.0)


def test_outlier_percentage_counts_incoherent_nodes() -> None:
    res = _result(np.zeros((10, 10)), np.zeros((10, 10)))
    res.reason[0, :5] = Reason.INCOHERENT
    res.rows[0, :5] = np.nan
    res.cols[0, :5] = np.nan
    vel = to_velocity(res, (15.0, 15.0), 16.0)
    assert vel.quality["outlier_percentage"] == 5.0
    assert vel.quality["valid_percentage"] == 95.0


def _drift(shape: tuple[int, int] = (20, 20)) -> TrackResult:
    """A uniform 3.4 px drift east with 0.05 px of noise: moving ice, no stable ground."""
    noise = np.random.default_rng(0).normal(0, 0.05, (2, *shape))
    return _result(noise[0], 3.4 + noise[1])


def test_without_stable_ground_the_drift_is_kept_flag_0() -> None:
    vel = to_velocity(_drift(), (1.0, 1.0), DAYS_PER_YEAR)
    assert vel.stable_shift_flag == 0
    assert np.median(vel.vx) == pytest.approx(3.4, abs=0.02)
    assert "no stable-surface mask and no reference velocity" in vel.stable_shift_source
    assert vel.slow[0].count == 0 and vel.stationary[0].count == 0
    # ITS_LIVE: without a correction the error is the modelled one
    assert vel.component_error(0) == pytest.approx(0.01)
    assert vel.quality["valid_percentage"] == 100.0


def test_slowest_measured_only_when_asked_for() -> None:
    vel = to_velocity(
        _drift(), (1.0, 1.0), DAYS_PER_YEAR, stable_shift=StableShift.SLOWEST_MEASURED
    )
    assert vel.stable_shift_flag == 2
    assert np.median(vel.vx) == pytest.approx(0.0, abs=0.1)  # the drift is gone, as asked
    assert vel.slow[0].count == 100  # a quarter of 400
    assert "measured" in vel.stable_shift_source


def test_reference_velocity_gives_flag_2_from_its_slowest_quarter() -> None:
    res = _drift()
    res.cols[:, :5] = 0.2 + np.random.default_rng(1).normal(0, 0.05, (20, 5))  # rock, offset
    reference = np.full((20, 20), 500.0)
    reference[:, :5] = 1.0  # the reference says the left quarter is still
    vel = to_velocity(res, (1.0, 1.0), DAYS_PER_YEAR, reference_speed=reference)
    assert vel.stable_shift_flag == 2
    assert vel.slow[0].count == 100
    assert vel.slow[0].shift == pytest.approx(0.2, abs=0.03)
    assert np.median(vel.vx[:, 5:]) == pytest.approx(3.2, abs=0.03)
    assert "reference" in vel.stable_shift_source


def test_stable_mask_wins_over_the_reference() -> None:
    res = _drift()
    res.cols[:, :5] = 0.2
    rock = np.zeros((20, 20), bool)
    rock[:, :5] = True
    vel = to_velocity(res, (1.0, 1.0), DAYS_PER_YEAR, rock, np.ones((20, 20)))
    assert vel.stable_shift_flag == 1
    assert np.allclose(vel.vx[:, :5], 0.0)
    assert "mask" in vel.stable_shift_source


def test_interpolated_and_flagged_vectors_are_not_stable_ground() -> None:
    res = _drift()
    res.cols[:, :5] = 0.0
    rock = np.zeros((20, 20), bool)
    rock[:, :5] = True
    # a second motion over part of the rock, flagged but with its vector kept, and gaps filled
    res.cols[:, :3] = 7.0
    res.reason[:, :3] = Reason.INCOHERENT
    res.interpolated[:, 3] = True
    vel = to_velocity(res, (1.0, 1.0), DAYS_PER_YEAR, rock)
    assert vel.stationary[0].count == 20  # only column 4
    assert vel.stationary[0].shift == pytest.approx(0.0)


def test_too_little_stable_ground_says_why() -> None:
    rock = np.zeros((20, 20), bool)
    rock[0, :3] = True
    vel = to_velocity(_drift(), (1.0, 1.0), DAYS_PER_YEAR, rock)
    assert vel.stable_shift_flag == 0
    assert "fewer than 10 measured vectors on the stable-surface mask" in vel.stable_shift_source
    assert np.median(vel.vx) == pytest.approx(3.4, abs=0.02)


@pytest.mark.parametrize("seed", range(5))
def test_glaft_mode_is_scipys_gaussian_kde_mode(seed: int) -> None:
    """The KDE behind the GLAFT static-terrain figures is scipy.stats.gaussian_kde's (Scott's
    bandwidth) up to a constant factor: same peak, same spread around it."""
    from scipy.stats import gaussian_kde

    rng = np.random.default_rng(seed)
    n = 300 + 400 * seed  # at most 2000: no random subset
    mixing = rng.standard_normal((2, 2))
    sample = 5 * mixing @ rng.standard_normal((2, n)) + rng.uniform(-50, 50, (2, 1))
    sample[:, : n // 4] += rng.uniform(10, 30, (2, 1))  # a second, smaller mode
    figures = glaft_static_terrain(sample[0], sample[1])
    lo, hi = np.percentile(sample, [1, 99], axis=1)
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 41), np.linspace(lo[1], hi[1], 41))
    density = gaussian_kde(sample)(np.stack([gx.ravel(), gy.ravel()]))
    peak = gx.ravel()[density.argmax()], gy.ravel()[density.argmax()]
    assert (figures["glaft_static_peak_vx"], figures["glaft_static_peak_vy"]) == peak
    spread = np.sqrt(np.mean((sample - np.array(peak)[:, None]) ** 2, axis=1))
    assert figures["glaft_static_uncertainty_vx"] == pytest.approx(spread[0])
    assert figures["glaft_static_uncertainty_vy"] == pytest.approx(spread[1])
