"""Sub-pixel location of the correlation peak, three ways, all batched over chips.

- `peak_fit`: a Gaussian fitted through the peak and its four neighbours (fast, but
  biased toward whole pixels: "pixel locking").
- `peak_oversample`: the NCC surface around the peak interpolated by a cubic spline on a
  1/`factor` pixel grid (autoRIFT likewise oversamples around the peak).
- `gauss_newton`: the continuous maximum of the zero-normalized cross-correlation,
  found by inverse-compositional Gauss-Newton on cubic B-spline images (as digital
  image correlation does). It also yields each vector's precision from the residual.

`benchmarks/tracker_accuracy.py` measures which is more accurate and faster; the
tracker's default is the winner (see BENCHMARKS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

# Cubic B-spline weights at a node (f = 0): value and first derivative.
_VALUE_AT_NODE = np.array([1 / 6, 4 / 6, 1 / 6, 0.0], dtype=np.float32)
_SLOPE_AT_NODE = np.array([-0.5, 0.0, 0.5, 0.0], dtype=np.float32)


def bspline_weights(frac: np.ndarray) -> np.ndarray:
    """Cubic B-spline weights (N, 4) for taps at -1, 0, 1, 2 around floor(position)."""
    f = frac.astype(np.float32)[:, None]
    f2, f3 = f * f, f * f * f
    return np.concatenate(
        [(1 - f) ** 3 / 6, (3 * f3 - 6 * f2 + 4) / 6, (-3 * f3 + 3 * f2 + 3 * f + 1) / 6, f3 / 6],
        axis=1,
    )


def _patches(image: np.ndarray, top: np.ndarray, left: np.ndarray, size: int) -> np.ndarray:
    """(N, size, size) copies of image[top:top+size, left:left+size]; indices are clipped."""
    views = sliding_window_view(image, (size, size))
    rows = np.clip(top, 0, views.shape[0] - 1)
    cols = np.clip(left, 0, views.shape[1] - 1)
    return views[rows, cols]


def _row_pass(patches: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-chip 4-tap kernel along rows: (N, c+3, W) -> (N, c, W)."""
    chip = patches.shape[1] - 3
    out = weights[:, 0, None, None] * patches[:, :chip]
    for k in range(1, 4):
        out += weights[:, k, None, None] * patches[:, k : k + chip]
    return out


