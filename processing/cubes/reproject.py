"""Velocity vectors carried from one map projection into another (pure computation).

A granule measures displacement in its own projected metres; a cube in another projection
needs it in the cube's. Map velocities transform with the Jacobian of the projection
change, v_cube = J · v_granule, which rotates them (grid convergence) and applies the
ratio of the two projections' scale factors. ITS_LIVE skips such granules and loses
coverage along zone borders; glacierflow carries them over.
"""

from __future__ import annotations

import numpy as np
from pyproj import Transformer


def jacobian(to_target: Transformer, xs: np.ndarray, ys: np.ndarray, step: float = 10.0):
    """d(target)/d(source) at source points, as four arrays (dxx, dxy, dyx, dyy) where
    dxy = d x_target / d y_source; by central differences of `step` metres."""
    xs = np.asarray(xs, dtype=np.float64)
    ys = np.asarray(ys, dtype=np.float64)
    x_e, y_e = to_target.transform(xs + step, ys)
    x_w, y_w = to_target.transform(xs - step, ys)
    x_n, y_n = to_target.transform(xs, ys + step)
    x_s, y_s = to_target.transform(xs, ys - step)
    two = 2.0 * step
    return (
        (np.asarray(x_e) - x_w) / two,
        (np.asarray(x_n) - x_s) / two,
        (np.asarray(y_e) - y_w) / two,
        (np.asarray(y_n) - y_s) / two,
    )


def transform_vectors(
    vx: np.ndarray, vy: np.ndarray, jac: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Velocity components from the source projection's axes into the target's."""
    dxx, dxy, dyx, dyy = jac
    return dxx * vx + dxy * vy, dyx * vx + dyy * vy


def transform_errors(ex, ey, jac: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Independent component errors through the same transformation (1-sigma); numbers
    or arrays."""
    dxx, dxy, dyx, dyy = jac
    return np.hypot(dxx * ex, dxy * ey), np.hypot(dyx * ex, dyy * ey)
