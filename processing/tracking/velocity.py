"""From pixel displacements to velocities with their errors, as ITS_LIVE computes them.

Pure computation. Stable-ground shift, as ITS_LIVE intends it: the median velocity over
ground known to be stable is subtracted from vx and vy. That ground is a stable-surface
mask when one is given (flag 1); else the nodes where a *reference* velocity (the prior)
is in its slowest 25 % (flag 2); else there is none and nothing is subtracted (flag 0).
The slowest 25 % of the *measured* vectors serve only when asked for
(`StableShift.SLOWEST_MEASURED`, flag 2): on a scene without stable ground they are moving
ice, and subtracting them removes real motion. Only measured vectors count (not
interpolated ones, nor any node with a reason code, e.g. a second coherent motion).
Errors: the RMS of the corrected velocities over that ground (ITS_LIVE's
error_stationary / error_slow), else the modelled error; per vector the precision of the
correlation fit. GLAFT's static-terrain metric (Zheng et al. 2023): the mode of the
kernel density of stable-ground velocities and the spread around it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from glacierflow.processing.tracking.tracker import Reason, TrackResult

DAYS_PER_YEAR = 365.25
_MIN_STABLE = 10


class StableShift(StrEnum):
    """Where the stable-ground shift may come from when no stable-surface mask is given."""

    AUTO = "auto"  # the reference velocity's slowest 25 % if there is one, else no shift
    SLOWEST_MEASURED = "slowest-measured"  # without a reference: the measured slowest 25 %


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
    stable_shift_source: str = ""  # which ground the shift came from, or why there is none
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

    def modeled_error(self, k: int) -> float:
        """Median per-vector precision of component k (NaN without any vector)."""
        errors = self.vx_error if k == 0 else self.vy_error
        return float(np.nanmedian(errors)) if np.isfinite(errors).any() else np.nan

    def component_error(self, k: int) -> float:
        """The granule-wide error of component k, as ITS_LIVE picks it: over the ground the
        shift came from (stationary or slow), else the modelled error."""
        if self.stable_shift_flag == 1:
            return self.stationary[k].error
        if self.stable_shift_flag == 2:
            return self.slow[k].error
        return self.modeled_error(k)


def _stable(values: np.ndarray, where: np.ndarray) -> StableGround:
    sample = values[where & np.isfinite(values)]
    if sample.size < _MIN_STABLE:
        return StableGround(count=int(sample.size))
    shift = float(np.median(sample))
    return StableGround(shift, float(np.sqrt(np.mean((sample - shift) ** 2))), int(sample.size))


def _gaussian_kde(sample: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Unnormalised Gaussian kernel density of a (2, n) sample at (2, m) points, with
    Scott's bandwidth: what scipy.stats.gaussian_kde gives up to its constant factor, which
    no mode depends on, without importing scipy.stats (0.3-1.7 s of a track process)."""
    n = sample.shape[1]
    bandwidth = np.cov(sample) * n ** (-2 / 6)  # Scott's factor n^(-1/(d+4)), squared; d = 2
    whiten = np.linalg.cholesky(np.linalg.inv(bandwidth)).T  # |whiten @ d|^2 = d' B^-1 d
    centre = sample.mean(axis=1, keepdims=True)
    s, p = whiten @ (sample - centre), whiten @ (points - centre)
    # squared distances |p - s|^2 = |p|^2 + |s|^2 - 2 p.s, as one matrix product
    exponent = p.T @ s
    exponent -= 0.5 * (p * p).sum(axis=0)[:, None] + 0.5 * (s * s).sum(axis=0)[None, :]
    return np.exp(exponent, out=exponent).sum(axis=1)


