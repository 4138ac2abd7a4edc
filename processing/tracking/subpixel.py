"""Sub-pixel location of the correlation peak, three ways, all batched over chips.

- `peak_fit`: a Gaussian fitted through the peak and its four neighbours (fast, but
  biased toward whole pixels: "pixel locking").
- `peak_oversample`: the NCC surface around the peak interpolated with the Dirichlet
  (periodic sinc) kernel on a 1/`factor` pixel grid, as autoRIFT oversamples it.
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


def _separable(patches: np.ndarray, row_w: np.ndarray, col_w: np.ndarray) -> np.ndarray:
    """Apply per-chip 4-tap kernels along rows then columns: (N, c+3, c+3) -> (N, c, c)."""
    chip = patches.shape[1] - 3
    rows = sum(row_w[:, k, None, None] * patches[:, k : k + chip, :] for k in range(4))
    return sum(col_w[:, k, None, None] * rows[:, :, k : k + chip] for k in range(4))


def bspline_slopes(frac: np.ndarray) -> np.ndarray:
    """Derivatives of the cubic B-spline weights (N, 4) with respect to position."""
    f = frac.astype(np.float32)[:, None]
    return np.concatenate(
        [-((1 - f) ** 2) / 2, (3 * f * f - 4 * f) / 2, (-3 * f * f + 2 * f + 1) / 2, f * f / 2],
        axis=1,
    )


def sample_spline(
    coef: np.ndarray, top: np.ndarray, left: np.ndarray, chip: int, shift: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values and row/column gradients of the cubic spline with coefficients `coef` on each
    chip grid moved by `shift`.

    Chip n covers rows top[n]..top[n]+chip-1 (likewise columns); shift (N, 2) is (rows, cols).
    """
    whole = np.floor(shift).astype(np.int64)
    frac = shift - whole
    patches = _patches(coef, top + whole[:, 0] - 1, left + whole[:, 1] - 1, chip + 3)
    w_r, w_c = bspline_weights(frac[:, 0]), bspline_weights(frac[:, 1])
    values = _separable(patches, w_r, w_c)
    grad_r = _separable(patches, bspline_slopes(frac[:, 0]), w_c)
    grad_c = _separable(patches, w_r, bspline_slopes(frac[:, 1]))
    return values, grad_r, grad_c


def _normalise(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero-mean, unit-norm copies of each chip, and the norms before scaling."""
    centred = values - values.mean(axis=(1, 2), keepdims=True)
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
    ref_coef: np.ndarray,
    sec_coef: np.ndarray,
    top: np.ndarray,
    left: np.ndarray,
    chip: int,
    start: np.ndarray,
    iterations: int = 6,
    tolerance: float = 2e-3,
) -> Refinement:
    """Maximise ZNCC over a continuous translation, starting at `start` (N, 2).

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
    template, norm = _normalise(_separable(ref_patches, value_w, value_w))
    scale = (1.0 / np.maximum(norm, 1e-12))[:, None, None]
    tr = _separable(ref_patches, slope_w, value_w) * scale
    tc = _separable(ref_patches, value_w, slope_w) * scale

    def evaluate(idx: np.ndarray, shift: np.ndarray):
        values, wr, wc = sample_spline(sec_coef, top[idx], left[idx], chip, shift)
        warped, wnorm = _normalise(values)
        wscale = (1.0 / np.maximum(wnorm, 1e-12))[:, None, None]
        wr, wc = wr * wscale, wc * wscale
        a, b = tr[idx], tc[idx]
        cross = np.stack(
            [
                np.stack([_dot(a, wr), 0.5 * (_dot(a, wc) + _dot(b, wr))], axis=1),
                np.stack([0.5 * (_dot(a, wc) + _dot(b, wr)), _dot(b, wc)], axis=1),
            ],
            axis=1,
        )
        return warped, cross

    shift = start.astype(np.float64).copy()
    active = np.full(n, iterations > 0)
    for _ in range(iterations):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        warped, cross = evaluate(idx, shift[idx])
        err = warped - template[idx]
        score = np.stack([_dot(tr[idx], err), _dot(tc[idx], err)], axis=1)
        det = np.linalg.det(cross)
        usable = (det > 1e-12) & (cross[:, 0, 0] > 0)
        step = np.full((idx.size, 2), np.nan)
        step[usable] = np.linalg.solve(cross[usable], score[usable, :, None])[..., 0]
        step = np.clip(step, -1.0, 1.0)
        shift[idx] -= step
        done = ~(np.abs(step).sum(axis=1) > tolerance)  # NaN counts as done
        active[idx[done]] = False

    everything = np.arange(n)
    finite = np.all(np.isfinite(shift), axis=1)
    safe = np.where(finite[:, None], shift, start)
    warped, cross = evaluate(everything, safe)
    err = warped - template
    var = _dot(err, err) / max(chip * chip - 3, 1)
    plain = np.stack(
        [
            np.stack([_dot(tr, tr), _dot(tr, tc)], axis=1),
            np.stack([_dot(tr, tc), _dot(tc, tc)], axis=1),
        ],
        axis=1,
    )
    good = finite & (np.linalg.det(cross) > 1e-12) & (cross[:, 0, 0] > 0)
    sigma = np.full((n, 2), np.nan)
    if good.any():
        inv = np.linalg.inv(cross[good])
        cov = var[good, None, None] * (inv @ plain[good] @ inv)
        sigma[good] = np.sqrt(np.abs(np.diagonal(cov, axis1=1, axis2=2)))
    zncc = 1.0 - 0.5 * _dot(err, err)
    return Refinement(shift, sigma, zncc.astype(np.float32), good)


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
    for lo, mid, hi in ((nb[:, 0, 1], nb[:, 1, 1], nb[:, 2, 1]), (nb[:, 1, 0], nb[:, 1, 1], nb[:, 1, 2])):
        positive = (lo > 0) & (mid > 0) & (hi > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            llo, lmid, lhi = (np.log(np.where(positive, v, 1.0)) for v in (lo, mid, hi))
            gauss = (llo - lhi) / (2 * (llo - 2 * lmid + lhi))
            parab = (lo - hi) / (2 * (lo - 2 * mid + hi))
        off = np.where(positive, gauss, parab)
        offsets.append(np.clip(np.nan_to_num(off), -0.5, 0.5))
    return peak + np.stack(offsets, axis=1)


def _dirichlet_matrix(radius: int, factor: int) -> np.ndarray:
    """Interpolation matrix from 2r+1 samples to offsets -1..1 step 1/factor (periodic sinc)."""
    size = 2 * radius + 1
    offsets = np.arange(-factor, factor + 1) / factor
    x = offsets[:, None] - (np.arange(size) - radius)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        kernel = np.sin(np.pi * x) / (size * np.sin(np.pi * x / size))
    kernel[np.isclose(x, 0.0)] = 1.0
    return kernel


def peak_oversample(
    surface: np.ndarray, peak: np.ndarray, radius: int = 3, factor: int = 16
) -> np.ndarray:
    """Oversample the surface near its peak by `factor` and take the finer maximum."""
    nb = _neighbours(surface, peak, radius).astype(np.float64)
    kernel = _dirichlet_matrix(radius, factor)
    fine = kernel @ nb @ kernel.T  # (N, Z, Z)
    flat = fine.reshape(len(peak), -1).argmax(axis=1)
    row, col = np.divmod(flat, fine.shape[2])
    inner = np.clip(np.stack([row, col], axis=1), 1, fine.shape[1] - 2)
    refined = peak_fit(fine, inner)  # last 1/factor pixel by a fit on the fine grid
    return peak + (refined - factor) / factor
