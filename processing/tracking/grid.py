"""The output grid: node positions on ITS_LIVE's posting, in map and pixel coordinates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from affine import Affine

# ITS_LIVE's 120 m grid has its pixel centres at x = 52.5 and y = 67.5 (mod 120).
ITS_LIVE_X_PHASE = 52.5
ITS_LIVE_Y_PHASE = 67.5


@dataclass(frozen=True)
class NodeGrid:
    """Chip centres: map coordinates (x, y) and the matching pixel-edge coordinates."""

    x: np.ndarray
    y: np.ndarray
    cols: np.ndarray
    rows: np.ndarray
    spacing: float

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.y), len(self.x)

    @property
    def geotransform(self) -> tuple[float, float, float, float, float, float]:
        """GDAL GeoTransform of the node grid, centre-based as in ITS_LIVE granules."""
        return (float(self.x[0]), self.spacing, 0.0, float(self.y[0]), 0.0, -self.spacing)


def _aligned(start: float, stop: float, spacing: float, phase: float) -> np.ndarray:
    """Values phase + k*spacing that lie in [start, stop), ascending."""
    k0 = np.ceil((start - phase) / spacing)
    k1 = np.floor((stop - phase) / spacing - 1e-9)
    return phase + spacing * np.arange(k0, k1 + 1)


def node_grid(transform: Affine, shape: tuple[int, int], spacing: float) -> NodeGrid:
    """Every node of the aligned grid that falls inside a north-up image."""
    if transform.b != 0 or transform.d != 0 or transform.a <= 0 or transform.e >= 0:
        raise ValueError("the reference image must be north-up (no rotation, no flip)")
    height, width = shape
    left, top = transform.c, transform.f
    right, bottom = left + width * transform.a, top + height * transform.e
    x = _aligned(left, right, spacing, ITS_LIVE_X_PHASE % spacing)
    y = _aligned(bottom, top, spacing, ITS_LIVE_Y_PHASE % spacing)[::-1]
    cols = (x - left) / transform.a
    rows = (y - top) / transform.e
    return NodeGrid(x=x, y=y, cols=cols, rows=rows, spacing=spacing)
