"""A synthetic demo region with known truth, like the seed paper's Malaspina Glacier.

A valley glacier flows south out of the top of the region into a piedmont lobe that
spreads over the lowland, beside stable rock, in UTM zone 7N. Two sensors watch it: a
Landsat-8-like 15 m panchromatic band every 16 days and a Sentinel-2-like 10 m band every
5 days (S2A and S2B in turn), each scene written as a Cloud-Optimized GeoTIFF (uint16 DN,
acquisition time and mission in its TIFF tags) with a cloud mask COG beside it.

The truth is separable: v(x, t) = s(t) V(x), a fixed spatial field V (m/yr; zero on the
rock, smooth shear margins) times a scalar factor s(t): a seasonal cycle that is slowest
in autumn, plus a surge of some months in one year. A particle then follows V's
streamlines in "flow time" tau(t) = integral of s dt: the surface seen at time t is a
texture laid on the ice at an anchor time e and carried since, sampled at
Phi_{tau(e) - tau(t)}(x). The ice's surface renews itself (new crevasses, snow, debris), so
anchors follow every `renewal_days` and each scene blends the two anchors around it: short
pairs see nearly the same surface, long pairs less and less (as on real ice), and no
texture is strained beyond one renewal period's flow. The rock's texture stays put and
changes slowly. Textures are periodic, so they exist far upstream. Each scene adds its own
gain, offset, illumination ramp, noise and clouds.

`Region.true_velocity(x, y, t)` is the velocity anywhere at any time, and
`Region.pair_velocity(x, y, t1, t2)` what a pair should measure: the mean velocity along
the path of the particle at (x, y) at t1, i.e. its displacement over [t1, t2] / dt.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path

import numpy as np
from scipy import ndimage

from glacierflow.processing.scenes.model import Scene
from glacierflow.processing.synthetic import fractal_texture

DAYS_PER_YEAR = 365.25
TEXTURE_PX = 7.5  # metres per texture sample: finer than either sensor
DN_NODATA = 0
CLOUD_OPACITY = 0.02  # a pixel counts as clouded (mask, cloud cover) above this opacity


@dataclass(frozen=True)
class Sensor:
    """One sensor's sampling: pixel size, revisit, overpass and naming."""

    name: str  # "landsat" or "sentinel-2"
    pixel_m: float
    revisit_days: int
    first_overpass: datetime  # the first acquisition of the series (UTC)
    noise: float  # noise std, relative to the texture's
    gain: float  # the sensor's own radiometric response
    offset: float

    def platform(self, k: int) -> str:
        """STAC `platform` of acquisition k (Sentinel-2A and 2B take turns)."""
        return "landsat-8" if self.name == "landsat" else ("sentinel-2a", "sentinel-2b")[k % 2]

    @property
    def instrument(self) -> str:
        return "oli" if self.name == "landsat" else "msi"


LANDSAT = Sensor("landsat", 15.0, 16, datetime(2024, 1, 7, 20, 38, 12, tzinfo=UTC), 0.05, 1.0, 0.0)
SENTINEL2 = Sensor(
    "sentinel-2", 10.0, 5, datetime(2024, 1, 2, 21, 7, 31, tzinfo=UTC), 0.04, 0.85, 0.4
)
SENSORS = (LANDSAT, SENTINEL2)
EPOCH = min(s.first_overpass for s in SENSORS)  # flow time and texture anchors start here
WRS2_PATH_ROW = "063018"  # Landsat WRS-2 path 63, row 18: Malaspina Glacier
MGRS_TILE = "07VCG"


def _years(t: datetime | np.datetime64 | np.ndarray) -> np.ndarray:
    """Decimal years since 2000-01-01 (UTC) of datetimes or datetime64 values."""
    if isinstance(t, datetime):
        t = np.datetime64(t.astimezone(UTC).replace(tzinfo=None), "us")
    us = (np.asarray(t, dtype="datetime64[us]") - np.datetime64("2000-01-01", "us")).astype(
        np.float64
    )
    return us / (86_400e6 * DAYS_PER_YEAR)


def _smoothstep(z: np.ndarray) -> np.ndarray:
    z = np.clip(z, 0.0, 1.0)
    return z * z * (3 - 2 * z)


