"""Plain Zarr readers see new layers GLACIERFLOW_CUBE_CONSOLIDATE_DELAY_S after their
ingest, with nobody running a command; the cube's STAC item says what they see."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import xarray as xr
from conftest import make_cube_granules

from glacierflow.processing.cubes.background import GUARD
from glacierflow.processing.cubes.ingest import ingest
from glacierflow.processing.cubes.store import LivingCube

TILE = "ITS_LIVE_vel_EPSG3413_G0120_X-150000_Y-2250000.zarr"
DELAY_S = 30.0  # long enough for the checks before it, on a busy machine


def plain_layers(path: Path) -> int:
    with xr.open_zarr(path) as ds:
        return ds.sizes["mid_date"]


def stored_item(dsn: str) -> dict:
    with psycopg.connect(dsn) as conn:
        (content,) = conn.execute("SELECT content FROM pgstac.items").fetchone()
    return content["properties"]


def guard_free(cube: LivingCube) -> bool:
    with open(cube.state / GUARD) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


def test_new_layers_reach_plain_readers_and_the_stac_item_without_a_command(
    granule_files: dict[str, Path],
    new_catalog: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from glacierflow.catalog.loader import load_cubes

    dsn = new_catalog("background_consolidation")
    monkeypatch.setenv("DATABASE_URL", dsn)  # the consolidator's catalog
    monkeypatch.setenv("GLACIERFLOW_DATA_DIR", str(tmp_path))
    files = make_cube_granules(granule_files["july"], tmp_path / "granules", 7)
    store = tmp_path / "cubes"
    cube = LivingCube(store, TILE)

    def ingest_and_register(batch: list[Path], register: bool = True) -> None:
        """As `glacierflow cube ingest` does."""
        ingest(
            batch, store, progress=lambda _: None, consolidate_delay_s=DELAY_S, update_catalog=True
        )
        if register:
            load_cubes(dsn, [cube.path], "cubes")

    ingest_and_register(files[:4])  # a new cube: straight into its history
    assert plain_layers(cube.path) == 4 and not (cube.state / GUARD).exists()
    started = time.monotonic()
    ingest_and_register(files[4:6], register=False)  # a segment; a consolidator waits
    ingest_and_register(files[6:])  # one more segment, for the same consolidator
    if time.monotonic() - started < DELAY_S:  # (a busy machine may be slower than the delay)
        assert plain_layers(cube.path) == 4
        properties = stored_item(dsn)
        assert properties["layer_count"] == 4 and properties["pending_layer_count"] == 3
        assert len(cube.snapshot().segments) == 2

    deadline = time.monotonic() + DELAY_S + 120
    while plain_layers(cube.path) < 7:
        assert time.monotonic() < deadline, (cube.state / "consolidator.log").read_text()
        time.sleep(0.5)
    assert not cube.snapshot().segments
    while stored_item(dsn)["layer_count"] < 7:  # updated by the consolidator, after
        assert time.monotonic() < deadline, (cube.state / "consolidator.log").read_text()
        time.sleep(0.2)
    assert stored_item(dsn)["pending_layer_count"] == 0
    while not guard_free(cube):  # the consolidator exits once nothing is left
        assert time.monotonic() < deadline, "the consolidator is still running"
        time.sleep(0.2)
    with xr.open_zarr(cube.path) as ds:
        assert sorted(ds["granule_url"].values) == sorted(str(f) for f in files)
    assert not os.listdir(cube.state / "staging")
