"""The composite against a synthetic cube with a known answer (issue 12, item 2).

The cube (processing/composites/synthetic.py) has per pixel a known mean speed for every
year (a trend), a seasonal amplitude and phase, sampled by ~1,500 pairs of four sensors
(dt 5 to 546 days, optical gaps in the polar night, 80 % coverage, 5 % outliers), written
to Zarr with ITS_LIVE's int16 encoding and composited through the CLI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from glacierflow.processing.composites.fit import decimal_year
from glacierflow.processing.composites.synthetic import Truth, synthetic_cube, write_cube

SPARSE = 2  # the synthetic cube's first pixels, left with 10 pairs


def _composite(folder: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`glacierflow composite ARGS...` as a process of its own, its data directory in
    `folder`."""
    return subprocess.run(
        [sys.executable, "-m", "glacierflow.cli", "composite", *args],
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "GLACIERFLOW_DATA_DIR": str(folder / "data")},
    )  # fmt: skip


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> tuple[xr.Dataset, Truth, Path, str]:
    cube, truth = synthetic_cube(sparse_pixels=SPARSE)
    folder = tmp_path_factory.mktemp("composite")
    write_cube(cube, str(folder / "cube.zarr"))
    out = folder / "composite.nc"
    run = _composite(folder, str(folder / "cube.zarr"), "--out", str(out), timeout=300)
    assert run.returncode == 0, run.stderr
    with xr.open_dataset(out) as composite:
        return composite.load(), truth, out, run.stderr


def _per_pixel(field: xr.DataArray) -> np.ndarray:
    """(pixels, ...) in the synthetic cube's pixel order (y rows as generated)."""
    values = field.values
    return values.reshape(values.shape[0], -1).T if values.ndim == 3 else values.ravel()


def check_truth(
    annual: np.ndarray,
    v0: np.ndarray,
    trend: np.ndarray,
    amplitude: np.ndarray,
    phase: np.ndarray,
    truth: Truth,
) -> list[str]:
    """What misses the issue's bounds: annual means within 2 % or 5 m/yr, amplitude 10 %,
    phase 15 days, trend 10 % (v0, the intercept year's mean, as the annual means)."""
    fitted = slice(SPARSE, None)
    misses = []
    off = np.abs(annual[fitted] - truth.annual[fitted])
    allowed = np.maximum(0.02 * truth.annual[fitted], 5.0)
    if not np.all(off <= allowed):
        misses.append(f"annual: worst {np.nanmax(off / truth.annual[fitted]):.2%}")
    if not np.all(np.abs(v0[fitted] - truth.v0[fitted]) <= 0.02 * truth.v0[fitted]):
        misses.append("v0")
    amp_off = np.abs(amplitude[fitted] - truth.amplitude[fitted]) / truth.amplitude[fitted]
    if not np.all(amp_off <= 0.10):
        misses.append(f"amplitude: worst {np.nanmax(amp_off):.1%}")
    days = (phase[fitted] - truth.phase[fitted] + 365.25 / 2) % 365.25 - 365.25 / 2
    if not np.all(np.abs(days) <= 15):
        misses.append(f"phase: worst {np.nanmax(np.abs(days)):.1f} days")
    trend_off = np.abs(trend[fitted] - truth.trend[fitted]) / np.abs(truth.trend[fitted])
    if not np.all(trend_off <= 0.10):
        misses.append(f"trend: worst {np.nanmax(trend_off):.1%}")
    return misses


def test_composite_recovers_the_truth(case: tuple[xr.Dataset, Truth, Path, str]) -> None:
    composite, truth, _, _ = case
    assert composite["time"].dt.year.values.tolist() == truth.years.tolist()
    misses = check_truth(
        _per_pixel(composite["v"]),
        _per_pixel(composite["v0"]),
        _per_pixel(composite["dv_dt"]),
        _per_pixel(composite["v_amp"]),
        _per_pixel(composite["v_phase"]),
        truth,
    )
    assert misses == []
    # the components carry the flow direction; v is their hypotenuse
    vx, vy = _per_pixel(composite["vx"])[SPARSE:], _per_pixel(composite["vy"])[SPARSE:]
    direction = np.arctan2(vy, vx) - truth.direction[SPARSE:, None]
    assert np.all(np.abs(np.angle(np.exp(1j * direction))) < 0.02)


