"""Small mosaics written to the mosaic-products contract (NetCDF, one COG per variable, a
Web-Mercator COG of `v`) directly, with values and places chosen by the test (the
antimeridian, a tall raster, a summary without its window): for the catalog's tests, which
check items against the files whoever made them. `glacierflow.processing.mosaics` builds
the real ones (tests/catalog/test_mosaic_loader.py registers those too)."""

from __future__ import annotations

from pathlib import Path

import morecantile
import numpy as np
import rasterio
import xarray as xr
from affine import Affine
from pyproj import CRS
from rasterio.io import MemoryFile
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles

from glacierflow.processing.mosaics import MosaicProducts

SPACING = 120.0
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
UNITS = {"v": "meter/year", "vx": "meter/year", "vy": "meter/year", "v_error": "meter/year"}


def glacier(shape: tuple[int, int], seed: int) -> dict[str, np.ndarray]:
    """An ellipse of ice flowing east, faster at its centre line (up to ~2000 m/yr), with
    noise; NaN outside it. Values differ per `seed` so that statistics tell files apart."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    cy, cx = shape[0] / 2, shape[1] / 2
    inside = ((rows - cy) / (0.4 * shape[0])) ** 2 + ((cols - cx) / (0.45 * shape[1])) ** 2 < 1
    vx = 2000 * np.exp(-(((rows - cy) / (0.15 * shape[0])) ** 2)) + rng.normal(0, 20, shape)
    vy = rng.normal(0, 50, shape)
    fields = {
        "vx": vx,
        "vy": vy,
        "v": np.hypot(vx, vy),
        "v_error": rng.uniform(5, 30, shape),
    }
    out = {
        name: np.where(inside, value, np.nan).astype(np.float32) for name, value in fields.items()
    }
    out["count"] = np.where(inside, rng.integers(1, 60, shape), 0).astype(np.uint16)
    return out


def write_cog(
    path: Path, data: np.ndarray, transform: Affine, epsg: int, web: bool = False
) -> None:
    """A COG as the contract has it: 512-px tiles, overviews, deflate, nodata set."""
    nodata = 0 if data.dtype.kind == "u" else float("nan")
    profile = {
        "driver": "GTiff",
        "height": data.shape[0],
        "width": data.shape[1],
        "count": 1,
        "dtype": data.dtype,
        "crs": CRS.from_epsg(epsg),
        "transform": transform,
        "nodata": nodata,
    }
    tms = WEB_MERCATOR if web else None
    with MemoryFile() as memory:
        with memory.open(**profile) as dst:
            dst.write(data, 1)
        with memory.open() as src:
            cog_translate(
                src, str(path), cog_profiles.get("deflate"), tms=tms, quiet=True,
                overview_resampling="nearest", in_memory=True,
            )  # fmt: skip


def write_mosaic(
    folder: Path,
    region: str,
    year: int,
    epsg: int = 3413,
    origin: tuple[float, float] = (-200_000.0, -2_260_000.0),
    shape: tuple[int, int] = (600, 700),
    seed: int = 0,
    window: tuple[int, int] | None = (2023, 2024),
) -> MosaicProducts:
    """The files of one region-year mosaic (year 0: the summary, whose NetCDF names its
    window of years unless `window` is None)."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"ITS_LIVE_velocity_120m_{region}_{year:04d}_v02"
    fields = glacier(shape, seed)
    transform = Affine(SPACING, 0, origin[0], 0, -SPACING, origin[1])
    x = origin[0] + SPACING * (np.arange(shape[1]) + 0.5)
    y = origin[1] - SPACING * (np.arange(shape[0]) + 0.5)
    crs = CRS.from_epsg(epsg)
    variables = {
        name: (("y", "x"), value, {"units": UNITS.get(name, "1"), "grid_mapping": "mapping"})
        for name, value in fields.items()
    }
    variables["mapping"] = ((), np.int8(0), {"crs_wkt": crs.to_wkt(), "spatial_epsg": epsg})
    attrs = {"Conventions": "CF-1.8"}
    if year == 0 and window:
        attrs["climatology_years"] = f"{window[0]}-{window[1]}"
    netcdf = folder / f"{stem}.nc"
    xr.Dataset(variables, coords={"x": x, "y": y}, attrs=attrs).to_netcdf(netcdf)
    cogs = {}
    for name, value in fields.items():
        cogs[name] = folder / f"{stem}_{name}.tif"
        write_cog(cogs[name], value, transform, epsg)
    web_mercator = folder / f"{stem}_v_3857.tif"
    write_cog(web_mercator, fields["v"], transform, epsg, web=True)
    return MosaicProducts(region, year, epsg, netcdf, cogs, web_mercator)


def valid_values(path: Path) -> tuple[np.ndarray, int]:
    """Every valid value of a COG's band 1 (float64) and its pixel count, read whole."""
    with rasterio.open(path) as src:
        data = src.read(1, masked=True)
    ok = ~np.ma.getmaskarray(data) & np.isfinite(data.filled(0))
    return np.asarray(data.data, dtype=np.float64)[ok], data.size
