"""STAC items built from the files themselves, never from guesses.

Granules, cubes, cube composites and mosaics each have one item per file, whose id is the
file's name, so loading the same file twice is idempotent.

A granule item carries its valid-data footprint (lon/lat, split at the antimeridian),
`datetime` = the pair's centre date with `start_datetime`/`end_datetime` = the two
acquisitions, `date_dt`, `percent_valid_pixels`, the platforms, `proj:*`, the quality
figures the tracker recorded, and the granule (`data`) and browse image (`thumbnail`) as
assets. Mosaic items (one per region and year) carry each COG's `raster` bands with
statistics computed from every pixel, `proj:*` per projection, and the `render` extension's
speed view; composite items describe their NetCDF with the datacube extension.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import antimeridian
import netCDF4
import numpy as np
import pystac
import rasterio
import rasterio.features
import rasterio.transform
import shapely
import xarray as xr
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.windows import Window
from shapely.geometry import mapping, shape

from glacierflow.catalog.collections import (
    COG,
    COMPOSITE_NETCDF_TITLE,
    DATACUBE_SCHEMA,
    MOSAIC_NETCDF_TITLE,
    MOSAIC_VARIABLES,
    PROJECTION_SCHEMA,
    RASTER_SCHEMA,
    RENDER_SCHEMA,
    WEB_MERCATOR_TITLE,
    mosaic_renders,
)

if TYPE_CHECKING:
    from glacierflow.processing.mosaics import MosaicProducts

# how the catalog stores a file's href (Settings.data_href); None: the absolute path
HrefOf = Callable[[Path], str | None]

REQUIRED_VARIABLES = ("x", "y", "vx", "vy", "v", "mapping", "img_pair_info")
_TIME_FORMAT = "%Y%m%dT%H:%M:%S.%f"


class NotAGranuleError(ValueError):
    """A file that is not a velocity granule, with the reason."""


def _time(text: str) -> datetime:
    # granule dates; cubes' date_updated (ITS_LIVE's form, and this project's earlier one)
    for fmt in (_TIME_FORMAT, "%Y%m%dT%H:%M:%S", "%d-%b-%Y %H:%M:%S"):
        try:
            return datetime.strptime(str(text), fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise NotAGranuleError(f"unreadable date {text!r}")


def _footprint(
    valid: np.ndarray, transform: Affine, crs: CRS, spacing: float, cover: bool = False
) -> dict[str, Any]:
    """Outline of the valid cells (the whole grid where none is valid), in lon/lat,
    simplified to `spacing`; with `cover`, grown by `spacing` after, so that it holds every
    valid cell whole (a search by place then finds every pixel)."""
    if valid.any():
        polygons = [
            shape(geom)
            for geom, value in rasterio.features.shapes(
                valid.astype(np.uint8), mask=valid, transform=transform
            )
            if value
        ]
        outline = shapely.union_all(polygons).simplify(spacing, preserve_topology=True)
        if cover:
            outline = shapely.orient_polygons(outline.buffer(spacing, join_style="mitre"))
    else:
        h, w = valid.shape
        outline = shapely.box(*rasterio.transform.array_bounds(h, w, transform))
    outline = shapely.segmentize(outline, 10 * spacing)  # keep its shape when reprojected
    to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    lonlat = shapely.transform(outline, lambda xy: np.column_stack(to_lonlat.transform(*xy.T)))
    # a ring wound clockwise is reversed (no footprint of ours encloses a pole)
    fixed = antimeridian.fix_shape(mapping(lonlat), fix_winding=True)
    return dict(fixed)


def granule_item(
    path: Path, collection_id: str = "granules", href: str | None = None
) -> pystac.Item:
    """The STAC item of one granule file; raises NotAGranuleError naming what is wrong."""
    try:
        ds = netCDF4.Dataset(path)
    except OSError as err:
        raise NotAGranuleError(f"not a NetCDF file ({err})") from err
    with ds:
        missing = [name for name in REQUIRED_VARIABLES if name not in ds.variables]
        if missing:
            raise NotAGranuleError(f"not a velocity granule: no {', '.join(missing)} variable")
        info = ds["img_pair_info"]
        try:
            crs = CRS.from_wkt(str(_attribute(ds["mapping"], "crs_wkt")))
            centre = _time(_attribute(info, "date_center"))
            start = _time(_attribute(info, "acquisition_date_img1"))
            end = _time(_attribute(info, "acquisition_date_img2"))
            date_dt = float(_attribute(info, "date_dt"))
        except ValueError as err:
            raise NotAGranuleError(f"not a velocity granule: {err}") from err
        x = np.asarray(ds["x"][:], dtype=np.float64)
        y = np.asarray(ds["y"][:], dtype=np.float64)
        v = ds["v"]
        v.set_auto_mask(False)
        fill = v.getncattr("_FillValue") if "_FillValue" in v.ncattrs() else None
        values = np.asarray(v[:])
        valid = values != fill if fill is not None else np.isfinite(values)
        pair = {k: info.getncattr(k) for k in info.ncattrs()}
        vx_attrs = {k: ds["vx"].getncattr(k) for k in ds["vx"].ncattrs()}
        vy_attrs = {k: ds["vy"].getncattr(k) for k in ds["vy"].ncattrs()}
        quality = {
            k.removeprefix("quality_"): ds.getncattr(k)
            for k in ds.ncattrs()
            if k.startswith("quality_")
        }
        has_browse = path.with_suffix(".png").exists()

    spacing = float(abs(x[1] - x[0])) if len(x) > 1 else 120.0
    if len(y) > 1 and y[1] > y[0]:  # stored south-up: flip to the north-up raster order
        y, valid = y[::-1], valid[::-1]
    if len(x) > 1 and x[1] < x[0]:
        x, valid = x[::-1], valid[:, ::-1]
    transform = Affine(spacing, 0, x[0] - spacing / 2, 0, -spacing, y[0] + spacing / 2)
    geometry = _footprint(valid, transform, crs, spacing)
    bbox = list(antimeridian.bbox(shape(geometry)))  # west > east where it crosses 180°
    percent = float(pair.get("roi_valid_percentage", 100.0 * valid.mean()))
    epsg = crs.to_epsg()
    properties: dict[str, Any] = {
        "start_datetime": start.isoformat(),
        "end_datetime": end.isoformat(),
        "date_dt": date_dt,
        "percent_valid_pixels": percent,
        "platform": _platform(pair),
        "constellation": pair.get("mission_img1"),
        "instruments": sorted({str(pair.get("sensor_img1")), str(pair.get("sensor_img2"))}),
        "gsd": spacing,
        "proj:code": f"EPSG:{epsg}" if epsg else None,
        "proj:shape": [len(y), len(x)],
        "proj:transform": list(transform)[:6],
        "proj:bbox": [
            x[0] - spacing / 2,
            y[-1] - spacing / 2,
            x[-1] + spacing / 2,
            y[0] + spacing / 2,
        ],
        "stable_shift_flag": int(vx_attrs.get("stable_shift_flag", 0)),
        "stable_shift_vx": _number(vx_attrs.get("stable_shift")),
        "stable_shift_vy": _number(vy_attrs.get("stable_shift")),
        "error_vx": _number(vx_attrs.get("error")),
        "error_vy": _number(vy_attrs.get("error")),
    }
    for key in ("mission", "satellite", "sensor", "id"):
        for n in (1, 2):
            properties[f"{key}_img{n}"] = str(pair.get(f"{key}_img{n}", ""))
    properties.update({f"glacierflow:{k}": _number(v) for k, v in quality.items()})
    item = pystac.Item(
        id=path.stem,
        geometry=_plain(geometry),
        bbox=_plain(bbox),
        datetime=centre,
        properties=_plain(properties),
        collection=collection_id,
        # no sat extension: a granule records no orbit (sat:*) fields to declare it for
        stac_extensions=[PROJECTION_SCHEMA],
    )
    item.add_asset(
        "data",
        pystac.Asset(
            href=href or str(path.resolve()),
            title="Velocity granule (NetCDF4)",
            media_type="application/x-netcdf",
            roles=["data"],
        ),
    )
    if has_browse:
        png = (href.rsplit(".", 1)[0] + ".png") if href else str(path.with_suffix(".png").resolve())
        item.add_asset(
            "thumbnail",
            pystac.Asset(
                href=png,
                title="Speed",
                media_type=pystac.MediaType.PNG,
                roles=["thumbnail", "overview"],
            ),
        )
    return item


def _platform(pair: dict[str, Any]) -> str:
    """ITS_LIVE's `platform` values (LC08, LC09, S2A, S1B, ...), which its client filters on."""
    mission, satellite = str(pair.get("mission_img1", "")), str(pair.get("satellite_img1", ""))
    sensor = str(pair.get("sensor_img1", ""))
    if mission == "L" and satellite.isdigit():
        return f"L{sensor[:1]}{int(satellite):02d}"
    if mission == "S":
        return f"S{satellite}"
    return f"{mission}{satellite}"


