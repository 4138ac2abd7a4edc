"""Outlier rejection and gap filling on the grid of displacement vectors (pure numpy).

The outlier test is the normalized median test (Westerweel & Scarano 2005), our form of
autoRIFT's normalized displacement coherence: a vector is incoherent when it departs
from the median of its neighbours by more than `threshold` times their own spread.
It adapts to shear: neighbours that disagree among themselves tolerate more.
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage


def _neighbourhoods(field: np.ndarray, radius: int, edge: str) -> np.ndarray:
    """(H, W, k) neighbour values of each node, the node itself excluded.

    edge="nan": off-grid neighbours are NaN; edge="odd": they are extrapolated linearly
    (point reflection), so that a node on the grid's edge sees a balanced neighbourhood.
    """
    size = 2 * radius + 1
    if edge == "odd":
        padded = np.pad(field, radius, mode="reflect", reflect_type="odd")
    else:
        padded = np.pad(field, radius, constant_values=np.nan)
    windows = sliding_window_view(padded, (size, size)).reshape(*field.shape, size * size)
    centre = (size * size) // 2
    return np.delete(windows, centre, axis=2)


def incoherent(
    rows: np.ndarray,
    cols: np.ndarray,
    threshold: float = 2.0,
    noise_px: float = 0.1,
    radius: int = 1,
    min_neighbours: int = 3,
) -> np.ndarray:
    """Boolean grid: True where a valid vector fails the normalized median test.

    rows, cols: displacement grids in pixels, NaN where there is no vector. A vector with
    fewer than `min_neighbours` valid neighbours cannot be confirmed and fails too: lone
    matches are far more often chance peaks than real motion.
    """
    result = np.zeros(rows.shape, dtype=bool)
    for field in (rows, cols):
        enough = (
            np.sum(np.isfinite(_neighbourhoods(field, radius, "nan")), axis=2) >= min_neighbours
        )
        nb = _neighbourhoods(field, radius, "odd")
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN neighbourhoods
            median = np.nanmedian(nb, axis=2)
            spread = np.nanmedian(np.abs(nb - median[..., None]), axis=2)
            score = np.abs(field - median) / (spread + noise_px)
        result |= np.isfinite(field) & (~enough | (score > threshold))
    return result


def fill_small_gaps(
    rows: np.ndarray, cols: np.ndarray, fillable: np.ndarray, max_gap: int
) -> np.ndarray:
    """Fill gaps of at most `max_gap` nodes in place, by a Gaussian-weighted mean of the
    valid vectors around them. Only nodes in `fillable` are filled; returns the mask of
    filled nodes (ITS_LIVE's interp_mask)."""
    valid = np.isfinite(rows) & np.isfinite(cols)
    labels, count = ndimage.label(~valid & fillable)
    if count == 0:
        return np.zeros(rows.shape, dtype=bool)
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, count + 1))
    small = np.zeros(count + 1, dtype=bool)
    small[1:] = sizes <= max_gap
    target = small[labels]
    weight = ndimage.gaussian_filter(valid.astype(np.float64), 1.0, mode="constant")
    filled = np.zeros(rows.shape, dtype=bool)
    for field in (rows, cols):
        total = ndimage.gaussian_filter(np.where(valid, field, 0.0), 1.0, mode="constant")
        with np.errstate(invalid="ignore", divide="ignore"):
            estimate = total / weight
        ok = target & (weight > 0.05) & np.isfinite(estimate)
        field[ok] = estimate[ok]
        filled |= ok
    return filled
