"""The hard scene of issue 11: its truth, its clouds and its node subsets are what they claim."""

from __future__ import annotations

import numpy as np
import pytest

from glacierflow.processing import synthetic
from glacierflow.processing.tracking.grid import node_grid


@pytest.fixture(scope="module")
def scene() -> synthetic.HardScene:
    return synthetic.hard_scene(400, seed=1)


def test_glacier_band_has_plug_flow_steep_margins_and_still_rock() -> None:
    field = synthetic.glacier_band((500, 500), 200)
    across = np.linspace(-450, 450, 90001)
    theta = np.radians(12)
    rows, cols = 500 + across * np.cos(theta), 500 - across * np.sin(theta)
    d_rows, d_cols = field(rows, cols)
    speed = np.hypot(d_rows, d_cols)
    assert speed.max() == pytest.approx(30, abs=0.01)
    assert np.max(np.abs(np.gradient(speed, across))) == pytest.approx(0.43, abs=0.005)
    assert np.all(speed[np.abs(across) > 330] == 0)  # the tanh tail is cut: rock is still
    # the flow runs along the band, 12 degrees down from +x
    moving = speed > 1
    assert np.allclose(np.arctan2(d_rows[moving], d_cols[moving]), theta)


def test_cloud_covers_a_fifth_and_moves_by_its_own_shift(scene: synthetic.HardScene) -> None:
    assert 0.15 < scene.ref_cloud.mean() < 0.3
    assert 0.15 < scene.sec_cloud.mean() < 0.3
    dr, dc = scene.cloud_shift
    assert (dr, dc) == (-15, 20)
    # inside the image, the second mask is the first moved by the cloud's shift
    moved = scene.ref_cloud[-dr:, : scene.sec.shape[1] - dc]
    assert np.array_equal(scene.sec_cloud[: moved.shape[0], dc:], moved)
    # the cloud is bright: at least 2 texture stds above clear ground where it is dense
    clear = ~scene.ref_cloud
    assert scene.ref[scene.ref_cloud].mean() > scene.ref[clear].mean() + 1.0


def test_variants_without_cloud_and_with_natural_texture() -> None:
    plain = synthetic.hard_scene(400, cloud=False)
    assert not plain.ref_cloud.any() and not plain.sec_cloud.any()
    grid = node_grid(plain.transform, plain.ref.shape, 120.0)
    subsets = plain.subsets(grid.rows, grid.cols)
    assert not any(subsets[k].any() for k in ("ice_interior", "beside_cloud", "under_cloud"))
    assert subsets["margins"].any() and subsets["stable_rock"].any()
    natural = synthetic.hard_scene(256, texture="natural", noise=0.0)
    fractal = synthetic.hard_scene(256, noise=0.0)
    assert not np.array_equal(natural.ref, fractal.ref)
    # dead leaves: flat patches, so many neighbouring pixels nearly equal
    assert np.median(np.abs(np.diff(natural.ref, axis=1))) < np.median(
        np.abs(np.diff(fractal.ref, axis=1))
    )


def test_ice_has_less_contrast_than_rock_and_image_two_a_gain_ramp() -> None:
    s = synthetic.hard_scene(400, cloud=False, noise=0.0)
    rr, cc = np.mgrid[0:400, 0:400] + 0.5
    across = synthetic.band_distance(rr, cc, s.band_centre, s.band_angle_deg)
    ice, rock = np.abs(across) < 60, np.abs(across) > 120
    assert s.ref[ice].std() / s.ref[rock].std() == pytest.approx(0.6, rel=0.2)
    left, right = s.sec[rock & (cc < 100)], s.sec[rock & (cc > 300)]
    assert right.std() / left.std() > 1.3  # gain 0.75 -> 1.25 across x
    assert s.sec[rr > 350].mean() - s.sec[rr < 50].mean() > 1.0  # additive ramp down y


def test_subsets_are_where_they_say(scene: synthetic.HardScene) -> None:
    grid = node_grid(scene.transform, scene.ref.shape, 120.0)
    subsets = scene.subsets(grid.rows, grid.cols)
    assert set(subsets) == set(synthetic.HARD_SUBSETS)
    rr, cc = np.meshgrid(grid.rows, grid.cols, indexing="ij")
    speed = np.hypot(*scene.field(rr, cc))
    for name, mask in subsets.items():
        assert mask.shape == rr.shape and mask.any(), name
    assert np.all(speed[subsets["stable_rock"]] == 0)
    assert np.all(speed[subsets["ice_interior"]] >= 0.97 * speed.max())
    assert not np.any(subsets["under_cloud"] & subsets["beside_cloud"])
    margin = speed[subsets["margins"]]
    assert margin.min() > 0.3 and margin.max() < 29.7
