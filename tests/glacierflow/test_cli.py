"""The `glacierflow` command line, run for real in a subprocess (`python -m glacierflow.cli`).

Each run gets its own GLACIERFLOW_DATA_DIR and working directory, so that neither the
FFTW wisdom cache nor a stray .env of the checkout is shared with other tests.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import psycopg
import pytest
import rasterio
import xarray as xr

from glacierflow import cli
from glacierflow.catalog.database import FALLBACK_ROOT, cluster_directory
from glacierflow.processing import synthetic

TRACK_OPTIONS = [
    "--output", "--ref-time", "--sec-time", "--spacing", "--chip-min", "--chip-max",
    "--max-speed", "--filter", "--subpixel", "--prior-vx", "--prior-vy", "--stable-mask",
    "--stable-shift", "--ref-mask", "--sec-mask", "--threads",
]  # fmt: skip
SMALL_CHIPS = ["--chip-min", "120", "--chip-max", "480", "--max-speed", "2000"]


def _run(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GLACIERFLOW_DATA_DIR": str(tmp_path / "data"), "GLACIERFLOW_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "glacierflow.cli", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@pytest.fixture
def scenes(tmp_path: Path) -> tuple[Path, Path]:
    pair = synthetic.make_pair((300, 300), seed=31)
    return synthetic.write_geotiffs(pair, tmp_path / "scenes", "cli")


def test_help_lists_the_commands(tmp_path: Path) -> None:
    run = _run(tmp_path, "--help")
    assert run.returncode == 0, run.stderr
    commands = run.stdout.split("Commands:")[1]
    assert re.search(r"^\s+track\s", commands, re.M)
    assert re.search(r"^\s+demo\s", commands, re.M)


def test_track_help_mentions_every_option(tmp_path: Path) -> None:
    run = _run(tmp_path, "track", "--help")
    assert run.returncode == 0, run.stderr
    declared = {opt for p in cli.track.params for opt in p.opts if opt.startswith("--")}
    assert set(TRACK_OPTIONS) <= declared
    for option in sorted(declared):
        assert re.search(rf"{option}\b", run.stdout), option
    assert "REF" in run.stdout and "SEC" in run.stdout


def test_track_writes_a_granule_and_prints_its_path(
    scenes: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "granules"
    run = _run(tmp_path, "track", str(scenes[0]), str(scenes[1]), "-o", str(out), *SMALL_CHIPS)
    assert run.returncode == 0, run.stderr
    printed = run.stdout.strip().splitlines()
    assert len(printed) == 1  # stdout is the path alone; progress goes to stderr
    path = Path(printed[0])
    assert path.parent == out and path.is_file()
    assert path.name.startswith("cli_ref_X_cli_sec_G0120V02_P")
    assert path.with_suffix(".png").is_file()
    assert "% valid" in run.stderr


def test_track_options_reach_the_granule(scenes: tuple[Path, Path], tmp_path: Path) -> None:
    target = tmp_path / "pair.nc"
    run = _run(
        tmp_path, "track", str(scenes[0]), str(scenes[1]), "-o", str(target), *SMALL_CHIPS,
        "--ref-time", "2024-07-01T00:00", "--sec-time", "2024-07-09T00:00",
        "--filter", "wallis", "--subpixel", "fit", "--threads", "2",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert Path(run.stdout.strip()) == target
    with xr.open_dataset(target) as ds:
        assert ds["img_pair_info"].attrs["date_dt"] == pytest.approx(8.0)
        assert ds.attrs["parameter_image_filter"] == "wallis"
        assert ds.attrs["parameter_subpixel"] == "fit"
        assert ds.attrs["parameter_chip_sizes_px"] == "16 32 64"


def test_track_missing_file_fails_cleanly(scenes: tuple[Path, Path], tmp_path: Path) -> None:
    missing = tmp_path / "scenes" / "not_there.tif"
    out = tmp_path / "granules"
    run = _run(tmp_path, "track", str(missing), str(scenes[1]), "-o", str(out))
    assert run.returncode != 0
    assert str(missing) in run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout == ""
    assert not out.exists() or not any(out.iterdir())


def test_track_refuses_a_pair_in_the_wrong_order(scenes: tuple[Path, Path], tmp_path: Path) -> None:
    run = _run(tmp_path, "track", str(scenes[1]), str(scenes[0]), "-o", str(tmp_path / "out"))
    assert run.returncode != 0
    assert "not after" in run.stderr and str(scenes[1]) in run.stderr
    assert not (tmp_path / "out").exists()


def _mask(path: Path, like: Path, value: int) -> Path:
    """A uint8 mask on the grid of `like`, `value` in its central quarter, 0 elsewhere."""
    with rasterio.open(like) as src:
        profile = {**src.profile, "dtype": "uint8", "nodata": None}
        data = np.zeros((src.height, src.width), np.uint8)
    data[src.height // 4 : 3 * src.height // 4, src.width // 4 : 3 * src.width // 4] = value
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return path


def test_track_masks_and_stable_shift_reach_the_granule(
    scenes: tuple[Path, Path], tmp_path: Path
) -> None:
    target = tmp_path / "pair.nc"
    run = _run(
        tmp_path, "track", str(scenes[0]), str(scenes[1]), "-o", str(target), *SMALL_CHIPS,
        "--ref-mask", str(_mask(tmp_path / "ref_qa.tif", scenes[0], 3)),
        "--sec-mask", str(_mask(tmp_path / "sec_qa.tif", scenes[1], 0)),
        "--stable-shift", "slowest-measured",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    with xr.open_dataset(target) as ds:
        assert ds.attrs["parameter_masks"] == "ref sec"
        assert ds.attrs["parameter_stable_shift"] == "slowest-measured"
        assert ds["vx"].attrs["stable_shift_flag"] == 2
        inner = ds["vx"].isel(y=slice(7, 12), x=slice(7, 12))  # the masked centre
        assert inner.isnull().all()
        assert ds["vx"].notnull().mean() > 0.5
    assert "nodata" in run.stderr


@pytest.mark.parametrize("flag", ["--ref-mask", "--sec-mask"])
def test_track_bad_mask_exits_2_naming_it(
    scenes: tuple[Path, Path], tmp_path: Path, flag: str
) -> None:
    missing = tmp_path / "no_qa_band.tif"
    out = tmp_path / "out"
    ref, sec = scenes
    run = _run(tmp_path, "track", str(ref), str(sec), "-o", str(out), flag, str(missing))
    assert run.returncode == 2
    assert flag in run.stderr and str(missing) in run.stderr
    assert "Traceback" not in run.stderr
    assert not out.exists()


def test_track_refuses_an_unknown_stable_shift(scenes: tuple[Path, Path], tmp_path: Path) -> None:
    run = _run(
        tmp_path, "track", str(scenes[0]), str(scenes[1]), "-o", str(tmp_path / "out"),
        "--stable-shift", "slowest",
    )  # fmt: skip
    assert run.returncode == 2
    assert "--stable-shift" in run.stderr


def test_track_wants_both_prior_components(scenes: tuple[Path, Path], tmp_path: Path) -> None:
    run = _run(
        tmp_path, "track", str(scenes[0]), str(scenes[1]), "-o", str(tmp_path / "out"),
        "--prior-vx", str(scenes[0]),
    )  # fmt: skip
    assert run.returncode == 2
    assert "--prior-vy" in run.stderr


@pytest.mark.slow
def test_demo_runs_then_reuses(tmp_path: Path) -> None:
    """The demo region is 1200 x 1200 px of dead-leaves texture; building it takes seconds."""
    first = _run(tmp_path, "demo", "--no-serve", timeout=180)
    assert first.returncode == 0, first.stderr
    assert re.search(r"^accuracy .*RMSE", first.stderr, re.M), first.stderr
    assert "catalog: 1 granule item(s) in collection 'granules'" in first.stderr
    granules = list((tmp_path / "data" / "demo" / "granules").glob("*.nc"))
    assert len(granules) == 1
    assert sorted(p.name for p in (tmp_path / "data" / "demo" / "scenes").iterdir()) == [
        "demo_ref.tif",
        "demo_sec.tif",
    ]
    stamp = granules[0].stat().st_mtime_ns

    second = _run(tmp_path, "demo", "--no-serve", timeout=180)
    assert second.returncode == 0, second.stderr
    assert "reusing" in second.stderr
    assert "writing synthetic scenes" not in second.stderr
    assert re.search(r"^accuracy ", second.stderr, re.M)
    assert granules[0].stat().st_mtime_ns == stamp
    assert list((tmp_path / "data" / "demo" / "granules").glob("*.nc")) == granules
    cluster = cluster_directory(tmp_path / "data")
    if cluster.is_relative_to(FALLBACK_ROOT):
        shutil.rmtree(cluster)


@pytest.mark.slow
def test_demo_serves_its_granule_on_localhost(tmp_path: Path) -> None:
    """The demo's end: the granule found through the STAC API, then a clean Ctrl-C."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "GLACIERFLOW_DATA_DIR": str(tmp_path / "data"), "GLACIERFLOW_THREADS": "1"}
    env.pop("DATABASE_URL", None)
    env.pop("PGHOST", None)
    demo = subprocess.Popen(
        [sys.executable, "-m", "glacierflow.cli", "demo", "--port", str(port)],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        found = None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and demo.poll() is None:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/stac/search?collections=granules")
                if answer.status_code == 200 and answer.json()["features"]:
                    found = answer.json()["features"]
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        assert found, "the demo never served its granule"
        assert found[0]["id"].startswith("demo_ref_X_demo_sec_G0120V02_P")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["status"] == "up"
    finally:
        demo.send_signal(signal.SIGINT)
        _, stderr = demo.communicate(timeout=60)
    assert demo.returncode == 0, stderr
    # the private cluster stopped with the demo (it may live outside an unreachable tmp dir)
    cluster = cluster_directory(tmp_path / "data")
    assert (cluster / "data" / "PG_VERSION").exists()
    assert not (cluster / "data" / "postmaster.pid").exists()
    if cluster.is_relative_to(FALLBACK_ROOT):
        shutil.rmtree(cluster)


def test_catalog_load_names_bad_files_loads_the_rest_and_exits_non_zero(
    tmp_path: Path, new_catalog, granule_files: dict[str, Path]
) -> None:
    dsn = new_catalog("cli_load")
    bad = tmp_path / "notes.nc"
    bad.write_text("not a granule")
    env = {**os.environ, "DATABASE_URL": dsn, "GLACIERFLOW_DATA_DIR": str(tmp_path / "data")}
    good = str(granule_files["july"])
    run = subprocess.run(
        [sys.executable, "-m", "glacierflow.cli", "catalog", "load", str(bad), good],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert f"skipped {bad}: not a NetCDF file" in run.stderr
    assert "loaded 1 granule item(s)" in run.stderr
    with psycopg.connect(dsn) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM pgstac.items")]
    assert ids == [granule_files["july"].stem]
    # loading again changes nothing and, with only good files, succeeds
    again = subprocess.run(
        [sys.executable, "-m", "glacierflow.cli", "catalog", "load", str(granule_files["july"])],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pgstac.items").fetchone() == (1,)
