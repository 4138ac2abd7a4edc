"""Writing velocity granules in ITS_LIVE's layout (NetCDF4, CF-1.8) with a browse PNG.

Files are written under a temporary name and renamed at the end, so a crash never leaves
a partial granule behind. See ../shared/FORMATS.md for the conventions followed here.
Granules are built and written with netCDF4 alone, not xarray: xarray and pandas took
over a second of a `glacierflow track` process to import.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from xml.sax.saxutils import escape

import netCDF4
import numpy as np
from PIL import Image
from pyproj import CRS, Transformer

from glacierflow.processing.io.scenes import SceneInfo
from glacierflow.processing.tracking.grid import NodeGrid
from glacierflow.processing.tracking.tracker import REASON_MEANINGS, Reason
from glacierflow.processing.tracking.velocity import Velocity

FILL_INT16 = -32767
VERSION = "V02"
_COMPRESSION = {"zlib": True, "complevel": 2, "shuffle": True}
_TIME_FORMAT = "%Y%m%dT%H:%M:%S.%f"
# A Landsat Collection-2 product id: LXSS_LLLL_PPPRRR_YYYYMMDD_yyyymmdd_CC_TX
_LANDSAT_PRODUCT = re.compile(
    r"^L[COTEM]\d{2}_(?P<level>L1\w{2})_(?P<path>\d{3})(?P<row>\d{3})_\d{8}_(?P<processed>\d{8})"
    r"_(?P<number>\d{2})_(?P<category>T1|T2|RT)"
)
_MISSION_NAMES = {"L": "Landsat {}", "S": "Sentinel-{}"}


@dataclass
class Variable:
    """One variable of a granule: dimensions, values, attributes, and how it is stored
    (`encoding`: _FillValue, zlib, complevel, shuffle), named as xarray names them."""

    dims: tuple[str, ...] | str
    values: np.ndarray
    attrs: dict[str, object] = field(default_factory=dict)
    encoding: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dims = (self.dims,) if isinstance(self.dims, str) else tuple(self.dims)
        self.values = np.asarray(self.values)


@dataclass
class Granule:
    """A granule in memory: its variables by name (coordinates included) and global
    attributes."""

    variables: dict[str, Variable]
    attrs: dict[str, object]

    def __getitem__(self, name: str) -> Variable:
        return self.variables[name]


def granule_name(ref: SceneInfo, sec: SceneInfo, spacing: float, valid_percentage: float) -> str:
    """ITS_LIVE's name: <id1>_X_<id2>_G0120V02_P{floor(valid%):03d}.nc (acquisition order)."""
    first, second = sorted((ref, sec), key=lambda s: s.acquired)
    return (
        f"{first.scene_id}_X_{second.scene_id}_G{round(spacing):04d}{VERSION}"
        f"_P{math.floor(valid_percentage):03d}.nc"
    )


@dataclass(frozen=True)
class GranuleInputs:
    """Everything that goes into one granule besides the velocity itself."""

    ref: SceneInfo
    sec: SceneInfo
    crs: CRS
    grid: NodeGrid
    chip_size_m: tuple[np.ndarray, np.ndarray]  # width, height per node; 0 where none
    interpolated: np.ndarray
    reason: np.ndarray
    parameters: dict[str, str | float | int]
    pixel_size_m: tuple[float, float]  # of the images the chips were cut from (x, y)


