"""From pixel displacements to velocities with their errors, as ITS_LIVE computes them.

Pure computation. Stable-ground shift: the median velocity over stable ground (a
stable-surface mask when one is given, flag 1; else the slowest 25 % of vectors, flag 2)
is subtracted from vx and vy. Errors: the RMS of the corrected velocities over that
ground (ITS_LIVE's error_stationary / error_slow), and per vector the precision of the
correlation fit. GLAFT's static-terrain metric (Zheng et al. 2023): the mode of the
kernel density of stable-ground velocities and the spread around it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import gaussian_kde

from glacierflow.processing.tracking.tracker import Reason, TrackResult

DAYS_PER_YEAR = 365.25
_MIN_STABLE = 10


@dataclass
class StableGround:
    """Velocity shift and spread over one set of stable nodes (one component)."""

    shift: float = np.nan
    error: float = np.nan
    count: int = 0


@dataclass
class Velocity:
    """Velocity grids (m/yr, +x east, +y north) with the figures a granule records."""

    vx: np.ndarray
    vy: np.ndarray
    vx_error: np.ndarray  # per vector, 1-sigma, m/yr
    vy_error: np.ndarray
    stable_shift_flag: int
    stationary: tuple[StableGround, StableGround]
    slow: tuple[StableGround, StableGround]
    quality: dict[str, float] = field(default_factory=dict)

    @property
    def v(self) -> np.ndarray:
        return np.hypot(self.vx, self.vy)

    @property
    def v_error(self) -> np.ndarray:
        """ITS_LIVE: sqrt((vx_err vx/v)^2 + (vy_err vy/v)^2)."""
        v = self.v
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.sqrt((self.vx_error * self.vx / v) ** 2 + (self.vy_error * self.vy / v) ** 2)
        return np.where(v > 0, out, np.hypot(self.vx_error, self.vy_error) / np.sqrt(2))

    def component_error(self, k: int) -> float:
        """The granule-wide error of component k: stationary where measured, else slow."""
        ground = self.stationary[k] if self.stable_shift_flag == 1 else self.slow[k]
        return ground.error


def _stable(values: np.ndarray, where: np.ndarray) -> StableGround:
    sample = values[where & np.isfinite(values)]
    if sample.size < _MIN_STABLE:
        return StableGround(count=int(sample.size))
    shift = float(np.median(sample))
    return StableGround(shift, float(np.sqrt(np.mean((sample - shift) ** 2))), int(sample.size))


def glaft_static_terrain(vx: np.ndarray, vy: np.ndarray) -> dict[str, float]:
    """Peak (mode) of the 2-D KDE of stable-ground velocities and the RMS spread around it."""
    ok = np.isfinite(vx) & np.isfinite(vy)
    if ok.sum() < _MIN_STABLE or np.ptp(vx[ok]) == 0 or np.ptp(vy[ok]) == 0:
        return {}
    sample = np.stack([vx[ok], vy[ok]])
    if sample.shape[1] > 2000:  # the KDE costs n x grid evaluations; a random subset is enough
        pick = np.random.default_rng(0).choice(sample.shape[1], 2000, replace=False)
        sample = sample[:, pick]
    kde = gaussian_kde(sample)
    lo, hi = np.percentile(sample, [1, 99], axis=1)
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 41), np.linspace(lo[1], hi[1], 41))
    density = kde(np.stack([gx.ravel(), gy.ravel()]))
    peak = np.array([gx.ravel()[density.argmax()], gy.ravel()[density.argmax()]])
    spread = np.sqrt(np.mean((sample - peak[:, None]) ** 2, axis=1))
    return {
        "glaft_static_peak_vx": float(peak[0]),
        "glaft_static_peak_vy": float(peak[1]),
        "glaft_static_uncertainty_vx": float(spread[0]),
        "glaft_static_uncertainty_vy": float(spread[1]),
    }


def to_velocity(
    result: TrackResult,
    pixel_size: tuple[float, float],
    dt_days: float,
    stable_mask: np.ndarray | None = None,
) -> Velocity:
    """Convert displacements to velocities and correct the stable-ground shift.

    pixel_size: (x size, y size) in metres, both positive; rows grow southward.
    stable_mask: optional boolean grid of nodes on stable (non-moving) ground.
    """
    if dt_days <= 0:
        raise ValueError(f"the time separation must be positive, got {dt_days} days")
    per_year = DAYS_PER_YEAR / dt_days
    vx = result.cols * pixel_size[0] * per_year
    vy = -result.rows * pixel_size[1] * per_year
    vx_error = result.sigma_cols * pixel_size[0] * per_year
    vy_error = result.sigma_rows * pixel_size[1] * per_year

    speed = np.hypot(vx, vy)
    measured = np.isfinite(speed) & ~result.interpolated
    slow_mask = np.zeros_like(measured)
    if measured.sum() >= _MIN_STABLE:
        slow_mask = measured & (speed <= np.percentile(speed[measured], 25))
    slow = (_stable(vx, slow_mask), _stable(vy, slow_mask))
    stationary = (StableGround(), StableGround())
    if stable_mask is not None:
        on_rock = measured & stable_mask
        stationary = (_stable(vx, on_rock), _stable(vy, on_rock))
    if stationary[0].count >= _MIN_STABLE:
        flag, ground, used = 1, stationary, measured & stable_mask
    elif slow[0].count >= _MIN_STABLE:
        flag, ground, used = 2, slow, slow_mask
    else:
        flag, ground, used = 0, (StableGround(0.0), StableGround(0.0)), slow_mask
    vx = vx - (ground[0].shift if flag else 0.0)
    vy = vy - (ground[1].shift if flag else 0.0)

    valid = np.isfinite(vx)
    quality = {
        "valid_percentage": float(100 * valid.mean()) if valid.size else 0.0,
        "measured_percentage": float(100 * measured.mean()) if measured.size else 0.0,
        "interpolated_percentage": float(100 * result.interpolated.mean()) if valid.size else 0.0,
        "outlier_percentage": float(100 * (result.reason == Reason.INCOHERENT).mean())
        if valid.size
        else 0.0,
        "coarse_valid_percentage": 100 * result.coarse_valid_fraction,
    }
    quality.update(glaft_static_terrain(vx[used], vy[used]))
    return Velocity(vx, vy, vx_error, vy_error, flag, stationary, slow, quality)
