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
from scipy import interpolate, ndimage
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components


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


def second_motions(
    rows: np.ndarray, cols: np.ndarray, max_jump_px: float, reach: int = 2
) -> np.ndarray:
    """Boolean grid: True on vectors that belong to a second coherent motion (a cloud
    drifting over the ground, say), not to the surface's own flow.

    The surface's displacement is continuous: neighbouring nodes differ by less than
    `max_jump_px`, even across shear margins. Nodes linked by such steps (up to `reach`
    nodes apart, so that small gaps do not cut a region) form regions; the
    largest is the surface. Another region is a second motion where it meets the surface
    across a jump too large for the nodes between them, i.e. where the evidence is
    there; regions farther from the surface than `reach` nodes are left alone.
    """
    ny, nx = rows.shape
    valid = np.isfinite(rows) & np.isfinite(cols)
    index = np.arange(ny * nx).reshape(ny, nx)
    near, far = [], []
    for dr in range(reach + 1):
        for dc in range(-reach, reach + 1):
            if dr == 0 and dc <= 0:
                continue
            a = (slice(0, ny - dr), slice(max(0, -dc), nx - max(0, dc)))
            b = (slice(dr, ny), slice(max(0, dc), nx - max(0, -dc)))
            both = valid[a] & valid[b]
            with np.errstate(invalid="ignore"):
                jump = np.hypot(rows[a] - rows[b], cols[a] - cols[b])
            steps = max(abs(dr), abs(dc))
            # a link over a gap allows no more than one step does: a second motion's
            # region must not reach the surface through the nodes between them
            linked = both & (jump <= max_jump_px)
            near.append((index[a][linked], index[b][linked]))
            cut = both & (jump > max_jump_px * steps)  # too far apart even over a gap
            far.append((index[a][cut], index[b][cut]))
    i = np.concatenate([p[0] for p in near])
    j = np.concatenate([p[1] for p in near])
    graph = coo_array((np.ones(i.size), (i, j)), shape=(ny * nx, ny * nx))
    _, labels = connected_components(graph, directed=False)
    labels = np.where(valid.ravel(), labels, -1)
    if not valid.any():
        return np.zeros((ny, nx), dtype=bool)
    surface = np.bincount(labels[labels >= 0]).argmax()
    # regions that border the surface across a jump
    i = np.concatenate([p[0] for p in far])
    j = np.concatenate([p[1] for p in far])
    li, lj = labels[i], labels[j]
    second = set(np.concatenate([lj[li == surface], li[lj == surface]]).tolist())
    second.update(_islands(rows, cols, labels.reshape(ny, nx), surface, max_jump_px))
    second.discard(surface)
    return np.isin(labels, list(second)).reshape(ny, nx)


def _islands(
    rows: np.ndarray, cols: np.ndarray, labels: np.ndarray, surface: int, max_jump_px: float
) -> list[int]:
    """Regions cut off from the surface by a gap, much smaller than it, whose motion
    departs by more than `max_jump_px` from the surface's own field interpolated across
    them (between surface vectors on every side: never extrapolated)."""
    counts = np.bincount(labels[labels >= 0])
    small = [k for k in np.flatnonzero(counts) if k != surface and counts[k] * 4 <= counts[surface]]
    if not small or counts[surface] < 3:
        return []
    on_surface = labels == surface
    across = interpolate.LinearNDInterpolator(
        np.argwhere(on_surface), np.stack([rows[on_surface], cols[on_surface]], axis=1)
    )
    out = []
    for k in small:
        inside = labels == k
        expected = across(np.argwhere(inside))
        jump = np.hypot(rows[inside] - expected[:, 0], cols[inside] - expected[:, 1])
        if np.all(np.isfinite(jump)) and np.median(jump) > max_jump_px:
            out.append(int(k))
    return out


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
