"""The composite fit (fit.py) on one pixel's series, for /timeseries: the pixel's annual
values and the seasonal curve that a web app draws over the points.

The layers are those of the series (after its filters), turned into pairs as a cube's
are (`cube_pairs`), so a pixel's figures are those of its cube's composite over the same
layers with the series' years as climatology window. That window is the series' own
because ITS_LIVE's (2014-2022, the composites' default) may hold none of a series.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from glacierflow.processing.composites.build import CompositeError, cube_pairs
from glacierflow.processing.composites.fit import (
    DAYS_PER_YEAR,
    MIN_PAIRS,
    TWO_PI,
    Options,
    composite_block,
    decimal_year,
)
from glacierflow.processing.cubes.layout import TIME_DIM

# what the fit reads from a pixel's series, besides what was asked for
FIT_INPUTS = (
    "vx",
    "vy",
    "vx_error",
    "vy_error",
    "vx_error_slow",
    "vy_error_slow",
    "stable_shift_flag",
    "acquisition_date_img1",
    "acquisition_date_img2",
    "satellite_img1",
)
ANNUAL = ("v", "v_error", "vx", "vx_error", "vy", "vy_error", "count")
SEASONAL = ("v_amp", "v_phase", "vx_amp", "vx_phase", "vy_amp", "vy_phase")
CURVE = ("v", "vx", "vy")
# the curve's dates: multiples of this many days from 1970-01-01, so that several points'
# curves share their dates
CURVE_STEP_DAYS = 5


@dataclass(frozen=True)
class SeriesFit:
    """One pixel's fit: per year (ANNUAL), the seasonal cycle (SEASONAL: m/yr, day of the
    year of the maximum) and the fitted velocity sampled every CURVE_STEP_DAYS days."""

    pairs: int  # layers given to the fit
    years: np.ndarray
    annual: dict[str, np.ndarray]
    seasonal: dict[str, float]
    curve_time: np.ndarray  # datetime64[D]
    curve: dict[str, np.ndarray]  # CURVE (m/yr)

    @classmethod
    def empty(cls) -> SeriesFit:
        """No year, no curve, NaN figures: a fit's shape where there is none (NetCDF
        answers keep their variables for every point)."""
        return cls(
            0,
            np.array([], np.int64),
            {name: np.array([]) for name in ANNUAL},
            {name: np.nan for name in SEASONAL},
            np.array([], "datetime64[D]"),
            {name: np.array([]) for name in CURVE},
        )


@dataclass(frozen=True)
class NoFit:
    """Why a series has no fit (too few pairs, most often): not an error."""

    reason: str


def fit_series(series: xr.Dataset, min_pairs: int = MIN_PAIRS) -> SeriesFit | NoFit:
    """The fit of one pixel's series (a dataset on mid_date holding FIT_INPUTS)."""
    if series.sizes.get(TIME_DIM, 0) == 0:
        return NoFit("the series has no layers")
    try:
        pairs, order = cube_pairs(series)
    except CompositeError as err:
        return NoFit(str(err).replace("the cube", "the series"))
    vx = series["vx"].values.astype(np.float32)[order][None, :]
    vy = series["vy"].values.astype(np.float32)[order][None, :]
    usable = int((np.isfinite(vx) & np.isfinite(vy)).sum())
    if usable < min_pairs:
        return NoFit(f"{usable} pairs; the fit needs at least {min_pairs}")
    years = pairs.years
    first, last = int(years[0]), int(years[-1])
    options = Options(
        window=(first, last), intercept_year=(first + last + 1) // 2, min_pairs=min_pairs
    )
    result = composite_block(vx, vy, pairs, options)
    if not np.isfinite(result["vx"]).any():
        return NoFit(
            f"fewer than {min_pairs} of the {usable} pairs are left once outliers and "
            "over-long pairs (dt_max) are set aside"
        )
    annual = {name: result[name][0] for name in ANNUAL}
    seasonal = {name: float(result[name][0]) for name in SEASONAL}
    days = series[TIME_DIM].values.astype("datetime64[D]").astype(np.int64)
    start = -(-days.min() // CURVE_STEP_DAYS) * CURVE_STEP_DAYS
    curve_time = np.arange(start, days.max() + 1, CURVE_STEP_DAYS).astype("datetime64[D]")
    t = decimal_year(curve_time)
    index = np.floor(t).astype(np.int64) - first
    index[(index < 0) | (index >= len(years))] = -1  # a mid_date outside its pair: no mean
    curve = {}
    for name in ("vx", "vy"):
        amp, phase = seasonal[f"{name}_amp"], seasonal[f"{name}_phase"]
        means = np.append(annual[name], np.nan)
        # a·sin(2πt) + b·cos(2πt) is amp·cos(2π(t - phase)), phase in years
        curve[name] = means[index] + amp * np.cos(TWO_PI * (t - phase / DAYS_PER_YEAR))
    curve["v"] = np.hypot(curve["vx"], curve["vy"])
    return SeriesFit(usable, years, annual, seasonal, curve_time, {n: curve[n] for n in CURVE})
