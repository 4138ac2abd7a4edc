"""A synthetic velocity cube with a known answer, for the composite's truth tests and its
benchmark.

Each pixel flows in a fixed direction at a speed made of one mean per calendar year (a
linear trend through the years) plus a seasonal cosine. Pairs are drawn as ITS_LIVE's
sensors deliver them: Landsat 8/9 (16-day multiples), Sentinel-2 (5-day), Sentinel-1
(6-day) and Landsat 7 (16-day), dt from 5 to 546 days, optical images never in the polar
night (mid-November to mid-February), each pair seen on part of the pixels only. A pair
measures the mean velocity over its interval, integrated here day by day (independently of
the fit's closed-form integrals), plus noise of the pair's error; a share of the values
are outliers (a mismatch: a random displacement within ±1,000 m, over the pair's dt).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from glacierflow.processing.cubes.layout import FILL_INT16

# satellite_img1, mission_img1, repeat (days), share of the pairs, displacement error (m),
# optical (no images in the polar night)
SENSORS = (
    ("8", "L", 16, 0.35, 4.0, True),
    ("2A", "S", 5, 0.35, 5.0, True),
    ("1A", "S", 6, 0.2, 6.0, False),
    ("7", "L", 16, 0.1, 8.0, True),
)
MAX_DT_DAYS = 546
OUTLIER_DISPLACEMENT_M = 1000.0
MIN_DT_DAYS = 5
POLAR_NIGHT = ((11, 15), (2, 15))  # (month, day) from, to: optical images impossible


@dataclass(frozen=True)
class Truth:
    """What every pixel's composite should find (per pixel arrays, m/yr, days)."""

    years: np.ndarray
    annual: np.ndarray  # (pixels, years) speed
    v0: np.ndarray  # speed of the intercept year
    trend: np.ndarray  # m/yr per year
    amplitude: np.ndarray
    phase: np.ndarray  # day of the year of the seasonal maximum
    direction: np.ndarray  # radians from +x


