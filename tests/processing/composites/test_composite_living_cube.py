"""The composite of a glacierflow cube in a store: granules ingested by the project's own
code, the layers appended since the last consolidation included."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import xarray as xr
from conftest import make_cube_granules

from glacierflow.processing.cubes.ingest import ingest
from glacierflow.processing.cubes.store import LivingCube

TILE = "ITS_LIVE_vel_EPSG3413_G0120_X-150000_Y-2250000.zarr"
LAYERS = 48


def test_a_living_cube_composite_counts_its_recent_layers(
    granule_files: dict[str, Path], tmp_path: Path
) -> None:
    granules = make_cube_granules(granule_files["july"], tmp_path / "granules", LAYERS)
    ingest(granules, tmp_path / "store", progress=lambda _: None)
    assert LivingCube(tmp_path / "store", TILE).snapshot().segments  # some layers are recent
    out = tmp_path / "composite.nc"
    run = subprocess.run(
        [sys.executable, "-m", "glacierflow.cli", "composite", str(tmp_path / "store" / TILE),
         "--out", str(out), "--window", "2023", "2024", "--intercept-year", "2024"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "GLACIERFLOW_DATA_DIR": str(tmp_path / "data")},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    with xr.open_dataset(out) as composite:
        count0 = composite["count0"].values
        seen = count0 > 0
        assert seen.any() and (count0[seen] == LAYERS).all()  # history and recent layers
        assert composite["time"].dt.year.values.tolist() == [2023, 2024]
        assert composite.attrs["pixels_with_data"] == seen.sum()
        # vx = 100 + 10 k m/yr for the k-th pair, vy = -50: the annual means lie in between
        vx = composite["vx"].values[:, seen]
        assert np.isfinite(vx).all() and (vx > 100).all() and (vx < 100 + 10 * LAYERS).all()
        assert vx[1].mean() > vx[0].mean()
        np.testing.assert_allclose(composite["vy"].values[:, seen], -50, atol=2)
        assert composite["mapping"].attrs["spatial_epsg"] == 3413
