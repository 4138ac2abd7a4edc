"""ITS_LIVE's own composite functions on the truth test's cube, beside glacierflow's fit.

    .venv/bin/python benchmarks/composite.py --export-case /tmp/case.npz
    ITSLIVE_VENV/bin/python benchmarks/composite_itslive.py /tmp/case.npz \\
        --itslive-src ITS_LIVE_CHECKOUT/src

Runs outside the project: ITSLIVE_VENV is a virtualenv with ITS_LIVE's needs (numba,
scipy, pandas, dask, tqdm, xarray, zarr, python-dateutil) and ITS_LIVE_CHECKOUT a clone of
nasa-jpl/its_live_production; nothing of it is part of glacierflow. Per pixel, as
`ITSLiveComposite.cube_time_mean` does: projection on the median flow and the dt_max
filter per sensor group (`create_projected_velocity`, `cube_filter_iteration`, layers
sorted by dt), speeds over 20,000 m/yr dropped, `itslive_lsqfit_annual` for vx and vy,
then `annual_magnitude` and `climatology_magnitude`. Left out: the land-ice-mask-driven
SensorExcludeFilter and the Sentinel-2 refit (they need ITS_LIVE's shapefiles; nothing in
this cube triggers them), and the StableShiftFilter (the errors given already hold the
co-registration term). The stub for `itscube` only satisfies an import that these
functions do not use.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
import types

import numpy as np

V0_YEARS = list(range(2014, 2023))
CENTER_DATE = datetime.datetime(2018, 1, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("case", help="NPZ written by benchmarks/composite.py --export-case")
    parser.add_argument("--itslive-src", required=True, help="its_live_production/src")
    args = parser.parse_args()
    sys.path.insert(0, args.itslive_src)
    stub = types.ModuleType("itscube")
    stub.ITSCube = object  # type: ignore[attr-defined]
    sys.modules["itscube"] = stub
    import itslive_composite as its

    case = np.load(args.case, allow_pickle=False)
    start = np.array([its.decimal_year(datetime.datetime.fromisoformat(s)) for s in case["start"]])
    stop = np.array([its.decimal_year(datetime.datetime.fromisoformat(s)) for s in case["stop"]])
    by_dt = np.argsort(case["date_dt"], kind="stable")  # ITS_LIVE sorts its cube by dt
    start, stop = start[by_dt], stop[by_dt]
    date_dt = case["date_dt"][by_dt].astype(np.float64)
    group = case["group"][by_dt]
    vx = case["vx"][:, by_dt].astype(np.float64)
    vy = case["vy"][:, by_dt].astype(np.float64)
    errors = {"vx": case["error_x"][by_dt], "vy": case["error_y"][by_dt]}
    years = np.arange(int(np.floor(start.min())), int(np.floor(stop.max())) + 1)
    matrix = its.create_M(years, start, stop, stop - start)
    n_pix = vx.shape[0]

    # numba compiles on the first call: warm up on one pixel, untimed
    its.cube_filter_iteration(its.create_projected_velocity(vx[0], vy[0], date_dt), date_dt, 1.4826)
    scratch = np.full(len(years), np.nan), np.full(len(years), np.nan), np.zeros(len(years))
    its.itslive_lsqfit_annual(
        "vx", vx[0], errors["vx"], start, stop, stop - start, years, matrix, 1.4826, V0_YEARS,
        CENTER_DATE, *scratch, 0, 0,
    )  # fmt: skip
    t0 = time.perf_counter()
    invalid = np.zeros_like(vx, dtype=bool)
    for p in range(n_pix):
        projected = its.create_projected_velocity(vx[p], vy[p], date_dt)
        for name in np.unique(group):
            members = group == name
            _, drop = its.cube_filter_iteration(projected[members], date_dt[members], 1.4826)
            invalid[p, members] = drop
    invalid |= np.hypot(vx, vy) > 20000
    vx[invalid] = np.nan
    vy[invalid] = np.nan
    fits = {}
    for name, values in (("vx", vx), ("vy", vy)):
        mean = np.full((n_pix, len(years)), np.nan)
        error = np.full((n_pix, len(years)), np.nan)
        count = np.zeros((n_pix, len(years)))
        scalars = np.full((n_pix, 7), np.nan)  # A, amp_error, phase, offset, slope, se, n
        for p in range(n_pix):
            if np.isfinite(values[p]).sum() < 5:
                continue
            ok, result, _, _ = its.itslive_lsqfit_annual(
                name, values[p], errors[name], start, stop, stop - start, years, matrix,
                1.4826, V0_YEARS, CENTER_DATE, mean[p], error[p], count[p], 0, p,
            )  # fmt: skip
            if ok:
                scalars[p] = result
        fits[name] = (mean, error, count, scalars)
    (mx, ex, cx, sx), (my, ey, cy, sy) = fits["vx"], fits["vy"]
    v_annual, _, _ = its.annual_magnitude(mx, my, ex, ey, cx, cy)
    v0, dv_dt, v_amp, _, v_phase, _ = its.climatology_magnitude(
        sx[:, 3].copy(), sy[:, 3].copy(), sx[:, 4], sy[:, 4], sx[:, 0], sy[:, 0],
        sx[:, 1], sy[:, 1], sx[:, 2], sy[:, 2], sx[:, 5], sy[:, 5], 20000,
    )  # fmt: skip
    seconds = time.perf_counter() - t0

    truth_years = case["truth_years"]
    pick = np.searchsorted(years, truth_years)
    theirs = {"v": v_annual[:, pick], "v0": v0, "dv_dt": dv_dt, "v_amp": v_amp, "v_phase": v_phase}
    ours_pick = np.searchsorted(case["ours_years"], truth_years)
    ours = {k: case[f"ours_{k}"] for k in ("v", "v0", "dv_dt", "v_amp", "v_phase")}
    ours["v"] = ours["v"][:, ours_pick]
    print(f"{n_pix} pixels x {vx.shape[1]} pairs, years {years[0]}-{years[-1]}")
    print("| | annual v worst % | v0 worst % | trend worst % | amplitude worst % | "
          "phase worst days | pixels fitted | s (one thread) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for label, result, took in (
        ("glacierflow", ours, float(case["ours_seconds"])),
        ("ITS_LIVE's functions", theirs, seconds),
    ):
        print(f"| {label} | {' | '.join(_errors(result, case))} | {took:.2f} |")


def _errors(result: dict[str, np.ndarray], case: np.lib.npyio.NpzFile) -> list[str]:
    annual = np.abs(result["v"] - case["truth_annual"]) / case["truth_annual"]
    v0 = np.abs(result["v0"] - case["truth_v0"]) / case["truth_v0"]
    trend = np.abs(result["dv_dt"] - case["truth_trend"]) / np.abs(case["truth_trend"])
    amp = np.abs(result["v_amp"] - case["truth_amplitude"]) / case["truth_amplitude"]
    days = (result["v_phase"] - case["truth_phase"] + 365.25 / 2) % 365.25 - 365.25 / 2
    fitted = np.isfinite(result["v0"]).sum()
    return [
        f"{100 * np.nanmax(annual):.2f}",
        f"{100 * np.nanmax(v0):.2f}",
        f"{100 * np.nanmax(trend):.1f}",
        f"{100 * np.nanmax(amp):.1f}",
        f"{np.nanmax(np.abs(days)):.1f}",
        f"{fitted}/{len(v0)}",
    ]


if __name__ == "__main__":
    main()
