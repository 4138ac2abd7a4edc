"""A mosaic's files: the NetCDF (CF-1.8, ITS_LIVE's names), one Cloud-Optimized GeoTIFF per
2-D variable, and a Web-Mercator COG of `v` for web maps. Every file is written beside its
final name and renamed when complete, so a killed build leaves no partial file there."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import morecantile
import numpy as np
import rasterio
import xarray as xr
from rasterio.io import MemoryFile
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles
from rio_cogeo.utils import get_web_optimized_params

from glacierflow.processing.io.staging import staged

BLOCK_PX = 512
FLOAT_FILL = -32767.0  # ITS_LIVE's _FillValue for float mosaics (readers see NaN)
# integer variables' nodata in the COGs: ITS_LIVE's 0 for counts (no pair, no data); the
# land-ice mask is defined everywhere (0: not ice), so its declared nodata never occurs
INTEGER_NODATA = {"count": 0, "landice": 255}
# resampled by picking one pixel, never averaged: counts, flags, days of the year
NEAREST_OVERVIEWS = ("count", "landice", "outlier_percent", "v_phase", "vx_phase", "vy_phase")


def overview_levels(width: int, height: int) -> int:
    """Halvings until the longer side fits one tile (rio-cogeo's own count stops when the
    shorter side does, which leaves a long strip of a region without overviews)."""
    return max(0, math.ceil(math.log2(max(width, height) / BLOCK_PX)))


def write_netcdf(mosaic: xr.Dataset, path: Path) -> None:
    encoding: dict[str, dict[str, object]] = {}
    for name, var in mosaic.data_vars.items():
        if var.ndim == 0:
            continue
        encoding[name] = {"zlib": True, "complevel": 2, "shuffle": True}
        if var.dtype.kind == "f":
            encoding[name]["_FillValue"] = np.float32(FLOAT_FILL)
        elif name == "count":
            encoding[name]["_FillValue"] = var.dtype.type(INTEGER_NODATA[name])
        else:
            encoding[name]["_FillValue"] = None
    for name in ("x", "y"):
        encoding[name] = {"_FillValue": None}
    with staged(path) as temporary:
        mosaic.to_netcdf(temporary, encoding=encoding, engine="netcdf4")


def write_cog(
    values: np.ndarray, name: str, crs: str, transform: rasterio.Affine, path: Path
) -> None:
    """One variable as a COG: 512 px internal tiles, overviews down to one tile, deflate
    with the predictor for its type, nodata NaN (floats) or ITS_LIVE's value (integers)."""
    integer = values.dtype.kind in "ui"
    nodata = INTEGER_NODATA.get(name, 0) if integer else np.nan
    profile = dict(cog_profiles.get("deflate"), blockxsize=BLOCK_PX, blockysize=BLOCK_PX)
    profile["predictor"] = 2 if integer else 3
    height, width = values.shape
    with MemoryFile() as memory:
        with memory.open(
            driver="GTiff",
            height=height,
            width=width,
            count=1,
            dtype=values.dtype,
            crs=crs,
            transform=transform,
            nodata=nodata,
        ) as dataset:
            dataset.write(values, 1)
            dataset.set_band_description(1, name)
        with memory.open() as source, staged(path) as temporary:
            cog_translate(
                source,
                temporary,
                profile,
                nodata=nodata,
                overview_level=overview_levels(width, height),
                overview_resampling="nearest" if name in NEAREST_OVERVIEWS else "average",
                in_memory=True,
                quiet=True,
            )


def write_web_mercator(cog: Path, path: Path) -> None:
    """A speed COG reprojected to Web Mercator on the web-map tile grid (EPSG:3857) at the
    first zoom level as fine as its cells, with overviews down to one 512 px tile: a map
    at low zoom reads that one small level."""
    profile = dict(cog_profiles.get("deflate"), blockxsize=BLOCK_PX, blockysize=BLOCK_PX)
    profile["predictor"] = 3
    tms = morecantile.tms.get("WebMercatorQuad")
    with rasterio.open(cog) as source:
        size = get_web_optimized_params(source, zoom_level_strategy="upper", tms=tms)
        with staged(path) as temporary:
            cog_translate(
                source,
                temporary,
                profile,
                nodata=np.nan,
                tms=tms,
                zoom_level_strategy="upper",  # the zoom at or finer than the mosaic's cells
                resampling="nearest",
                overview_level=overview_levels(size["width"], size["height"]),
                overview_resampling="average",
                in_memory=True,
                quiet=True,
            )


def write_all(
    mosaic: xr.Dataset,
    netcdf: Path,
    cog_of: Callable[[str], Path],
    web_mercator: Path,
) -> dict[str, Path]:
    """Every file of a mosaic; the COGs it wrote by variable."""
    write_netcdf(mosaic, netcdf)
    crs = f"EPSG:{int(mosaic['mapping'].attrs['spatial_epsg'])}"
    cell = float(mosaic["x"][1] - mosaic["x"][0])
    transform = rasterio.Affine(
        cell, 0, float(mosaic["x"][0]) - cell / 2, 0, -cell, float(mosaic["y"][0]) + cell / 2
    )
    cogs = {}
    for name, var in mosaic.data_vars.items():
        if var.dims != ("y", "x"):
            continue
        cogs[name] = cog_of(name)
        write_cog(var.values, name, crs, transform, cogs[name])
    write_web_mercator(cogs["v"], web_mercator)
    return cogs
