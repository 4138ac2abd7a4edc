"""STAC items built from the files themselves, never from guesses.

A granule item carries its valid-data footprint (lon/lat, split at the antimeridian),
`datetime` = the pair's centre date with `start_datetime`/`end_datetime` = the two
acquisitions, `date_dt`, `percent_valid_pixels`, the platforms, `proj:*`, the quality
figures the tracker recorded, and the granule (`data`) and browse image (`thumbnail`) as
assets. The id is the granule's name, so loading the same file twice is idempotent.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import antimeridian
import netCDF4
import numpy as np
import pystac
import rasterio.features
import rasterio.transform
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from shapely.geometry import mapping, shape

from glacierflow.catalog.collections import DATACUBE_SCHEMA, PROJECTION_SCHEMA

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


def _footprint(valid: np.ndarray, transform: Affine, crs: CRS, spacing: float) -> dict[str, Any]:
    """Outline of the valid cells (the whole grid where none is valid), in lon/lat."""
    if valid.any():
        polygons = [
            shape(geom)
            for geom, value in rasterio.features.shapes(
                valid.astype(np.uint8), mask=valid, transform=transform
            )
            if value
        ]
        outline = shapely.union_all(polygons).simplify(spacing, preserve_topology=True)
    else:
        h, w = valid.shape
        outline = shapely.box(*rasterio.transform.array_bounds(h, w, transform))
    outline = shapely.segmentize(outline, 10 * spacing)  # keep its shape when reprojected
    to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    lonlat = shapely.transform(outline, lambda xy: np.column_stack(to_lonlat.transform(*xy.T)))
    fixed = antimeridian.fix_shape(mapping(lonlat))
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
        variables = {
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
        x, y = ds["x"].values, ds["y"].values
        geo = json.loads(ds.attrs["geo_polygon"])
        updated = ds.attrs.get("date_updated")  # ITS_LIVE's form; STAC: RFC 3339
    tile = cube.tile
    epsg = tile.epsg
    footprint = antimeridian.fix_shape({"type": "Polygon", "coordinates": [geo]})
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
            "x": {
                "type": "spatial",
                "axis": "x",
                "extent": [float(x.min()), float(x.max())],
                "step": spacing,
                "reference_system": epsg,
            },
            "y": {
                "type": "spatial",
                "axis": "y",
                "extent": [float(y.min()), float(y.max())],
                "step": -spacing,
                "reference_system": epsg,
            },
        },
        "cube:variables": variables,
        "updated": _time(updated).isoformat() if updated else None,
    }
    item = pystac.Item(
        id=cube.name.removesuffix(".zarr"),
        geometry=_plain(dict(footprint)),
        bbox=_plain(list(antimeridian.bbox(shape(footprint)))),
        datetime=None,
        properties=_plain(properties),
        collection=collection_id,
        stac_extensions=[PROJECTION_SCHEMA, DATACUBE_SCHEMA],
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


def _iso(value: np.datetime64) -> str:
    return np.datetime_as_string(np.datetime64(value, "us"), unit="us") + "Z"