def _day_of_year(days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(month, day) of dates given as datetime64[D]."""
    month = days.astype("datetime64[M]")
    return (month.astype(int) % 12) + 1, (days - month).astype(int) + 1


def _in_polar_night(days: np.ndarray) -> np.ndarray:
    month, day = _day_of_year(days)
    (m0, d0), (m1, d1) = POLAR_NIGHT
    after = (month > m0) | ((month == m0) & (day >= d0))
    before = (month < m1) | ((month == m1) & (day <= d1))
    return after | before


def _draw_pairs(
    rng: np.random.Generator, n_pairs: int, first: np.datetime64, last: np.datetime64
) -> dict[str, np.ndarray]:
    """n_pairs sensor pairs within [first, last], in mid-date order."""
    shares = np.array([s[3] for s in SENSORS])
    picked: list[tuple[int, int, int]] = []  # sensor, start day, dt
    span = int((last - first).astype(int))
    while len(picked) < n_pairs:
        sensor = int(rng.choice(len(SENSORS), p=shares / shares.sum()))
        repeat = SENSORS[sensor][2]
        # dt log-uniform from the repeat to MAX_DT_DAYS, a multiple of the repeat
        drawn = np.exp(rng.uniform(np.log(repeat), np.log(MAX_DT_DAYS)))
        dt = repeat * max(1, round(drawn / repeat))
        dt = int(np.clip(dt, MIN_DT_DAYS, MAX_DT_DAYS))
        start = int(rng.integers(0, span - dt))
        dates = first + np.array([start, start + dt])
        if SENSORS[sensor][5] and _in_polar_night(dates).any():
            continue
        picked.append((sensor, start, dt))
    sensor, start, dt = (np.array(c) for c in zip(*picked, strict=True))
    order = np.argsort(start + dt / 2, kind="stable")
    sensor, start, dt = sensor[order], start[order], dt[order]
    return {"sensor": sensor, "start": first + start, "dt": dt}


def _interval_means(
    start: np.ndarray, dt: np.ndarray, years: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pair, by daily midpoint sums: the share of its days in each year, and the means
    of cos(2πt) and sin(2πt) over it (t in decimal years)."""
    days_max = int(dt.max())
    offsets = np.arange(days_max)
    day = start[:, None] + offsets[None, :]
    inside = offsets[None, :] < dt[:, None]
    year = day.astype("datetime64[Y]")
    year_start = year.astype("datetime64[D]")
    length = ((year + 1).astype("datetime64[D]") - year_start).astype(float)
    t = year.astype(int) + 1970 + ((day - year_start).astype(float) + 0.5) / length
    weight = inside / dt[:, None]
    share = np.stack([(weight * (year.astype(int) + 1970 == y)).sum(1) for y in years], 1)
    return share, (weight * np.cos(2 * np.pi * t)).sum(1), (weight * np.sin(2 * np.pi * t)).sum(1)


def synthetic_cube(
    ny: int = 8,
    nx: int = 8,
    n_pairs: int = 1500,
    years: tuple[int, int] = (2014, 2024),
    intercept_year: int = 2018,
    outlier_share: float = 0.05,
    coverage: float = 0.8,
    sparse_pixels: int = 2,
    seed: int = 0,
) -> tuple[xr.Dataset, Truth]:
    """A cube in ITS_LIVE's variables (float velocities, NaN for no data) and its truth.
    The first `sparse_pixels` pixels keep only 10 pairs: too few for a fit."""
    rng = np.random.default_rng(seed)
    first = np.datetime64(f"{years[0]}-01-01", "D")
    last = np.datetime64(f"{years[1] + 1}-01-01", "D")
    pairs = _draw_pairs(rng, n_pairs, first, last)
    all_years = np.arange(years[0], years[1] + 1)
    share, mean_cos, mean_sin = _interval_means(pairs["start"], pairs["dt"], all_years)

    n_pix = ny * nx
    v0 = rng.uniform(300, 3000, n_pix)
    trend = v0 * rng.uniform(0.02, 0.06, n_pix) * rng.choice([-1, 1], n_pix)
    amplitude = v0 * rng.uniform(0.08, 0.25, n_pix)
    phase = rng.uniform(0, 365.25, n_pix)
    direction = rng.uniform(-np.pi, np.pi, n_pix)
    annual = v0[:, None] + trend[:, None] * (all_years[None, :] - intercept_year)
    # A·cos(2π(t - φ)) = A·cos(2πφ)·cos(2πt) + A·sin(2πφ)·sin(2πt)
    angle = 2 * np.pi * phase / 365.25
    seasonal = amplitude[:, None] * (
        np.cos(angle)[:, None] * mean_cos[None, :] + np.sin(angle)[:, None] * mean_sin[None, :]
    )
    speed = annual @ share.T + seasonal  # (pixels, pairs)

    sensor = pairs["sensor"]
    dt_years = pairs["dt"] / 365.25
    error = np.array([SENSORS[s][4] for s in sensor]) / dt_years  # m/yr
    vx = speed * np.cos(direction)[:, None] + rng.normal(0, 1, speed.shape) * error
    vy = speed * np.sin(direction)[:, None] + rng.normal(0, 1, speed.shape) * error
    # a mismatch: a random displacement within the search range, over the pair's dt
    outlier = rng.random(speed.shape) < outlier_share
    spread = np.broadcast_to(OUTLIER_DISPLACEMENT_M / dt_years, speed.shape)[outlier]
    vx[outlier] += rng.uniform(-1, 1, outlier.sum()) * spread
    vy[outlier] += rng.uniform(-1, 1, outlier.sum()) * spread
    seen = rng.random(speed.shape) < coverage
    seen[:sparse_pixels] = False
    for p in range(sparse_pixels):
        seen[p, rng.choice(len(sensor), 10, replace=False)] = True
    vx[~seen] = np.nan
    vy[~seen] = np.nan

    start = pairs["start"].astype("datetime64[ns]")
    stop = (pairs["start"] + pairs["dt"]).astype("datetime64[ns]")
    mid = start + (stop - start) / 2
    x = 52.5 + 120.0 * np.arange(nx)
    y = 67.5 + 120.0 * np.arange(ny)[::-1]
    cube = xr.Dataset(
        {
            "vx": (("mid_date", "y", "x"), vx.T.reshape(-1, ny, nx).astype(np.float32)),
            "vy": (("mid_date", "y", "x"), vy.T.reshape(-1, ny, nx).astype(np.float32)),
            "vx_error": ("mid_date", error.astype(np.float32)),
            "vy_error": ("mid_date", error.astype(np.float32)),
            "stable_shift_flag": ("mid_date", np.ones(len(sensor), np.uint8)),
            "acquisition_date_img1": ("mid_date", start),
            "acquisition_date_img2": ("mid_date", stop),
            "date_dt": ("mid_date", pairs["dt"].astype(np.float32)),
            "satellite_img1": ("mid_date", np.array([SENSORS[s][0] for s in sensor], object)),
            "mission_img1": ("mid_date", np.array([SENSORS[s][1] for s in sensor], object)),
            "mapping": ((), np.int8(0), {"spatial_epsg": 3413, "crs_wkt": _wkt(3413)}),
        },
        coords={"mid_date": mid, "y": y, "x": x},
        attrs={"projection": "3413"},
    )
    truth = Truth(all_years, annual, v0, trend, amplitude, phase, direction)
    return cube, truth


def _wkt(epsg: int) -> str:
    from pyproj import CRS

    return CRS.from_epsg(epsg).to_wkt()


def write_cube(cube: xr.Dataset, path: str) -> None:
    """Write the cube as Zarr with ITS_LIVE's encodings (int16 velocities, fill -32767)."""
    encoding = {name: {"dtype": "int16", "_FillValue": FILL_INT16} for name in ("vx", "vy")}
    cube.to_zarr(path, mode="w", encoding=encoding, consolidated=True)
