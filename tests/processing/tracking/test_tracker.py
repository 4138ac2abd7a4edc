"""The tracker against truth: synthetic 1000 x 1000 pairs with known displacement fields.

Goals (issue: the feature tracker), 16 px grid and chips, 2 % noise:
RMSE <= 0.025 px on fractal texture, <= 0.05 px on natural-image texture, no vector more
than 0.5 px off on smooth fields, >= 99 % valid; under heavy noise (noise std equal to
the texture's) >= 90 % valid with RMSE <= 0.25 px.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import track_synthetic

from glacierflow.processing import synthetic
from glacierflow.processing.tracking.tracker import Reason

SHAPE = (1000, 1000)
SMOOTH_FIELDS = {
    "uniform": synthetic.uniform(0.3, -0.7),
    "channel": synthetic.channel_flow(500, 350, 6.0, margin_px=40.0),
    "vortex": synthetic.vortex((500, 500), 200, 5.0),
}


def _rmse(err: np.ndarray, valid: np.ndarray) -> float:
    return float(np.sqrt(np.mean(err[valid] ** 2)))


@pytest.mark.parametrize(("texture", "goal_px"), [("fractal", 0.025), ("natural", 0.05)])
def test_uniform_subpixel_shift_meets_rmse_goal(texture: str, goal_px: float) -> None:
    pair = synthetic.make_pair(SHAPE, SMOOTH_FIELDS["uniform"], texture=texture, noise=0.02, seed=1)
    result, err = track_synthetic(pair)
    valid = result.valid
    assert valid.mean() >= 0.99
    assert _rmse(err, valid) <= goal_px
    assert np.max(err[valid]) <= 0.5


@pytest.mark.parametrize("name", ["channel", "vortex"])
def test_smooth_fields_have_no_vector_half_a_pixel_off(name: str) -> None:
    pair = synthetic.make_pair(SHAPE, SMOOTH_FIELDS[name], texture="fractal", noise=0.02, seed=2)
    result, err = track_synthetic(pair)
    valid = result.valid
    assert valid.mean() >= 0.99
    assert np.max(err[valid]) <= 0.5
    assert _rmse(err, valid) <= 0.05  # chips average the field's curvature: looser than uniform


@pytest.mark.parametrize("texture", ["fractal", "natural"])
def test_heavy_noise_still_mostly_valid(texture: str) -> None:
    pair = synthetic.make_pair(SHAPE, SMOOTH_FIELDS["uniform"], texture=texture, noise=1.0, seed=3)
    result, err = track_synthetic(pair)
    valid = result.valid
    assert valid.mean() >= 0.90
    assert _rmse(err, valid) <= 0.25
    # the chip ladder is what makes this possible: most nodes needed larger chips
    assert np.median(result.chip_px[valid]) > 16


def test_radiometric_change_does_not_hurt() -> None:
    pair = synthetic.make_pair(
        SHAPE, SMOOTH_FIELDS["uniform"], noise=0.02, seed=4, radiometric=True
    )
    result, err = track_synthetic(pair)
    assert result.valid.mean() >= 0.99
    assert _rmse(err, result.valid) <= 0.025


def test_cloud_holes_are_nodata_and_do_not_spoil_the_rest() -> None:
    pair = synthetic.make_pair(SHAPE, SMOOTH_FIELDS["uniform"], noise=0.02, seed=5, clouds=3)
    result, err = track_synthetic(pair)
    assert (result.reason == Reason.NODATA).sum() > 10
    assert not result.valid[result.reason == Reason.NODATA].any()
    assert _rmse(err, result.valid) <= 0.025
    assert np.max(err[result.valid]) <= 0.5


def test_stable_ground_beside_the_glacier_reads_zero() -> None:
    field = synthetic.channel_flow(500, 250, 6.0, margin_px=40.0)
    pair = synthetic.make_pair(SHAPE, field, noise=0.02, seed=6)
    result, _ = track_synthetic(pair)
    rows = np.arange(result.rows.shape[0]) * 16 + 7
    rock = (np.abs(rows - 500) > 320)[:, None] & result.valid
    assert np.sqrt(np.mean(result.cols[rock] ** 2 + result.rows[rock] ** 2)) < 0.02


def test_search_radius_bounds_what_can_be_found() -> None:
    """Motion beyond the search window is not reported as a wrong vector."""
    pair = synthetic.make_pair((400, 400), synthetic.uniform(0.0, 12.4), noise=0.02, seed=8)
    result, err = track_synthetic(pair, search_radius_px=6)
    assert result.valid.mean() < 0.1
    assert np.all(err[result.valid] < 0.5)


def test_prior_centres_the_search() -> None:
    pair = synthetic.make_pair((400, 400), synthetic.uniform(0.2, 12.4), noise=0.02, seed=8)
    shape = track_synthetic(pair, search_radius_px=6)[0].rows.shape
    prior = np.zeros((*shape, 2))
    prior[..., 1] = 12.0
    result, _ = track_synthetic(pair, prior=prior, search_radius_px=6)
    assert result.valid.mean() > 0.95
    err = np.hypot(result.rows - 0.2, result.cols - 12.4)[result.valid]
    assert np.max(err) < 0.5
    assert np.sqrt(np.mean(err**2)) < 0.05


def test_textureless_reference_is_explained() -> None:
    pair = synthetic.make_pair((400, 400), noise=0.0, seed=9)
    pair.ref[100:300, 100:300] = 1.0  # a flat patch: nothing to track there
    result, _ = track_synthetic(pair)
    assert (result.reason == Reason.NO_TEXTURE).sum() >= 50
    assert not result.valid[result.reason == Reason.NO_TEXTURE].any()
