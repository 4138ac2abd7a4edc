"""ITS_LIVE's annual composite fit, for a block of pixels at once.

The method is ITS_LIVE's (its `itslive_composite.py`), written anew for arrays of pixels:

- a pair measures the mean velocity over its interval, so the model is fitted to its
  *displacement* v·dt: one mean velocity per calendar year, each pair counting toward a
  year by the part of the year its interval covers, plus one seasonal sinusoid integrated
  over the interval; weights 1/(error·dt) on displacement, i.e. 1/error on velocity;
- before the fit, a running median of 15 pairs (in mid-date order) and its MAD drop the
  pairs more than 12 robust standard deviations away (ITS_LIVE: 2 x 6 x 1.4826 MAD), and
  a pixel needs 30 surviving pairs; then (glacierflow's addition: ITS_LIVE's code has
  this loop, disabled) a first fit, and the pairs more than 6 robust standard deviations
  from it in units of their own error go before the final fit;
- per sensor group, pairs whose dt is so long that their speed along the median flow
  differs from that of short pairs are dropped (`dt_max`);
- the annual means are fitted over all years; the seasonal amplitude and phase over the
  climatology window (pairs whose mid-date falls in it); a weighted line through the
  window's annual means gives v0 (at the intercept year's 1 January) and dv/dt;
- vx and vy are fitted separately; v, v_amp and v_phase are their projection on the flow
  direction (vx0, vy0); where Sentinel-2 inflates the seasonal amplitude more than twice
  (ITS_LIVE's rule), the fit without Sentinel-2 is kept and `sensor_flag` says so.

Per pixel the design matrix is the same (only which pairs are valid differs), so the
normal equations of every pixel come from one matrix product: mask (pixels x pairs) times
the pairs' packed outer products (pairs x K(K+1)/2); a batched solve does the rest. No
Python loop runs per pixel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import bottleneck as bn
import numpy as np

MAD_TO_SIGMA = 1.4826
RUNNING_WINDOW = 15
OUTLIER_SIGMAS = 12.0
MIN_PAIRS = 30
FIT_OUTLIER_SIGMAS = 6.0
# ITS_LIVE's governors: larger speeds and amplitudes are not glacier flow
V_LIMIT = 20000.0
AMP_LIMIT = 10000.0
# dt_max filter: dt bins (days), the least pairs for the reference bin, how far (in MAD
# multiples) bins may differ, and the speed below which no pair is dropped
DT_BIN_EDGES = np.array([0, 16, 32, 64, 128, 256, np.inf])
MIN_REFERENCE_PAIRS = 50
DT_BIN_MAD_SCALE = 0.67
SLOW_FLOW = 50.0
# the Sentinel-2 rule: amplitude with S2 above RATIO x and DIFF m/yr over that without
S2_GROUP = "S2A_S2B"
S2_AMP_RATIO = 2.0
S2_AMP_DIFF = 2.0
TWO_PI = 2 * np.pi
DAYS_PER_YEAR = 365.25


@dataclass(frozen=True)
class Pairs:
    """The layers of a cube as the fit sees them, in mid-date order."""

    start: np.ndarray  # decimal years of the first image
    stop: np.ndarray  # decimal years of the second image
    dt_days: np.ndarray  # days between the images (from the dates: years differ in length)
    error_x: np.ndarray  # vx error of each pair, m/yr
    error_y: np.ndarray
    group: np.ndarray  # sensor group of each pair (str)

    def __post_init__(self) -> None:
        if np.any(np.diff(self.mid) < 0):
            raise ValueError("pairs must be in mid-date order")
        if np.any(self.stop <= self.start):
            raise ValueError("every pair's second image must come after its first")

    @property
    def mid(self) -> np.ndarray:
        return (self.start + self.stop) / 2

    @property
    def dt_years(self) -> np.ndarray:
        return self.stop - self.start

    @property
    def years(self) -> np.ndarray:
        """Every calendar year a pair touches."""
        return np.arange(int(np.floor(self.start.min())), int(np.floor(self.stop.max())) + 1)

    @property
    def groups(self) -> list[str]:
        return sorted(set(self.group.tolist()))


@dataclass(frozen=True)
class Options:
    """The climatology window (inclusive years) and the intercept of its line fit."""

    window: tuple[int, int] = (2014, 2022)
    intercept_year: int = 2018
    min_pairs: int = MIN_PAIRS


def decimal_year(dates: np.ndarray) -> np.ndarray:
    """Dates (datetime64) as decimal years: 2018-07-02T12:00 -> 2018.5."""
    when = np.asarray(dates).astype("datetime64[ms]")
    year = when.astype("datetime64[Y]")
    start = year.astype("datetime64[ms]")
    length = (year + 1).astype("datetime64[ms]") - start
    return 1970 + year.astype(np.int64) + (when - start) / length


def year_fractions(start: np.ndarray, stop: np.ndarray, years: np.ndarray) -> np.ndarray:
    """(pairs, years): the part of each year that each pair's interval covers."""
    lo = np.maximum(start[:, None], years[None, :])
    hi = np.minimum(stop[:, None], years[None, :] + 1)
    return np.clip(hi - lo, 0, None)