def _col_pass(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-chip 4-tap kernel along columns: (N, c, c+3) -> (N, c, c)."""
    chip = rows.shape[2] - 3
    out = weights[:, 0, None, None] * rows[:, :, :chip]
    for k in range(1, 4):
        out += weights[:, k, None, None] * rows[:, :, k : k + chip]
    return out


def _separable(patches: np.ndarray, row_w: np.ndarray, col_w: np.ndarray) -> np.ndarray:
    """Apply per-chip 4-tap kernels along rows then columns: (N, c+3, c+3) -> (N, c, c)."""
    return _col_pass(_row_pass(patches, row_w), col_w)


def bspline_slopes(frac: np.ndarray) -> np.ndarray:
    """Derivatives of the cubic B-spline weights (N, 4) with respect to position."""
    f = frac.astype(np.float32)[:, None]
    return np.concatenate(
        [-((1 - f) ** 2) / 2, (3 * f * f - 4 * f) / 2, (-3 * f * f + 2 * f + 1) / 2, f * f / 2],
        axis=1,
    )


def sample_spline(
    coef: np.ndarray,
    top: np.ndarray,
    left: np.ndarray,
    chip: int,
    shift: np.ndarray,
    gradients: bool = True,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Values (and row/column gradients) of the cubic spline with coefficients `coef` on
    each chip grid moved by `shift`.

    Chip n covers rows top[n]..top[n]+chip-1 (likewise columns); shift (N, 2) is (rows, cols).
    """
    whole = np.floor(shift).astype(np.int64)
    frac = shift - whole
    patches = _patches(coef, top + whole[:, 0] - 1, left + whole[:, 1] - 1, chip + 3)
    w_c = bspline_weights(frac[:, 1])
    smooth_rows = _row_pass(patches, bspline_weights(frac[:, 0]))
    values = _col_pass(smooth_rows, w_c)
    if not gradients:
        return values, None, None
    grad_c = _col_pass(smooth_rows, bspline_slopes(frac[:, 1]))
    grad_r = _col_pass(_row_pass(patches, bspline_slopes(frac[:, 0])), w_c)
    return values, grad_r, grad_c


def _normalise(
    values: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Zero-mean, unit-norm copies of each chip, and the norms before scaling; with 1/0
    `weights`, over the weighted pixels only (the others come out 0)."""
    if weights is None:
        centred = values - values.mean(axis=(1, 2), keepdims=True)
    else:
        count = np.maximum(weights.sum(axis=(1, 2), keepdims=True), 1.0)
        centred = (values - (values * weights).sum(axis=(1, 2), keepdims=True) / count) * weights
    norm = np.sqrt(np.einsum("nij,nij->n", centred, centred))
    return centred / np.maximum(norm, 1e-12)[:, None, None], norm


@dataclass
class Refinement:
    """Sub-pixel displacement (rows, cols) in pixels with its 1-sigma precision and ZNCC."""

    shift: np.ndarray
    sigma: np.ndarray
    zncc: np.ndarray
    converged: np.ndarray


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("nij,nij->n", a, b)


def gauss_newton(
    ref_image: np.ndarray,
    ref_coef: np.ndarray,
    sec_coef: np.ndarray,
    top: np.ndarray,
    left: np.ndarray,
    chip: int,
    start: np.ndarray,
    iterations: int = 4,
    weights: np.ndarray | None = None,
    tolerance: float = 5e-3,
) -> Refinement:
    """Maximise ZNCC over a continuous translation, starting at `start` (N, 2).

    weights: optional (N, chip, chip) 1/0 masks of the pixels to use (masked chips); the
    correlation, its gradients and the precision then count only those.

    Each step is a Newton step on the correlation whose curvature is the *cross* product
    of template and warped-image gradients: their noises are independent, so it measures
    the signal alone, and the steps do not shrink when noise inflates the gradients.
    The precision is the matching sandwich covariance, sigma_r^2 Hc^-1 H Hc^-1, which
    reduces to the usual sigma_r^2 H^-1 on clean images.
    With iterations=0 it only evaluates `start`: the ZNCC and the precision there.
    """
    n = len(top)
    ref_patches = _patches(ref_coef, top - 1, left - 1, chip + 3)
    value_w = np.broadcast_to(_VALUE_AT_NODE, (n, 4))
    slope_w = np.broadcast_to(_SLOPE_AT_NODE, (n, 4))
    # an interpolating spline passes through the data: at the nodes it is the image itself
    template, norm = _normalise(_patches(ref_image, top, left, chip), weights)
    scale = (1.0 / np.maximum(norm, 1e-12))[:, None, None]
    if weights is not None:
        scale = scale * weights
    tr = _separable(ref_patches, slope_w, value_w) * scale
    tc = _separable(ref_patches, value_w, slope_w) * scale

    def evaluate(idx: np.ndarray, shift: np.ndarray, gradients: bool = True):
        values, wr, wc = sample_spline(sec_coef, top[idx], left[idx], chip, shift, gradients)
        w = None if weights is None else weights[idx]
        warped, wnorm = _normalise(values, w)
        if not gradients:
            return warped, None
        wscale = (1.0 / np.maximum(wnorm, 1e-12))[:, None, None]
        if w is not None:
            wscale = wscale * w
        wr, wc = wr * wscale, wc * wscale
        a, b = tr[idx], tc[idx]
        off = 0.5 * (_dot(a, wc) + _dot(b, wr))
        cross = np.stack(
            [np.stack([_dot(a, wr), off], axis=1), np.stack([off, _dot(b, wc)], axis=1)], axis=1
        )
        return warped, cross

    # The curvature barely changes within the last pixel: it is measured once, at the
    # start, and serves every step and the final precision.
    everything = np.arange(n)
    warped, cross = evaluate(everything, start.astype(np.float64))
    good = (np.linalg.det(cross) > 1e-12) & (cross[:, 0, 0] > 0)
    inverse = np.full((n, 2, 2), np.nan)
    inverse[good] = np.linalg.inv(cross[good])
    shift = start.astype(np.float64).copy()
    active = good & (iterations > 0)
    for it in range(iterations):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        current = warped[idx] if it == 0 else evaluate(idx, shift[idx], gradients=False)[0]
        err = current - template[idx]
        score = np.stack([_dot(tr[idx], err), _dot(tc[idx], err)], axis=1)
        step = np.clip(np.einsum("nij,nj->ni", inverse[idx], score), -1.0, 1.0)
        shift[idx] -= step
        active[idx[~(np.abs(step).sum(axis=1) > tolerance)]] = False
    if iterations > 0:
        warped = evaluate(everything, shift, gradients=False)[0]

    err = warped - template
    used = chip * chip if weights is None else weights.sum(axis=(1, 2))
    var = _dot(err, err) / np.maximum(used - 3, 1)
    plain = np.stack(
        [
            np.stack([_dot(tr, tr), _dot(tr, tc)], axis=1),
            np.stack([_dot(tr, tc), _dot(tc, tc)], axis=1),
        ],
        axis=1,
    )
    cov = var[:, None, None] * (inverse @ plain @ inverse)
    sigma = np.sqrt(np.abs(np.diagonal(cov, axis1=1, axis2=2)))
    zncc = 1.0 - 0.5 * _dot(err, err)
    return Refinement(
        shift, sigma, zncc.astype(np.float32), good & np.all(np.isfinite(shift), axis=1)
    )


def _neighbours(surface: np.ndarray, peak: np.ndarray, radius: int) -> np.ndarray:
    """(N, 2r+1, 2r+1) neighbourhoods of each surface around its peak (edge-clipped)."""
    size = 2 * radius + 1
    padded = np.pad(surface, ((0, 0), (radius, radius), (radius, radius)), mode="edge")
    views = sliding_window_view(padded, (size, size), axis=(1, 2))
    return views[np.arange(len(peak)), peak[:, 0], peak[:, 1]]


def peak_fit(surface: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """Gaussian 3-point fit in each axis; parabolic where a value is not positive."""
    nb = _neighbours(surface, peak, 1).astype(np.float64)
    offsets = []
    for lo, mid, hi in (
        (nb[:, 0, 1], nb[:, 1, 1], nb[:, 2, 1]),
        (nb[:, 1, 0], nb[:, 1, 1], nb[:, 1, 2]),
    ):
        positive = (lo > 0) & (mid > 0) & (hi > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            llo, lmid, lhi = (np.log(np.where(positive, v, 1.0)) for v in (lo, mid, hi))
            gauss = (llo - lhi) / (2 * (llo - 2 * lmid + lhi))
            parab = (lo - hi) / (2 * (lo - 2 * mid + hi))
        off = np.where(positive, gauss, parab)
        offsets.append(np.clip(np.nan_to_num(off), -0.5, 0.5))
    return peak + np.stack(offsets, axis=1)


def _bspline_matrix(radius: int, factor: int) -> np.ndarray:
    """Cubic B-spline basis (Z x 2r+1) at offsets -1..1 step 1/factor around the centre."""
    offsets = np.arange(-factor, factor + 1) / factor
    x = np.abs(offsets[:, None] + radius - np.arange(2 * radius + 1)[None, :])
    return np.where(x < 1, 2 / 3 - x**2 + x**3 / 2, np.where(x < 2, (2 - x) ** 3 / 6, 0.0))


def peak_oversample(
    surface: np.ndarray, peak: np.ndarray, radius: int = 3, factor: int = 16
) -> np.ndarray:
    """Oversample the surface near its peak by `factor` (cubic spline through the
    (2r+1)^2 samples around it) and take the finer maximum."""
    nb = _neighbours(surface, peak, radius).astype(np.float64)
    coef = ndimage.spline_filter1d(nb, order=3, axis=1, mode="mirror")
    coef = ndimage.spline_filter1d(coef, order=3, axis=2, mode="mirror")
    basis = _bspline_matrix(radius, factor)
    fine = basis @ coef @ basis.T  # (N, Z, Z)
    flat = fine.reshape(len(peak), -1).argmax(axis=1)
    row, col = np.divmod(flat, fine.shape[2])
    inner = np.clip(np.stack([row, col], axis=1), 1, fine.shape[1] - 2)
    refined = peak_fit(fine, inner)  # last 1/factor pixel by a fit on the fine grid
    return peak + (refined - factor) / factor
