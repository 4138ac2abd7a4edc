"""Synthetic image pairs with a known displacement field: the truth the tracker is tested against.

Textures:
- `fractal`: band-limited Gaussian texture with a power-law spectrum (like snow and ice
  surfaces at satellite scale), rolled off before Nyquist so that it can be resampled
  without aliasing;
- `natural`: a dead-leaves image (random occluding discs with power-law radii), the
  standard model of natural-image statistics: sharp edges, flat patches, 1/f^2 spectrum;
  blurred by a sensor point-spread function.

Fields (functions of reference-image position, in pixels, returning (rows, cols)):
uniform sub-pixel shifts, glacier-like channel flow with shear margins and stable
ground beside it, and a vortex. The secondary image is the texture sampled where each of
its pixels came from, found by fixed-point inversion of the field, with a quintic spline,
so the displacement of every reference point is exactly the field's value there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from scipy import ndimage

Field = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""field(rows, cols) -> (d_rows, d_cols), in pixels, at reference-image positions."""

PIXEL_SIZE_M = 7.5  # 16 px = 120 m, ITS_LIVE's posting
ORIGIN_X = -180000.0  # multiples of 120 m: nodes fall on ITS_LIVE's grid
ORIGIN_Y = -2280000.0
EPSG = 3413


def fractal_texture(
    shape: tuple[int, int], rng: np.random.Generator, beta: float = 2.0
) -> np.ndarray:
    """Zero-mean, unit-variance texture with amplitude spectrum ~ f^-beta/2, band-limited."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    f = np.hypot(fy, fx)
    amplitude = np.where(f > 0, np.maximum(f, 1.0 / 256) ** (-beta / 2), 0.0)
    amplitude *= np.exp(-((f / 0.3) ** 4))  # roll off before Nyquist (0.5 cycles/px)
    noise = rng.standard_normal(shape)
    tex = np.fft.irfft2(np.fft.rfft2(noise) * amplitude, s=shape)
    return ((tex - tex.mean()) / tex.std()).astype(np.float32)


def natural_texture(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Dead-leaves texture (radii 1.5-80 px, density ~ r^-3), blurred by a 0.8 px PSF."""
    h, w = shape
    image = np.full(shape, rng.uniform(), dtype=np.float32)
    area = 0.0
    r_min, r_max = 1.5, 80.0
    while area < 6.0 * h * w:
        r = min(r_min / np.sqrt(1 - rng.uniform()), r_max)
        cy, cx = rng.uniform(-r, h + r), rng.uniform(-r, w + r)
        y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 1, h)
        x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 1, w)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.ogrid[y0:y1, x0:x1]
        disc = (yy + 0.5 - cy) ** 2 + (xx + 0.5 - cx) ** 2 <= r * r
        image[y0:y1, x0:x1][disc] = rng.uniform()
        area += np.pi * r * r
    image = ndimage.gaussian_filter(image, 0.8)
    return ((image - image.mean()) / image.std()).astype(np.float32)