def design_matrix(pairs: Pairs, years: np.ndarray) -> np.ndarray:
    """(pairs, 2 + years): displacement per unit of sin(2πt), cos(2πt) and of each
    year's mean velocity (the integrals over each pair's interval, in years)."""
    s, e = TWO_PI * pairs.start, TWO_PI * pairs.stop
    seasonal = np.stack(((np.cos(s) - np.cos(e)) / TWO_PI, (np.sin(e) - np.sin(s)) / TWO_PI), 1)
    return np.concatenate((seasonal, year_fractions(pairs.start, pairs.stop, years)), axis=1)


def running_median_inliers(v: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Pairs within OUTLIER_SIGMAS robust standard deviations of the running median of
    RUNNING_WINDOW valid pairs (each pixel's valid pairs, in mid-date order; the window
    is mirrored at both ends)."""
    n_pix = v.shape[0]
    counts = valid.sum(axis=1)
    width = int(counts.max(initial=0))
    if width == 0:
        return valid.copy()
    half = RUNNING_WINDOW // 2
    # each pixel's valid values first, still in mid-date order, mirrored beyond both ends
    order = np.argsort(~valid, axis=1, kind="stable")[:, :width]
    packed = np.empty((n_pix, width + 2 * half), np.float32)
    packed[:, half : half + width] = np.take_along_axis(v, order, axis=1)
    last = np.maximum(counts - 1, 0)
    pix = np.arange(n_pix)
    for k in range(half):
        packed[:, half - 1 - k] = packed[pix, half + np.minimum(k, last)]
        packed[pix, half + counts + k] = packed[pix, half + np.maximum(last - k, 0)]
    median = bn.move_median(packed, RUNNING_WINDOW, axis=1)[:, 2 * half :]
    residual = np.abs(packed[:, half : half + width] - median)
    residual[np.arange(width)[None, :] >= counts[:, None]] = np.nan
    sigma = MAD_TO_SIGMA * bn.nanmedian(residual, axis=1)
    keep = np.zeros_like(valid)
    with np.errstate(invalid="ignore"):
        np.put_along_axis(keep, order, residual <= OUTLIER_SIGMAS * sigma[:, None], axis=1)
    return keep


def dt_max_filter(
    vx: np.ndarray, vy: np.ndarray, valid: np.ndarray, pairs: Pairs, groups: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(pairs to drop (pixels, pairs), dt_max (pixels, groups) in days, NaN where no pair
    was dropped).

    The speed along the median flow (the median vector of the shortest pairs that number
    MIN_REFERENCE_PAIRS, else of all) is binned by dt per sensor group; the first bin with
    MIN_REFERENCE_PAIRS pairs (else the first with any) is the reference, and from the
    first longer bin whose median ± DT_BIN_MAD_SCALE robust sd misses the reference's,
    the longer pairs go. Slow pixels (≤ SLOW_FLOW m/yr) keep all their pairs."""
    dt = pairs.dt_days
    n_pix = vx.shape[0]
    thresholds = DT_BIN_EDGES[1:]
    within = (dt[:, None] <= thresholds[None, :]).astype(np.float32)
    counts = valid.astype(np.float32) @ within
    enough = counts >= MIN_REFERENCE_PAIRS
    choice = np.where(enough.any(axis=1), enough.argmax(axis=1), len(thresholds) - 1)
    flow_x = np.full(n_pix, np.nan)
    flow_y = np.full(n_pix, np.nan)
    for i, limit in enumerate(thresholds):
        rows = np.flatnonzero(choice == i)
        if rows.size:
            cols = np.flatnonzero(dt <= limit)
            flow_x[rows] = bn.nanmedian(vx[np.ix_(rows, cols)], axis=1)
            flow_y[rows] = bn.nanmedian(vy[np.ix_(rows, cols)], axis=1)
    speed = np.hypot(flow_x, flow_y)
    moving = speed > SLOW_FLOW
    with np.errstate(invalid="ignore", divide="ignore"):
        ux, uy = (flow_x / speed).astype(np.float32), (flow_y / speed).astype(np.float32)
    along = vx * ux[:, None] + vy * uy[:, None]
    along[~valid] = np.nan
    drop = np.zeros_like(valid)
    dt_max = np.full((n_pix, len(groups)), np.nan)
    n_bins = len(DT_BIN_EDGES) - 1
    for g, name in enumerate(groups):
        members = pairs.group == name
        median = np.full((n_pix, n_bins), np.nan)
        spread = np.full((n_pix, n_bins), np.nan)
        number = np.zeros((n_pix, n_bins))
        for b in range(n_bins):
            cols = np.flatnonzero(members & (dt >= DT_BIN_EDGES[b]) & (dt < DT_BIN_EDGES[b + 1]))
            if cols.size == 0:
                continue
            values = along[:, cols]
            number[:, b] = np.isfinite(values).sum(axis=1)
            median[:, b] = bn.nanmedian(values, axis=1)
            spread[:, b] = bn.nanmedian(np.abs(values - median[:, b, None]), axis=1)
        spread *= DT_BIN_MAD_SCALE * MAD_TO_SIGMA
        low, high = median - spread, median + spread
        full = number >= MIN_REFERENCE_PAIRS
        reference = np.where(full.any(axis=1), full.argmax(axis=1), (number > 0).argmax(axis=1))
        pix = np.arange(n_pix)
        ref_low, ref_high = low[pix, reference], high[pix, reference]
        later = np.arange(n_bins)[None, :] > reference[:, None]
        apart = (low > ref_high[:, None]) | (high < ref_low[:, None])
        cut = later & apart & (number > 0) & moving[:, None]
        has_cut = cut.any(axis=1)
        limit = np.where(has_cut, DT_BIN_EDGES[:-1][cut.argmax(axis=1)], np.nan)
        dt_max[:, g] = limit
        drop |= members[None, :] & (dt[None, :] > limit[:, None]) & has_cut[:, None]
    return drop, dt_max


def _pair_columns(
    design: np.ndarray, error: np.ndarray, dt: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per pair, what the fit sums over a pixel's used pairs (float32: one matrix product
    per block does every pixel). Summed with the use mask: the packed upper triangle of
    the normal matrix (weights 1/(error·dt) on displacement), 1 (the pair count), and per
    year the overlap flag (pairs per year) and overlap/error² (the year's weight). Summed
    with the used velocities: the right-hand side (weighted displacement v·dt/(error·dt)
    = v/error times the weighted design)."""
    weighted = design / (error * dt)[:, None]
    iu = np.triu_indices(design.shape[1])
    fractions = design[:, 2:]
    with_mask = np.concatenate(
        (
            weighted[:, iu[0]] * weighted[:, iu[1]],
            np.ones((len(dt), 1)),
            (fractions > 0),
            fractions / error[:, None] ** 2,
        ),
        axis=1,
    )
    return with_mask.astype(np.float32), (weighted / error[:, None]).astype(np.float32)


def _sums(
    use: np.ndarray, v: np.ndarray, columns: tuple[np.ndarray, np.ndarray], pairs: slice
) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's sums of the pair columns over its used pairs among `pairs`."""
    with_mask, with_value = columns
    used = use[:, pairs]
    values = np.where(used, v[:, pairs], np.float32(0)).astype(np.float32, copy=False)
    return (
        (used.astype(np.float32) @ with_mask[pairs]).astype(np.float64),
        (values @ with_value[pairs]).astype(np.float64),
    )


def _solve(packed: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """(pixels, K) coefficients from the packed normal matrices; a column without data
    (a year no used pair touches) gets 0, and its year is reported NaN."""
    n_pix, k = rhs.shape
    iu = np.triu_indices(k)
    normal = np.empty((n_pix, k, k))
    normal[:, iu[0], iu[1]] = packed[:, : len(iu[0])]
    normal[:, iu[1], iu[0]] = packed[:, : len(iu[0])]
    columns = np.arange(k)
    diagonal = normal[:, columns, columns]
    normal[:, columns, columns] = np.where(diagonal > 0, diagonal, 1.0)
    try:
        return np.linalg.solve(normal, rhs[..., None])[..., 0]
    except np.linalg.LinAlgError:  # a degenerate pixel: least squares for the block
        return np.einsum("pkl,pl->pk", np.linalg.pinv(normal), rhs)


def _velocity_residual(
    use: np.ndarray,
    v: np.ndarray,
    coef: np.ndarray,
    design: np.ndarray,
    dt: np.ndarray,
    fill: np.float32,
) -> np.ndarray:
    """(pixels, pairs) float32 v minus the fitted mean velocity over each pair's
    interval, `fill` where a pair is not used."""
    model = coef.astype(np.float32) @ (design / dt[:, None]).T.astype(np.float32)
    np.subtract(v, model, out=model)
    model[~use] = fill
    return model


def _fit_inliers(
    use: np.ndarray,
    v: np.ndarray,
    coef: np.ndarray,
    design: np.ndarray,
    error: np.ndarray,
    dt: np.ndarray,
) -> np.ndarray:
    """The pairs whose residual to a first fit, in units of their own error, is within
    FIT_OUTLIER_SIGMAS robust standard deviations. The running median cannot see an
    outlier on a long pair (its error is small next to the short pairs' spread), yet such
    a pair carries the most weight."""
    z = _velocity_residual(use, v, coef, design, dt, np.float32(np.nan))
    np.abs(z, out=z)
    z *= (1 / error).astype(np.float32)
    sigma = MAD_TO_SIGMA * bn.nanmedian(z, axis=1)
    with np.errstate(invalid="ignore"):
        return use & (z <= FIT_OUTLIER_SIGMAS * sigma[:, None])


@dataclass
class ComponentFit:
    """One velocity component's fit over a block of pixels."""

    mean: np.ndarray  # (pixels, years) m/yr
    error: np.ndarray  # (pixels, years)
    count: np.ndarray  # (pixels, years) pairs overlapping each year
    seasonal: np.ndarray  # (pixels, 2) sin and cos coefficients over the window, m/yr
    amp_error: np.ndarray  # (pixels,) NaN until `fill_amplitude_error` for a second fit
    amplitude_error_of: Callable[[np.ndarray | slice], np.ndarray]  # rows -> their amp_error
    window_pairs: np.ndarray  # (pixels,) pairs in the window fit
    offset: np.ndarray  # (pixels,) the line through the window's annual means
    slope: np.ndarray
    offset_error: np.ndarray

    def fill_amplitude_error(self, rows: np.ndarray) -> None:
        """Compute the amplitude error of these pixels (it costs as much as the fit)."""
        if rows.size:
            self.amp_error[rows] = self.amplitude_error_of(rows)

    @property
    def amplitude(self) -> np.ndarray:
        return np.hypot(self.seasonal[:, 0], self.seasonal[:, 1])

    @property
    def phase(self) -> np.ndarray:
        return seasonal_phase(self.seasonal)


def seasonal_phase(seasonal: np.ndarray) -> np.ndarray:
    """Day of the year of the seasonal maximum of a·sin(2πt) + b·cos(2πt)."""
    angle = np.arctan2(seasonal[:, 1], seasonal[:, 0])
    return DAYS_PER_YEAR * np.mod(0.25 - angle / TWO_PI, 1.0)


def fit_component(
    v: np.ndarray,
    valid: np.ndarray,
    error: np.ndarray,
    pairs: Pairs,
    options: Options,
    left_out: np.ndarray | None = None,
) -> list[ComponentFit]:
    """Annual means over all years, seasonal cycle and trend over the window, for one
    component of a block: v (pixels, pairs) with `valid` marking usable pairs. With
    `left_out` (a pair mask), a second fit without those pairs follows, from the same
    outlier decisions and the same matrix products (each product is split by window and
    by `left_out`, and the parts are added up as each fit needs)."""
    years = pairs.years
    design = design_matrix(pairs, years)
    k, n_years = design.shape[1], len(years)
    n_packed = k * (k + 1) // 2
    dt = pairs.dt_years
    columns = _pair_columns(design, error, dt)

    use = running_median_inliers(v, valid)
    use &= (use.sum(axis=1) >= options.min_pairs)[:, None]
    packed, rhs = _sums(use, v, columns, slice(None))
    use = _fit_inliers(use, v, _solve(packed, rhs), design, error, dt)
    use &= (use.sum(axis=1) >= options.min_pairs)[:, None]

    # the pairs regrouped by part (window or not, left out or not): each part's sums are
    # then a product over a contiguous slice, without copies
    first, last = options.window
    in_window = (pairs.mid >= first) & (pairs.mid < last + 1)
    leave = np.zeros(len(dt), bool) if left_out is None else left_out
    part = 2 * ~in_window + leave
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(5))
    use, v, design, error, dt = use[:, order], v[:, order], design[order], error[order], dt[order]
    columns = (columns[0][order], columns[1][order])
    parts = {}
    for window in (True, False):
        for left in (True, False):
            index = 2 * (not window) + left
            if bounds[index + 1] > bounds[index]:
                chosen = slice(bounds[index], bounds[index + 1])
                parts[window, left] = _sums(use, v, columns, chosen)
    zero = (np.zeros((len(v), n_packed + 1 + 2 * n_years)), np.zeros((len(v), k)))

    def add(keys: list[tuple[bool, bool]]) -> tuple[np.ndarray, np.ndarray]:
        chosen = [parts[key] for key in keys if key in parts] or [zero]
        return sum(c[0] for c in chosen), sum(c[1] for c in chosen)

    fits = []
    for keep_left_out in (True, False) if left_out is not None else (True,):
        keys = [key for key in parts if keep_left_out or not key[1]]
        window_keys = [key for key in keys if key[0]]
        # the window's pairs, in the order above: part 0, and part 1 unless left out
        window_columns = slice(0, bounds[2] if keep_left_out else bounds[1])
        fits.append(
            _component_fit(
                add(keys),
                add(window_keys),
                (use, window_columns),
                v,
                design,
                error,
                dt,
                years,
                options,
                deferred=not keep_left_out,
            )
        )
    return fits


def _component_fit(
    totals: tuple[np.ndarray, np.ndarray],
    windows: tuple[np.ndarray, np.ndarray],
    window_pairs_used: tuple[np.ndarray, slice],
    v: np.ndarray,
    design: np.ndarray,
    error: np.ndarray,
    dt: np.ndarray,
    years: np.ndarray,
    options: Options,
    deferred: bool,
) -> ComponentFit:
    """One fit from its sums: the annual means from all pairs, the seasonal terms from
    the window's (the used pairs among `window_pairs_used`'s columns). `deferred`: the
    amplitude error waits for `fill_amplitude_error`."""
    k, n_years = design.shape[1], len(years)
    n_packed = k * (k + 1) // 2
    (total, total_rhs), (window, window_rhs) = totals, windows
    coef = _solve(total, total_rhs)
    pairs_used = total[:, n_packed]
    count = total[:, n_packed + 1 : n_packed + 1 + n_years]
    covered = total[:, n_packed + 1 + n_years :]
    fitted = pairs_used > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(count > 0, coef[:, 2:], np.nan)
        year_error = np.where(count > 0, 1 / np.sqrt(covered), np.nan)
    window_pairs = window[:, n_packed]
    window_coef = _solve(window, window_rhs)
    seasonal = window_coef[:, :2].copy()
    offset, slope, offset_error = _line_fit(mean, year_error, years, options)
    missing = ~fitted | (window_pairs == 0)
    seasonal[missing] = np.nan
    use, columns = window_pairs_used

    def amplitude_error_of(rows: np.ndarray | slice) -> np.ndarray:
        values = _amplitude_error(
            use[rows, columns], v[rows, columns], window_coef[rows],
            design[columns], error[columns], dt[columns],
        )  # fmt: skip
        values[missing[rows]] = np.nan
        return values

    amp_error = np.full(len(v), np.nan) if deferred else amplitude_error_of(slice(None))
    return ComponentFit(
        mean=mean,
        error=year_error,
        count=np.rint(count).astype(np.int64),
        seasonal=seasonal,
        amp_error=amp_error,
        amplitude_error_of=amplitude_error_of,
        window_pairs=np.rint(window_pairs).astype(np.int64),
        offset=offset,
        slope=slope,
        offset_error=offset_error,
    )


def _amplitude_error(
    use: np.ndarray,
    v: np.ndarray,
    coef: np.ndarray,
    design: np.ndarray,
    error: np.ndarray,
    dt: np.ndarray,
) -> np.ndarray:
    """ITS_LIVE's seasonal-amplitude error: per year, the weighted spread of the
    displacement residuals over the weighted mean dt; combined as
    sqrt(sum of squares)/(years - 1)."""
    # weight 1/(error·dt) on displacement residuals (v - model)·dt: the dt's fold into
    # the per-pair columns, the products stay in velocity
    touches = (design[:, 2:] > 0) / (error * dt)[:, None]
    residual = _velocity_residual(use, v, coef, design, dt, np.float32(0))
    used = use.astype(np.float32)
    s0 = (used @ touches.astype(np.float32)).astype(np.float64)
    s1 = (residual @ (touches * dt[:, None]).astype(np.float32)).astype(np.float64)
    s2 = ((residual * residual) @ (touches * dt[:, None] ** 2).astype(np.float32)).astype(
        np.float64
    )
    sdt = (used @ (touches * dt[:, None]).astype(np.float32)).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = np.clip(s2 / s0 - (s1 / s0) ** 2, 0, None)
        per_year = np.sqrt(variance) / (sdt / s0)
        years = (s0 > 0).sum(axis=1)
        return np.sqrt(np.nansum(per_year**2, axis=1)) / (years - 1)


def _line_fit(
    mean: np.ndarray, error: np.ndarray, years: np.ndarray, options: Options
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted (1/error²) line through the window's annual means, at 1 January of the
    intercept year: offset, slope (per year) and ITS_LIVE's error sqrt(sum error²)/(n - 1).
    Without means on both sides of the intercept: the weighted mean and no slope."""
    first, last = options.window
    pick = (years >= first) & (years <= last)
    x = (years[pick] - options.intercept_year).astype(np.float64)
    y, e = mean[:, pick], error[:, pick]
    ok = np.isfinite(y) & np.isfinite(e) & (e > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(ok, 1 / e**2, 0.0)
        y = np.where(ok, y, 0.0)
        sw, sx, sy = w.sum(1), w @ x, (w * y).sum(1)
        sxx, sxy = w @ x**2, (w * y) @ x
        slope = (sw * sxy - sx * sy) / (sw * sxx - sx**2)
        both_sides = (ok & (x < 0)).any(1) & (ok & (x >= 0)).any(1)
        slope = np.where(both_sides, slope, np.nan)
        offset = np.where(both_sides, (sy - slope * sx) / sw, sy / sw)
        n = ok.sum(1)
        offset_error = np.where(n > 1, np.sqrt(np.where(ok, e**2, 0.0).sum(1)) / (n - 1), np.nan)
    offset[n == 0] = np.nan
    return offset, slope, offset_error


def _magnitudes(fx: ComponentFit, fy: ComponentFit) -> dict[str, np.ndarray]:
    """The composite's variables from the two components' fits."""
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.hypot(fx.mean, fy.mean)
        v_error = np.hypot(fx.error * fx.mean, fy.error * fy.mean) / v
        v0 = np.hypot(fx.offset, fy.offset)
        v0 = np.where(v0 < V_LIMIT, v0, np.nan)
        ux, uy = fx.offset / v0, fy.offset / v0
        # the seasonal terms are linear in the coefficients: project them, then convert
        along = ux[:, None] * fx.seasonal + uy[:, None] * fy.seasonal
        out = {
            "v": v,
            "vx": fx.mean,
            "vy": fy.mean,
            "v_error": v_error,
            "vx_error": fx.error,
            "vy_error": fy.error,
            "count": np.ceil((fx.count + fy.count) / 2),
            "v0": v0,
            "vx0": fx.offset,
            "vy0": fy.offset,
            "v0_error": fx.offset_error * np.abs(ux) + fy.offset_error * np.abs(uy),
            "vx0_error": fx.offset_error,
            "vy0_error": fy.offset_error,
            "dv_dt": fx.slope * ux + fy.slope * uy,
            "dvx_dt": fx.slope,
            "dvy_dt": fy.slope,
            "v_amp": np.hypot(along[:, 0], along[:, 1]),
            "vx_amp": fx.amplitude,
            "vy_amp": fy.amplitude,
            "v_amp_error": np.abs(fx.amp_error * ux) + np.abs(fy.amp_error * uy),
            "vx_amp_error": fx.amp_error,
            "vy_amp_error": fy.amp_error,
            "v_phase": seasonal_phase(along),
            "vx_phase": fx.phase,
            "vy_phase": fy.phase,
        }
    too_fast = ~(v <= V_LIMIT)
    for name in ("v", "vx", "vy"):
        out[name] = np.where(too_fast, np.nan, out[name])
    too_wide = out["v_amp"] > AMP_LIMIT
    for name in ("v_amp", "vx_amp", "vy_amp"):
        out[name] = np.where(too_wide, np.nan, out[name])
    return out


def composite_block(
    vx: np.ndarray, vy: np.ndarray, pairs: Pairs, options: Options
) -> dict[str, np.ndarray]:
    """Every composite variable for a block of pixels: vx, vy (pixels, pairs) in m/yr,
    NaN where a pair has no value. Annual variables are (pixels, years), per-sensor ones
    (pixels, groups), the rest (pixels,); a pixel without enough pairs is NaN."""
    groups = pairs.groups
    first, last = options.window
    in_window = (pairs.mid >= first) & (pairs.mid < last + 1)
    finite = np.isfinite(vx) & np.isfinite(vy)
    count0 = (finite & in_window[None, :]).sum(axis=1)
    fast = ~(np.hypot(np.where(finite, vx, 0), np.where(finite, vy, 0)) <= V_LIMIT)
    drop, dt_max = dt_max_filter(vx, vy, finite, pairs, groups)
    valid = finite & ~drop & ~fast

    s2 = pairs.group == S2_GROUP if S2_GROUP in groups and len(groups) > 1 else None
    fits_x = fit_component(vx, valid, pairs.error_x, pairs, options, s2)
    fits_y = fit_component(vy, valid, pairs.error_y, pairs, options, s2)
    out, window_pairs = _magnitudes(fits_x[0], fits_y[0]), fits_x[0].window_pairs
    sensor_flag = np.zeros((vx.shape[0], len(groups)), dtype=np.uint8)
    if s2 is not None:
        amp, amp_without = out["v_amp"], _magnitudes(fits_x[1], fits_y[1])["v_amp"]
        with np.errstate(invalid="ignore"):
            worse = (amp > S2_AMP_RATIO * amp_without) & (amp - amp_without > S2_AMP_DIFF)
        for fit in (fits_x[1], fits_y[1]):
            fit.fill_amplitude_error(np.flatnonzero(worse))
        without = _magnitudes(fits_x[1], fits_y[1])
        window_without = fits_x[1].window_pairs
        for name, value in without.items():
            shape = (-1,) + (1,) * (value.ndim - 1)
            out[name] = np.where(worse.reshape(shape), value, out[name])
        window_pairs = np.where(worse, window_without, window_pairs)
        count0 = np.where(worse, (finite & in_window & ~s2).sum(axis=1), count0)
        g = groups.index(S2_GROUP)
        sensor_flag[worse, g] = 1
        dt_max[worse, g] = np.nan
    fitted = np.isfinite(out["vx0"]) & (count0 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["outlier_percent"] = np.where(fitted, 100 * (1 - window_pairs / count0), np.nan)
    out["count0"] = count0
    out["dt_max"] = dt_max
    out["sensor_flag"] = sensor_flag
    return out