def _attribute(variable: netCDF4.Variable, name: str) -> Any:
    if name not in variable.ncattrs():
        raise ValueError(f"{variable.name} has no {name} attribute")
    return variable.getncattr(name)


def _plain(value: Any) -> Any:
    """JSON-ready copy: numpy scalars and arrays (from netCDF4, shapely) become Python's."""
    return json.loads(
        json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    )


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def cube_item(
    cube_path: Path, collection_id: str = "cubes", href: str | None = None
) -> pystac.Item:
    """The STAC item of a living cube, with the datacube extension: dimensions, variables,
    and the layer count and time span as a Zarr reader sees them now (the history); the
    recent layers that only glacierflow's API serves yet are `pending_layer_count`."""
    from glacierflow.processing.cubes.store import LivingCube

    cube = LivingCube(cube_path.parent, cube_path.name)
    with cube.open_history() as ds:
        dates = ds["mid_date"].values
        start = ds["acquisition_date_img1"].values.min()
        end = ds["acquisition_date_img2"].values.max()
        variables = _cube_variables(ds)
        x, y = ds["x"].values, ds["y"].values
        geo = json.loads(ds.attrs["geo_polygon"])
        updated = ds.attrs.get("date_updated")  # ITS_LIVE's form; STAC: RFC 3339
    tile = cube.tile
    epsg = tile.epsg
    footprint = antimeridian.fix_shape({"type": "Polygon", "coordinates": [geo]}, fix_winding=True)
    spacing = float(x[1] - x[0])
    properties: dict[str, Any] = {
        "start_datetime": _iso(start),
        "end_datetime": _iso(end),
        "proj:code": f"EPSG:{epsg}",
        "proj:shape": [len(y), len(x)],
        "proj:bbox": [
            tile.x_min,
            tile.y_min,
            tile.x_min + 100_000,
            tile.y_min + 100_000,
        ],
        "gsd": spacing,
        "layer_count": len(dates),
        "pending_layer_count": cube.pending_layer_count(),
        "first_mid_date": _iso(dates.min()),
        "last_mid_date": _iso(dates.max()),
        "cube:dimensions": {
            "mid_date": {
                "type": "temporal",
                "extent": [_iso(dates.min()), _iso(dates.max())],
                "description": "centre date of each image pair",
            },
            **_spatial_dimensions(x, y, spacing, epsg),
        },
        "cube:variables": variables,
        "updated": _time(updated).isoformat() if updated else None,
    }
    item = _spanning_item(
        cube.name.removesuffix(".zarr"),
        dict(footprint),
        properties,
        collection_id,
        [PROJECTION_SCHEMA, DATACUBE_SCHEMA],
    )
    item.add_asset(
        "data",
        pystac.Asset(
            href=href or str(cube.path.absolute()),
            title="Velocity datacube (Zarr v3, ITS_LIVE layout)",
            media_type="application/vnd+zarr",
            roles=["data"],
        ),
    )
    return item


