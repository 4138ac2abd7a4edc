"""The `glacierflow` command line, run for real in a subprocess (`python -m glacierflow.cli`).

Each run gets its own GLACIERFLOW_DATA_DIR and working directory, so that neither the
FFTW wisdom cache nor a stray .env of the checkout is shared with other tests.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest
import rasterio
import xarray as xr
from conftest import placed_cube

from glacierflow import cli
from glacierflow.processing import synthetic
from glacierflow.processing.mosaics.build import composite_path

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


# what a `glacierflow track` process has no use for: the granule is written with netCDF4,
# the KDE is numpy's, and neither the web stack nor the cubes' stack take part
NOT_FOR_TRACK = {
    "xarray", "pandas", "dask", "distributed", "scipy.stats", "zarr", "fastapi", "psycopg",
    "matplotlib",
}  # fmt: skip


def test_track_imports_only_what_it_needs(scenes: tuple[Path, Path], tmp_path: Path) -> None:
    """The whole process, the granule's writing included (issue 11 #6: xarray, pandas,
    Dask and scipy.stats cost a track process over two seconds of imports)."""
    out = tmp_path / "pair.nc"
    code = (
        "import json, sys\n"
        "from glacierflow import cli\n"
        "try:\n"
        f"    cli.main({['track', str(scenes[0]), str(scenes[1]), '-o', str(out), *SMALL_CHIPS]})\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "GLACIERFLOW_DATA_DIR": str(tmp_path / "data"), "GLACIERFLOW_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    loaded = set(json.loads(run.stdout.strip().splitlines()[-1]))
    assert {"pyfftw", "netCDF4", "rasterio"} <= loaded  # it did track and write
    assert out.is_file()
    packages = {m.split(".")[0] for m in loaded} | {".".join(m.split(".")[:2]) for m in loaded}
    assert not packages & NOT_FOR_TRACK, sorted(packages & NOT_FOR_TRACK)


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


def test_catalog_load_leaves_out_a_granule_without_a_valid_cell_unless_asked(
    tmp_path: Path, new_catalog, granule_files: dict[str, Path]
) -> None:
    """ITS_LIVE's sample (P000: not one valid cell) has no footprint to give: named and
    left out, exit 0; --keep-empty catalogues it (its whole grid as the footprint)."""
    dsn = new_catalog("cli_load_empty")
    env = {**os.environ, "DATABASE_URL": dsn, "GLACIERFLOW_DATA_DIR": str(tmp_path / "data")}
    empty, good = granule_files["itslive"], granule_files["july"]

    def load(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "glacierflow.cli", "catalog", "load", *args],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    def ids() -> list[str]:
        with psycopg.connect(dsn) as conn:
            return sorted(row[0] for row in conn.execute("SELECT id FROM pgstac.items"))

    run = load(str(empty), str(good))
    assert run.returncode == 0, run.stderr
    assert f"left out {empty}: not one valid cell" in run.stderr
    assert "loaded 1 granule item(s)" in run.stderr
    assert ids() == [good.stem]
    kept = load("--keep-empty", str(empty))
    assert kept.returncode == 0, kept.stderr
    assert ids() == sorted([good.stem, empty.stem])


def _refused(run: subprocess.CompletedProcess[str], *named: str) -> None:
    """Exit 2, a message naming each of `named`, no traceback and nothing on stdout."""
    assert run.returncode == 2, (run.returncode, run.stderr)
    for text in named:
        assert text in run.stderr, (text, run.stderr)
    assert "Traceback" not in run.stderr
    assert run.stdout == ""


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GLACIERFLOW_COLLECTION_IDS", '{"cubez": "x"}'),
        ("GLACIERFLOW_COLLECTION_IDS", "not json"),
        ("GLACIERFLOW_MAX_BODY_BYTES", "lots"),
        ("GLACIERFLOW_THREADS", "-3"),
    ],
)
def test_a_bad_setting_exits_2_naming_its_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    env = {**os.environ, "GLACIERFLOW_DATA_DIR": str(tmp_path / "data"), variable: value}
    run = subprocess.run(
        [sys.executable, "-m", "glacierflow.cli", "catalog", "init"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    _refused(run, variable)
    assert not (tmp_path / "data").exists()  # refused before anything is written


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--spacing", "0"), ("--spacing", "nan"), ("--spacing", "-120"), ("--spacing", "inf"),
        ("--spacing", "1e300"), ("--chip-min", "nan"), ("--chip-min", "0"),
        ("--chip-min", "1e30"), ("--chip-max", "inf"), ("--chip-max", "-960"),
        ("--max-speed", "nan"), ("--max-speed", "-1000"), ("--max-speed", "0"),
        ("--max-speed", "1e300"), ("--max-speed", "ten"), ("--threads", "0"),
        ("--threads", "nan"), ("--filter", "median"), ("--subpixel", "parabola"),
    ],
)  # fmt: skip
def test_track_refuses_bad_numbers_before_any_work(
    scenes: tuple[Path, Path], tmp_path: Path, option: str, value: str
) -> None:
    out = tmp_path / "granules"
    run = _run(tmp_path, "track", str(scenes[0]), str(scenes[1]), "-o", str(out), option, value)
    _refused(run, option)
    assert _files(out) == []


def test_track_refuses_a_spacing_finer_than_a_pixel(
    scenes: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "granules"
    run = _run(tmp_path, "track", *map(str, scenes), "-o", str(out), "--spacing", "5")
    _refused(run, "--spacing", "7.5 m")
    assert _files(out) == []


@pytest.mark.parametrize("order", ["min-first", "max-first"])
def test_track_refuses_chip_min_above_chip_max(
    scenes: tuple[Path, Path], tmp_path: Path, order: str
) -> None:
    chips = [["--chip-min", "960"], ["--chip-max", "240"]]
    if order == "max-first":
        chips.reverse()
    out = tmp_path / "granules"
    run = _run(tmp_path, "track", *map(str, scenes), "-o", str(out), *chips[0], *chips[1])
    _refused(run, "--chip-min (960 m) is larger than --chip-max (240 m)")
    assert _files(out) == []


def test_track_refuses_a_chip_larger_than_the_image(
    scenes: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "granules"
    run = _run(
        tmp_path, "track", *map(str, scenes), "-o", str(out),
        "--chip-min", "4000", "--chip-max", "8000",
    )  # fmt: skip
    _refused(run, "--chip-min", "larger than")
    assert _files(out) == []


@pytest.mark.parametrize("case", ["parent-is-file", "nc-is-directory", "unwritable", "in-a-file"])
def test_track_refuses_an_output_it_cannot_write(
    scenes: tuple[Path, Path], tmp_path: Path, case: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "a_file").write_text("x")
    (work / "pair.nc").mkdir()
    output, named = {
        "parent-is-file": (work / "a_file" / "pair.nc", "is a file"),
        "in-a-file": (work / "a_file" / "deeper" / "granules", "is a file"),
        "nc-is-directory": (work / "pair.nc", "is a directory"),
        # /proc takes no new files, even from root (permission bits would not stop root)
        "unwritable": (Path("/proc/glacierflow-test/pair.nc"), "cannot write"),
    }[case]
    before = _files(work)
    run = _run(tmp_path, "track", *map(str, scenes), "-o", str(output), *SMALL_CHIPS)
    _refused(run, "--output", named)
    assert _files(work) == before  # no orphan .png, no partial .nc


@pytest.mark.parametrize("option", ["--prior-vx", "--prior-vy", "--stable-mask", "REF", "SEC"])
def test_track_refuses_missing_input_files(
    scenes: tuple[Path, Path], tmp_path: Path, option: str
) -> None:
    missing = tmp_path / "no_such.tif"
    args = [str(scenes[0]), str(scenes[1])]
    extra: list[str] = []
    if option in ("REF", "SEC"):
        args[option == "SEC"] = str(missing)
    elif option == "--stable-mask":
        extra = [option, str(missing)]
    else:  # both priors are needed; the other one exists
        other = "--prior-vy" if option == "--prior-vx" else "--prior-vx"
        extra = [option, str(missing), other, str(scenes[0])]
    out = tmp_path / "granules"
    run = _run(tmp_path, "track", *args, "-o", str(out), *SMALL_CHIPS, *extra)
    _refused(run, option, str(missing), "no such file")
    assert _files(out) == []


def test_track_refuses_a_prior_that_is_not_a_raster(
    scenes: tuple[Path, Path], tmp_path: Path
) -> None:
    junk = tmp_path / "vx.tif"
    junk.write_text("not a raster")
    out = tmp_path / "granules"
    run = _run(
        tmp_path, "track", *map(str, scenes), "-o", str(out), *SMALL_CHIPS,
        "--prior-vx", str(junk), "--prior-vy", str(junk),
    )  # fmt: skip
    _refused(run, str(junk))
    assert _files(out) == []


def _south_up(path: Path) -> Path:
    """The same image stored south-up: rows reversed, positive y pixel size."""
    import rasterio

    flipped = path.with_name(f"south_{path.name}")
    with rasterio.open(path) as src:
        profile, data, tags = src.profile, src.read(1), src.tags()
        t = src.transform
    profile["transform"] = rasterio.Affine(t.a, 0, t.c, 0, -t.e, t.f + t.e * data.shape[0])
    with rasterio.open(flipped, "w", **profile) as dst:
        dst.write(data[::-1], 1)
        dst.update_tags(**tags)
    return flipped


@pytest.mark.parametrize("which", ["both", "sec"])
def test_track_reads_south_up_images(scenes: tuple[Path, Path], tmp_path: Path, which: str) -> None:
    north = _run(tmp_path, "track", *map(str, scenes), "-o", str(tmp_path / "n.nc"), *SMALL_CHIPS)
    assert north.returncode == 0, north.stderr
    ref = _south_up(scenes[0]) if which == "both" else scenes[0]
    sec = _south_up(scenes[1])
    south = _run(tmp_path, "track", str(ref), str(sec), "-o", str(tmp_path / "s.nc"), *SMALL_CHIPS)
    assert south.returncode == 0, south.stderr
    with xr.open_dataset(tmp_path / "n.nc") as n, xr.open_dataset(tmp_path / "s.nc") as s:
        np.testing.assert_array_equal(n["y"].values, s["y"].values)
        for var in ("vx", "vy"):
            np.testing.assert_array_equal(n[var].values, s[var].values)


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--port", "0"], ["serve", "--port", "70000"], ["serve", "--port", "http"],
        ["serve", "--workers", "0"], ["serve", "--workers", "nan"], ["demo", "--port", "-1"],
        ["demo", "--port", "65536"],
    ],
)  # fmt: skip
def test_other_commands_refuse_bad_numbers(tmp_path: Path, args: list[str]) -> None:
    run = _run(tmp_path, *args)
    _refused(run, args[1])
    assert not (tmp_path / "data").exists()  # refused before any database or demo work


def test_one_year_pair_of_a_small_crop_fits_in_memory(tmp_path: Path) -> None:
    """At the default 10 km/yr, a year asks for +-1338 px; the 400 x 400 px crop bounds
    the search, which then runs under a 3 GiB address-space cap (it tried 17 GiB)."""
    pair = synthetic.make_pair((400, 400), seed=5)
    ref, sec = synthetic.write_geotiffs(pair, tmp_path / "scenes", "year")
    cap = 3 * 1024**3
    env = {**os.environ, "GLACIERFLOW_DATA_DIR": str(tmp_path / "data"), "GLACIERFLOW_THREADS": "2"}
    run = subprocess.run(
        [sys.executable, "-m", "glacierflow.cli", "track", str(ref), str(sec),
         "-o", str(tmp_path / "year.nc"), "--ref-time", "2024-01-01", "--sec-time", "2025-01-01"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap)),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "warning: search window clipped to +-368 px by the image size" in run.stderr
    with xr.open_dataset(tmp_path / "year.nc") as ds:
        assert ds.attrs["parameter_search_radius_px"] == 368
        assert ds.attrs["parameter_search_radius_requested_px"] == 1338
        assert ds.attrs["parameter_search_radius_clipped_by"] == "image size"
        assert float(ds["v"].count()) > 0.9 * ds["v"].size


def test_a_small_memory_budget_clips_the_search_and_says_so(
    scenes: tuple[Path, Path], tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "GLACIERFLOW_DATA_DIR": str(tmp_path / "data"),
        "GLACIERFLOW_TRACK_MEMORY_BUDGET_MB": "64",
        "GLACIERFLOW_THREADS": "1",
    }
    run = subprocess.run(
        [sys.executable, "-m", "glacierflow.cli", "track", *map(str, scenes),
         "-o", str(tmp_path / "pair.nc"), "--max-speed", "100000"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "by the memory budget" in run.stderr
    assert "GLACIERFLOW_TRACK_MEMORY_BUDGET_MB=64" in run.stderr
    with xr.open_dataset(tmp_path / "pair.nc") as ds:
        assert ds.attrs["parameter_search_radius_clipped_by"] == "memory budget"
        attrs = ds.attrs
        assert attrs["parameter_search_radius_px"] < attrs["parameter_search_radius_requested_px"]


def test_help_imports_neither_the_tracker_nor_the_settings(tmp_path: Path) -> None:
    """`glacierflow --help` and the catalog commands' help start without numpy, scipy,
    rasterio, pyfftw or pydantic (issue 11 #6: the CLI's start-up)."""
    code = (
        "import sys\n"
        "from glacierflow import cli\n"
        "for args in (['--help'], ['catalog', '--help'], ['cube', '--help']):\n"
        "    try:\n"
        "        cli.main(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = {'numpy', 'scipy', 'rasterio', 'pyfftw', 'pydantic', 'xarray', 'dask'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip().splitlines()[-1] == "[]"


def test_the_tracker_starts_without_dask() -> None:
    """pyfftw's __init__ loads dask.array (about a second) for an interface the tracker
    does not use; the pipeline's imports leave it out."""
    code = "import sys, glacierflow.processing.pipeline; print('dask' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False"


# -- mosaic build ------------------------------------------------------------------------------

MOSAIC_WINDOW = ["--window", "2018", "2021", "--intercept-year", "2019"]
# a box around a cube at 400 km east, 5,200 km north in UTM zone 32N (~7.7°E, 46.9°N)
MOSAIC_BBOX = ["--bbox", "7.6", "46.9", "7.8", "47.0"]


@pytest.fixture
def mosaic_store(tmp_path: Path) -> Path:
    """The data directory's cube store with one synthetic cube."""
    store = tmp_path / "data" / "cubes"
    placed_cube(store, 32632, 400_012.5, 5_200_027.5, seed=1)
    return store


def _mosaic_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*ITS_LIVE_velocity*")) if folder.exists() else []


def test_mosaic_build_writes_a_year_and_the_summary_then_reuses_the_composites(
    mosaic_store: Path, tmp_path: Path
) -> None:
    args = ["mosaic", "build", *MOSAIC_BBOX, "--region", "valais", "--year", "2019",
            "--year", "0000", "--out", "out", *MOSAIC_WINDOW]  # fmt: skip
    first = _run(tmp_path, *args)
    assert first.returncode == 0, first.stderr
    out = tmp_path / "out"
    assert first.stdout.split() == [
        str(Path("out") / "ITS_LIVE_velocity_120m_valais_0000_v02.nc"),
        str(Path("out") / "ITS_LIVE_velocity_120m_valais_2019_v02.nc"),
    ]
    assert "composites: 0 current, 1 to build" in first.stderr
    for year, cogs in (("2019", 7), ("0000", 20)):
        stem = f"ITS_LIVE_velocity_120m_valais_{year}_v02"
        assert len(list(out.glob(f"{stem}_*.tif"))) == cogs + 1  # + the Web-Mercator v
        assert (out / f"{stem}_v_3857.tif").exists()
    second = _run(tmp_path, *args)
    assert second.returncode == 0, second.stderr
    assert "composites: 1 current, 0 to build" in second.stderr


def test_mosaic_build_registers_its_items_and_a_rebuild_updates_them(
    mosaic_store: Path, tmp_path: Path, new_catalog
) -> None:
    """Built into the data directory, the mosaics and the cube's composite become items of
    the `mosaics` collection; built again, the same items are updated, not added."""
    dsn = new_catalog("cli_mosaics")
    env = {**os.environ, "DATABASE_URL": dsn, "GLACIERFLOW_DATA_DIR": str(tmp_path / "data")}
    command = [sys.executable, "-m", "glacierflow.cli", "mosaic", "build", *MOSAIC_BBOX,
               "--region", "valais", "--year", "2019", "--year", "0000", "--out",
               str(tmp_path / "data" / "mosaics"), *MOSAIC_WINDOW]  # fmt: skip

    def items() -> list[tuple[str, str]]:
        with psycopg.connect(dsn) as conn:
            return sorted(conn.execute("SELECT id, collection FROM pgstac.items").fetchall())

    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "2 mosaic item(s) and 1 composite item(s) updated in collection 'mosaics'" in (
        first.stderr
    )
    made = items()
    (cube,) = mosaic_store.glob("*.zarr")
    composite = composite_path(cube, tmp_path / "data" / "mosaics" / "composites")
    assert made == sorted(
        [
            ("ITS_LIVE_velocity_120m_valais_0000_v02", "mosaics"),
            ("ITS_LIVE_velocity_120m_valais_2019_v02", "mosaics"),
            (composite.stem, "mosaics"),
        ]
    )
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert items() == made


def test_mosaic_build_outside_the_data_directory_says_it_is_not_catalogued(
    mosaic_store: Path, tmp_path: Path
) -> None:
    run = _run(tmp_path, "mosaic", "build", *MOSAIC_BBOX, "--region", "valais", "--year",
               "2019", "--out", "out", *MOSAIC_WINDOW)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "catalog: not registered" in run.stderr and "outside the data directory" in run.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bbox", "100", "10", "101", "11", "--region", "nowhere", "--year", "2019"],
         "no cube in .* touches nowhere"),
        ([*MOSAIC_BBOX, "--region", "valais", "--year", "2030"],
         "no composite has year 2030; years available: 2018, 2019, 2020, 2021"),
        (["--region", "RGI99A", "--year", "2019"], "unknown region 'RGI99A'; known: RGI01A"),
        ([*MOSAIC_BBOX, "--region", "a/b", "--year", "2019"], "region name 'a/b'"),
        ([*MOSAIC_BBOX, "--region", "x", "--year", "2019-x"], "give YYYY, 0000"),
        ([*MOSAIC_BBOX, "--year", "2019"], "give --cubes, --bbox W S E N with --region"),
        (["--cubes", "missing.zarr", "--year", "2019"], "missing.zarr: no such cube"),
        (["--cubes", "junk/ITS_LIVE_vel_EPSG32632_G0120_X450000_Y5250000.zarr", "--year",
          "2019"], "cannot composite ITS_LIVE_vel_EPSG32632_G0120_X450000_Y5250000.zarr: "
         "not a readable Zarr cube"),
    ],
)  # fmt: skip
def test_mosaic_build_bad_input_exits_2_and_writes_no_mosaic(
    mosaic_store: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    junk = tmp_path / "junk" / "ITS_LIVE_vel_EPSG32632_G0120_X450000_Y5250000.zarr"
    junk.mkdir(parents=True)
    (junk / "zarr.json").write_text("not json")
    run = _run(tmp_path, "mosaic", "build", *args, "--out", "out", *MOSAIC_WINDOW)
    assert run.returncode == 2, run.stderr
    assert re.search(message, run.stderr), run.stderr
    assert "Traceback" not in run.stderr
    assert _mosaic_files(tmp_path / "out") == []


def test_an_interrupted_mosaic_build_leaves_only_whole_files(tmp_path: Path) -> None:
    """SIGTERM while the files are being written: the command stops, removes its temporary
    file, and every file under a final name is complete."""
    store = tmp_path / "data" / "cubes"
    placed_cube(store, 32632, 400_012.5, 5_200_027.5, seed=1)
    placed_cube(store, 32632, 560_012.5, 5_260_027.5, seed=2)  # a 1,400 x 500 px mosaic
    env = {**os.environ, "GLACIERFLOW_DATA_DIR": str(tmp_path / "data")}
    command = [sys.executable, "-m", "glacierflow.cli", "mosaic", "build", "--cubes",
               str(store), "--year", "0000", "--out", str(tmp_path / "out"),
               *MOSAIC_WINDOW]  # fmt: skip
    build = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while build.poll() is None and time.monotonic() < deadline:
        if list((tmp_path / "out").glob(".ITS_LIVE_velocity*")):  # writing under a temp name
            build.send_signal(signal.SIGTERM)
            break
        time.sleep(0.01)
    _, stderr = build.communicate(timeout=60)
    assert build.returncode != 0, f"the build ended before it could be interrupted: {stderr}"
    assert not list((tmp_path / "out").glob(".ITS_LIVE*")), "a temporary file was left"
    for path in _mosaic_files(tmp_path / "out"):
        if path.suffix == ".nc":
            xr.open_dataset(path).load().close()
        else:
            with rasterio.open(path) as cog:
                cog.read()


def test_track_with_the_radar_preset_reads_db_with_larger_chips(tmp_path: Path) -> None:
    motion = synthetic.make_pair((300, 300), synthetic.uniform(0.5, -0.8), noise=0.0, seed=44)
    radar = synthetic.radar_amplitude(motion, seed=44)
    ref, sec = synthetic.write_geotiffs(radar, tmp_path / "scenes", "s1")
    out = tmp_path / "radar.nc"
    run = _run(tmp_path, "track", str(ref), str(sec), "-o", str(out), "--preset", "radar")
    assert run.returncode == 0, run.stderr
    with xr.open_dataset(out) as ds:
        assert ds.attrs["parameter_amplitude"] == "dB"
        assert ds.attrs["parameter_chip_sizes_px"] == "64 128 256"  # 480-1920 m of 7.5 m
    refused = _run(tmp_path, "track", str(ref), str(sec), "-o", str(out), "--preset", "sonar")
    assert refused.returncode == 2 and "--preset" in refused.stderr
