from __future__ import annotations

import numpy as np
import pytest
from rasterio.transform import from_origin

from glacierflow.processing.tracking.grid import node_grid


def test_nodes_sit_on_itslive_pixel_centres() -> None:
    grid = node_grid(from_origin(-200003.0, 1500011.0, 15.0, 15.0), (700, 900), 120.0)
    assert np.allclose(grid.x % 120, 52.5)
    assert np.allclose(grid.y % 120, 67.5)
    assert np.all(np.diff(grid.x) == 120) and np.all(np.diff(grid.y) == -120)
    # inside the image, and the pixel coordinates point back at the map coordinates
    assert grid.cols.min() >= 0 and grid.cols.max() < 900
    assert grid.rows.min() >= 0 and grid.rows.max() < 700
    assert np.allclose(-200003.0 + grid.cols * 15.0, grid.x)
    assert grid.geotransform[0] == grid.x[0] and grid.geotransform[3] == grid.y[0]


def test_rotated_images_are_refused() -> None:
    from affine import Affine

    with pytest.raises(ValueError, match="north-up"):
        node_grid(Affine(15.0, 1.0, 0.0, 0.0, -15.0, 0.0), (100, 100), 120.0)