def test_truth_bounds_fail_a_naive_estimate(case: tuple[xr.Dataset, Truth, Path, str]) -> None:
    """The bounds discriminate: the per-year mean of the pairs' speeds by mid-date (what the
    fit replaces) misses them on the same cube."""
    _, truth, out, _ = case
    cube, _ = synthetic_cube(sparse_pixels=SPARSE)
    speed = np.hypot(cube["vx"].values, cube["vy"].values).reshape(cube.sizes["mid_date"], -1)
    year = np.floor(decimal_year(cube["mid_date"].values)).astype(int)
    seen = np.isfinite(speed)
    with np.errstate(invalid="ignore"):  # the sparse pixels have years without pairs
        naive = np.stack(
            [np.nansum(speed[year == y], 0) / seen[year == y].sum(0) for y in truth.years], 1
        )
    with xr.open_dataset(out) as composite:
        seasonal = [_per_pixel(composite[n]) for n in ("v0", "dv_dt", "v_amp", "v_phase")]
    assert any(m.startswith("annual") for m in check_truth(naive, *seasonal, truth))


def test_pixels_with_too_few_pairs_are_nan_and_counted(
    case: tuple[xr.Dataset, Truth, Path, str],
) -> None:
    composite, _, _, stderr = case
    for name in ("v0", "v_amp", "v_phase", "dv_dt", "outlier_percent"):
        assert np.isnan(_per_pixel(composite[name])[:SPARSE]).all(), name
        assert np.isfinite(_per_pixel(composite[name])[SPARSE:]).all(), name
    assert np.isnan(_per_pixel(composite["v"])[:SPARSE]).all()
    assert composite.attrs["pixels_too_few_pairs"] == SPARSE
    assert f"{SPARSE} with too few pairs" in stderr
    count0 = _per_pixel(composite["count0"])
    assert (count0[:SPARSE] <= 10).all() and (count0[SPARSE:] > 500).all()


def test_outliers_are_reported(case: tuple[xr.Dataset, Truth, Path, str]) -> None:
    """5 % of the values are outliers; each pixel reports at least that share left out."""
    composite, _, _, _ = case
    share = _per_pixel(composite["outlier_percent"])[SPARSE:]
    assert (share >= 3).all() and (share <= 40).all()
    assert composite["sensor"].values.tolist() == ["L7", "L8_L9", "S1A_S1B", "S2A_S2B"]
    assert (composite["sensor_flag"].values == 0).all()  # no sensor misbehaves here


def test_composite_refuses_what_is_not_a_cube(tmp_path: Path) -> None:
    """A folder that is not a velocity cube: exit 2 with the reason, nothing written."""
    cube, _ = synthetic_cube(ny=2, nx=2, n_pairs=50)
    cube.drop_vars(["vx_error"]).to_zarr(tmp_path / "bad.zarr")
    out = tmp_path / "out.nc"
    run = _composite(tmp_path, str(tmp_path / "bad.zarr"), "--out", str(out))
    assert run.returncode == 2
    assert "no vx_error" in run.stderr
    assert "Traceback" not in run.stderr
    assert not out.exists() and list(tmp_path.glob(".out.nc*")) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "{dir}/c.txt"], "does not end in .nc"),
        (["--out", "{dir}/c.nc", "--window", "2022", "2014"], "2022 comes after 2014"),
        (["--out", "{dir}/c.nc", "--window", "2014"], "--window"),
        (["--out", "{dir}/c.nc", "--intercept-year", "x"], "--intercept-year"),
        (["--out", "{dir}/missing/c.nc"], None),  # not bad: the folder is made
    ],
)
def test_composite_refuses_bad_options_and_makes_the_out_folder(
    case: tuple[xr.Dataset, Truth, Path, str], tmp_path: Path, args: list[str], message: str | None
) -> None:
    _, _, out, _ = case
    argv = [a.format(dir=tmp_path) for a in args]
    run = _composite(tmp_path, str(out.parent / "cube.zarr"), *argv)
    if message is None:  # a folder that does not exist yet is made
        assert run.returncode == 0, run.stderr
        assert (tmp_path / "missing" / "c.nc").is_file()
        return
    assert run.returncode == 2, run.stderr
    assert message in run.stderr
    assert list(tmp_path.glob("c.*")) == []


def test_composite_of_a_missing_cube_exits_2(tmp_path: Path) -> None:
    run = _composite(tmp_path, str(tmp_path / "nothing.zarr"), "--out", str(tmp_path / "c.nc"))
    assert run.returncode == 2
    assert "nothing.zarr: no such cube" in run.stderr
    assert not (tmp_path / "c.nc").exists()
