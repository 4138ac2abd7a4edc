"""Granules into living cubes: ITS_LIVE layout, idempotence, skips with reasons, appends
that leave the history alone, consolidation, reprojection, Dask, and crash safety."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from conftest import make_cube_granules, write_granule

from glacierflow.processing.cubes.ingest import ingest
from glacierflow.processing.cubes.layers import read_granule
from glacierflow.processing.cubes.layout import GRIDDED, POINT_GROUP, ChunkLayout
from glacierflow.processing.cubes.store import LivingCube, cube_names

TILE = "ITS_LIVE_vel_EPSG3413_G0120_X-150000_Y-2250000.zarr"


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def template(granule_files: dict[str, Path]) -> Path:
    return granule_files["july"]


@pytest.fixture(scope="module")
def batch(template: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_cube_granules(template, tmp_path_factory.mktemp("batch"), 12)


def _valid(template: Path) -> tuple[np.ndarray, np.ndarray]:
    """x and y of the template's valid pixels (every cube granule's valid pixels)."""
    g = read_granule(template)
    rows, cols = np.nonzero(g.valid)
    return g.x[cols], g.y[rows]


def test_a_new_cube_has_itslive_layout_and_the_true_values(
    batch: list[Path], template: Path, tmp_path: Path
) -> None:
    report = ingest(batch, tmp_path, progress=quiet)
    assert list(report.cubes) == [TILE] and report.added == 12 and not report.skipped
    ds = xr.open_zarr(tmp_path / TILE, decode_timedelta=True)  # the plain Zarr, as ITS_LIVE
    assert ds.sizes["mid_date"] == 12 and ds.sizes["x"] in (833, 834)
    for name in ("v", "vx", "vy", "v_error"):
        assert ds[name].dims == ("mid_date", "y", "x")
        assert ds[name].encoding["dtype"] == np.int16 and ds[name].encoding["_FillValue"] == -32767
    for name in (
        "vx_error",
        "vy_stable_shift",
        "date_dt",
        "satellite_img1",
        "granule_url",
        "acquisition_date_img1",
        "mission_img1",
        "roi_valid_percentage",
    ):
        assert ds[name].dims == ("mid_date",), name
    assert ds["date_dt"].values[0] == np.timedelta64(16, "D")
    assert ds.attrs["projection"] == "3413"
    for attr in ("date_created", "date_updated"):  # ITS_LIVE's form: 30-Nov-2026 10:28:11
        assert re.fullmatch(r"\d{2}-[A-Z][a-z]{2}-\d{4} \d{2}:\d{2}:\d{2}", ds.attrs[attr]), attr
    assert ds["mapping"].attrs["spatial_epsg"] == 3413
    assert np.all(np.diff(ds["mid_date"].values) > np.timedelta64(0))
    assert (ds["x"].values % 120 == 52.5).all() and (ds["y"].values % 120 == 67.5).all()
    xs, ys = _valid(template)
    point = ds.sel(x=xs[0], y=ys[0])
    np.testing.assert_array_equal(point["vx"].values, 100 + 10 * np.arange(12))
    np.testing.assert_array_equal(point["vy"].values, -50)
    assert sorted(point["granule_url"].values) == sorted(str(p.resolve()) for p in batch)
    # outside the granule: fill, read back as NaN
    assert np.isnan(ds["v"].isel(x=0, y=0).values).all()


def test_plain_xarray_gets_one_dask_chunk_per_shard_and_points_have_their_own_copy(
    batch: list[Path], template: Path, tmp_path: Path
) -> None:
    ingest(batch[:4], tmp_path, progress=quiet)
    group = zarr.open_group(tmp_path / TILE, mode="r")
    for name in GRIDDED:
        assert group[name].chunks == (4, 50, 50) and group[name].shards is None, name
    for name in ("v", "vx", "vy", "v_error"):
        point = group[POINT_GROUP][name]
        assert point.chunks == (4, 1, 1) and point.shards == (4, 50, 50), name
    assert len(list((tmp_path / TILE / POINT_GROUP / "v").rglob("c/*/*/*"))) <= 17 * 17
    # a user without zarrs, default arguments: zarr-python's own pipeline, dask chunks of
    # 50 x 50 pixels (a full tile: 17 x 17 of them), the same values as the point copy
    default = {"codec_pipeline.path": "zarr.core.codec_pipeline.BatchedCodecPipeline"}
    with zarr.config.set(default), xr.open_zarr(tmp_path / TILE) as plain:
        assert POINT_GROUP not in plain
        for name in GRIDDED:
            assert plain[name].data.numblocks == (1, 17, 17), name
        xs, ys = _valid(template)
        pixel = plain["vx"].sel(x=xs[0], y=ys[0])
        np.testing.assert_array_equal(pixel.values, 100 + 10 * np.arange(4))
    for name in ("v", "vx", "vy", "v_error"):
        np.testing.assert_array_equal(group[POINT_GROUP][name][:], group[name][:])


def test_layout_shards_hold_whole_chunks() -> None:
    with pytest.raises(ValueError, match="whole chunks"):
        ChunkLayout(side_px=50, point_px=3)


def test_ingest_is_idempotent_and_appends_without_rewriting_the_history(
    batch: list[Path], template: Path, tmp_path: Path
) -> None:
    ingest(batch[:6], tmp_path, progress=quiet)
    cube = LivingCube(tmp_path, TILE)
    history = cube.snapshot().history
    chunk_files = {p: p.stat().st_mtime_ns for p in history.rglob("c/*/*/*")}
    assert chunk_files

    again = ingest(batch[:6], tmp_path, progress=quiet)
    assert again.added == 0 and again.cubes[TILE].already_in == 6

    more = ingest(batch[6:], tmp_path, progress=quiet, consolidate_after=99)
    assert more.added == 6
    snap = cube.snapshot()
    assert snap.history == history and len(snap.segments) == 1  # appended beside it
    assert {p: p.stat().st_mtime_ns for p in history.rglob("c/*/*/*")} == chunk_files
    merged = cube.open()
    xs, ys = _valid(template)
    np.testing.assert_array_equal(
        merged["vx"].sel(x=xs[0], y=ys[0]).values, 100 + 10 * np.arange(12)
    )

    # consolidation: one sorted history with the same content, segments gone
    ingest([], tmp_path, progress=quiet)  # nothing to do, nothing changes
    assert cube.snapshot() == snap
    report = ingest(batch[:1], tmp_path, progress=quiet, force_consolidate=True)
    assert report.cubes[TILE].consolidated
    snap = cube.snapshot()
    assert snap.segments == () and snap.history != history and not history.exists()
    ds = xr.open_zarr(cube.path)
    np.testing.assert_array_equal(ds["vx"].sel(x=xs[0], y=ys[0]).values, 100 + 10 * np.arange(12))
    assert np.all(np.diff(ds["mid_date"].values) > np.timedelta64(0))


def test_what_a_rename_publishes_is_on_disk_first(
    batch: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file of a new history or segment is fsynced before the rename that publishes
    it, and the folder it lands in after: a power cut keeps old or new, as a kill does."""
    events: list[tuple[str, ...]] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(handle: int) -> None:
        events.append(("fsync", os.path.realpath(f"/proc/self/fd/{handle}")))
        real_fsync(handle)

    def rename(source: str, target: str) -> None:
        events.append(("rename", os.path.realpath(source), os.path.realpath(target)))
        real_rename(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    ingest(batch[:2], tmp_path, progress=quiet)  # the first history
    ingest(batch[2:4], tmp_path, progress=quiet, consolidate_after=99)  # a segment
    published = [(k, e[1], e[2]) for k, e in enumerate(events) if e[0] == "rename"]
    assert [Path(target).parent.name for _, _, target in published] == [TILE, "recent"]
    for k, source, target in published:
        synced = {e[1] for e in events[:k] if e[0] == "fsync"}
        written = {str(p).replace(target, source, 1) for p in Path(target).rglob("*")}
        assert len(written) > 20 and written <= synced, written - synced
        assert ("fsync", str(Path(target).parent)) in events[k + 1 :]
    # and the store folder, where the cube's name now points at the new history
    first_segment = published[1][0]
    assert ("fsync", os.path.realpath(tmp_path)) in events[published[0][0] : first_segment]


def test_bad_granules_are_named_and_skipped_and_the_rest_go_in(
    batch: list[Path], template: Path, itslive_granule: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    truncated = bad / "truncated.nc"
    truncated.write_bytes(batch[0].read_bytes()[:5000])
    not_netcdf = bad / "notes.nc"
    not_netcdf.write_text("not a granule")
    no_vx = bad / "no_vx.nc"
    with xr.open_dataset(batch[1]) as ds:
        ds.drop_vars("vx").to_netcdf(no_vx)
    twin = bad / "twin_of_first.nc"  # the same pair dates as batch[2], another file
    shutil.copy(batch[2], twin)
    files = [truncated, not_netcdf, no_vx, itslive_granule, *batch[:4], twin]
    report = ingest(files, tmp_path / "store", progress=quiet)
    assert report.added == 4
    reasons = report.skipped
    assert "truncated" in reasons[str(truncated)] or "NetCDF" in reasons[str(truncated)]
    assert "not a readable NetCDF" in reasons[str(not_netcdf)]
    assert "no vx" in reasons[str(no_vx)]
    assert reasons[str(itslive_granule.resolve())] == "no valid data"
    assert "duplicate mid_date" in reasons[str(twin.resolve())]
    ledger = tmp_path / "store" / ".glacierflow" / "skipped_granules.json"
    assert str(truncated) in ledger.read_text()


def test_a_granule_in_another_projection_is_resampled_and_its_vectors_rotated(
    tmp_path: Path,
) -> None:
    """A granule in EPSG:3995 (Arctic stereographic, central meridian 0°) lands in an
    EPSG:3413 cube (central meridian 45°W) with its vectors turned by the convergence."""
    from pyproj import Transformer

    from glacierflow.processing import synthetic

    # a 3995 grid near 69°N 49°W (on ITS_LIVE's phase there too, which does not matter)
    origin = (-1_700_040.0, -1_500_000.0)
    granule = write_granule(
        tmp_path, "polar", *(synthetic.REF_TIME, synthetic.SEC_TIME), origin=origin, epsg=3995
    )
    east = synthetic.granule_copy(
        granule,
        tmp_path / "east",
        synthetic.REF_TIME,
        synthetic.SEC_TIME,
        lambda x, y, c: (np.full_like(x, 800.0), np.zeros_like(x)),
    )
    report = ingest([east], tmp_path / "store", progress=quiet)
    (name,) = report.cubes
    assert "EPSG3413" in name and report.added == 1
    ds = xr.open_zarr(tmp_path / "store" / name)
    r0, r1, c0, c1 = json.loads(ds.attrs["glacierflow_data_window"])  # where data were written
    ds = ds.isel(y=slice(r0, r1), x=slice(c0, c1))
    vx = ds["vx"].isel(mid_date=0).values
    vy = ds["vy"].isel(mid_date=0).values
    ok = np.isfinite(vx)
    assert ok.sum() > 100
    # truth: the direction of 3995's +x axis in 3413 at the cube pixels
    gx, gy = np.meshgrid(ds["x"].values, ds["y"].values)
    to_3995 = Transformer.from_crs(3413, 3995, always_xy=True)
    to_3413 = Transformer.from_crs(3995, 3413, always_xy=True)
    sx, sy = to_3995.transform(gx[ok], gy[ok])
    ex, ey = to_3413.transform(sx + 100.0, sy)
    ux, uy = (ex - gx[ok]) / 100.0, (ey - gy[ok]) / 100.0
    expected_angle = np.degrees(np.arctan2(uy, ux))
    angle = np.degrees(np.arctan2(vy[ok], vx[ok]))
    assert np.abs(expected_angle).mean() > 10  # a real rotation, not a no-op
    assert np.abs(angle - expected_angle).max() < 0.5  # degrees (int16 rounding included)
    speed = np.hypot(vx[ok], vy[ok])
    np.testing.assert_allclose(speed, 800.0 * np.hypot(ux, uy), atol=1.0)  # m/yr


def test_one_dask_task_per_cube_on_a_distributed_scheduler(template: Path, tmp_path: Path) -> None:
    from distributed import LocalCluster

    from glacierflow.processing import synthetic

    west = make_cube_granules(template, tmp_path / "west", 3)
    other_tile = write_granule(
        tmp_path, "far", synthetic.REF_TIME, synthetic.SEC_TIME, origin=(-80_040.0, -2_280_000.0)
    )
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        report = ingest(
            [*west, other_tile],
            tmp_path / "store",
            scheduler=cluster.scheduler_address,
            progress=quiet,
        )
    assert len(report.cubes) == 2 and report.added == 4
    assert cube_names(tmp_path / "store") == sorted(report.cubes)


CRASHING_INGEST = """
import sys
from pathlib import Path
from glacierflow.processing.cubes.ingest import ingest
files = [Path(p) for p in sys.argv[2:]]
print("ready", flush=True)
for k in range(0, len(files), 3):
    ingest(files[k:k + 3], Path(sys.argv[1]), consolidate_after=2, progress=print)
"""


def _check_whole(cube: LivingCube, template: Path, expected_k: dict[str, int]) -> int:
    """Every layer the cube shows is whole and right; returns how many there are."""
    xs, ys = _valid(template)
    for ds in (cube.open(), xr.open_zarr(cube.path)):
        urls = [str(u) for u in ds["granule_url"].values]
        assert len(set(urls)) == len(urls)
        vx = ds["vx"].sel(x=xr.DataArray(xs), y=xr.DataArray(ys)).values  # (layers, pixels)
        for i, url in enumerate(urls):
            np.testing.assert_array_equal(vx[i], 100 + 10 * expected_k[url])
    return len(cube.open()["mid_date"])


@pytest.mark.slow
def test_a_killed_ingest_leaves_old_or_new_content_and_the_next_one_completes(
    template: Path, tmp_path: Path
) -> None:
    files = make_cube_granules(template, tmp_path / "granules", 18)
    expected_k = {str(p.resolve()): k for k, p in enumerate(files)}
    store = tmp_path / "store"
    cube = LivingCube(store, TILE)
    seen = set()
    for delay in (0.0, 0.1, 0.2, 0.3, 0.45, 0.6):
        proc = subprocess.Popen(
            [sys.executable, "-c", CRASHING_INGEST, str(store), *map(str, files)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout.readline().strip() == "ready"  # imports done: ingest starts now
        # kill it a moment after its next commit, in the middle of whatever follows
        before = cube.snapshot().version
        deadline = time.monotonic() + 60
        while cube.snapshot().version == before and proc.poll() is None:
            assert time.monotonic() < deadline, "the ingest made no progress"
            time.sleep(0.005)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if cube.exists():
            seen.add(_check_whole(cube, template, expected_k))
    assert len(seen) >= 2, f"the kills all fell at the same state: {seen}"
    report = ingest(files, store, progress=quiet, force_consolidate=True)
    assert _check_whole(cube, template, expected_k) == 18
    assert report.added + report.cubes[TILE].already_in == 18
    assert not os.listdir(cube.state / "staging")