def _spanning_item(
    item_id: str,
    geometry: dict[str, Any],
    properties: dict[str, Any],
    collection_id: str,
    extensions: list[str],
) -> pystac.Item:
    """An item over a span of time (`datetime` null; start/end in `properties`), its bbox
    that of its footprint (west > east where it crosses 180°)."""
    return pystac.Item(
        id=item_id,
        geometry=_plain(geometry),
        bbox=_plain(list(antimeridian.bbox(shape(geometry)))),
        datetime=None,
        properties=_plain(properties),
        collection=collection_id,
        stac_extensions=extensions,
    )


def _cube_variables(ds: xr.Dataset) -> dict[str, Any]:
    """The datacube extension's `cube:variables` of a dataset's gridded variables."""
    return {
        name: {
            "dimensions": list(var.dims),
            "type": "data",
            "data_type": str(var.encoding.get("dtype", var.dtype)),
            **({"unit": var.attrs["units"]} if "units" in var.attrs else {}),
            **({"description": var.attrs["description"]} if "description" in var.attrs else {}),
        }
        for name, var in ds.data_vars.items()
        if var.dims and name != "mapping"
    }


def _spatial_dimensions(x: np.ndarray, y: np.ndarray, spacing: float, epsg: int | None) -> dict:
    """The datacube extension's x and y dimensions of a north-up grid."""
    return {
        axis: {
            "type": "spatial",
            "axis": axis,
            "extent": [float(values.min()), float(values.max())],
            "step": step,
            "reference_system": epsg,
        }
        for axis, values, step in (("x", x, spacing), ("y", y, -spacing))
    }