def mapping_attrs(crs: CRS, geotransform: tuple[float, ...]) -> dict[str, object]:
    """The CF grid-mapping attributes ITS_LIVE puts on `mapping` (GDAL order geotransform)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # PROJ strings are lossy; kept for ITS_LIVE
        proj4 = crs.to_proj4()
    cf = {k: v for k, v in crs.to_cf().items() if not isinstance(v, dict | list)}
    if crs.utm_zone:
        cf["grid_mapping_name"] = "universal_transverse_mercator"
        cf["utm_zone_number"] = int(crs.utm_zone[:-1])
    cf.update(
        spatial_ref=crs.to_wkt("WKT1_GDAL"),  # what ITS_LIVE and GDAL's netCDF driver write
        crs_wkt=crs.to_wkt(),
        proj4text=proj4,
        spatial_epsg=crs.to_epsg() or 0,
        GeoTransform=" ".join(repr(float(v)) for v in geotransform),
    )
    if cf.get("grid_mapping_name") == "polar_stereographic" and "standard_parallel" in cf:
        # ITS_LIVE's names for a pole-centred projection with a true-scale latitude (which
        # CF calls standard_parallel; readers that know either find it)
        cf.setdefault("latitude_of_projection_origin", math.copysign(90.0, cf["standard_parallel"]))
        cf.setdefault("latitude_of_origin", cf["standard_parallel"])
        cf.setdefault("scale_factor_at_projection_origin", 1)
    return cf


def _scene_attrs(scene: SceneInfo, n: int) -> dict[str, object]:
    """The per-image `img_pair_info` attributes ITS_LIVE reads from a Landsat Collection-2
    product id (WRS path/row, collection, correction level, processing date); other scenes
    have none of them to give."""
    product = _LANDSAT_PRODUCT.match(scene.scene_id)
    if product is None:
        return {}
    return {
        f"collection_category_img{n}": product["category"],
        f"collection_number_img{n}": float(product["number"]),
        f"correction_level_img{n}": product["level"],
        f"path_img{n}": float(product["path"]),
        f"processing_date_img{n}": product["processed"],
        f"row_img{n}": float(product["row"]),
    }


def _platform_names(*scenes: SceneInfo) -> str:
    """The global `satellite` as ITS_LIVE writes it ("Landsat 8", "Sentinel-2A")."""
    names = {_MISSION_NAMES.get(s.mission, f"{s.mission} {{}}").format(s.satellite) for s in scenes}
    return ", ".join(sorted(names))


def _coordinate(name: str, values: np.ndarray) -> Variable:
    attrs = {
        "standard_name": f"projection_{name}_coordinate",
        "description": f"{name} coordinate of projection",
        "units": "m",
    }
    var = Variable(name, values, attrs)
    var.encoding = {"_FillValue": None}  # CF: coordinates have no fill value
    return var


def _int16(values: np.ndarray) -> np.ndarray:
    out = np.full(values.shape, FILL_INT16, dtype=np.int16)
    ok = np.isfinite(values)
    out[ok] = np.clip(np.rint(values[ok]), -32766, 32767).astype(np.int16)
    return out


def _velocity_attrs(vel: Velocity, k: int, name: str) -> dict[str, object]:
    stationary, slow = vel.stationary[k], vel.slow[k]
    flag = vel.stable_shift_flag
    shift = {1: stationary.shift, 2: slow.shift}.get(flag, 0.0)
    return {
        "standard_name": f"land_ice_surface_{name}_velocity",
        "description": f"velocity component in {name} direction",
        "units": "meter/year",
        "grid_mapping": "mapping",
        "error": vel.component_error(k),
        "error_description": "RMS over the stable ground the shift came from, after the shift "
        "correction (error_stationary for flag 1, error_slow for flag 2); error_modeled for flag 0",
        "error_stationary": stationary.error,
        "error_stationary_description": "RMSE over stable surfaces (the stable-surface mask), "
        "after the shift correction",
        "error_slow": slow.error,
        "error_slow_description": "RMSE over the slowest 25% of retrieved velocities, after the "
        "shift correction",
        "error_modeled": vel.modeled_error(k),
        "error_modeled_description": "median per-vector 1-sigma precision of the correlation fit",
        "stable_shift": shift,
        "stable_shift_description": (
            f"subtracted: the median over {vel.stable_shift_source}"
            if flag
            else f"nothing subtracted: {vel.stable_shift_source}"
        ),
        "stable_shift_flag": flag,
        "stable_shift_flag_description": "flag for applying velocity bias correction: 0 = no "
        "correction; 1 = correction from overlapping stable surface mask; 2 = correction from "
        "slowest 25% of overlapping velocities (of the reference velocity; of the measured ones "
        "only when asked for)",
        "stable_shift_stationary": stationary.shift,
        "stable_count_stationary": stationary.count,
        "stable_shift_slow": slow.shift,
        "stable_count_slow": slow.count,
    }


def granule_dataset(vel: Velocity, inp: GranuleInputs) -> Granule:
    """Assemble the granule (encodings attached to the variables)."""
    grid = inp.grid
    ref, sec = sorted((inp.ref, inp.sec), key=lambda s: s.acquired)
    dt = (sec.acquired - ref.acquired).total_seconds() / 86400
    centre = ref.acquired + (sec.acquired - ref.acquired) / 2
    lon, lat = Transformer.from_crs(inp.crs, "EPSG:4326", always_xy=True).transform(
        float(grid.x.mean()), float(grid.y.mean())
    )
    dims = ("y", "x")

    def gridded(values: np.ndarray, attrs: dict, fill: int = FILL_INT16) -> Variable:
        var = Variable(dims, values, attrs=attrs)
        var.encoding = {**_COMPRESSION, "_FillValue": fill}
        return var

    def chip_size(side: str, metres: np.ndarray) -> Variable:
        axis = "x" if side == "width" else "y"
        attrs = {
            "standard_name": f"chip_size_{side}",
            "description": f"{side} of search template (chip)",
            "units": "m",
            "grid_mapping": "mapping",
            f"{axis}_pixel_size": float(inp.pixel_size_m[0 if axis == "x" else 1]),
            "chip_size_coordinates": "image projection geometry: width = x, height = y",
        }
        return gridded(np.clip(metres, 0, 65535).astype(np.uint16), attrs, fill=0)

    speed_attrs = {"units": "meter/year", "grid_mapping": "mapping"}
    pair_info = {
        "standard_name": "image_pair_information",
        "id_img1": ref.scene_id,
        "id_img2": sec.scene_id,
        "acquisition_date_img1": ref.acquired.strftime(_TIME_FORMAT),
        "acquisition_date_img2": sec.acquired.strftime(_TIME_FORMAT),
        "date_center": centre.strftime(_TIME_FORMAT),
        "date_dt": dt,
        "mission_img1": ref.mission,
        "mission_img2": sec.mission,
        "satellite_img1": ref.satellite,
        "satellite_img2": sec.satellite,
        "sensor_img1": ref.sensor,
        "sensor_img2": sec.sensor,
        "time_standard_img1": "UTC",
        "time_standard_img2": "UTC",
        **_scene_attrs(ref, 1),
        **_scene_attrs(sec, 2),
        "latitude": round(lat, 2),
        "longitude": round(lon, 2),
        "roi_valid_percentage": round(vel.quality["valid_percentage"], 1),
    }
    data_vars = {
        "vx": gridded(_int16(vel.vx), _velocity_attrs(vel, 0, "x")),
        "vy": gridded(_int16(vel.vy), _velocity_attrs(vel, 1, "y")),
        "v": gridded(
            _int16(vel.v),
            {
                "standard_name": "land_ice_surface_velocity",
                "description": "velocity magnitude",
                **speed_attrs,
            },
        ),
        "v_error": gridded(
            _int16(vel.v_error),
            {
                "standard_name": "velocity_error",
                "description": "velocity magnitude error",
                **speed_attrs,
            },
        ),
        "vx_error": gridded(
            _int16(vel.vx_error),
            {
                "description": "per-vector 1-sigma precision of vx from the correlation fit",
                **speed_attrs,
            },
        ),
        "vy_error": gridded(
            _int16(vel.vy_error),
            {
                "description": "per-vector 1-sigma precision of vy from the correlation fit",
                **speed_attrs,
            },
        ),
        "chip_size_width": chip_size("width", inp.chip_size_m[0]),
        "chip_size_height": chip_size("height", inp.chip_size_m[1]),
        "interp_mask": gridded(
            inp.interpolated.astype(np.uint8),
            {
                "standard_name": "interpolated_value_mask",
                "description": "true where values have been interpolated",
                "flag_values": np.array([0, 1], dtype=np.uint8),
                "flag_meanings": "measured interpolated",
                "grid_mapping": "mapping",
            },
            fill=0,
        ),
        "reason": gridded(
            inp.reason.astype(np.uint8),
            {
                "description": "why a node has no measured vector (glacierflow)",
                "flag_values": np.array([int(r) for r in Reason], dtype=np.uint8),
                "flag_meanings": REASON_MEANINGS,
                "grid_mapping": "mapping",
            },
            fill=255,
        ),
        "mapping": Variable((), np.int8(0), attrs=mapping_attrs(inp.crs, grid.geotransform)),
        "img_pair_info": Variable((), np.int8(0), attrs=pair_info),
    }
    coords = {"x": _coordinate("x", grid.x), "y": _coordinate("y", grid.y)}
    attrs = {
        "GDAL_AREA_OR_POINT": "Area",
        "Conventions": "CF-1.8",
        "date_created": datetime.now(UTC).strftime("%d-%b-%Y %H:%M:%S"),
        "title": "glacierflow surface velocities",
        "glacierflow_software_version": version("glacierflow"),
        "scene_pair_type": "optical",
        "satellite": _platform_names(ref, sec),
        "motion_detection_method": "feature",
        "motion_coordinates": "map",
        "author": "glacierflow contributors",
        "institution": "glacierflow",
        "source": "glacierflow FFT normalized cross-correlation feature tracker",
        "references": "ITS_LIVE-compatible layout; see glacierflow's README",
        **{f"quality_{k}": v for k, v in vel.quality.items()},
        **{f"parameter_{k}": v for k, v in inp.parameters.items()},
    }
    return Granule({**data_vars, **coords}, attrs)


def _browse(ds: Granule) -> Image.Image:
    """Speed on a log colour scale (dark blue slow -> yellow fast), transparent where empty."""
    v = ds["v"].values.astype(np.float64)
    empty = v == FILL_INT16
    level = np.log10(np.clip(np.where(empty, 1, v), 1, 10_000)) / 4  # 1 m/yr .. 10 km/yr
    stops = np.array(
        [
            [13, 8, 135],
            [84, 2, 163],
            [156, 23, 158],
            [205, 74, 117],
            [237, 121, 83],
            [251, 184, 57],
            [240, 249, 33],
        ]
    )
    pos = level * (len(stops) - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, len(stops) - 2)
    frac = (pos - lo)[..., None]
    rgb = (stops[lo] * (1 - frac) + stops[lo + 1] * frac).astype(np.uint8)
    alpha = np.where(empty, 0, 255).astype(np.uint8)[..., None]
    image = Image.fromarray(np.concatenate([rgb, alpha], axis=2), mode="RGBA")
    scale = max(1, -(-512 // max(image.size)))  # at least ~512 px across, cells kept sharp
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def _browse_georeferencing(ds: Granule, browse: Image.Image) -> dict[str, str]:
    """Sidecars that place the browse PNG in GIS tools (GDAL, QGIS): a world file (`.pgw`:
    pixel size and the centre of the top-left pixel) and GDAL's `.png.aux.xml` with the
    CRS. The granule's GeoTransform is centre-based, the PNG enlarged by a whole factor."""
    x0, dx, _, y0, _, dy = (float(v) for v in ds["mapping"].attrs["GeoTransform"].split())
    scale = browse.width // ds["x"].values.size
    px, py = dx / scale, dy / scale
    left, top = x0 - dx / 2, y0 - dy / 2  # the grid's outer corner
    world = "\n".join(repr(v) for v in (px, 0.0, 0.0, py, left + px / 2, top + py / 2))
    srs = escape(ds["mapping"].attrs["crs_wkt"])
    return {".pgw": world + "\n", ".png.aux.xml": f"<PAMDataset><SRS>{srs}</SRS></PAMDataset>\n"}


