"""The tracker against truth: synthetic 1000 x 1000 pairs with known displacement fields.

Goals (issue: the feature tracker), 16 px grid and chips, 2 % noise:
RMSE <= 0.025 px on fractal texture, <= 0.05 px on natural-image texture, no vector more
than 0.5 px off on smooth fields, >= 99 % valid; under heavy noise (noise std equal to
the texture's) >= 90 % valid with RMSE <= 0.25 px.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import clouded_pair, track_synthetic

from glacierflow.processing import synthetic
from glacierflow.processing.tracking.grid import node_grid
from glacierflow.processing.tracking.tracker import Reason, array_reader
from glacierflow.processing.tracking.velocity import StableShift, to_velocity

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


# -- masks of unusable pixels -------------------------------------------------------------


def _under(pair: synthetic.SyntheticPair, *masks: np.ndarray) -> np.ndarray:
    """Nodes whose pixel is under the cloud in either image."""
    grid = node_grid(pair.transform, pair.ref.shape, 120.0)
    node = np.ix_(grid.rows.astype(int), grid.cols.astype(int))
    return np.logical_or.reduce([m[node] for m in masks])


def test_masked_cloud_gives_no_vectors_and_spares_the_clear_ground() -> None:
    pair, ref_cloud, sec_cloud = clouded_pair((400, 400), seed=30)
    under = _under(pair, ref_cloud, sec_cloud)
    result, err = track_synthetic(pair, ref_mask=ref_cloud, sec_mask=sec_cloud)
    assert under.sum() > 20
    assert result.valid[under].mean() <= 0.05
    assert np.all(np.isin(result.reason[under & ~result.valid], [Reason.NODATA]))
    clear = ~under & result.valid
    assert clear.sum() > 0.8 * (~under).sum()
    assert _rmse(err, clear) <= 0.05


def test_without_masks_the_cloud_is_not_known_as_unusable() -> None:
    """What the masks are for: unmasked, the cloud's pixels are data, so its nodes are
    matched (on the cloud, or flagged afterwards), not known to be unusable."""
    pair, ref_cloud, sec_cloud = clouded_pair((400, 400), seed=30)
    result, _ = track_synthetic(pair)
    under = _under(pair, ref_cloud, sec_cloud)
    assert (result.reason[under] == Reason.NODATA).mean() < 0.5


def test_mask_of_one_image_alone_is_honoured() -> None:
    pair, ref_cloud, sec_cloud = clouded_pair((400, 400), seed=31)
    result, err = track_synthetic(pair, ref_mask=ref_cloud | sec_cloud)
    assert result.valid[_under(pair, ref_cloud, sec_cloud)].mean() <= 0.05
    assert _rmse(err, result.valid) <= 0.05
    result, err = track_synthetic(pair, sec_mask=(ref_cloud | sec_cloud).astype(np.uint8))
    assert result.valid[_under(pair, ref_cloud, sec_cloud)].mean() <= 0.05
    assert _rmse(err, result.valid) <= 0.05


def test_nodata_and_masks_are_one_mechanism() -> None:
    """NaN in the images and masks over the same pixels give the same vectors."""
    pair, ref_cloud, sec_cloud = clouded_pair((300, 300), seed=32)
    masked, _ = track_synthetic(pair, ref_mask=ref_cloud, sec_mask=sec_cloud)
    pair.ref[ref_cloud] = np.nan
    pair.sec[sec_cloud] = np.nan
    nan, _ = track_synthetic(pair)
    np.testing.assert_array_equal(masked.reason, nan.reason)
    np.testing.assert_array_equal(masked.rows, nan.rows)


def test_masks_must_match_the_images() -> None:
    pair = synthetic.make_pair((100, 100), seed=33)
    with pytest.raises(ValueError, match="mask"):
        array_reader(pair.ref, pair.sec, np.zeros((50, 50), bool))


# -- issue 11's hard scene: a fast outlet glacier on a cloudy day ------------------------------
# settings as `glacierflow track` sets them for 7.5 m pixels, 16 days and --max-speed 6400
HARD_DEFAULTS = dict(chip_sizes_px=(32, 64, 128), search_radius_px=39, coarse_chip_px=128)


def _subsets(scene: synthetic.HardScene) -> dict[str, np.ndarray]:
    grid = node_grid(scene.transform, scene.ref.shape, 120.0)
    return scene.subsets(grid.rows, grid.cols)


@pytest.fixture(scope="module")
def cloudy() -> tuple[synthetic.HardScene, object, np.ndarray]:
    scene = synthetic.hard_scene(1000)
    result, err = track_synthetic(scene, **HARD_DEFAULTS)
    return scene, result, err


def test_hard_scene_shear_margins(cloudy) -> None:
    """Goal: >= 85 % valid and <= 15 % of them > 1 px wrong (2026-11: 96 %, 7.4 %)."""
    scene, result, err = cloudy
    margins = _subsets(scene)["margins"]
    assert result.valid[margins].mean() >= 0.85
    assert np.mean(err[margins & result.valid] > 1.0) <= 0.15


def test_hard_scene_ice_and_ground_beside_the_moving_cloud(cloudy) -> None:
    """Goals: ice interior RMSE <= 0.2 px (0.094), clear ground beside the cloud <= 0.6 px
    (0.28); both mostly valid."""
    scene, result, err = cloudy
    subsets = _subsets(scene)
    for name, goal in (("ice_interior", 0.2), ("beside_cloud", 0.6)):
        where = subsets[name] & result.valid
        assert result.valid[subsets[name]].mean() >= 0.9, name
        assert _rmse(err, where) <= goal, name


def test_hard_scene_cloud_motion_is_flagged_not_delivered(cloudy) -> None:
    """No delivered vector follows the cloud; the nodes that did are `second_motion`, and
    the stable-ground shift learnt without a mask leaves still rock within 0.15 px."""
    scene, result, _ = cloudy
    cloud_like = np.hypot(result.rows - scene.cloud_shift[0], result.cols - scene.cloud_shift[1])
    assert not np.any(cloud_like[result.valid] < 2.0)
    assert (result.reason == Reason.SECOND_MOTION).sum() >= 5
    # no stable mask or reference: the measured slowest 25 %, asked for, must not be poisoned
    vel = to_velocity(
        result,
        (scene.pixel_size, scene.pixel_size),
        16.0,
        stable_shift=StableShift.SLOWEST_MEASURED,
    )
    per_px = scene.pixel_size * 365.25 / 16.0
    rock = _subsets(scene)["stable_rock"] & np.isfinite(vel.vx)
    assert vel.stable_shift_flag == 2
    assert np.sqrt(np.mean((vel.vx[rock] ** 2 + vel.vy[rock] ** 2) / per_px**2)) <= 0.15


def test_hard_scene_natural_texture_without_cloud() -> None:
    """Goal at 1000^2: >= 70 % valid with RMSE <= 0.5 px over all nodes (97.8 %, 0.36 px).
    On this 500^2 version the margins are half the nodes, not a quarter: >= 85 % valid
    (93 %) and RMSE <= 0.65 px (0.53)."""
    scene = synthetic.hard_scene(500, texture="natural", cloud=False, seed=3)
    result, err = track_synthetic(scene, **HARD_DEFAULTS)
    assert result.valid.mean() >= 0.85
    assert _rmse(err, result.valid) <= 0.65
