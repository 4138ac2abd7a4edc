"""`glacierflow run`'s pipeline for real: synthetic scenes tracked on Dask (a LocalCluster,
and a `dask scheduler` with two `dask worker` processes on loopback, one of them killed
mid-run), granules ingested into a cube, composites and mosaics built, all catalogued in
a real pgstac database; a run killed and run again; a pair with an unreadable scene."""

from __future__ import annotations

import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest
import xarray as xr
from conftest import free_port, let_postgres_traverse

from glacierflow.processing import synthetic
from glacierflow.processing.cubes.store import LivingCube, cube_names
from glacierflow.processing.scenes import Pair, Scene
from glacierflow.run import (
    TRACK_DEFAULTS,
    RunReport,
    dask_client,
    finished_granule,
    pair_folder,
    run_pairs,
)
from glacierflow.settings import Settings
from glacierflow.watch import watch

GOOD_PAIRS = 8
# small scenes: 300 x 300 px at 7.5 m, chips and search to match
TEMPLATE = replace(TRACK_DEFAULTS, chip_min_m=120, chip_max_m=480, max_speed_m_per_yr=2000)
FIRST = datetime(2023, 3, 1, 12, tzinfo=UTC)


def _scene(path: Path, when: datetime) -> Scene:
    footprint = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
    return Scene(path.stem, str(path), when, "landsat-8", "oli", synthetic.EPSG, footprint)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> list[Pair]:
    """Eight pairs of one footprint, 16 days each, one every 45 days (March 2023 to
    January 2024), moving a known (0.3, -0.7) px; and a ninth whose secondary scene is not
    an image."""
    folder = tmp_path_factory.mktemp("run-scenes")
    made = []
    for k in range(GOOD_PAIRS + 1):
        ref_time = FIRST + timedelta(days=45 * k)
        sec_time = ref_time + timedelta(days=16)
        pair = synthetic.make_pair(
            (300, 300), synthetic.uniform(0.3, -0.7), seed=k, ref_time=ref_time, sec_time=sec_time
        )
        ref, sec = synthetic.write_geotiffs(pair, folder, f"S{k:02d}")
        made.append(Pair(_scene(ref, ref_time), _scene(sec, sec_time)))
    Path(made[-1].sec.href).write_bytes(b"not a GeoTIFF")
    return made


@dataclass
class Run:
    settings: Settings
    dsn: str
    report: RunReport


def _catalog(new_catalog: Callable[[str], str], name: str, data_dir: Path) -> str:
    data_dir.mkdir(parents=True)
    let_postgres_traverse(data_dir)
    return new_catalog(name)


