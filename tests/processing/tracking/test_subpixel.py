"""Sub-pixel estimators on chips with a known, exactly band-limited shift."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from glacierflow.processing import synthetic
from glacierflow.processing.tracking.correlation import ncc_surfaces
from glacierflow.processing.tracking.subpixel import gauss_newton, peak_fit, peak_oversample

SHIFT = np.array([0.37, -0.62])  # rows, cols


@pytest.fixture(scope="module")
def shifted() -> tuple[np.ndarray, np.ndarray]:
    """A periodic texture and its exact Fourier shift by SHIFT."""
    tex = synthetic.fractal_texture((256, 256), np.random.default_rng(0))
    fy = np.fft.fftfreq(256)[:, None]
    fx = np.fft.rfftfreq(256)[None, :]
    phase = np.exp(-2j * np.pi * (fy * SHIFT[0] + fx * SHIFT[1]))
    moved = np.fft.irfft2(np.fft.rfft2(tex) * phase, s=tex.shape).astype(np.float32)
    return tex, moved


def _chips(ref: np.ndarray, chip: int) -> tuple[np.ndarray, np.ndarray]:
    corners = np.arange(40, 200, 24)
    top, left = (a.ravel() for a in np.meshgrid(corners, corners, indexing="ij"))
    return top, left


def test_gauss_newton_recovers_the_shift(shifted) -> None:
    ref, sec = shifted
    top, left = _chips(ref, 16)
    coef = [
        ndimage.spline_filter(im, order=3, mode="mirror", output=np.float32) for im in (ref, sec)
    ]
    start = np.zeros((len(top), 2))
    fit = gauss_newton(ref, coef[0], coef[1], top, left, 16, start, iterations=6)
    err = np.hypot(*(fit.shift - SHIFT).T)
    assert fit.converged.all()
    assert np.sqrt(np.mean(err**2)) < 0.01
    assert np.all(fit.zncc > 0.99)
    # the precision estimate is of the right size: small, and not absurdly small
    assert np.all((fit.sigma > 1e-5) & (fit.sigma < 0.05))


def test_gauss_newton_with_zero_iterations_only_evaluates(shifted) -> None:
    ref, sec = shifted
    top, left = _chips(ref, 16)
    coef = [
        ndimage.spline_filter(im, order=3, mode="mirror", output=np.float32) for im in (ref, sec)
    ]
    start = np.tile(SHIFT, (len(top), 1))
    fit = gauss_newton(ref, coef[0], coef[1], top, left, 16, start, iterations=0)
    np.testing.assert_array_equal(fit.shift, start)
    assert np.all(fit.zncc > 0.99)


def test_gauss_newton_ignores_masked_pixels(shifted) -> None:
    """A third of each SEC chip unusable, filled with the filtered images' mean (0) as the
    tracker fills holes: weighted out, it changes nothing."""
    ref, sec = shifted
    corners = np.arange(40, 200, 48)  # chips apart: each blob lies in one chip only
    top, left = (a.ravel() for a in np.meshgrid(corners, corners, indexing="ij"))
    clouded = sec.copy()
    weights = np.ones((len(top), 32, 32), np.float32)
    for k, (t, c) in enumerate(zip(top, left, strict=True)):
        clouded[t + 4 : t + 16, c + 6 : c + 20] = 0.0
        weights[k, 2:18, 4:22] = 0.0  # with the margin the splines need
    fits = {}
    for name, image, w in (("clean", sec, None), ("masked", clouded, weights)):
        coef = [ndimage.spline_filter(im, order=3, mode="mirror") for im in (ref, image)]
        start = np.zeros((len(top), 2))
        fits[name] = gauss_newton(ref, *coef, top, left, 32, start, 6, w)
    unweighted = gauss_newton(ref, *coef, top, left, 32, np.zeros((len(top), 2)), 6)
    masked = fits["masked"]
    assert masked.converged.all()
    assert np.sqrt(np.mean(np.sum((masked.shift - SHIFT) ** 2, axis=1))) < 0.01
    assert np.all(masked.zncc > 0.99)
    assert np.all(masked.sigma < 0.05)
    # without the weights the hole drags the fit away
    assert np.sqrt(np.mean(np.sum((unweighted.shift - SHIFT) ** 2, axis=1))) > 0.05


@pytest.mark.parametrize("estimator", [peak_fit, peak_oversample])
def test_surface_estimators_land_within_a_fifth_of_a_pixel(shifted, estimator) -> None:
    ref, sec = shifted
    top, left = _chips(ref, 16)
    radius = 4
    templates = np.stack([ref[t : t + 16, c : c + 16] for t, c in zip(top, left, strict=True)])
    windows = np.stack(
        [
            sec[t - radius : t + 16 + radius, c - radius : c + 16 + radius]
            for t, c in zip(top, left, strict=True)
        ]
    )
    surfaces = ncc_surfaces(templates, windows)
    flat = surfaces.reshape(len(top), -1).argmax(axis=1)
    peak = np.stack(np.divmod(flat, surfaces.shape[2]), axis=1)
    found = estimator(surfaces, peak) - radius
    err = np.hypot(*(found - SHIFT).T)
    assert np.all(err < 0.2)
