"""Mosaics of a region's cubes: their composites (built where missing or older than the
cube, one Dask task per cube), merged for a year or the climatology (merge.py), written as
ITS_LIVE names them (write.py)."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import dask
import numpy as np
import rasterio
import xarray as xr
from pyproj import CRS, Transformer
from rasterio.features import rasterize
from rasterio.warp import Resampling, reproject, transform_bounds, transform_geom

from glacierflow.processing.composites.build import (
    ATTRS,
    CompositeError,
    build_composite,
    open_cube,
    write_composite,
)
from glacierflow.processing.composites.fit import Options
from glacierflow.processing.io.granule import mapping_attrs
from glacierflow.processing.mosaics.merge import (
    SUMMARY,
    SUMMARY_YEAR,
    Grid,
    MergeError,
    Mosaic,
    composite_grid,
    composite_years,
    grid_covering,
    source_of,
)
from glacierflow.processing.mosaics.regions import Region, named_region
from glacierflow.processing.mosaics.write import write_all

VERSION = "v02"
COMPOSITE_SUFFIX = "_composite.nc"
DEFAULT_REGION = "custom"
# HDF5 (under netCDF4) is not thread-safe: the cube tasks' threads write one at a time
_NETCDF_WRITE = threading.Lock()


class MosaicError(ValueError):
    """A mosaic that cannot be built as asked, with what to do instead."""


@dataclass(frozen=True)
class MosaicProducts:
    """The files of one mosaic (region, year), all in one projection."""

    region: str  # e.g. "RGI01A" or a user's name for a bbox
    year: int  # 0 for the summary (climatology), ITS_LIVE's "0000"
    epsg: int  # the mosaic's one projection
    netcdf: Path  # <out>/ITS_LIVE_velocity_120m_<region>_<YYYY>_v02.nc
    cogs: dict[str, Path]  # variable -> <out>/ITS_LIVE_velocity_120m_<region>_<YYYY>_v02_<var>.tif
    web_mercator: Path  # <out>/ITS_LIVE_velocity_120m_<region>_<YYYY>_v02_v_3857.tif


def mosaic_stem(region: str, year: int, cell: float = 120.0) -> str:
    """ITS_LIVE's file name without extension: ITS_LIVE_velocity_120m_RGI01A_0000_v02."""
    return f"ITS_LIVE_velocity_{round(cell):03d}m_{region}_{year:04d}_{VERSION}"


def existing_mosaic(
    folder: Path, region: str, year: int, newer_than: float
) -> MosaicProducts | None:
    """A mosaic already in `folder` whose files are all newer than `newer_than` (seconds,
    the newest of its composites): one that need not be built again."""
    stem = mosaic_stem(region, year)
    netcdf, web_mercator = folder / f"{stem}.nc", folder / f"{stem}_v_3857.tif"
    cogs = {
        path.name.removeprefix(f"{stem}_").removesuffix(".tif"): path
        for path in folder.glob(f"{stem}_*.tif")
        if path != web_mercator
    }
    files = [netcdf, web_mercator, *cogs.values()]
    if "v" not in cogs or not all(f.exists() and f.stat().st_mtime >= newer_than for f in files):
        return None
    with rasterio.open(cogs["v"]) as src:
        epsg = src.crs.to_epsg()
    return MosaicProducts(region, year, epsg, netcdf, cogs, web_mercator)


def composite_path(cube: Path, folder: Path) -> Path:
    """Where a cube's composite lives: <folder>/<cube name>_composite.nc."""
    return Path(folder) / Path(cube).name.replace(".zarr", COMPOSITE_SUFFIX)


def cube_modified(cube: Path) -> float:
    """When a cube last changed (seconds): its link (a living cube points it at each new
    history) and the top of every part it reads (history, recent segments)."""
    cube = Path(cube)
    times = [cube.lstat().st_mtime]
    parts = [cube.resolve()]
    state = cube.parent / ".glacierflow" / cube.name / "recent"
    if state.is_dir():
        parts += list(state.iterdir())
    for part in parts:
        for leaf in (part, part / "zarr.json", part / ".zmetadata"):
            if leaf.exists():
                times.append(leaf.stat().st_mtime)
    return max(times)