@pytest.fixture(scope="module")
def local_run(pairs: list[Pair], tmp_path_factory: pytest.TempPathFactory, new_catalog) -> Run:
    """The reference: the pipeline on a LocalCluster of two processes."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("run-local") / "data", dask_workers=2)
    dsn = _catalog(new_catalog, "run_local", settings.data_dir)
    report = run_pairs(settings, pairs, dsn, template=TEMPLATE, region="TEST")
    return Run(settings, dsn, report)


def _items(dsn: str) -> dict[str, list[str]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT collection, id FROM pgstac.items ORDER BY id").fetchall()
    found: dict[str, list[str]] = {}
    for collection, item in rows:
        found.setdefault(collection, []).append(item)
    return found


def _cube(settings: Settings) -> xr.Dataset:
    (name,) = cube_names(settings.cube_store)
    return LivingCube(settings.cube_store, name).open().load()


def assert_same_outputs(run: Run, reference: Run, pairs: list[Pair]) -> None:
    """Every good pair's granule and the cube hold what the reference run's do (velocities
    within float rounding: FFTW may plan differently in another process), and the cube and
    the catalog hold each granule once."""
    for pair in pairs[:GOOD_PAIRS]:
        ours = finished_granule(pair_folder(run.settings.data_dir / "granules", pair))
        theirs = finished_granule(pair_folder(reference.settings.data_dir / "granules", pair))
        assert ours is not None and theirs is not None, pair.id
        assert ours.name == theirs.name
        with xr.open_dataset(ours) as a, xr.open_dataset(theirs) as b:
            for name in ("vx", "vy", "v"):
                np.testing.assert_allclose(a[name], b[name], atol=0.05, equal_nan=True)
    cube, reference_cube = _cube(run.settings), _cube(reference.settings)
    assert cube.sizes["mid_date"] == GOOD_PAIRS
    assert len(set(cube["mid_date"].values)) == GOOD_PAIRS
    np.testing.assert_array_equal(cube["mid_date"], reference_cube["mid_date"])
    assert sorted(cube["granule_url"].values) == sorted(reference_cube["granule_url"].values)
    for name in ("vx", "vy"):
        np.testing.assert_allclose(cube[name], reference_cube[name], atol=0.05, equal_nan=True)
    items = _items(run.dsn)
    assert items == _items(reference.dsn)
    assert len(items["granules"]) == GOOD_PAIRS
    assert len(items["cubes"]) == 1


def test_a_run_does_every_stage_and_names_the_pair_that_failed(
    local_run: Run, pairs: list[Pair]
) -> None:
    report = local_run.report
    bad = pairs[-1]
    assert report.pairs == GOOD_PAIRS + 1
    assert report.done_before == []
    assert report.tracked == sorted(p.id for p in pairs[:GOOD_PAIRS])
    assert list(report.failed) == [bad.id]
    assert "cannot read it as an image" in report.failed[bad.id]
    assert not report.ok and not report.problems
    assert report.cubes == {next(iter(report.cubes)): GOOD_PAIRS}
    # the tracked velocity is the synthetic truth: 0.3 px down, 0.7 px left in 16 days
    with xr.open_dataset(report.granules[0]) as granule:
        years = 16 / 365.25
        assert float(granule["vx"].median()) == pytest.approx(-0.7 * 7.5 / years, abs=5)
        assert float(granule["vy"].median()) == pytest.approx(-0.3 * 7.5 / years, abs=5)
    assert len(report.composites) == 1 and report.composites[0].exists()
    years = {m.year for m in report.mosaics}
    assert years == {0, 2023, 2024}  # each year the pairs touch, and the summary
    assert all(m.netcdf.exists() and m.cogs["v"].exists() for m in report.mosaics)
    items = _items(local_run.dsn)
    assert len(items["granules"]) == GOOD_PAIRS
    assert len(items["cubes"]) == 1
    assert len(items["mosaics"]) == len(report.mosaics) + 1  # and the composite
    table = report.table()
    assert f"{bad.id}: " in table and "cannot read it as an image" in table
    assert "problem" not in table


def test_a_second_run_does_only_what_failed_and_duplicates_nothing(
    local_run: Run, pairs: list[Pair]
) -> None:
    cube_before = _cube(local_run.settings)
    items_before = _items(local_run.dsn)
    mosaic_times = [m.netcdf.stat().st_mtime for m in local_run.report.mosaics]
    again = run_pairs(local_run.settings, pairs, local_run.dsn, template=TEMPLATE, region="TEST")
    assert again.done_before == sorted(p.id for p in pairs[:GOOD_PAIRS])
    assert again.tracked == []
    assert list(again.failed) == [pairs[-1].id]  # tried again, failed again
    assert set(again.cubes.values()) == {0}
    assert again.mosaics_reused
    assert [m.netcdf.stat().st_mtime for m in again.mosaics] == mosaic_times
    assert _items(local_run.dsn) == items_before
    cube = _cube(local_run.settings)
    np.testing.assert_array_equal(cube["mid_date"], cube_before["mid_date"])


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """`dask scheduler` and two single-threaded `dask worker` processes on loopback."""
    from distributed import Client

    dask = Path(sys.executable).with_name("dask")
    address = f"tcp://127.0.0.1:{free_port()}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen(
        [dask, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
         "--no-dashboard"], **quiet,
    )  # fmt: skip
    workers = []
    for k in range(2):
        options = ["--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", f"w{k}"]
        folder = ["--local-directory", str(tmp_path / f"w{k}")]
        workers.append(subprocess.Popen([dask, "worker", address, *options, *folder], **quiet))
    try:
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield address, workers
    finally:
        for process in [*workers, scheduler]:
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _when_granules(folder: Path, count: int, then: Callable[[], None], timeout: float) -> None:
    """Call `then` as soon as `count` finished granules are under `folder`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(list(folder.glob("*/[!.]*.nc"))) >= count:
            then()
            return
        time.sleep(0.05)
    raise TimeoutError(f"fewer than {count} granules in {folder} after {timeout} s")


