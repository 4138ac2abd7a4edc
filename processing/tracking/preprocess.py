"""Image pre-processing before correlation, as autoRIFT offers it.

Filters are NaN-aware (normalized convolution): nodata and cloud holes stay NaN and do
not bleed into their neighbours' statistics.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
from scipy import fft, ndimage


class ImageFilter(StrEnum):
    """Pre-filter applied to both images of a pair."""

    NONE = "none"
    HIGH_PASS = "hps"  # subtract a local (box) mean: removes illumination gradients
    WALLIS = "wallis"  # local mean and contrast normalization: also evens out contrast


def _local_mean(values: np.ndarray, valid: np.ndarray, width: int) -> np.ndarray:
    if valid.all():  # no hole: only the frame edge needs the normalization
        total = ndimage.uniform_filter(values, width, mode="constant")
        weight = np.outer(
            _edge_weights(values.shape[0], width), _edge_weights(values.shape[1], width)
        )
    else:
        total = ndimage.uniform_filter(np.where(valid, values, 0.0), width, mode="constant")
        weight = ndimage.uniform_filter(valid.astype(np.float32), width, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / weight


def _edge_weights(n: int, width: int) -> np.ndarray:
    return ndimage.uniform_filter1d(np.ones(n, np.float32), width, mode="constant")


def prefilter(image: np.ndarray, kind: ImageFilter, width: int) -> np.ndarray:
    """Return the filtered image (float32); NaN where the input is NaN."""
    image = image.astype(np.float32, copy=False)
    if kind is ImageFilter.NONE:
        return image
    valid = np.isfinite(image)
    whole = valid.all()  # the usual case: no copies to mask holes
    values = image if whole else np.where(valid, image, 0.0).astype(np.float32)
    anomaly = values - _local_mean(values, valid, width)
    if kind is ImageFilter.WALLIS:
        spread = np.sqrt(np.maximum(_local_mean(anomaly * anomaly, valid, width), 0.0))
        floor = 1e-3 * float(np.nanmedian(spread)) if valid.any() else 1.0
        anomaly = anomaly / np.maximum(spread, max(floor, 1e-12))
    if whole:
        return anomaly.astype(np.float32, copy=False)
    return np.where(valid, anomaly, np.nan).astype(np.float32)


def wiener_denoise(image: np.ndarray, skip_below: float = 0.01) -> np.ndarray:
    """Suppress white sensor noise with a Wiener filter built from the image's own spectrum.

    The noise floor is the power in the outermost frequency ring; the gain at each radial
    frequency is signal / (signal + noise). Where the noise is negligible (its variance
    below `skip_below` of the image's, judged on a central crop) the image is returned
    unchanged. Without this, heavy noise swamps the gradients of the sub-pixel fit.
    """
    valid = np.isfinite(image)
    if not valid.any():
        return image
    h, w = image.shape
    crop = image[max(h // 2 - 128, 0) : h // 2 + 128, max(w // 2 - 128, 0) : w // 2 + 128]
    crop_valid = np.isfinite(crop)
    if crop_valid.mean() > 0.5:
        _, _, noise, total = _spectrum(crop, crop_valid)
        if noise * crop.size <= skip_below * total:
            return image
    spectrum, freq, noise, _ = _spectrum(image, valid)
    power = (spectrum.real**2 + spectrum.imag**2) / image.size
    ring = np.minimum((freq / 0.01).astype(np.int64), 71)
    radial = np.bincount(ring.ravel(), power.ravel()) / np.maximum(np.bincount(ring.ravel()), 1)
    signal = np.maximum(radial - noise, 0.0)
    gain = ndimage.uniform_filter1d(signal / (signal + noise), 3, mode="nearest")
    filtered = fft.irfft2(spectrum * gain[ring].astype(np.float32), s=image.shape, workers=1)
    return np.where(valid, filtered, np.nan).astype(np.float32)


def _spectrum(image: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Real FFT of the mean-removed image, its radial frequencies, the white-noise power per
    frequency (median power beyond 0.45 cycles/pixel) and the total power."""
    values = np.where(valid, image - np.mean(image[valid]), 0.0).astype(np.float32)
    spectrum = fft.rfft2(values, workers=1)
    power = (spectrum.real**2 + spectrum.imag**2) / values.size
    freq = np.hypot(
        np.fft.fftfreq(values.shape[0])[:, None], np.fft.rfftfreq(values.shape[1])[None, :]
    )
    outer = freq > 0.45
    noise = float(np.median(power[outer])) if outer.any() else 0.0
    return spectrum, freq, noise, float(np.sum(values * values))
