from __future__ import annotations

import numpy as np

from glacierflow.processing.tracking.outliers import fill_small_gaps, incoherent, second_motions


def _sheared_field() -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0:20, 0:20].astype(float)
    return 0.1 * cols, 0.5 * rows  # a smooth field with shear


def test_flags_a_single_outlier_and_nothing_else() -> None:
    rows, cols = _sheared_field()
    rows[10, 10] += 3.0
    bad = incoherent(rows, cols)
    assert bad[10, 10]
    assert bad.sum() == 1


def test_shear_alone_is_coherent() -> None:
    rows, cols = _sheared_field()
    assert not incoherent(rows, cols).any()


def test_lone_vectors_fail() -> None:
    rows = np.full((5, 5), np.nan)
    cols = np.full((5, 5), np.nan)
    rows[2, 2], cols[2, 2] = 1.0, 1.0
    assert incoherent(rows, cols)[2, 2]


def test_fills_small_gaps_only() -> None:
    rows, cols = _sheared_field()
    truth = rows.copy()
    rows[5, 5] = cols[5, 5] = np.nan  # a one-node gap
    rows[10:18, 10:18] = cols[10:18, 10:18] = np.nan  # a large hole stays a hole
    filled = fill_small_gaps(rows, cols, np.ones(rows.shape, bool), max_gap=4)
    assert filled[5, 5] and abs(rows[5, 5] - truth[5, 5]) < 0.05
    assert not filled[10:18, 10:18].any()
    assert np.isnan(rows[14, 14])


def test_does_not_fill_where_not_allowed() -> None:
    rows, cols = _sheared_field()
    rows[5, 5] = cols[5, 5] = np.nan
    fillable = np.ones(rows.shape, bool)
    fillable[5, 5] = False  # e.g. a cloud
    assert not fill_small_gaps(rows, cols, fillable, max_gap=4).any()


def _glacier_with_cloud(gap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rock, a steep shear margin (6 px per node) and 30 px/node ice, with a 6x6 patch of
    cloud vectors (-15, 20) in it, `gap` nodes of no vector around the patch."""
    rows = np.mgrid[0:40, 0:40][0].astype(float)
    speed = np.clip((rows - 10) * 6.0, 0, 30)
    d_rows, d_cols = 0.2 * speed, speed
    cloud = np.zeros((40, 40), dtype=bool)
    cloud[20:26, 20:26] = True
    ring = np.zeros_like(cloud)
    ring[20 - gap : 26 + gap, 20 - gap : 26 + gap] = True
    d_rows[ring & ~cloud] = np.nan
    d_cols[ring & ~cloud] = np.nan
    d_rows[cloud], d_cols[cloud] = -15.0, 20.0
    return d_rows, d_cols, cloud


def test_second_motion_beside_the_surface_is_flagged_and_the_margin_is_not() -> None:
    d_rows, d_cols, cloud = _glacier_with_cloud(gap=0)
    assert np.array_equal(second_motions(d_rows, d_cols, 9.6), cloud)


def test_second_motion_cut_off_by_a_gap_is_flagged() -> None:
    for gap in (1, 3):
        d_rows, d_cols, cloud = _glacier_with_cloud(gap)
        assert np.array_equal(second_motions(d_rows, d_cols, 9.6), cloud), gap


def test_no_evidence_no_flag() -> None:
    """A continuous field (the patch moving with the ice around it), a region off the
    surface's edge (nothing to interpolate from) or as large as the surface (which is
    which?) is left alone."""
    d_rows, d_cols, cloud = _glacier_with_cloud(gap=0)
    d_rows[cloud], d_cols[cloud] = 6.0, 30.0  # the ice's motion there
    edge_rows, edge_cols = np.zeros((20, 20)), np.zeros((20, 20))
    edge_rows[:, 17:], edge_cols[:, 17:] = -15.0, 20.0
    edge_rows[:, 15:17] = edge_cols[:, 15:17] = np.nan  # a gap, the patch at the edge
    halves_rows, halves_cols = np.zeros((20, 20)), np.zeros((20, 20))
    halves_rows[:, 11:], halves_cols[:, 11:] = -15.0, 20.0
    halves_rows[:, 9:11] = halves_cols[:, 9:11] = np.nan
    cases = {"continuous": (d_rows, d_cols), "edge": (edge_rows, edge_cols)}
    cases["halves"] = (halves_rows, halves_cols)
    for name, (r, c) in cases.items():
        assert not second_motions(r, c, 9.6).any(), name
