"""Batched normalized cross-correlation (NCC) computed by FFT with pyfftw.

Pure computation: arrays in, arrays out. Many template/search-window pairs of one shape
are correlated together, so FFTW plans are made once per shape and reused; plans are
kept per thread because an FFTW plan object owns its buffers and is not re-entrant.
FFTW wisdom is loaded from and saved to a file so that planning happens once per machine.
`masked_ncc_surfaces` is the exact NCC over the pixels both chips have (Padfield 2012),
for the chips that hold masked or nodata pixels.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import fft
from scipy.fft import next_fast_len


def _import_pyfftw() -> None:
    """Import pyfftw without the Dask interface its __init__ loads whenever Dask is
    installed: dask.array costs a second of start-up, and we only use the builders."""
    hidden = "dask.array.fft"
    if hidden in sys.modules:
        return
    sys.modules[hidden] = None  # makes pyfftw's `from dask.array.fft import ...` fail
    try:
        import pyfftw.builders  # noqa: F401
    finally:
        del sys.modules[hidden]


_import_pyfftw()
import pyfftw  # noqa: E402 (after _import_pyfftw)
import pyfftw.builders  # noqa: E402

# Chips per FFT call: large enough to amortise Python overhead, small enough for cache.
BATCH = 128
# ...and fewer for wide search windows, so that one complex plan buffer stays this small.
_PLAN_BUFFER_BYTES = 2**22
_PLANNER_EFFORT = "FFTW_MEASURE"
_plan_lock = threading.Lock()
_local = threading.local()


def load_wisdom(path: Path) -> None:
    """Import FFTW wisdom saved by an earlier run, so that FFTW_MEASURE planning is instant."""
    if path.exists():
        try:
            pyfftw.import_wisdom(tuple(w.encode() for w in json.loads(path.read_text())))
        except (ValueError, TypeError):
            path.unlink(missing_ok=True)  # stale or foreign wisdom: plan again


def save_wisdom(path: Path) -> None:
    """Persist FFTW wisdom (written to a temporary name of this process and thread, then
    renamed: concurrent tracking jobs each replace the file whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps([w.decode() for w in pyfftw.export_wisdom()]))
    tmp.replace(path)


