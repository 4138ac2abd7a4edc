"""Batched normalized cross-correlation (NCC) computed by FFT with pyfftw.

Pure computation: arrays in, arrays out. Many template/search-window pairs of one shape
are correlated together, so FFTW plans are made once per shape and reused; plans are
kept per thread because an FFTW plan object owns its buffers and is not re-entrant.
FFTW wisdom is loaded from and saved to a file so that planning happens once per machine.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyfftw
import pyfftw.builders
from scipy.fft import next_fast_len

# Chips per FFT call: large enough to amortise Python overhead, small enough for cache.
BATCH = 128
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
    """Persist FFTW wisdom (written to a temporary name, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([w.decode() for w in pyfftw.export_wisdom()]))
    tmp.replace(path)


@dataclass
class _Plans:
    """Forward and inverse real 2-D FFT plans over a batch of L x L arrays."""

    forward: pyfftw.FFTW
    inverse: pyfftw.FFTW

    @classmethod
    def build(cls, size: int) -> _Plans:
        real = pyfftw.empty_aligned((BATCH, size, size), dtype="float32")
        spectrum = pyfftw.empty_aligned((BATCH, size, size // 2 + 1), dtype="complex64")
        with _plan_lock:
            forward = pyfftw.builders.rfftn(
                real, axes=(1, 2), threads=1, planner_effort=_PLANNER_EFFORT
            )
            inverse = pyfftw.builders.irfftn(
                spectrum, s=(size, size), axes=(1, 2), threads=1, planner_effort=_PLANNER_EFFORT
            )
        return cls(forward, inverse)


def _plans(size: int) -> _Plans:
    cache: dict[int, _Plans] = _local.__dict__.setdefault("plans", {})
    if size not in cache:
        cache[size] = _Plans.build(size)
    return cache[size]


def fft_size(window: int) -> int:
    """The FFT length used for a search window of `window` pixels."""
    return next_fast_len(window, real=True)


def _box_sums(stack: np.ndarray, chip: int) -> np.ndarray:
    """Sums over every chip x chip box of each image in a stack (integral images)."""
    n, h, w = stack.shape
    integral = np.zeros((n, h + 1, w + 1), dtype=stack.dtype)
    np.cumsum(stack, axis=1, out=integral[:, 1:, 1:])
    np.cumsum(integral[:, 1:, 1:], axis=2, out=integral[:, 1:, 1:])
    return (
        integral[:, chip:, chip:]
        - integral[:, :-chip, chip:]
        - integral[:, chip:, :-chip]
        + integral[:, :-chip, :-chip]
    )


def ncc_surfaces(templates: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Normalized cross-correlation of each template over its search window.

    templates: (N, c, c); windows: (N, S, S) with S >= c; both free of NaN.
    Returns (N, S-c+1, S-c+1): entry [n, i, j] is the NCC of template n with the
    window n sub-image whose top-left corner is (i, j); 0 where either is flat.
    """
    n, chip, _ = templates.shape
    span = windows.shape[1]
    valid = span - chip + 1
    size = fft_size(span)
    plans = _plans(size)
    out = np.empty((n, valid, valid), dtype=np.float32)

    centred = templates - templates.mean(axis=(1, 2), keepdims=True)
    template_norm = np.sqrt(np.einsum("nij,nij->n", centred, centred))
    # remove each window's mean first, so that float32 integral images stay exact enough
    windows = windows - windows.mean(axis=(1, 2), keepdims=True, dtype=np.float64).astype(np.float32)
    window_sum = _box_sums(windows, chip)
    window_sq = _box_sums(windows * windows, chip)
    window_var = np.maximum(window_sq - window_sum**2 / (chip * chip), 0.0)

    fwd_in = plans.forward.input_array
    inv_in = plans.inverse.input_array
    for start in range(0, n, BATCH):
        stop = min(start + BATCH, n)
        m = stop - start
        fwd_in[:] = 0.0
        fwd_in[:m, :span, :span] = windows[start:stop]
        window_spectrum = plans.forward().copy()
        fwd_in[:] = 0.0
        fwd_in[:m, :chip, :chip] = centred[start:stop]
        np.multiply(window_spectrum, np.conj(plans.forward()), out=inv_in)
        out[start:stop] = plans.inverse()[:m, :valid, :valid]

    denom = np.sqrt(window_var) * template_norm[:, None, None]
    flat = denom <= 1e-6 * max(float(denom.max(initial=0.0)), 1e-30)
    np.divide(out, np.where(flat, 1.0, denom), out=out, casting="unsafe")
    out[flat] = 0.0
    return out