def uniform(d_rows: float, d_cols: float) -> Field:
    """The same shift everywhere."""

    def field(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.full(np.shape(rows), d_rows), np.full(np.shape(cols), d_cols)

    return field


def channel_flow(
    centre_row: float,
    half_width: float,
    peak_px: float,
    margin_px: float = 40.0,
    exponent: float = 4.0,
) -> Field:
    """Ice flowing along +cols in a channel |row - centre| < half_width, stable ground outside.

    The profile is that of a glacier with plastic-like shear margins, (1 - |eta|^n), eased over
    `margin_px` pixels (a small value gives the sharp rock/ice margins that chips straddle).
    """

    def field(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        eta = np.abs(np.asarray(rows, dtype=np.float64) - centre_row) / half_width
        inner = np.clip(1 - eta**exponent, 0, None)
        ease = 0.5 * (
            1 + np.tanh((half_width - np.abs(rows - centre_row)) / max(margin_px, 1e-3) * 2)
        )
        speed = peak_px * inner * ease
        return np.zeros_like(speed), speed

    return field


def vortex(centre: tuple[float, float], radius: float, peak_px: float) -> Field:
    """A Gaussian vortex: rotation about `centre`, peak tangential displacement `peak_px`."""

    def field(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dr = np.asarray(rows, dtype=np.float64) - centre[0]
        dc = np.asarray(cols, dtype=np.float64) - centre[1]
        rho = np.hypot(dr, dc)
        speed = peak_px * (rho / radius) * np.exp(0.5 - 0.5 * (rho / radius) ** 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            ur = np.where(rho > 0, -dc / rho, 0.0)
            uc = np.where(rho > 0, dr / rho, 0.0)
        return speed * ur, speed * uc

    return field


REF_TIME = datetime(2024, 7, 1, 12)
SEC_TIME = datetime(2024, 7, 17, 12)  # Landsat's 16-day repeat


@dataclass
class Motion:
    """A known displacement field over a geolocated image grid between two times."""

    field: Field
    ref_time: datetime = REF_TIME
    sec_time: datetime = SEC_TIME
    pixel_size: float = PIXEL_SIZE_M
    origin: tuple[float, float] = (ORIGIN_X, ORIGIN_Y)
    epsg: int = EPSG

    @property
    def transform(self):  # rasterio Affine; imported lazily to keep this module numpy-only
        from rasterio.transform import from_origin

        return from_origin(self.origin[0], self.origin[1], self.pixel_size, self.pixel_size)


@dataclass(kw_only=True)
class SyntheticPair(Motion):
    """Two images related by a known motion."""

    ref: np.ndarray
    sec: np.ndarray


def _advect(tex: np.ndarray, field: Field, shape: tuple[int, int], pad: int) -> np.ndarray:
    """The secondary image: `tex` (the reference scene with `pad` pixels around it) sampled
    where each pixel came from, so that reference point p moves exactly to p + field(p)."""
    coef = ndimage.spline_filter(tex.astype(np.float64), order=5, mode="mirror")
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    # centre of pixel (i, j) is at (i + 0.5, j + 0.5); invert q = p + d(p) by fixed point
    q_rows, q_cols = rows + 0.5, cols + 0.5
    p_rows, p_cols = q_rows.copy(), q_cols.copy()
    for _ in range(60):
        d_rows, d_cols = field(p_rows, p_cols)
        new_rows, new_cols = q_rows - d_rows, q_cols - d_cols
        change = max(np.abs(new_rows - p_rows).max(), np.abs(new_cols - p_cols).max())
        p_rows, p_cols = new_rows, new_cols
        if change < 1e-7:
            break
    coords = np.stack([p_rows - 0.5 + pad, p_cols - 0.5 + pad])
    return ndimage.map_coordinates(coef, coords, order=5, mode="mirror", prefilter=False).astype(
        np.float32
    )


def make_pair(
    shape: tuple[int, int] = (1000, 1000),
    field: Field | None = None,
    texture: str = "fractal",
    noise: float = 0.02,
    seed: int = 0,
    radiometric: bool = False,
    clouds: int = 0,
    ref_time: datetime = REF_TIME,
    sec_time: datetime = SEC_TIME,
) -> SyntheticPair:
    """Build a pair: `noise` is the noise standard deviation relative to the texture's.

    radiometric: the secondary image gets another gain, offset and a smooth illumination
    ramp. clouds: that many NaN discs (radius 20-60 px) are punched into the secondary image.
    """
    rng = np.random.default_rng(seed)
    field = field or uniform(0.3, -0.7)
    pad = 64
    big = (shape[0] + 2 * pad, shape[1] + 2 * pad)
    tex = fractal_texture(big, rng) if texture == "fractal" else natural_texture(big, rng)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    ref = tex[pad:-pad, pad:-pad].copy()
    sec = _advect(tex, field, shape, pad)
    if radiometric:
        ramp = np.linspace(-0.3, 0.3, shape[1])[None, :] + np.linspace(0, 0.2, shape[0])[:, None]
        sec = 0.7 * sec + 0.5 + ramp.astype(np.float32)  # gain 0.7, see the noise below
    ref = ref + noise * rng.standard_normal(shape).astype(np.float32)
    gain = 0.7 if radiometric else 1.0
    sec = sec + gain * noise * rng.standard_normal(shape).astype(np.float32)
    for _ in range(clouds):
        r = rng.uniform(20, 60)
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        sec[(rows + 0.5 - cy) ** 2 + (cols + 0.5 - cx) ** 2 < r * r] = np.nan
    return SyntheticPair(
        field=field,
        ref_time=ref_time,
        sec_time=sec_time,
        ref=ref.astype(np.float32),
        sec=sec.astype(np.float32),
    )


def glacier_band(
    centre: tuple[float, float],
    half_width: float,
    plug_px: float = 30.0,
    max_shear: float = 0.43,
    angle_deg: float = 12.0,
) -> Field:
    """Plug flow along a straight band at `angle_deg` to the grid (clockwise from +cols, i.e.
    flowing right and slightly down), with tanh shear margins whose steepest shear is
    `max_shear` px/px; the tanh tail is cut 3.5 widths out so that the rock is truly still."""
    theta = np.radians(angle_deg)
    tail = 0.5 * (1 + np.tanh(-3.5))
    width = 0.5 * plug_px / (max_shear * (1 - tail))  # d speed / d distance peaks at the margin

    def field(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        across = band_distance(rows, cols, centre, angle_deg)
        raw = 0.5 * (1 + np.tanh((half_width - np.abs(across)) / width))
        speed = plug_px * np.clip(raw - tail, 0, None) / (1 - tail)
        return speed * np.sin(theta), speed * np.cos(theta)

    return field


def band_distance(
    rows: np.ndarray, cols: np.ndarray, centre: tuple[float, float], angle_deg: float
) -> np.ndarray:
    """Signed distance (px) across a band through `centre` at `angle_deg` to the grid."""
    theta = np.radians(angle_deg)
    dr = np.asarray(rows, dtype=np.float64) - centre[0]
    dc = np.asarray(cols, dtype=np.float64) - centre[1]
    return dr * np.cos(theta) - dc * np.sin(theta)


HARD_SUBSETS = ("margins", "ice_interior", "beside_cloud", "under_cloud", "stable_rock")
"""The node subsets of a hard scene (see HardScene.subsets)."""


@dataclass(kw_only=True)
class HardScene(SyntheticPair):
    """A fast outlet glacier on a cloudy day (issue 11): the pair, its truth and its clouds.

    ref_cloud, sec_cloud: pixels the cloud covers (opacity > 2 %) in each image, as the
    masks a QA band would give; cloud_shift: the cloud's own motion, (rows, cols) px.
    """

    ref_cloud: np.ndarray
    sec_cloud: np.ndarray
    cloud_shift: tuple[int, int]
    band_centre: tuple[float, float]
    band_half_width: float
    band_angle_deg: float

    def subsets(self, rows: np.ndarray, cols: np.ndarray) -> dict[str, np.ndarray]:
        """Boolean grids over nodes (rows, cols: 1-D node positions in pixels):

        - margins: shear >= 0.05 px/px, no cloud within 64 px (half the largest chip);
        - ice_interior: plug flow (>= 97 % of the fastest node), clear of cloud by 16 px
          and within 128 px of it;
        - beside_cloud: any ground clear of cloud by 16 px (half the smallest chip) and
          within 128 px of it, in either image;
        - under_cloud: the node lies under the cloud in either image;
        - stable_rock: still ground clear of cloud by 16 px.
        """
        rr, cc = np.meshgrid(rows, cols, indexing="ij")
        d_rows, d_cols = self.field(rr, cc)
        speed = np.hypot(d_rows, d_cols)
        eps = 0.5  # across the band: rows grow by cos(theta), cols shrink by sin(theta)
        step_r, step_c = eps * np.cos(self._theta), -eps * np.sin(self._theta)
        ahead = np.hypot(*self.field(rr + step_r, cc + step_c))
        behind = np.hypot(*self.field(rr - step_r, cc - step_c))
        shear = np.abs(ahead - behind) / (2 * eps)
        cloud = self.ref_cloud | self.sec_cloud
        clearance = (
            ndimage.distance_transform_edt(~cloud) if cloud.any() else np.full(cloud.shape, np.inf)
        )
        ir = np.clip(np.floor(rr).astype(int), 0, cloud.shape[0] - 1)
        ic = np.clip(np.floor(cc).astype(int), 0, cloud.shape[1] - 1)
        clear = clearance[ir, ic]
        peak = speed.max()
        return {
            "margins": (shear >= 0.05) & (clear > 64),
            "ice_interior": (speed >= 0.97 * peak) & (clear > 16) & (clear <= 128),
            "beside_cloud": (clear > 16) & (clear <= 128),
            "under_cloud": cloud[ir, ic],
            "stable_rock": (speed == 0) & (clear > 16),
        }

    @property
    def _theta(self) -> float:
        return float(np.radians(self.band_angle_deg))


def hard_scene(
    size: int = 1000,
    texture: str = "fractal",
    cloud: bool = True,
    seed: int = 0,
    noise: float = 0.2,
    cloud_shift: tuple[int, int] = (-15, 20),
) -> HardScene:
    """Issue 11's hard scene, `size` pixels square (1000 in the issue; tests use less).

    A glacier band at 12 deg through the centre, 0.4 `size` wide, 30 px of plug flow with
    tanh shear margins (steepest shear 0.43 px/px), still rock on both sides; the ice's
    texture has 0.6x the rock's contrast and moves with it. A bright, semi-transparent,
    textured cloud over ~20 % of each image moves `cloud_shift` (rows, cols) px between the
    images: 20 px right and 15 px up by default. Image 2 has a gain from 0.75 to 1.25 across
    x and an additive ramp down y; both get noise of `noise` times the texture's std.
    """
    rng = np.random.default_rng(seed)
    shape = (size, size)
    centre = (size / 2, size / 2)
    half_width = 0.2 * size
    angle = 12.0
    field = glacier_band(centre, half_width, angle_deg=angle)
    pad = 64
    big = (size + 2 * pad, size + 2 * pad)
    tex = fractal_texture(big, rng) if texture == "fractal" else natural_texture(big, rng)
    g_rows, g_cols = np.mgrid[0 : big[0], 0 : big[1]].astype(np.float64) + 0.5 - pad
    across = band_distance(g_rows, g_cols, centre, angle)
    # contrast 1 on rock, 0.6 on ice; the flow runs along the band, so this moves with the ice
    contrast = 1 - 0.4 * 0.5 * (1 + np.tanh((half_width - np.abs(across)) / 2.0))
    scene = (tex * contrast).astype(np.float64)
    ref = scene[pad:-pad, pad:-pad].astype(np.float32)
    sec = _advect(scene, field, shape, pad)
    ref_alpha = np.zeros(shape, np.float32)
    sec_alpha = np.zeros(shape, np.float32)
    if cloud:
        alpha, layer = _cloud_layer(big, rng, pad, size)
        dr, dc = cloud_shift
        ref_alpha = alpha[pad:-pad, pad:-pad]
        sec_alpha = alpha[pad - dr : pad - dr + size, pad - dc : pad - dc + size]
        ref = (1 - ref_alpha) * ref + ref_alpha * layer[pad:-pad, pad:-pad]
        sec_layer = layer[pad - dr : pad - dr + size, pad - dc : pad - dc + size]
        sec = (1 - sec_alpha) * sec + sec_alpha * sec_layer
    gain = np.linspace(0.75, 1.25, size, dtype=np.float32)[None, :]
    ramp = np.linspace(0.0, 1.5, size, dtype=np.float32)[:, None]
    sec = gain * sec + ramp
    ref = ref + noise * rng.standard_normal(shape).astype(np.float32)
    sec = sec + noise * rng.standard_normal(shape).astype(np.float32)
    return HardScene(
        field=field,
        ref=ref.astype(np.float32),
        sec=sec.astype(np.float32),
        ref_cloud=ref_alpha > 0.02,
        sec_cloud=sec_alpha > 0.02,
        cloud_shift=cloud_shift,
        band_centre=centre,
        band_half_width=half_width,
        band_angle_deg=angle,
    )


def _cloud_layer(
    shape: tuple[int, int], rng: np.random.Generator, pad: int, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Opacity (0-0.7, soft-edged, irregular, ~20 % of a `size` image) and brightness
    (3 texture stds above the ground, with its own smoother texture) of one cloud."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64) - pad
    centre = (0.3 * size, 0.62 * size)
    radius = np.hypot(rows - centre[0], cols - centre[1]) / (0.25 * size)
    lumps = ndimage.gaussian_filter(rng.standard_normal(shape), 0.04 * size, mode="wrap")
    potential = radius + 0.35 * lumps / lumps.std()
    inner = potential[pad:-pad, pad:-pad]
    level = np.quantile(inner, 0.2)
    edge = 0.06 * (np.quantile(inner, 0.3) - np.quantile(inner, 0.1)) / 0.2
    alpha = 0.7 * np.clip((level + edge / 2 - potential) / edge, 0, 1)
    layer = 3.0 + 0.8 * fractal_texture(shape, rng, beta=3.0)
    return alpha.astype(np.float32), layer.astype(np.float32)


def write_geotiffs(pair: SyntheticPair, folder: Path, name: str = "synthetic") -> tuple[Path, Path]:
    """Write the pair as single-band float32 GeoTIFFs with acquisition-time tags.

    Names follow no mission's pattern, so tags say what the scenes imitate: Landsat 8 OLI
    (ITS_LIVE's mission "L", satellite "8", sensor "C"; STAC platform LC08), the platform
    clients filter on (the itslive client's `mission="landsat8"`).
    """
    import rasterio

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for label, image, when in (("ref", pair.ref, pair.ref_time), ("sec", pair.sec, pair.sec_time)):
        path = folder / f"{name}_{label}.tif"
        profile = {
            "driver": "GTiff",
            "height": image.shape[0],
            "width": image.shape[1],
            "count": 1,
            "dtype": "float32",
            "crs": f"EPSG:{pair.epsg}",
            "transform": pair.transform,
            "nodata": np.nan,
            "tiled": True,
            "compress": "deflate",
        }
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(image, 1)
            dst.update_tags(
                TIFFTAG_DATETIME=when.strftime("%Y:%m:%d %H:%M:%S"),
                MISSION="L",
                SATELLITE="8",
                SENSOR="C",
            )
        paths.append(path)
    return paths[0], paths[1]


@dataclass(frozen=True)
class Accuracy:
    """Errors of measured vectors against the true field, in pixels and m/yr."""

    rmse_px: float
    p99_px: float
    max_px: float
    rmse_m_per_yr: float
    valid_fraction: float
    measured: int

    def summary(self) -> str:
        return (
            f"{self.measured} vectors, valid {100 * self.valid_fraction:.1f} %, "
            f"RMSE {self.rmse_px:.4f} px ({self.rmse_m_per_yr:.2f} m/yr), "
            f"p99 {self.p99_px:.3f} px, max {self.max_px:.3f} px"
        )


def _granule_errors(granule, pair: Motion) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Node rows and cols (pixels), each node's vector error (px, NaN where none) and the
    pixel's worth in m/yr, from a granule (an xarray Dataset) and the pair's truth."""
    x, y = granule["x"].values, granule["y"].values
    cols = (x - pair.origin[0]) / pair.pixel_size
    rows = (pair.origin[1] - y) / pair.pixel_size
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    true_rows, true_cols = pair.field(rr, cc)
    dt_years = (pair.sec_time - pair.ref_time).total_seconds() / 86400 / 365.25
    per_px = pair.pixel_size / dt_years
    vx = granule["vx"].values.astype(np.float64)
    vy = granule["vy"].values.astype(np.float64)
    return rows, cols, np.hypot(vx / per_px - true_cols, -vy / per_px - true_rows), per_px


def granule_accuracy(granule, pair: Motion, include_interpolated: bool = False) -> Accuracy:
    """Compare a granule's vx/vy (an xarray Dataset) with the true field at its nodes."""
    _, _, errors, per_px = _granule_errors(granule, pair)
    valid = np.isfinite(errors)
    # interp_mask's _FillValue is 0 (as in ITS_LIVE), so xarray decodes "measured" as NaN
    used = valid if include_interpolated else valid & (granule["interp_mask"].values != 1)
    err = errors[used]
    if err.size == 0:
        return Accuracy(np.nan, np.nan, np.nan, np.nan, 0.0, 0)
    return Accuracy(
        rmse_px=float(np.sqrt(np.mean(err**2))),
        p99_px=float(np.percentile(err, 99)),
        max_px=float(err.max()),
        rmse_m_per_yr=float(np.sqrt(np.mean(err**2)) * per_px),
        valid_fraction=float(valid.mean()),
        measured=int(used.sum()),
    )


@dataclass(frozen=True)
class SubsetFigures:
    """How a granule fares on one subset of a hard scene's nodes, vectors as delivered
    (interpolated ones included, stable-ground shift removed)."""

    nodes: int
    valid_fraction: float
    rmse_px: float
    wrong_fraction: float  # of the valid vectors, those more than 1 px off


def subset_figures(granule, scene: HardScene) -> dict[str, SubsetFigures]:
    """Valid fraction, RMSE and share of vectors > 1 px wrong on each of the scene's subsets
    and on all its nodes ("all")."""
    rows, cols, errors, _ = _granule_errors(granule, scene)
    return node_subset_figures(errors, rows, cols, scene)


def node_subset_figures(
    errors: np.ndarray, rows: np.ndarray, cols: np.ndarray, scene: HardScene
) -> dict[str, SubsetFigures]:
    """The same from any tracker's vector errors (px, NaN where none) on a grid of nodes
    at `rows` x `cols` (pixel positions), so that other trackers compare on equal terms."""
    out = {}
    subsets = scene.subsets(rows, cols)
    subsets["all"] = np.ones_like(errors, dtype=bool)
    for name, where in subsets.items():
        err = errors[where]
        ok = err[np.isfinite(err)]
        out[name] = SubsetFigures(
            nodes=int(where.sum()),
            valid_fraction=float(ok.size / err.size) if err.size else 0.0,
            rmse_px=float(np.sqrt(np.mean(ok**2))) if ok.size else np.nan,
            wrong_fraction=float(np.mean(ok > 1.0)) if ok.size else np.nan,
        )
    return out


VelocityField = Callable[[np.ndarray, np.ndarray, datetime], tuple[np.ndarray, np.ndarray]]
"""velocity(x, y, centre_date) -> (vx, vy) in m/yr, at projected pixel centres."""


_SENSORS = {"L": "C", "S": "MSI"}  # ITS_LIVE's sensor names: Landsat 8/9 OLI, Sentinel-2 MSI


def granule_copy(
    template: Path,
    folder: Path,
    ref_time: datetime,
    sec_time: datetime,
    velocity: VelocityField,
    satellite: str = "8",
    mission: str = "L",
) -> Path:
    """A granule like `template` (grid, projection, valid-data mask, attributes) with new
    acquisition dates and a known velocity: many distinct granules for cubes, in moments,
    without tracking each pair."""
    from glacierflow.processing.io.granule import read_granule, write_granule

    centre = ref_time + (sec_time - ref_time) / 2
    fmt = "%Y%m%dT%H:%M:%S.%f"
    ds = read_granule(template)
    xx, yy = np.meshgrid(ds["x"].values, ds["y"].values)
    vx, vy = velocity(xx, yy, centre)
    valid = ds["v"].values != -32767
    for name, values in (("vx", vx), ("vy", vy), ("v", np.hypot(vx, vy))):
        ds[name].values = np.where(valid, np.rint(values), -32767).astype(np.int16)
    ids = [f"{mission}{satellite}_SYNTH_{t:%Y%m%d}" for t in (ref_time, sec_time)]
    ds["img_pair_info"].attrs.update(
        id_img1=ids[0],
        id_img2=ids[1],
        acquisition_date_img1=ref_time.strftime(fmt),
        acquisition_date_img2=sec_time.strftime(fmt),
        date_center=centre.strftime(fmt),
        date_dt=(sec_time - ref_time).total_seconds() / 86400,
        satellite_img1=satellite,
        satellite_img2=satellite,
        mission_img1=mission,
        mission_img2=mission,
        sensor_img1=_SENSORS[mission],
        sensor_img2=_SENSORS[mission],
    )
    percent = int(100 * valid.mean())
    return write_granule(ds, folder / f"{ids[0]}_X_{ids[1]}_G0120V02_P{percent:03d}.nc")


def radar_amplitude(
    pair: SyntheticPair, looks: float = 4.4, contrast_db: float = 3.0, seed: int = 0
) -> SyntheticPair:
    """The pair as radar backscatter (linear power, Sentinel-1 RTC's gamma0): the images'
    texture is the surface's backscatter in dB around -12 dB with `contrast_db` spread,
    times speckle drawn anew for each image (Gamma, mean 1, `looks` looks: RTC's
    equivalent number of looks is 4.4), as between two acquisitions days apart."""
    rng = np.random.default_rng(seed)

    def backscatter(texture: np.ndarray) -> np.ndarray:
        power = 10.0 ** ((-12.0 + contrast_db * texture) / 10.0)
        speckle = rng.gamma(looks, 1.0 / looks, texture.shape)
        return (power * speckle).astype(np.float32)

    return dataclasses.replace(pair, ref=backscatter(pair.ref), sec=backscatter(pair.sec))