def write_granule(ds: Granule, path: Path) -> Path:
    """Write the granule, its browse PNG and the PNG's georeferencing sidecars under
    temporary names, then rename them all: a crash or an error leaves the previous files
    (or none), never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    browse = _browse(ds)
    sidecars = {path.with_name(path.stem + suffix): text for suffix, text in
                _browse_georeferencing(ds, browse).items()}  # fmt: skip
    png = path.with_suffix(".png")
    extras = [png, *sidecars]
    staged = {p: p.with_name(f".{p.name}.{os.getpid()}.tmp") for p in (path, *extras)}
    try:
        _write_netcdf(ds, staged[path])
        browse.save(staged[png], format="PNG")
        for sidecar, text in sidecars.items():
            staged[sidecar].write_text(text)
        for extra in extras:
            os.replace(staged[extra], extra)
        try:
            os.replace(staged[path], path)  # last: the granule's presence marks completion
        except OSError:
            for extra in extras:  # no browse image without its granule
                extra.unlink()
            raise
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
    return path


def _write_netcdf(ds: Granule, path: Path) -> None:
    """The file xarray's `to_netcdf(engine="netcdf4")` writes: dimensions in order of first
    use, floats filled with NaN unless their encoding says otherwise."""
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.set_auto_maskandscale(False)
        for var in ds.variables.values():
            for dim, size in zip(var.dims, var.values.shape, strict=True):
                if dim not in nc.dimensions:
                    nc.createDimension(dim, size)
        for name, var in ds.variables.items():
            enc = var.encoding
            fill = enc.get("_FillValue", np.nan if var.values.dtype.kind == "f" else None)
            out = nc.createVariable(
                name,
                var.values.dtype,
                var.dims,
                zlib=bool(enc.get("zlib", False)),
                complevel=int(enc.get("complevel", 4)),
                shuffle=bool(enc.get("shuffle", True)),
                fill_value=fill,
            )
            out.setncatts(var.attrs)
            out[...] = var.values
        nc.setncatts(ds.attrs)


def read_granule(path: Path) -> Granule:
    """A granule file as written: raw values (fill values kept), attributes, encodings."""
    with netCDF4.Dataset(path) as nc:
        nc.set_auto_maskandscale(False)
        variables = {}
        for name, var in nc.variables.items():
            attrs = {k: var.getncattr(k) for k in var.ncattrs()}
            encoding = {"_FillValue": attrs.pop("_FillValue", None)}
            filters = var.filters() or {}
            if filters.get("zlib"):
                encoding.update(
                    zlib=True, complevel=filters["complevel"], shuffle=filters["shuffle"]
                )
            variables[name] = Variable(var.dimensions, var[...], attrs, encoding)
        return Granule(variables, {k: nc.getncattr(k) for k in nc.ncattrs()})