def _is_current(composite: Path, cube: Path, options: Options) -> bool:
    if not composite.exists() or composite.stat().st_mtime < cube_modified(cube):
        return False
    with xr.open_dataset(composite) as ds:
        first, last = options.window
        return (
            ds.attrs.get("climatology_years") == f"{first}-{last}"
            and ds.attrs.get("intercept_date") == f"{options.intercept_year}-01-01"
        )


def _composite_task(cube: Path, out: Path, options: Options) -> str | None:
    """Build and write one cube's composite; the reason when it cannot be."""
    try:
        # the cube's blocks read here, not as tasks sent back to the cluster: on a worker
        # whose threads are all busy (this task holds one) those would wait forever
        with dask.config.set(scheduler="synchronous"):
            data, _ = build_composite(open_cube(cube), options, workers=1)
    except (CompositeError, OSError) as err:
        reason = str(err)
        return reason if reason.startswith(cube.name) else f"{cube.name}: {reason}"
    with _NETCDF_WRITE:
        write_composite(data, out)
    return None


def ensure_composites(
    cubes: Sequence[Path],
    folder: Path,
    options: Options | None = None,
    scheduler: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Each cube's composite in `folder`, built (one Dask task per cube, with a progress
    bar) where missing, older than the cube or made with other options."""
    options = options or Options()
    say = progress or (lambda _: None)
    missing = [c for c in cubes if not Path(c).exists()]
    if missing:
        raise MosaicError(f"no such cube: {', '.join(str(c) for c in missing)}")
    names = [Path(c).name for c in cubes]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise MosaicError(f"two cubes named {', '.join(twice)}: give each tile once")
    paths = [composite_path(c, folder) for c in cubes]
    todo = [(c, p) for c, p in zip(cubes, paths, strict=True) if not _is_current(p, c, options)]
    say(f"composites: {len(cubes) - len(todo)} current, {len(todo)} to build in {folder}")
    if todo:
        Path(folder).mkdir(parents=True, exist_ok=True)
        tasks = [dask.delayed(_composite_task)(Path(c), p, options) for c, p in todo]
        if scheduler:
            from distributed import Client
            from distributed import progress as distributed_progress

            with Client(scheduler) as client:
                futures = client.compute(tasks)
                distributed_progress(futures)
                failures = client.gather(futures)
        else:
            from dask.diagnostics import ProgressBar

            with ProgressBar(dt=1.0, out=sys.stderr):
                failures = dask.compute(*tasks, scheduler="threads")
        failures = [f for f in failures if f]
        if failures:
            raise MosaicError(
                "cannot composite " + "; ".join(failures) + ": check or leave out those cubes"
            )
    return paths


def mosaic_from_composites(
    composites: Sequence[Path],
    years: Sequence[int],
    out: Path,
    region: Region | str = DEFAULT_REGION,
    landice: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[MosaicProducts]:
    """Merge composite files into one mosaic per year (0: the climatology) in `out`."""
    say = progress or (lambda _: None)
    if not composites:
        raise MosaicError("no composite to mosaic: the region has no cube")
    opened = []
    for path in composites:
        try:
            # read each year's slice when merged, and keep none of it afterwards
            opened.append(xr.open_dataset(path, cache=False))
        except (OSError, ValueError) as err:
            raise MosaicError(f"{Path(path).name}: not a readable composite ({err})") from err
    try:
        grids = [composite_grid(c) for c in opened]
        known = sorted({y for c in opened for y in composite_years(c)})
        unknown = [y for y in years if y != SUMMARY_YEAR and y not in known]
        if unknown:
            raise MosaicError(
                f"no composite has year {', '.join(map(str, unknown))}; years available: "
                f"{', '.join(map(str, known))} (or 0000 for the climatology)"
            )
        region = region if isinstance(region, Region) else _region_of(region, grids)
        grid = grid_covering(region.epsg, grids, grids[0].cell)
        mask = landice_mask(landice, grid) if landice else None
        Path(out).mkdir(parents=True, exist_ok=True)
        products = []
        for year in years:
            mosaic = Mosaic(grid)
            for path, composite in zip(composites, opened, strict=True):
                source = source_of(composite, year)
                if source is not None:
                    mosaic.add(source)
                    say(f"{mosaic_stem(region.name, year)}: merged {Path(path).name}")
            dataset = _dataset(mosaic, year, region.name, opened, mask)
            products.append(_write(dataset, region.name, year, grid, Path(out)))
            say(f"wrote {products[-1].netcdf} and {len(products[-1].cogs) + 1} COG(s)")
        return products
    except MergeError as err:
        raise MosaicError(str(err)) from err
    finally:
        for composite in opened:
            composite.close()


def build_mosaics(
    cubes: Sequence[Path],
    years: Sequence[int],
    out: Path,
    region: Region | str = DEFAULT_REGION,
    composites: Path | None = None,
    options: Options | None = None,
    landice: Path | None = None,
    scheduler: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[MosaicProducts]:
    """Mosaics of `cubes` for each of `years` (0: the climatology, ITS_LIVE's 0000) in
    `out`; the cubes' composites are kept in `composites` (default: <out>/composites)."""
    if not cubes:
        raise MosaicError("no cube to mosaic")
    folder = Path(composites) if composites else Path(out) / "composites"
    paths = ensure_composites(cubes, folder, options, scheduler, progress)
    return mosaic_from_composites(paths, years, out, region, landice, progress)


def build_mosaic(
    cubes: Sequence[Path],
    year: int,
    out: Path,
    region: Region | str = DEFAULT_REGION,
    composites: Path | None = None,
    options: Options | None = None,
    landice: Path | None = None,
    scheduler: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> MosaicProducts:
    """One mosaic: `build_mosaics` for one year."""
    (products,) = build_mosaics(
        cubes, [year], out, region, composites, options, landice, scheduler, progress
    )
    return products


def _region_of(name: str, grids: list[Grid]) -> Region:
    """A named region of the table, else `name` for the box around the composites."""
    try:
        return named_region(name)
    except ValueError:
        pass
    west, south, east, north = 180.0, 90.0, -180.0, -90.0
    for g in grids:
        w, s, e, n = transform_bounds(f"EPSG:{g.epsg}", "EPSG:4326", *g.bounds, densify_pts=21)
        west, south, east, north = min(west, w), min(south, s), max(east, e), max(north, n)
    return Region(name, (west, south, east, north))


def landice_mask(path: Path, grid: Grid) -> np.ndarray:
    """1 on glaciers, 0 elsewhere, on the mosaic's grid, from a GeoJSON file of outlines
    (longitude/latitude, or the CRS its `crs` member names) or a raster (non-zero: ice)."""
    path = Path(path)
    crs = f"EPSG:{grid.epsg}"
    if path.suffix.lower() in (".geojson", ".json"):
        try:
            document = json.loads(path.read_text())
            source_crs = document.get("crs", {}).get("properties", {}).get("name", "EPSG:4326")
            features = document.get("features", [document])
            shapes = [
                (transform_geom(CRS.from_user_input(source_crs), crs, f["geometry"]), 1)
                for f in features
                if f.get("geometry")
            ]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise MosaicError(f"{path.name}: not a GeoJSON file of outlines ({err})") from err
        if not shapes:
            return np.zeros(grid.shape, np.uint8)
        return rasterize(shapes, grid.shape, transform=grid.transform, dtype=np.uint8)
    try:
        with rasterio.open(path) as raster:
            band = raster.read(1, masked=True).filled(0)
            mask = np.zeros(grid.shape, np.uint8)
            reproject(
                (band != 0).astype(np.uint8),
                mask,
                src_transform=raster.transform,
                src_crs=raster.crs,
                dst_transform=grid.transform,
                dst_crs=crs,
                resampling=Resampling.nearest,
            )
    except (rasterio.errors.RasterioError, ValueError) as err:
        raise MosaicError(
            f"{path.name}: not a raster or GeoJSON of glacier outlines ({err}); GeoPackages "
            "and shapefiles: convert with `ogr2ogr -f GeoJSON out.geojson IN`"
        ) from err
    return mask


def _dataset(
    mosaic: Mosaic, year: int, region: str, composites: list[xr.Dataset], mask: np.ndarray | None
) -> xr.Dataset:
    """The mosaic as ITS_LIVE's NetCDF: variables on (y, x) (per-sensor ones on (sensor, y,
    x)), `mapping`, CF-1.8 attributes."""
    grid = mosaic.grid
    data: dict[str, xr.Variable] = {}
    summary = year == SUMMARY_YEAR
    for name, values in mosaic.fields.items():
        if "/" in name:
            continue
        source = SUMMARY[name] if summary else name
        attrs = {**ATTRS[source], "grid_mapping": "mapping"}
        if name == "count":
            values = np.nan_to_num(values).astype(np.uint32)
        data[name] = xr.Variable(("y", "x"), values, attrs)
    coords = {"x": _coordinate("x", grid.x), "y": _coordinate("y", grid.y)}
    if summary:
        for name in ("dt_max", "sensor_flag"):
            labels, values = mosaic.sensors(name)
            data[name] = xr.Variable(
                ("sensor", "y", "x"), values, {**ATTRS[name], "grid_mapping": "mapping"}
            )
        coords["sensor"] = xr.Variable("sensor", np.array(labels, dtype=object))
    if mask is not None:
        data["landice"] = xr.Variable(
            ("y", "x"),
            mask,
            {
                "description": "land ice mask: 1 on glaciers (from the outlines given)",
                "flag_values": "0 1",
                "flag_meanings": "not_ice ice",
                "grid_mapping": "mapping",
            },
        )
    crs = CRS.from_epsg(grid.epsg)
    geotransform = grid.transform.to_gdal()
    data["mapping"] = xr.Variable((), np.int8(0), mapping_attrs(crs, geotransform))
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(
        float(grid.x.mean()), float(grid.y.mean())
    )
    first = composites[0].attrs
    attrs = {
        "Conventions": "CF-1.8",
        "title": f"glacierflow {'summary' if summary else 'annual'} mosaics of image pair "
        "velocities (ITS_LIVE layout)",
        "institution": "glacierflow",
        "region": region,
        "year": "0000" if summary else f"{year}",
        "projection": str(grid.epsg),
        "latitude": round(lat, 2),
        "longitude": round(lon, 2),
        "GDAL_AREA_OR_POINT": "Area",
        "date_created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mosaics_software_version": version("glacierflow"),
        "composites_count": len(composites),
    }
    if summary:
        for key in ("climatology_years", "intercept_date"):
            if key in first:
                attrs[key] = first[key]
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _coordinate(name: str, values: np.ndarray) -> xr.Variable:
    return xr.Variable(
        name,
        values,
        {
            "standard_name": f"projection_{name}_coordinate",
            "description": f"{name} coordinate of projection",
            "units": "m",
        },
    )


def _write(dataset: xr.Dataset, region: str, year: int, grid: Grid, out: Path) -> MosaicProducts:
    stem = mosaic_stem(region, year, grid.cell)
    netcdf = out / f"{stem}.nc"
    web_mercator = out / f"{stem}_v_3857.tif"
    cogs = write_all(dataset, netcdf, lambda var: out / f"{stem}_{var}.tif", web_mercator)
    return MosaicProducts(region, year, grid.epsg, netcdf, cogs, web_mercator)