def glaft_static_terrain(vx: np.ndarray, vy: np.ndarray) -> dict[str, float]:
    """Peak (mode) of the 2-D KDE of stable-ground velocities and the RMS spread around it."""
    ok = np.isfinite(vx) & np.isfinite(vy)
    if ok.sum() < _MIN_STABLE or np.ptp(vx[ok]) == 0 or np.ptp(vy[ok]) == 0:
        return {}
    sample = np.stack([vx[ok], vy[ok]])
    if sample.shape[1] > 2000:  # the KDE costs n x grid evaluations; a random subset is enough
        pick = np.random.default_rng(0).choice(sample.shape[1], 2000, replace=False)
        sample = sample[:, pick]
    lo, hi = np.percentile(sample, [1, 99], axis=1)
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 41), np.linspace(lo[1], hi[1], 41))
    density = _gaussian_kde(sample, np.stack([gx.ravel(), gy.ravel()]))
    peak = np.array([gx.ravel()[density.argmax()], gy.ravel()[density.argmax()]])
    spread = np.sqrt(np.mean((sample - peak[:, None]) ** 2, axis=1))
    return {
        "glaft_static_peak_vx": float(peak[0]),
        "glaft_static_peak_vy": float(peak[1]),
        "glaft_static_uncertainty_vx": float(spread[0]),
        "glaft_static_uncertainty_vy": float(spread[1]),
    }


def _slowest_quarter(speed: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Nodes of `where` whose speed is within the slowest 25 % of the speeds there."""
    known = where & np.isfinite(speed)
    if not known.any():
        return np.zeros(speed.shape, dtype=bool)
    return known & (speed <= np.percentile(speed[known], 25))


def to_velocity(
    result: TrackResult,
    pixel_size: tuple[float, float],
    dt_days: float,
    stable_mask: np.ndarray | None = None,
    reference_speed: np.ndarray | None = None,
    stable_shift: StableShift = StableShift.AUTO,
) -> Velocity:
    """Convert displacements to velocities and correct the stable-ground shift.

    pixel_size: (x size, y size) in metres, both positive; rows grow southward.
    stable_mask: optional boolean grid of nodes on stable (non-moving) ground.
    reference_speed: optional grid of a reference speed (any unit, NaN where unknown),
    e.g. the prior's: its slowest 25 % are taken as stable when there is no mask.
    """
    if dt_days <= 0:
        raise ValueError(f"the time separation must be positive, got {dt_days} days")
    per_year = DAYS_PER_YEAR / dt_days
    vx = result.cols * pixel_size[0] * per_year
    vy = -result.rows * pixel_size[1] * per_year
    vx_error = result.sigma_cols * pixel_size[0] * per_year
    vy_error = result.sigma_rows * pixel_size[1] * per_year

    speed = np.hypot(vx, vy)
    # only vectors measured here and now: not interpolated, no reason code against them
    measured = np.isfinite(speed) & ~result.interpolated & (result.reason == Reason.VALID)
    stationary = (StableGround(), StableGround())
    on_rock = np.zeros_like(measured)
    if stable_mask is not None:
        on_rock = measured & stable_mask
        stationary = (_stable(vx, on_rock), _stable(vy, on_rock))
    slow_mask = np.zeros_like(measured)
    slow_source = ""
    if reference_speed is not None:
        # ITS_LIVE: the slowest quarter of the reference over the granule, where measured
        slow_mask = measured & _slowest_quarter(reference_speed, np.ones_like(measured))
        slow_source = "the slowest 25 % of the reference velocity"
    elif stable_shift is StableShift.SLOWEST_MEASURED:
        slow_mask = _slowest_quarter(speed, measured)
        slow_source = "the slowest 25 % of the measured velocities (asked for)"
    slow = (_stable(vx, slow_mask), _stable(vy, slow_mask))
    if stationary[0].count >= _MIN_STABLE:
        flag, ground, used = 1, stationary, on_rock
        source = "the stable-surface mask"
    elif slow[0].count >= _MIN_STABLE:
        flag, ground, used = 2, slow, slow_mask
        source = slow_source
    else:
        flag, ground, used = 0, (StableGround(0.0), StableGround(0.0)), np.zeros_like(measured)
        tried = [
            what
            for what, given in (
                ("the stable-surface mask", stable_mask is not None),
                (slow_source, bool(slow_source)),
            )
            if given
        ]
        source = (
            f"fewer than {_MIN_STABLE} measured vectors on {' or on '.join(tried)}"
            if tried
            else "no stable-surface mask and no reference velocity"
        )
    vx = vx - ground[0].shift
    vy = vy - ground[1].shift

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
    return Velocity(vx, vy, vx_error, vy_error, flag, stationary, slow, source, quality)