@dataclass
class _Plans:
    """Real 2-D FFT plans over a batch of L x L arrays: one forward plan per operand (each
    owns a zero-padded input buffer, written in place) and one inverse."""

    windows: pyfftw.FFTW
    templates: pyfftw.FFTW
    inverse: pyfftw.FFTW
    shapes: tuple[int, int] = (0, 0)  # (span, chip) the buffers were last written with

    @classmethod
    def build(cls, size: int) -> _Plans:
        batch = plan_batch(size)

        def forward() -> pyfftw.FFTW:
            real = pyfftw.zeros_aligned((batch, size, size), dtype="float32")
            return pyfftw.builders.rfftn(
                real, axes=(1, 2), threads=1, planner_effort=_PLANNER_EFFORT
            )

        spectrum = pyfftw.empty_aligned((batch, size, size // 2 + 1), dtype="complex64")
        with _plan_lock:
            windows, templates = forward(), forward()
            inverse = pyfftw.builders.irfftn(
                spectrum, s=(size, size), axes=(1, 2), threads=1, planner_effort=_PLANNER_EFFORT
            )
        windows.input_array[:] = 0.0
        templates.input_array[:] = 0.0
        return cls(windows, templates, inverse)


def _plans(size: int) -> _Plans:
    cache: dict[int, _Plans] = _local.__dict__.setdefault("plans", {})
    if size not in cache:
        cache[size] = _Plans.build(size)
    return cache[size]


def plan_batch(size: int) -> int:
    """Chips per FFT call for size x size transforms."""
    return max(1, min(BATCH, _PLAN_BUFFER_BYTES // (8 * size * (size // 2 + 1))))


def plan_bytes(size: int) -> int:
    """Memory of one thread's plans for size x size transforms: three real and three
    complex buffers of `plan_batch` arrays."""
    return plan_batch(size) * size * (12 * size + 24 * (size // 2 + 1))


def fft_size(window: int) -> int:
    """The FFT length used for a search window of `window` pixels."""
    return next_fast_len(window, real=True)


def _integral(image: np.ndarray) -> np.ndarray:
    """Summed-area table of the last two axes (float64), with a leading row/column of 0."""
    *lead, h, w = image.shape
    integral = np.zeros((*lead, h + 1, w + 1), dtype=np.float64)
    np.cumsum(image, axis=-2, out=integral[..., 1:, 1:])
    np.cumsum(integral[..., 1:, 1:], axis=-1, out=integral[..., 1:, 1:])
    return integral


def _box(integral: np.ndarray, box: int) -> np.ndarray:
    return (
        integral[..., box:, box:]
        - integral[..., :-box, box:]
        - integral[..., box:, :-box]
        + integral[..., :-box, :-box]
    )


def box_sums(image: np.ndarray, box: int) -> np.ndarray:
    """Sums over every box x box square of the last two axes, indexed by top-left corner."""
    return _box(_integral(image), box)


class BoxVariance:
    """n * variance of every box x box square of an image (indexed by top-left), the NCC
    denominator term, for any box size: the integral images are summed once and shared
    by every size (a search tries up to three chip sizes on the same block)."""

    def __init__(self, image: np.ndarray) -> None:
        centred = image - image.mean(axis=(-2, -1), keepdims=True)
        self._sums = _integral(centred)
        self._squares = _integral(centred * centred)

    def __call__(self, box: int) -> np.ndarray:
        sums = _box(self._sums, box)
        return np.maximum(_box(self._squares, box) - sums * sums / (box * box), 0.0)


def box_variance(image: np.ndarray, box: int) -> np.ndarray:
    """n * variance of every box x box square (indexed by top-left): the NCC denominator term."""
    return BoxVariance(image)(box)


def ncc_surfaces(
    templates: np.ndarray, windows: np.ndarray, window_var: np.ndarray | None = None
) -> np.ndarray:
    """Normalized cross-correlation of each template over its search window.

    templates: (N, c, c); windows: (N, S, S) with S >= c; both free of NaN.
    window_var: optional (N, S-c+1, S-c+1) `box_variance` of each window, when the caller
    has it cheaper (from the whole image at once).
    Returns (N, S-c+1, S-c+1): entry [n, i, j] is the NCC of template n with the
    window n sub-image whose top-left corner is (i, j); 0 where either is flat.
    """
    n, chip, _ = templates.shape
    span = windows.shape[1]
    valid = span - chip + 1
    plans = _plans(fft_size(span))
    out = np.empty((n, valid, valid), dtype=np.float32)

    centred = templates - templates.mean(axis=(1, 2), keepdims=True)
    template_norm = np.sqrt(np.einsum("nij,nij->n", centred, centred))
    if window_var is None:
        window_var = box_variance(windows, chip)

    w_in, t_in = plans.windows.input_array, plans.templates.input_array
    product = plans.inverse.input_array
    if plans.shapes != (span, chip):  # other shapes share this FFT size: clear their data
        w_in[:] = 0.0
        t_in[:] = 0.0
        plans.shapes = (span, chip)
    batch = len(w_in)
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        m = stop - start
        # padding stays zero: only these regions are ever written
        w_in[:m, :span, :span] = windows[start:stop]
        t_in[:m, :chip, :chip] = centred[start:stop]
        np.conjugate(plans.templates(), out=product)
        product *= plans.windows()
        out[start:stop] = plans.inverse()[:m, :valid, :valid]

    denom = np.sqrt(window_var) * template_norm[:, None, None]
    flat = denom <= 1e-6 * max(float(denom.max(initial=0.0)), 1e-30)
    np.divide(out, np.where(flat, 1.0, denom), out=out, casting="unsafe")
    out[flat] = 0.0
    return out


def masked_ncc_surfaces(
    templates: np.ndarray,
    template_valid: np.ndarray,
    windows: np.ndarray,
    window_valid: np.ndarray,
    min_overlap: int,
) -> np.ndarray:
    """NCC of each template over its search window, counting only pixels valid in both.

    Masked normalized cross-correlation in the Fourier domain (Padfield, "Masked
    object registration in the Fourier domain", IEEE TIP 2012): the overlap area and the
    local sums of values and squares of template and window over that overlap are all
    correlations of the masks with the masked images, so every offset gets the exact
    ZNCC of its common valid pixels; masked pixels' values never enter. Float64: the
    sums are differenced, and masked chips are few.

    templates, template_valid: (N, c, c); windows, window_valid: (N, S, S), S >= c.
    Returns (N, S-c+1, S-c+1) like `ncc_surfaces`; 0 where the overlap has fewer than
    `min_overlap` pixels or either side is flat there.
    """
    n, chip, _ = templates.shape
    span = windows.shape[1]
    valid = span - chip + 1
    size = (fft_size(span),) * 2
    out = np.empty((n, valid, valid), dtype=np.float32)

    def spectra(values: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
        m = mask.astype(np.float64)
        count = np.maximum(m.sum(axis=(1, 2), keepdims=True), 1.0)
        # centred on the valid pixels' mean: the differences below then lose no digits
        v = (values - (values * m).sum(axis=(1, 2), keepdims=True) / count) * m
        return [fft.rfft2(a, s=size, workers=1) for a in (m, v, v * v)]

    def correlate(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return fft.irfft2(np.conj(a) * b, s=size, workers=1)[:, :valid, :valid]

    step = 32  # chips per pass: six spectra of each are held at once
    for start in range(0, n, step):
        sl = slice(start, start + step)
        t_m, t_v, t_v2 = spectra(templates[sl].astype(np.float64), template_valid[sl])
        w_m, w_v, w_v2 = spectra(windows[sl].astype(np.float64), window_valid[sl])
        overlap = np.rint(correlate(t_m, w_m))
        enough = overlap >= max(min_overlap, 2)
        area = np.where(enough, overlap, 1.0)
        t_sum, w_sum = correlate(t_v, w_m), correlate(t_m, w_v)
        t_var = correlate(t_v2, w_m) - t_sum * t_sum / area
        w_var = correlate(t_m, w_v2) - w_sum * w_sum / area
        cross = correlate(t_v, w_v) - t_sum * w_sum / area
        denom = np.sqrt(np.maximum(t_var, 0.0) * np.maximum(w_var, 0.0))
        # flat overlaps (variance at rounding level) would give noise, not correlation
        scale = np.sqrt(
            np.maximum(t_var, 0).max(axis=(1, 2), keepdims=True)
            * np.maximum(w_var, 0).max(axis=(1, 2), keepdims=True)
        )
        ok = enough & (denom > 1e-6 * np.maximum(scale, 1e-300))
        out[sl] = np.where(ok, cross / np.where(ok, denom, 1.0), 0.0)
    return out
