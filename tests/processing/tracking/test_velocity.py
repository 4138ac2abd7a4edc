from __future__ import annotations

import numpy as np
import pytest

from glacierflow.processing.tracking.tracker import Reason, TrackResult
from glacierflow.processing.tracking.velocity import to_velocity


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
    # no stable ground in a uniform field beyond the slowest quarter: that quarter is shifted out
    assert vel.stable_shift_flag == 2
    assert np.allclose(vel.vx + 0, 0) and np.allclose(vel.vy, 0)


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