def test_a_cluster_run_with_a_worker_killed_mid_run_equals_a_local_run(
    local_run: Run,
    pairs: list[Pair],
    dask_cluster: tuple[str, list[subprocess.Popen]],
    tmp_path: Path,
    new_catalog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    address, workers = dask_cluster
    monkeypatch.setenv("GLACIERFLOW_DASK_SCHEDULER", address)
    settings = Settings(data_dir=tmp_path / "data")
    assert settings.dask_scheduler == address
    dsn = _catalog(new_catalog, "run_cluster", settings.data_dir)
    killed = threading.Thread(
        target=_when_granules,
        args=(settings.data_dir / "granules", 1, lambda: workers[0].send_signal(signal.SIGKILL)),
        kwargs={"timeout": 300},
    )
    killed.start()
    report = run_pairs(settings, pairs, dsn, template=TEMPLATE, region="TEST")
    killed.join()
    assert workers[0].wait(10) == -signal.SIGKILL
    assert workers[1].poll() is None
    assert report.tracked == local_run.report.tracked
    assert report.failed.keys() == local_run.report.failed.keys()
    assert not report.problems
    assert_same_outputs(Run(settings, dsn, report), local_run, pairs)


RUN_SCRIPT = """
import pickle, sys

from glacierflow.run import run_pairs

if __name__ == "__main__":
    with open(sys.argv[1], "rb") as file:
        settings, pairs, dsn, template = pickle.load(file)
    run_pairs(settings, pairs, dsn, template=template, region="TEST")
"""


def test_a_run_killed_mid_run_and_run_again_equals_an_uninterrupted_one(
    local_run: Run, pairs: list[Pair], tmp_path: Path, new_catalog
) -> None:
    settings = Settings(data_dir=tmp_path / "data", dask_workers=1)
    dsn = _catalog(new_catalog, "run_resumed", settings.data_dir)
    (tmp_path / "run.py").write_text(RUN_SCRIPT)
    (tmp_path / "job.pickle").write_bytes(pickle.dumps((settings, pairs, dsn, TEMPLATE)))
    process = subprocess.Popen(
        [sys.executable, tmp_path / "run.py", tmp_path / "job.pickle"],
        start_new_session=True,  # its own process group: the run and its cluster's workers
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _when_granules(
            settings.data_dir / "granules",
            2,
            lambda: os.killpg(process.pid, signal.SIGKILL),
            timeout=300,
        )
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.wait(10) == -signal.SIGKILL  # killed while it ran, not after it ended
    cut_short = sum(
        finished_granule(pair_folder(settings.data_dir / "granules", p)) is not None for p in pairs
    )
    assert 2 <= cut_short < GOOD_PAIRS
    with dask_client(None, 1) as client:
        report = run_pairs(settings, pairs, dsn, template=TEMPLATE, region="TEST", client=client)
        bad = f"track-{pairs[-1].id}"
        story = client.run_on_scheduler(
            lambda dask_scheduler: [(a, b) for _, a, b, *_ in dask_scheduler.story(bad)]
        )
    started = [step for step in story if step[1] == "processing"]
    assert len(started) == 2, story  # the failing pair: retried once
    assert story.count(("processing", "erred")) == 1, story
    assert list(report.failed) == [pairs[-1].id]
    assert len(report.done_before) == cut_short
    assert len(report.done_before) + len(report.tracked) == GOOD_PAIRS
    assert not report.problems
    assert_same_outputs(Run(settings, dsn, report), local_run, pairs)


def test_run_help_documents_the_options_and_exit_status(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "glacierflow.cli", "run", "--help"],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    for option in ("--bbox", "--start", "--end", "--scheduler", "--workers", "--max-pairs"):
        assert option in run.stdout
    assert "Exit status" in run.stdout


def test_watch_processes_only_the_new_pair_and_refreshes_the_composite(
    pairs: list[Pair], tmp_path: Path, new_catalog
) -> None:
    settings = Settings(data_dir=tmp_path / "data", dask_workers=1)
    dsn = _catalog(new_catalog, "run_watch", settings.data_dir)
    available = list(pairs[:3])
    reports: list[RunReport] = []
    stop = threading.Event()
    arrived: list[float] = []

    def next_round(report: RunReport) -> None:
        reports.append(report)
        if len(reports) == 1:  # a new scene arrives: one more pair
            available.append(pairs[3])
            arrived.append(time.monotonic())
        else:
            stop.set()

    rounds = watch(
        settings,
        dsn,
        lambda: available,
        interval_s=0.2,
        stop=stop,
        template=TEMPLATE,
        region="TEST",
        on_round=next_round,
        say=lambda _: None,
    )
    latency = time.monotonic() - arrived[0]
    assert rounds == 2
    first, second = reports
    assert first.tracked == sorted(p.id for p in pairs[:3])
    assert second.done_before == first.tracked and second.tracked == [pairs[3].id]
    assert list(second.cubes.values()) == [1]  # appended, not rebuilt
    cube = _cube(settings)
    assert cube.sizes["mid_date"] == 4
    (name,) = cube_names(settings.cube_store)
    assert LivingCube(settings.cube_store, name).snapshot().segments  # not consolidated
    with xr.open_dataset(second.composites[0]) as composite:
        assert int(composite["count0"].max()) == 4  # the composite has the new layer
    assert len(_items(dsn)["granules"]) == 4
    assert latency < 300, f"the new pair took {latency:.0f} s to reach the cube"


def test_glacierflow_run_pairs_the_catalogued_scenes_and_prints_its_table(
    new_catalog: Callable[[str], str], tmp_path: Path
) -> None:
    """The command from the catalog's scene items (the demo region's, relative hrefs) to
    catalogued mosaics: pairs by the rules, a summary table on stdout, exit 0; run again,
    it tracks nothing."""
    from glacierflow.catalog.scenes import load_scenes, scene_item
    from glacierflow.processing.scenes.region import Region

    data = tmp_path / "data"
    dsn = _catalog(new_catalog, "run_cli", data)
    settings = Settings(data_dir=data)
    region = Region(width_m=2_400, height_m=1_920, clear_days=1.0)
    scenes = region.write_scenes(
        data / "scenes", datetime(2024, 6, 1, tzinfo=UTC), datetime(2024, 6, 30, tzinfo=UTC)
    )
    load_scenes(dsn, [scene_item(s, settings.data_href) for s in scenes])
    env = {**os.environ, "DATABASE_URL": dsn, "GLACIERFLOW_DATA_DIR": str(data),
           "GLACIERFLOW_DASK_WORKERS": "1"}  # fmt: skip
    env.pop("GLACIERFLOW_DASK_SCHEDULER", None)
    command = [sys.executable, "-m", "glacierflow.cli", "run", "--max-pairs", "3",
               "--max-speed", "3000"]  # fmt: skip
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "pairs: 3, 0 done before, 3 to track" in first.stderr
    assert first.stdout.startswith("pairs") and re.search(r"^  tracked +3 ", first.stdout, re.M)
    with psycopg.connect(dsn) as conn:
        counts = dict(conn.execute("SELECT collection, count(*) FROM pgstac.items GROUP BY 1"))
    assert counts["granules"] == 3 and counts["cubes"] >= 1 and counts["mosaics"] >= 2
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "pairs: 3, 3 done before, 0 to track" in again.stderr
