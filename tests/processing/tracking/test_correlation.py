from __future__ import annotations

import numpy as np

from glacierflow.processing.tracking.correlation import (
    BoxVariance,
    box_variance,
    load_wisdom,
    masked_ncc_surfaces,
    ncc_surfaces,
    save_wisdom,
)


def _direct_ncc(template: np.ndarray, window: np.ndarray) -> np.ndarray:
    c = template.shape[0]
    n = window.shape[0] - c + 1
    t = template - template.mean()
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            w = window[i : i + c, j : j + c]
            w = w - w.mean()
            out[i, j] = (t * w).sum() / np.sqrt((t * t).sum() * (w * w).sum())
    return out


def test_matches_direct_computation() -> None:
    rng = np.random.default_rng(0)
    windows = rng.standard_normal((3, 30, 30)).astype(np.float32)
    templates = windows[:, 5:17, 9:21] * 2.0 + 1.0  # gain and offset must not matter
    surfaces = ncc_surfaces(templates, windows)
    assert surfaces.shape == (3, 19, 19)
    for k in range(3):
        np.testing.assert_allclose(surfaces[k], _direct_ncc(templates[k], windows[k]), atol=2e-4)
        assert np.unravel_index(surfaces[k].argmax(), surfaces[k].shape) == (5, 9)
        assert surfaces[k, 5, 9] > 0.9999


def test_more_chips_than_one_batch() -> None:
    rng = np.random.default_rng(1)
    windows = rng.standard_normal((300, 24, 24)).astype(np.float32)
    surfaces = ncc_surfaces(windows[:, 4:12, 6:14].copy(), windows)
    peaks = surfaces.reshape(300, -1).argmax(axis=1)
    assert np.all(peaks == 4 * 17 + 6)


def test_flat_template_gives_zero_not_nan() -> None:
    windows = np.random.default_rng(2).standard_normal((2, 20, 20)).astype(np.float32)
    templates = np.ones((2, 8, 8), dtype=np.float32)
    surfaces = ncc_surfaces(templates, windows)
    assert np.all(surfaces == 0)


def test_wisdom_round_trip(tmp_path) -> None:
    path = tmp_path / "wisdom.json"
    ncc_surfaces(np.ones((1, 4, 4), np.float32), np.ones((1, 9, 9), np.float32))
    save_wisdom(path)
    assert path.stat().st_size > 0
    load_wisdom(path)
    path.write_text("not wisdom")
    load_wisdom(path)  # a corrupt file is dropped, not fatal
    assert not path.exists()


def test_box_variance_shares_its_integrals_across_sizes() -> None:
    """One BoxVariance answers every chip size, each as n * variance of each square."""
    rng = np.random.default_rng(2)
    image = rng.standard_normal((40, 50)).astype(np.float32) + 3.0
    variance = BoxVariance(image)
    for box in (4, 8, 16):
        squares = np.lib.stride_tricks.sliding_window_view(image.astype(np.float64), (box, box))
        expected = squares.var(axis=(2, 3)) * box * box
        np.testing.assert_allclose(variance(box), expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(variance(box), box_variance(image, box))


def _direct_masked_ncc(
    template: np.ndarray, t_valid: np.ndarray, window: np.ndarray, w_valid: np.ndarray, least: int
) -> np.ndarray:
    """ZNCC over the pixels valid in both, offset by offset (0 where too few or flat)."""
    c = template.shape[0]
    n = window.shape[0] - c + 1
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            both = t_valid & w_valid[i : i + c, j : j + c]
            if both.sum() < least:
                continue
            t = template[both] - template[both].mean()
            w = window[i : i + c, j : j + c][both]
            w = w - w.mean()
            out[i, j] = (t * w).sum() / np.sqrt((t * t).sum() * (w * w).sum())
    return out


def test_masked_ncc_matches_brute_force_masked_zncc() -> None:
    rng = np.random.default_rng(3)
    windows = rng.standard_normal((4, 26, 26)) * 50 + 1000  # an offset: must not cost digits
    templates = windows[:, 4:16, 7:19] * 0.5 - 3.0
    w_valid = rng.random(windows.shape) > 0.2
    w_valid[1] = True  # masked template, clean window
    t_valid = rng.random(templates.shape) > 0.3
    t_valid[2] = True  # clean template, masked window
    # what masked pixels hold must not matter: huge values, as a cloud would be
    windows = np.where(w_valid, windows, 1e6)
    templates = np.where(t_valid, templates, -1e6)
    least = 40
    surfaces = masked_ncc_surfaces(templates, t_valid, windows, w_valid, least)
    assert surfaces.shape == (4, 15, 15)
    for k in range(4):
        expected = _direct_masked_ncc(templates[k], t_valid[k], windows[k], w_valid[k], least)
        np.testing.assert_allclose(surfaces[k], expected, atol=1e-6)
        assert np.unravel_index(surfaces[k].argmax(), surfaces[k].shape) == (4, 7)


def test_masked_ncc_without_masks_is_plain_ncc() -> None:
    rng = np.random.default_rng(4)
    windows = rng.standard_normal((2, 30, 30)).astype(np.float32)
    templates = windows[:, 3:19, 2:18].copy()
    ones_t, ones_w = np.ones(templates.shape, bool), np.ones(windows.shape, bool)
    masked = masked_ncc_surfaces(templates, ones_t, windows, ones_w, 1)
    np.testing.assert_allclose(masked, ncc_surfaces(templates, windows), atol=2e-4)


def test_masked_ncc_needs_the_overlap_it_is_given() -> None:
    rng = np.random.default_rng(5)
    windows = rng.standard_normal((1, 20, 20))
    templates = windows[:, :8, :8].copy()
    w_valid = np.ones(windows.shape, bool)
    w_valid[:, :, 10:] = False  # the right half of the window is unusable
    surfaces = masked_ncc_surfaces(templates, np.ones(templates.shape, bool), windows, w_valid, 32)
    # offsets whose overlap has fewer than 32 valid pixels (columns 7..12) are not candidates
    assert np.all(surfaces[0, :, 7:] == 0)
    assert surfaces[0, 0, 0] > 0.999