def _iso(value: np.datetime64) -> str:
    return np.datetime_as_string(np.datetime64(value, "us"), unit="us") + "Z"


# -- mosaics and composites ----------------------------------------------------------------
# the footprint of a mosaic is traced on a grid of at most this many cells a side (each
# cell valid where any pixel under it is): bounded work and vertices for any mosaic size
FOOTPRINT_CELLS = 2048
STRIP_ROWS = 512  # rows read at a time: one row of the COGs' 512-px tiles


@dataclass(frozen=True)
class RasterScan:
    """What one pass over a single-band raster finds: its STAC band (with statistics from
    every pixel) and its valid cells pooled onto a coarser grid for the footprint."""

    band: dict[str, Any]
    valid: np.ndarray
    valid_transform: Affine


def scan_raster(path: Path, unit: str | None = None) -> RasterScan:
    """Statistics of band 1 over every valid pixel (nodata and NaN left out), read a strip
    of rows at a time, with the moments merged exactly (Chan et al.), so a mosaic of any
    size is scanned in bounded memory; `valid_percent` is of all pixels."""
    with rasterio.open(path) as src:
        height, width = src.height, src.width
        factor = 1
        while max(height, width) > FOOTPRINT_CELLS * factor:
            factor *= 2
        strip = math.ceil(STRIP_ROWS / factor) * factor
        valid = np.zeros((math.ceil(height / factor), math.ceil(width / factor)), bool)
        count, mean, m2 = 0, 0.0, 0.0
        low, high = math.inf, -math.inf
        for row in range(0, height, strip):
            rows = min(strip, height - row)
            data = src.read(1, window=Window(0, row, width, rows), masked=True)
            ok = ~np.ma.getmaskarray(data) & np.isfinite(data.filled(0))
            values = np.asarray(data.data, dtype=np.float64)[ok]
            if values.size:
                n, block_mean = values.size, float(values.mean())
                delta = block_mean - mean
                total = count + n
                m2 += float(((values - block_mean) ** 2).sum()) + delta**2 * count * n / total
                mean += delta * n / total
                count = total
                low, high = min(low, float(values.min())), max(high, float(values.max()))
            padded = np.zeros((math.ceil(rows / factor) * factor, valid.shape[1] * factor), bool)
            padded[:rows, :width] = ok
            pooled = padded.reshape(-1, factor, valid.shape[1], factor).any(axis=(1, 3))
            valid[row // factor : row // factor + pooled.shape[0]] = pooled
        nodata = src.nodata
        band: dict[str, Any] = {
            "name": src.descriptions[0] or path.stem.rsplit("_", 1)[-1],
            "data_type": src.dtypes[0],
            "nodata": "nan" if nodata is not None and math.isnan(nodata) else nodata,
            "raster:spatial_resolution": float(abs(src.transform.a)),
            "statistics": {
                "minimum": low if count else None,
                "maximum": high if count else None,
                "mean": mean if count else None,
                "stddev": math.sqrt(m2 / count) if count else None,
                "valid_percent": 100.0 * count / (height * width),
            },
        }
        if unit or src.units[0]:
            band["unit"] = unit or src.units[0]
        band["statistics"] = {k: v for k, v in band["statistics"].items() if v is not None}
        if band["nodata"] is None:
            del band["nodata"]
        return RasterScan(band, valid, src.transform * Affine.scale(factor))


def raster_projection(path: Path) -> dict[str, Any]:
    """proj:* of a GeoTIFF, as GDAL reads it."""
    with rasterio.open(path) as src:
        epsg = src.crs.to_epsg() if src.crs else None
        return {
            "proj:code": f"EPSG:{epsg}" if epsg else None,
            "proj:shape": [src.height, src.width],
            "proj:transform": list(src.transform)[:6],
            "proj:bbox": list(src.bounds),
        }


def _netcdf_attributes(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The NetCDF's global attributes and each variable's."""
    with netCDF4.Dataset(path) as ds:
        variables = {
            name: {k: var.getncattr(k) for k in var.ncattrs()} for name, var in ds.variables.items()
        }
        return {k: ds.getncattr(k) for k in ds.ncattrs()}, variables


def _year_span(first: int, last: int) -> tuple[datetime, datetime]:
    return datetime(first, 1, 1, tzinfo=UTC), datetime(last, 12, 31, 23, 59, 59, tzinfo=UTC)


def _climatology_window(attrs: dict[str, Any], name: str) -> tuple[int, int]:
    """The summary's window of years from its `climatology_years` attribute ("2014-2022")."""
    text = str(attrs.get("climatology_years", ""))
    try:
        first, last = (int(part) for part in text.split("-"))
    except ValueError as err:
        raise ValueError(
            f"{name}: a summary mosaic needs its window of years in the attribute "
            f"climatology_years ('FIRST-LAST'), found {text!r}"
        ) from err
    return first, last


def _modified(path: Path) -> str:
    """When the file was last written: an item's `updated`, which each build moves on."""
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat()


def _href(path: Path, href_of: HrefOf | None) -> str:
    return (href_of(path) if href_of else None) or str(Path(path).absolute())


def mosaic_item(
    products: MosaicProducts, href_of: HrefOf | None = None, collection_id: str = "mosaics"
) -> pystac.Item:
    """The STAC item of one region-year mosaic (year 0: the summary), made from its files.
    Statistics and the footprint come from every pixel of the COGs (`v` for the footprint);
    the item's proj:* is the mosaic's projection, the Web-Mercator asset carries its own."""
    name = products.netcdf.stem
    attrs, variables = _netcdf_attributes(products.netcdf)
    if products.year == 0:
        first, last = _climatology_window(attrs, name)
    else:
        first = last = products.year
    start, end = _year_span(first, last)
    if "v" not in products.cogs:
        raise ValueError(f"{name}: the mosaic has no `v` COG to trace its footprint on")

    units = {name: about.get("units") for name, about in variables.items()}
    scans = {name: scan_raster(cog, units.get(name)) for name, cog in sorted(products.cogs.items())}
    assets = {
        name: pystac.Asset(
            href=_href(cog, href_of),
            title=str(
                variables.get(name, {}).get("description") or MOSAIC_VARIABLES.get(name, name)
            ),
            media_type=COG,
            roles=["data"],
            extra_fields={"bands": [{**scans[name].band, "name": name}]},
        )
        for name, cog in sorted(products.cogs.items())
    }
    mercator = scan_raster(products.web_mercator, units.get("v"))
    assets["v_3857"] = pystac.Asset(
        href=_href(products.web_mercator, href_of),
        title=WEB_MERCATOR_TITLE,
        media_type=COG,
        roles=["data", "visual"],
        extra_fields={
            "bands": [{**mercator.band, "name": "v"}],
            **raster_projection(products.web_mercator),
        },
    )
    assets["data"] = pystac.Asset(
        href=_href(products.netcdf, href_of),
        title=MOSAIC_NETCDF_TITLE,
        media_type="application/x-netcdf",
        roles=["data"],
    )
    footprint = scans["v"]
    projection = raster_projection(products.cogs["v"])
    geometry = _footprint(
        footprint.valid,
        footprint.valid_transform,
        CRS.from_epsg(products.epsg),
        abs(footprint.valid_transform.a),
        cover=True,
    )
    properties: dict[str, Any] = {
        "start_datetime": start.isoformat(),
        "end_datetime": end.isoformat(),
        "product": "summary" if products.year == 0 else "annual",
        "year": products.year,
        "region": products.region,
        "gsd": projection["proj:transform"][0],
        **projection,
        "renders": mosaic_renders(),
        "updated": _modified(products.netcdf),
    }
    if products.year == 0:
        properties["climatology_years"] = [first, last]
    item = _spanning_item(
        name, geometry, properties, collection_id, [PROJECTION_SCHEMA, RASTER_SCHEMA, RENDER_SCHEMA]
    )
    for key, asset in assets.items():
        item.add_asset(key, asset)
    return item


def composite_item(
    path: Path, href_of: HrefOf | None = None, collection_id: str = "mosaics"
) -> pystac.Item:
    """The STAC item of one cube's composite NetCDF: its years, projection, footprint (the
    pixels any year fitted) and variables (datacube extension)."""
    with xr.open_dataset(path, decode_timedelta=False) as ds:
        missing = [n for n in ("v", "x", "y", "time", "mapping") if n not in ds.variables]
        if missing:
            raise ValueError(f"{path.name}: not a composite: no {', '.join(missing)}")
        crs = CRS.from_wkt(str(ds["mapping"].attrs["crs_wkt"]))
        years = ds["time"].dt.year.values
        x, y = ds["x"].values.astype(np.float64), ds["y"].values.astype(np.float64)
        valid = np.isfinite(ds["v"].values).any(axis=0)
        window = ds.attrs.get("climatology_years")
        variables = _cube_variables(ds)
        sensors = [str(s) for s in ds["sensor"].values] if "sensor" in ds.variables else []
    spacing = float(abs(x[1] - x[0])) if len(x) > 1 else 120.0
    if len(y) > 1 and y[1] > y[0]:
        y, valid = y[::-1], valid[::-1]
    transform = Affine(spacing, 0, x[0] - spacing / 2, 0, -spacing, y[0] + spacing / 2)
    geometry = _footprint(valid, transform, crs, spacing)
    start, end = _year_span(int(years.min()), int(years.max()))
    epsg = crs.to_epsg()
    dimensions: dict[str, Any] = {
        "time": {
            "type": "temporal",
            "extent": [start.isoformat(), end.isoformat()],
            "values": [f"{year}-01-01T00:00:00Z" for year in years],
            "description": "1 January of each composite year",
        },
        **_spatial_dimensions(x, y, spacing, epsg),
    }
    if sensors:
        dimensions["sensor"] = {"type": "sensor groups", "values": sensors}
    properties: dict[str, Any] = {
        "start_datetime": start.isoformat(),
        "end_datetime": end.isoformat(),
        "product": "composite",
        "gsd": spacing,
        "proj:code": f"EPSG:{epsg}" if epsg else None,
        "proj:shape": [len(y), len(x)],
        "proj:transform": list(transform)[:6],
        "proj:bbox": list(rasterio.transform.array_bounds(len(y), len(x), transform)),
        "cube:dimensions": dimensions,
        "cube:variables": variables,
        "updated": _modified(path),
    }
    if window:
        properties["climatology_years"] = [int(part) for part in str(window).split("-")]
    item = _spanning_item(
        path.stem, geometry, properties, collection_id, [PROJECTION_SCHEMA, DATACUBE_SCHEMA]
    )
    item.add_asset(
        "data",
        pystac.Asset(
            href=_href(path, href_of),
            title=COMPOSITE_NETCDF_TITLE,
            media_type="application/x-netcdf",
            roles=["data"],
        ),
    )
    return item