@dataclass(frozen=True)
class Region:
    """The region: its extent (UTM 7N; sizes multiples of 120 m), its flow and its sensors.

    Geometry scales with the extent: a valley 18 % of the width wide enters at the top
    centre and spreads into an elliptical lobe (80 % x 80 % of the region, centred at mid
    height), leaving stable rock on all sides of the lobe and beside the valley.
    """

    width_m: float = 24_000.0
    height_m: float = 18_000.0
    origin: tuple[float, float] = (516_000.0, 6_666_000.0)  # upper-left corner (x, y)
    epsg: int = 32607
    peak_speed: float = 1_000.0  # m/yr at the valley's centre when s(t) = 1
    seasonal_amplitude: float = 0.25  # s(t) swings +-25 % around 1 over the year
    slowest_day: float = 288.0  # day of year of the seasonal minimum (mid October)
    surge: tuple[datetime, datetime] = (
        datetime(2025, 2, 1, tzinfo=UTC),
        datetime(2025, 7, 1, tzinfo=UTC),
    )
    surge_gain: float = 1.25  # added to s(t) at the surge's height (a sin^2 bump)
    renewal_days: float = 180.0  # the ice's surface texture renews over this time
    rock_change: float = 0.2  # the rock's texture changes this many radians a year
    clear_days: float = 0.35  # the share of scenes without a cloud
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("width_m", "height_m"):
            value = getattr(self, name)
            if value < 1_200 or value % 120:
                raise ValueError(f"{name} must be a multiple of 120 m, at least 1,200 m: {value}")

    def __getstate__(self) -> dict:
        """The fields only: the textures (tens of MB) are remade where it is unpickled,
        so a Dask task that carries a region stays small."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __setstate__(self, state: dict) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)

    # -- the truth ---------------------------------------------------------------------------
    @property
    def bounds(self) -> tuple[float, float, float, float]:
        x0, y1 = self.origin
        return x0, y1 - self.height_m, x0 + self.width_m, y1

    def speed_factor(self, t: datetime | np.ndarray) -> np.ndarray:
        """s(t): 1 on average, slowest on `slowest_day`, plus the surge bump."""
        years = _years(t)
        phase = 2 * np.pi * (years * DAYS_PER_YEAR - self.slowest_day) / DAYS_PER_YEAR
        s0, s1 = _years(self.surge[0]), _years(self.surge[1])
        inside = np.clip((years - s0) / (s1 - s0), 0, 1)
        return (
            1
            - self.seasonal_amplitude * np.cos(phase)
            + self.surge_gain * np.sin(np.pi * inside) ** 2
        )

    def flow_time(self, t: datetime | np.ndarray) -> np.ndarray:
        """tau(t) = integral of s from the epoch (years): how far along its streamline
        a particle has gone, in units of V's one-year motion."""
        years = _years(t)
        rate = 2 * np.pi / DAYS_PER_YEAR

        def integral(y: np.ndarray) -> np.ndarray:
            seasonal = np.sin(rate * (y * DAYS_PER_YEAR - self.slowest_day)) / (
                rate * DAYS_PER_YEAR
            )
            s0, s1 = _years(self.surge[0]), _years(self.surge[1])
            z = np.clip(y, s0, s1) - s0
            span = s1 - s0
            surge = z / 2 - span / (4 * np.pi) * np.sin(2 * np.pi * z / span)
            return y - self.seasonal_amplitude * seasonal + self.surge_gain * surge

        return integral(years) - integral(_years(EPOCH))

    def _local(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(across from the valley's centre line, down from the top edge), metres."""
        across = np.asarray(x, np.float64) - (self.origin[0] + self.width_m / 2)
        return across, self.origin[1] - np.asarray(y, np.float64)

    @cached_property
    def _shape(self) -> dict[str, float]:
        w, h = self.width_m, self.height_m
        return {
            "half_width": 0.09 * w,  # of the valley
            "lobe_u": 0.4 * w,  # the lobe's semi-axes
            "lobe_w": 0.4 * h,
            "lobe_centre": 0.5 * h,  # down from the top edge
            "margin": max(0.04 * w, 240.0),  # shear margins: speed 0 to full over this
        }

    def ice(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """How much of the full speed the margins allow: 0 on rock, 1 inside the ice."""
        u, w = self._local(x, y)
        g = self._shape
        valley = g["half_width"] - np.abs(u)
        rho = np.hypot(u / g["lobe_u"], (w - g["lobe_centre"]) / g["lobe_w"])
        lobe = (1 - rho) * min(g["lobe_u"], g["lobe_w"])
        valley = np.where(w <= g["lobe_centre"], valley, -np.inf)  # the valley ends in the lobe
        return _smoothstep(np.maximum(valley, lobe) / g["margin"])

    def flow_field(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """V(x): the velocity (vx, vy) in m/yr when s(t) = 1."""
        u, w = self._local(x, y)
        g = self._shape
        below = np.maximum(w - g["lobe_centre"], 0)
        decay = np.clip(1 - (u / g["lobe_u"]) ** 2 - (below / g["lobe_w"]) ** 2, 0, None)
        speed = self.peak_speed * self.ice(x, y) * decay
        # straight down the valley above the lobe's top, then spreading radially from a
        # point above it; the lateral part grows smoothly over the lobe's upper half
        top = g["lobe_centre"] - g["lobe_w"]
        spread = _smoothstep((w - top) / g["lobe_w"])
        reach = spread * u / np.maximum(w - top + 0.25 * g["lobe_w"], 0.25 * g["lobe_w"])
        norm = np.hypot(reach, 1.0)
        return speed * reach / norm, -speed / norm

    def true_velocity(
        self, x: np.ndarray, y: np.ndarray, t: datetime | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """v(x, y, t) = s(t) V(x, y): (vx, vy) in m/yr, in the region's UTM CRS."""
        vx, vy = self.flow_field(x, y)
        s = self.speed_factor(t)
        return s * vx, s * vy

    def advect(
        self, x: np.ndarray, y: np.ndarray, flow_years: float, step_m: float = 40.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Where the particles at (x, y) are after `flow_years` of V (negative: where they
        were before), by 4th-order Runge-Kutta with steps of at most `step_m`."""
        x = np.asarray(x, np.float64).copy()
        y = np.asarray(y, np.float64).copy()
        reach = abs(flow_years) * self.peak_speed
        n = max(1, math.ceil(reach / step_m))
        h = flow_years / n
        for _ in range(n):
            k1 = self.flow_field(x, y)
            k2 = self.flow_field(x + 0.5 * h * k1[0], y + 0.5 * h * k1[1])
            k3 = self.flow_field(x + 0.5 * h * k2[0], y + 0.5 * h * k2[1])
            k4 = self.flow_field(x + h * k3[0], y + h * k3[1])
            x += h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
            y += h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
        return x, y

    def pair_velocity(
        self, x: np.ndarray, y: np.ndarray, t1: datetime, t2: datetime
    ) -> tuple[np.ndarray, np.ndarray]:
        """What a pair (t1, t2) should measure at (x, y) of its first image: the particle's
        displacement over [t1, t2] divided by dt, m/yr."""
        dtau = float(self.flow_time(t2) - self.flow_time(t1))
        x2, y2 = self.advect(x, y, dtau)
        dt = (t2 - t1).total_seconds() / 86_400 / DAYS_PER_YEAR
        return (x2 - np.asarray(x)) / dt, (y2 - np.asarray(y)) / dt

    def granule_figures(self, granule, t1: datetime, t2: datetime) -> dict[str, float]:
        """How a granule (an xarray Dataset) of the pair (t1, t2) compares with what the
        pair should measure, in m/yr: median and 90th percentile of the vector error inside
        the ice (margin factor > 0.99: `ice_*`), in the shear margins (`margins_*`) and on
        rock (`rock_*`), the length of the mean error inside the ice (`ice_bias`), the
        fastest true speed (`truth_max`), the share of nodes with a vector and the nodes in
        each subset (`*_nodes`)."""
        xx, yy = np.meshgrid(granule["x"].values, granule["y"].values)
        tx, ty = self.pair_velocity(xx, yy, t1, t2)
        ex = granule["vx"].values.astype(np.float64) - tx
        ey = granule["vy"].values.astype(np.float64) - ty
        error = np.hypot(ex, ey)
        ice = self.ice(xx, yy)
        ok = np.isfinite(error)
        figures = {"truth_max": float(np.hypot(tx, ty).max()), "valid_fraction": float(ok.mean())}
        for name, where in (
            ("ice", ok & (ice > 0.99)),
            ("margins", ok & (ice > 0) & (ice <= 0.99)),
            ("rock", ok & (ice == 0)),
        ):
            figures[f"{name}_nodes"] = int(where.sum())
            figures[f"{name}_median"] = float(np.median(error[where])) if where.any() else np.nan
            figures[f"{name}_p90"] = (
                float(np.percentile(error[where], 90)) if where.any() else np.nan
            )
            if name == "ice":
                figures["ice_bias"] = float(np.hypot(ex[where].mean(), ey[where].mean()))
        return figures

    def track(
        self, ref: Scene, sec: Scene, output: Path, max_speed_m_per_yr: float = 3_000.0
    ) -> tuple[Path, dict[str, float]]:
        """Track two of the region's scenes as the pipeline does (default chips, the cloud
        masks given) into a granule under `output`; returns it and its `granule_figures`."""
        import xarray as xr

        from glacierflow.processing.pipeline import TrackRequest, track_pair

        request = TrackRequest(
            ref=ref.href,
            sec=sec.href,
            output=output,
            max_speed_m_per_yr=max_speed_m_per_yr,
            ref_mask=ref.mask_href,
            sec_mask=sec.mask_href,
        )
        report = track_pair(request)
        with xr.open_dataset(report.path) as granule:
            return report.path, self.granule_figures(granule, ref.datetime, sec.datetime)

    # -- the scenes ----------------------------------------------------------------------
    def acquisitions(
        self, start: datetime, end: datetime, sensors: Sequence[Sensor] = SENSORS
    ) -> list[Acquisition]:
        """Every acquisition of `sensors` in [start, end), in time order."""
        out = []
        for sensor in sensors:
            step = timedelta(days=sensor.revisit_days)
            k = max(0, math.ceil((start - sensor.first_overpass) / step))
            while (when := sensor.first_overpass + k * step) < end:
                # a few seconds' jitter, as real overpasses have
                jitter = timedelta(seconds=int(zlib.crc32(f"{sensor.name}{k}".encode()) % 20))
                out.append(Acquisition(self, sensor, k, when + jitter))
                k += 1
        return sorted(out, key=lambda a: (a.when, a.id))

    @cached_property
    def _textures(self) -> tuple[np.ndarray, np.ndarray]:
        """Two periodic fractal textures (ice, rock) at least as large as the region: texture
        exists wherever any pixel's surface came from."""
        from scipy.fft import next_fast_len

        rng = np.random.default_rng(self.seed)
        shape = tuple(
            next_fast_len(int(size / TEXTURE_PX) + 256) for size in (self.height_m, self.width_m)
        )
        return fractal_texture(shape, rng), fractal_texture(shape, rng)

    def _coefficients(self, sensor: Sensor) -> tuple[np.ndarray, np.ndarray]:
        """The textures as the sensor sees them (its point-spread function, a Gaussian of
        0.45 px, keeps them from aliasing), as cubic-spline coefficients."""
        cache = self.__dict__.setdefault("_coefficient_cache", {})
        if sensor.name not in cache:
            sigma = 0.45 * sensor.pixel_m / TEXTURE_PX
            cache[sensor.name] = tuple(
                ndimage.spline_filter(
                    ndimage.gaussian_filter(t, sigma, mode="wrap"),
                    order=3,
                    mode="grid-wrap",
                    output=np.float32,
                )
                for t in self._textures
            )
        return cache[sensor.name]

    def grid(self, sensor: Sensor) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates (x of columns, y of rows) of the sensor's grid."""
        p = sensor.pixel_m
        x = self.origin[0] + p * (np.arange(round(self.width_m / p)) + 0.5)
        y = self.origin[1] - p * (np.arange(round(self.height_m / p)) + 0.5)
        return x, y

    def _traced(
        self, x: np.ndarray, y: np.ndarray, flow_years: float, spacing: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Where the surface at points (x, y) is after `flow_years` of V (negative: was
        before), traced on a coarse grid over the region (the flow is smooth over
        `spacing`) and interpolated (cubic) to the points."""
        x0, y1 = self.origin
        cx = x0 + spacing * np.arange(math.ceil(self.width_m / spacing) + 1)
        cy = y1 - spacing * np.arange(math.ceil(self.height_m / spacing) + 1)
        xx, yy = np.meshgrid(cx, cy)
        bx, by = self.advect(xx, yy, flow_years)
        coords = np.stack([(y1 - y) / spacing, (x - x0) / spacing])
        dx = ndimage.map_coordinates(bx - xx, coords, order=3, mode="nearest")
        dy = ndimage.map_coordinates(by - yy, coords, order=3, mode="nearest")
        return x + dx, y + dy

    def _sample(self, coefficients: np.ndarray, x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
        """Texture at positions (x, y), shifted by the k-th of a sequence of offsets that
        makes each anchor's texture another (the golden ratio spreads them over the period)."""
        shape = coefficients.shape
        golden = (math.sqrt(5) - 1) / 2
        rows = (self.origin[1] - y) / TEXTURE_PX + (k * golden % 1) * shape[0]
        cols = (x - self.origin[0]) / TEXTURE_PX + (k * golden * golden % 1) * shape[1]
        return ndimage.map_coordinates(
            coefficients, np.stack([rows, cols]), order=3, mode="grid-wrap", prefilter=False
        )

    def _still(self, sensor: Sensor) -> tuple[np.ndarray, ...]:
        """What does not move, on the sensor's grid, made once: pixel centres, the ice
        fraction and the rock's two textures."""
        cache = self.__dict__.setdefault("_still_cache", {})
        if sensor.name not in cache:
            gx, gy = np.meshgrid(*self.grid(sensor))
            rock = self._coefficients(sensor)[1]
            on_ice = self.ice(gx, gy).astype(np.float32)
            cache[sensor.name] = (gx, gy, on_ice, *(self._sample(rock, gx, gy, k) for k in (0, 1)))
        return cache[sensor.name]

    def surface(self, sensor: Sensor, when: datetime, trace_spacing_m: float = 60.0) -> np.ndarray:
        """The ground as the sensor sees it at `when`, before radiometry, noise and clouds:
        the rock's slowly changing texture, and on the ice (the region the flow keeps ice
        in) the two anchored textures around `when`, carried with the flow."""
        gx, gy, on_ice, rock_a, rock_b = self._still(sensor)
        elapsed = (when - EPOCH).total_seconds() / 86_400
        theta = self.rock_change * elapsed / DAYS_PER_YEAR
        out = math.cos(theta) * rock_a + math.sin(theta) * rock_b
        where = on_ice > 0
        x, y, fraction = gx[where], gy[where], on_ice[where]
        k, f = divmod(elapsed / self.renewal_days, 1.0)
        ice = np.zeros(x.shape, np.float32)
        for anchor, weight in (
            (int(k), math.cos(math.pi * f / 2)),
            (int(k) + 1, math.sin(math.pi * f / 2)),
        ):
            anchored = self.flow_time(EPOCH + timedelta(days=anchor * self.renewal_days))
            ax, ay = self._traced(x, y, float(anchored - self.flow_time(when)), trace_spacing_m)
            ice += weight * self._sample(self._coefficients(sensor)[0], ax, ay, anchor)
        # ice: brighter than rock, with less contrast
        out[where] = (1 - fraction) * out[where] + fraction * (0.8 + 0.6 * ice)
        return out

    def render(
        self, acquisition: Acquisition, trace_spacing_m: float = 60.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """One scene: (DN as uint16, cloud opacity 0-1) on the sensor's grid."""
        sensor = acquisition.sensor
        surface = self.surface(sensor, acquisition.when, trace_spacing_m)
        rng = acquisition.rng()
        shape = surface.shape
        gain = sensor.gain * rng.uniform(0.85, 1.15)
        ramp = rng.uniform(-0.2, 0.2) * np.linspace(-1, 1, shape[1], dtype=np.float32)[None, :]
        image = gain * surface + sensor.offset + rng.uniform(-0.3, 0.3) + ramp
        image += sensor.noise * rng.standard_normal(shape, dtype=np.float32)
        alpha, brightness = self._clouds(shape, sensor, rng)
        image = (1 - alpha) * image + alpha * brightness
        dn = np.clip(np.rint(8000 + 1500 * image), 1, 65535).astype(np.uint16)
        return dn, alpha

    def _clouds(
        self, shape: tuple[int, ...], sensor: Sensor, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Soft, partly opaque cloud blobs over a random share (2-90 %) of the scene, or
        none (`clear_days` of the scenes), made coarse and zoomed to the pixels."""
        if rng.uniform() < self.clear_days:
            return np.zeros(shape, np.float32), np.zeros(shape, np.float32)
        cover = rng.uniform(0.02, 0.9)
        coarse = tuple(max(8, n // 16) for n in shape)
        lumps = ndimage.gaussian_filter(rng.standard_normal(coarse), 1200 / sensor.pixel_m / 16)
        lumps = ndimage.zoom(lumps, [n / c for n, c in zip(shape, coarse, strict=True)], order=1)
        level = np.quantile(lumps, 1 - cover)
        edge = 0.3 * lumps.std()
        alpha = (0.9 * np.clip((lumps - level) / edge, 0, 1)).astype(np.float32)
        brightness = (4.0 + 0.5 * lumps / lumps.std()).astype(np.float32)
        return alpha, brightness

    # -- writing -------------------------------------------------------------------------
    def write_scenes(
        self,
        folder: Path,
        start: datetime,
        end: datetime,
        sensors: Sequence[Sensor] = SENSORS,
        overwrite: bool = False,
    ) -> list[Scene]:
        """Write every acquisition in [start, end) as a band COG and a cloud-mask COG under
        `folder/<scene id>/`; scenes already written are kept (a second run is cheap)."""
        return [a.write(folder, overwrite) for a in self.acquisitions(start, end, sensors)]


def sun_elevation(lat: float, when: datetime, lon: float) -> float:
    """Approximate solar elevation (degrees) at a place and time (NOAA's simple formula):
    enough for a scene's `view:sun_elevation`."""
    day = when.timetuple().tm_yday
    hours = when.hour + when.minute / 60
    declination = -23.44 * math.cos(2 * math.pi / 365 * (day + 10))
    hour_angle = 15 * (hours - 12) + lon
    lat_r, dec_r, ha_r = map(math.radians, (lat, declination, hour_angle))
    s = math.sin(lat_r) * math.sin(dec_r) + math.cos(lat_r) * math.cos(dec_r) * math.cos(ha_r)
    return math.degrees(math.asin(s))


@dataclass(frozen=True)
class Acquisition:
    """One scene of the region: sensor, acquisition number and time, and its names."""

    region: Region = field(repr=False)
    sensor: Sensor
    k: int
    when: datetime

    @property
    def platform(self) -> str:
        return self.sensor.platform(self.k)

    @property
    def id(self) -> str:
        """Shaped like the real products' ids (Landsat C2 L1; Earth Search Sentinel-2 L2A)."""
        if self.sensor.name == "landsat":
            processed = self.when + timedelta(days=9)
            return f"LC08_L1TP_{WRS2_PATH_ROW}_{self.when:%Y%m%d}_{processed:%Y%m%d}_02_T1"
        return f"S2{self.platform[-1].upper()}_{MGRS_TILE}_{self.when:%Y%m%d}_0_L2A"

    @property
    def tile(self) -> str:
        """The footprint key: STAC grid:code."""
        return f"WRS2-{WRS2_PATH_ROW}" if self.sensor.name == "landsat" else f"MGRS-{MGRS_TILE}"

    @property
    def band(self) -> str:
        """Asset key and file suffix of the tracked band, as the real items name it."""
        return "pan" if self.sensor.name == "landsat" else "nir"

    def rng(self) -> np.random.Generator:
        return np.random.default_rng([self.region.seed, zlib.crc32(self.id.encode())])

    def paths(self, folder: Path) -> tuple[Path, Path]:
        """(band COG, cloud-mask COG)."""
        band = "B8" if self.sensor.name == "landsat" else "B08"
        base = folder / self.id
        return base / f"{self.id}_{band}.tif", base / f"{self.id}_cloud.tif"

    def write(self, folder: Path, overwrite: bool = False) -> Scene:
        """Render and write this scene's COGs (unless there already), and describe it."""
        band_path, mask_path = self.paths(folder)
        if overwrite or not (band_path.exists() and mask_path.exists()):
            dn, alpha = self.region.render(self)
            landsat = self.sensor.name == "landsat"
            mission, satellite, sensor = (
                ("L", "8", "C") if landsat else ("S", self.platform[-2:].upper(), "MSI")
            )
            grid = (self.region.epsg, self.sensor.pixel_m, self.region.origin)
            _write_cog(
                band_path,
                dn,
                grid,
                DN_NODATA,
                "average",
                tags={
                    "TIFFTAG_DATETIME": self.when.strftime("%Y:%m:%d %H:%M:%S"),
                    "ACQUISITION_TIME": self.when.isoformat(),
                    "MISSION": mission,
                    "SATELLITE": satellite,
                    "SENSOR": sensor,
                },
            )
            cloud = (alpha > CLOUD_OPACITY).astype(np.uint8)
            _write_cog(mask_path, cloud, grid, None, "nearest", tags={"CLOUD": "non-zero: cloud"})
        return self.scene(band_path, mask_path, _cloud_cover(mask_path))

    def scene(self, band_path: Path, mask_path: Path, cloud_cover: float) -> Scene:
        from pyproj import Transformer

        x0, y0, x1, y1 = self.region.bounds
        to_lonlat = Transformer.from_crs(self.region.epsg, 4326, always_xy=True)
        n = 8  # points a side: the UTM box's edges curve slightly in lon/lat
        xs = np.concatenate(
            [np.linspace(x0, x1, n), np.full(n, x1), np.linspace(x1, x0, n), np.full(n, x0)]
        )
        ys = np.concatenate(
            [np.full(n, y0), np.linspace(y0, y1, n), np.full(n, y1), np.linspace(y1, y0, n)]
        )
        lon, lat = to_lonlat.transform(xs, ys)
        ring = [[round(float(a), 7), round(float(b), 7)] for a, b in zip(lon, lat, strict=True)]
        ring = [p for i, p in enumerate(ring) if i == 0 or p != ring[i - 1]]  # closed
        centre_lon, centre_lat = to_lonlat.transform((x0 + x1) / 2, (y0 + y1) / 2)
        return Scene(
            id=self.id,
            href=str(band_path),
            datetime=self.when,
            platform=self.platform,
            instrument=self.sensor.instrument,
            epsg=self.region.epsg,
            footprint={"type": "Polygon", "coordinates": [ring]},
            tile=self.tile,
            cloud_cover=cloud_cover,
            mask_href=str(mask_path),
            extra={
                "mask_kind": "nonzero",  # a cloud mask made for the purpose
                "band": self.band,
                "gsd": self.sensor.pixel_m,
                "sun_elevation": round(sun_elevation(centre_lat, self.when, centre_lon), 2),
            },
        )


def _write_cog(
    path: Path,
    values: np.ndarray,
    grid: tuple[int, float, tuple[float, float]],
    nodata: int | None,
    overviews: str,
    tags: dict[str, str],
) -> None:
    """One single-band COG on the region's grid for a sensor (EPSG, pixel size, origin)."""
    from rasterio.transform import from_origin

    from glacierflow.processing.mosaics.write import write_band_cog

    epsg, pixel, (x0, y0) = grid
    path.parent.mkdir(parents=True, exist_ok=True)
    transform = from_origin(x0, y0, pixel, pixel)
    write_band_cog(values, f"EPSG:{epsg}", transform, path, nodata, overviews, tags=tags)


def _cloud_cover(mask_path: Path) -> float:
    """Percent of the scene's pixels its cloud mask marks."""
    import rasterio

    with rasterio.open(mask_path) as src:
        return round(100.0 * float(np.count_nonzero(src.read(1))) / (src.width * src.height), 2)
