"""Shared helpers: synthetic pairs on the ITS_LIVE-aligned node grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from glacierflow.processing import synthetic
from glacierflow.processing.tracking.grid import node_grid
from glacierflow.processing.tracking.tracker import TrackerOptions, TrackResult, array_reader, track

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
ITSLIVE_SAMPLES = SHARED / "itslive-samples"


def track_synthetic(
    pair: synthetic.SyntheticPair, prior: np.ndarray | None = None, **options
) -> tuple[TrackResult, np.ndarray]:
    """Track a synthetic pair on the 120 m grid; returns the result and the vector errors (px)."""
    grid = node_grid(pair.transform, pair.ref.shape, 120.0)
    result = track(
        array_reader(pair.ref, pair.sec),
        pair.ref.shape,
        grid.rows,
        grid.cols,
        TrackerOptions(**options),
        prior=prior,
    )
    rr, cc = np.meshgrid(grid.rows, grid.cols, indexing="ij")
    true_rows, true_cols = pair.field(rr, cc)
    return result, np.hypot(result.rows - true_rows, result.cols - true_cols)


@pytest.fixture(scope="session")
def itslive_granule() -> Path:
    path = next(ITSLIVE_SAMPLES.glob("*.nc"), None)
    assert path is not None, f"the real ITS_LIVE sample granule is missing from {ITSLIVE_SAMPLES}"
    return path
