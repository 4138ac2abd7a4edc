from __future__ import annotations

import numpy as np

from glacierflow.processing.tracking.outliers import fill_small_gaps, incoherent


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
