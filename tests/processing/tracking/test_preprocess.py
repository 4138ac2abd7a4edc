from __future__ import annotations

import numpy as np
import pytest

from glacierflow.processing import synthetic
from glacierflow.processing.tracking.preprocess import ImageFilter, prefilter, wiener_denoise


@pytest.mark.parametrize("kind", [ImageFilter.HIGH_PASS, ImageFilter.WALLIS])
def test_filters_remove_an_illumination_ramp_and_keep_holes(kind: ImageFilter) -> None:
    tex = synthetic.fractal_texture((200, 200), np.random.default_rng(0))
    ramp = np.linspace(0, 50, 200, dtype=np.float32)[None, :]
    image = tex + ramp
    image[50:60, 50:60] = np.nan
    out = prefilter(image, kind, 21)
    assert np.isnan(out[50:60, 50:60]).all()
    assert np.isfinite(out[~np.isnan(image)]).all()
    inner = out[30:170, 30:170]
    assert abs(np.nanmean(inner[:, :40]) - np.nanmean(inner[:, -40:])) < 0.2


def test_no_filter_is_identity() -> None:
    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_array_equal(prefilter(image, ImageFilter.NONE, 21), image)


def test_wiener_removes_noise_from_a_noisy_image() -> None:
    rng = np.random.default_rng(1)
    clean = synthetic.fractal_texture((256, 256), rng)
    noisy = clean + rng.standard_normal(clean.shape).astype(np.float32)
    denoised = wiener_denoise(noisy)
    assert np.std(denoised - clean) < 0.6 * np.std(noisy - clean)


def test_wiener_leaves_a_clean_image_alone() -> None:
    clean = synthetic.fractal_texture((256, 256), np.random.default_rng(2))
    assert wiener_denoise(clean) is clean
