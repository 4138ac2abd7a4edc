"""The `glacierflow` command line: a thin layer over the library's functions.

It imports only what the command at hand needs (the tracker, rasterio, the database and
the web stack load in the command's body), so that `--help` and every command start fast.
Options are checked by their click types and callbacks before any work: a bad value exits
with status 2 and a message naming the option, and writes nothing.
"""

from __future__ import annotations

import gc
import importlib
import math
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from glacierflow.processing.mosaics import MosaicProducts
    from glacierflow.settings import Settings


def _settings() -> Settings:
    """The settings; one that cannot be used ends the command with its message, exit 2."""
    from glacierflow.settings import SettingsError, get_settings  # pydantic: 0.3 s to import

    try:
        return get_settings()
    except SettingsError as err:
        _say(f"error: {err}")
        sys.exit(2)


def _say(message: str) -> None:
    click.echo(message, err=True)


@contextmanager
def _exit_on_input_errors() -> Iterator[None]:
    """Input the user can fix (a scene, the database, a setting): its message and exit
    code 2, no traceback."""
    try:
        yield
    except Exception as err:
        # imported here: a command that raised neither need not load their modules
        from glacierflow.catalog.database import DatabaseError
        from glacierflow.processing.io.scenes import SceneError
        from glacierflow.settings import SettingsError

        if not isinstance(err, SceneError | DatabaseError | SettingsError):
            raise
        _say(f"error: {err}")
        sys.exit(2)


class _Number(click.FloatRange):
    """A finite number within a range (click's FloatRange lets NaN through)."""

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


class _EnumChoice(click.Choice):
    """A choice among an enum's values, imported when first needed, so that other
    commands and `--help` do not import the tracker."""

    def __init__(self, module: str, enum: str) -> None:
        self._enum = (module, enum)
        self.case_sensitive = True

    @cached_property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        module, name = self._enum
        return tuple(m.value for m in getattr(importlib.import_module(module), name))


class _Raster(click.ParamType):
    """A raster GDAL can open: a local file that must exist, or a URL / GDAL virtual path
    (/vsicurl/…), which only opening can check."""

    name = "raster"

    def convert(self, value: str, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if "://" in value or value.startswith("/vsi"):
            return value
        path = Path(value)
        if not path.exists():
            self.fail(f"{value}: no such file.", param, ctx)
        if not path.is_file():
            self.fail(f"{value}: is a directory, not a raster file.", param, ctx)
        return value


def _chips_in_order(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """--chip-min must not exceed --chip-max (checked by whichever of the two comes second)."""
    chips = {**ctx.params, param.name: value}
    if "chip_min" in chips and "chip_max" in chips:
        low, high = chips["chip_min"], chips["chip_max"]
        if low > high:
            raise click.BadParameter(
                f"--chip-min ({low:g} m) is larger than --chip-max ({high:g} m)", ctx, param
            )
    return value


def _writable_output(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    """The granule (.nc) or the folder for it must be writable, found out before tracking
    rather than after it."""
    if value.suffix == ".nc" and value.is_dir():
        raise click.BadParameter(f"{value} is a directory, not a .nc file", ctx, param)
    folder = value.parent if value.suffix == ".nc" else value
    existing = next(p for p in (folder, *folder.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise click.BadParameter(f"{existing} is a file, not a folder", ctx, param)
    try:  # permissions alone do not tell (root, read-only mounts, ACLs): try it
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        message = f"cannot write in {existing} ({err.strerror})"
        raise click.BadParameter(message, ctx, param) from err
    return value


_PORT = click.IntRange(1, 65535)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="glacierflow")
def main() -> None:
    """glacierflow: glacier velocity from repeat satellite images (ITS_LIVE-compatible)."""
    # SIGTERM (kill, systemd, Docker) and SIGHUP stop a command as Ctrl-C does, so that its
    # clean-up runs: the private database stops, half-written files are removed
    for stop in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, _interrupt)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@main.command()
@click.argument("ref", type=_Raster())
@click.argument("sec", type=_Raster())
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    callback=_writable_output,
    help="Granule file (.nc), or a folder to write an ITS_LIVE-named granule into.",
)
@click.option("--ref-time", help="Acquisition time of REF (ISO 8601); default: its TIFF tags.")
@click.option("--sec-time", help="Acquisition time of SEC (ISO 8601); default: its TIFF tags.")
@click.option(
    "--spacing",
    type=_Number(0, 100_000, min_open=True),
    default=120.0,
    show_default=True,
    help="Grid posting, metres (at least one pixel).",
)
@click.option(
    "--chip-min",
    type=_Number(0, 100_000, min_open=True),
    default=240.0,
    show_default=True,
    callback=_chips_in_order,
    help="Smallest chip, metres.",
)
@click.option(
    "--chip-max",
    type=_Number(0, 100_000, min_open=True),
    default=960.0,
    show_default=True,
    callback=_chips_in_order,
    help="Largest chip of the ladder (doubling from --chip-min), metres.",
)
@click.option(
    "--max-speed",
    type=_Number(0, 1_000_000, min_open=True),
    default=10_000.0,
    show_default=True,
    help="Fastest expected motion, m/yr: sets the search window (clipped to the image and "
    "to GLACIERFLOW_TRACK_MEMORY_BUDGET_MB, with a warning).",
)
@click.option(
    "--filter",
    "image_filter",
    type=_EnumChoice("glacierflow.processing.tracking.preprocess", "ImageFilter"),
    default="hps",
    show_default=True,
    help="Pre-filter of both images.",
)
@click.option(
    "--subpixel",
    type=_EnumChoice("glacierflow.processing.tracking.tracker", "SubpixelMethod"),
    default="gauss-newton",
    show_default=True,
    help="Sub-pixel peak estimator.",
)
@click.option(
    "--prior-vx",
    type=_Raster(),
    help="Reference vx raster (m/yr): centres the search; without --stable-mask its slowest "
    "25 % are the stable ground of the shift correction.",
)
@click.option("--prior-vy", type=_Raster(), help="Reference vy raster (m/yr), with --prior-vx.")
@click.option(
    "--stable-mask",
    type=_Raster(),
    help="Raster, non-zero on stable ground, for the shift correction.",
)
@click.option(
    "--stable-shift",
    type=_EnumChoice("glacierflow.processing.tracking.velocity", "StableShift"),
    default="auto",
    show_default=True,
    help="Without --stable-mask or a prior, 'auto' removes no shift (flag 0); "
    "'slowest-measured' subtracts the median of the slowest 25 % of the measured vectors "
    "(flag 2), which removes real motion where there is no stable ground.",
)
@click.option(
    "--ref-mask",
    type=_Raster(),
    help="Raster, non-zero where a REF pixel is unusable (cloud, shadow, no data): those "
    "pixels take no part in the correlation.",
)
@click.option("--sec-mask", type=_Raster(), help="Raster, non-zero where a SEC pixel is unusable.")
@click.option(
    "--threads",
    type=click.IntRange(1, 64),
    default=None,
    help="Worker threads [default: GLACIERFLOW_THREADS or 2].",
)
def track(
    ref: str,
    sec: str,
    output: Path,
    ref_time: str | None,
    sec_time: str | None,
    spacing: float,
    chip_min: float,
    chip_max: float,
    max_speed: float,
    image_filter: str,
    subpixel: str,
    prior_vx: str | None,
    prior_vy: str | None,
    stable_mask: str | None,
    stable_shift: str,
    ref_mask: str | None,
    sec_mask: str | None,
    threads: int | None,
) -> None:
    """Track features between REF and SEC (single-band GeoTIFFs, paths or URLs) and write a
    velocity granule. SEC (and the masks) on another grid or CRS are resampled onto REF's
    grid."""
    from glacierflow.processing.pipeline import TrackRequest, track_pair
    from glacierflow.processing.tracking.preprocess import ImageFilter
    from glacierflow.processing.tracking.tracker import SubpixelMethod
    from glacierflow.processing.tracking.velocity import StableShift

    # the ~90,000 objects of the modules just imported live until exit: no collection need
    # scan them again (CPython's finalisation collects several times, 0.3-0.7 s otherwise)
    gc.freeze()
    if (prior_vx is None) != (prior_vy is None):
        raise click.UsageError("give both --prior-vx and --prior-vy, or neither")
    settings = _settings()
    request = TrackRequest(
        ref=ref,
        sec=sec,
        output=output,
        ref_time=ref_time,
        sec_time=sec_time,
        spacing_m=spacing,
        chip_min_m=chip_min,
        chip_max_m=chip_max,
        max_speed_m_per_yr=max_speed,
        image_filter=ImageFilter(image_filter),
        subpixel=SubpixelMethod(subpixel),
        prior_vx=prior_vx,
        prior_vy=prior_vy,
        stable_mask=stable_mask,
        stable_shift=StableShift(stable_shift),
        ref_mask=ref_mask,
        sec_mask=sec_mask,
        threads=threads or settings.threads,
        wisdom=settings.fftw_wisdom,
        memory_budget_bytes=settings.track_memory_budget_mb * 2**20,
    )
    with _exit_on_input_errors():
        report = track_pair(request, progress=_say)
    reasons = ", ".join(f"{k} {v}" for k, v in report.reasons.items() if v and k != "valid")
    _say(
        f"{report.nodes} nodes, {report.valid_percentage:.1f} % valid"
        + (f" (no vector: {reasons})" if reasons else "")
        + f", {report.seconds['total']:.2f} s"
    )
    click.echo(str(report.path))


@main.group()
def catalog() -> None:
    """The STAC catalog (PostgreSQL + PostGIS + pgstac).

    DATABASE_URL (or PG* variables) names the server; without it a private cluster runs
    under GLACIERFLOW_DATA_DIR/postgres for the duration of the command.
    """


@catalog.command("init")
def catalog_init() -> None:
    """Create or upgrade the pgstac schema and the collections (safe to run again)."""
    from glacierflow.catalog.database import catalog_database
    from glacierflow.catalog.loader import init_catalog

    settings = _settings()
    with _exit_on_input_errors(), catalog_database(settings.data_dir) as dsn:
        ids = init_catalog(dsn, settings.collection_ids)
    _say(f"catalog ready: collections {', '.join(ids)}")


@catalog.command("load")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--keep-empty",
    is_flag=True,
    help="Also catalogue granules without one valid cell, with their whole grid as the "
    "footprint (left out by default: they have no footprint to give).",
)
def catalog_load(paths: tuple[Path, ...], keep_empty: bool) -> None:
    """Load granule files (or folders of them) as STAC items; re-loading changes nothing.

    Files that are not granules are named with the reason; the rest still load, and the
    command then exits non-zero. Granules without one valid cell are named and left out
    (exit 0) unless --keep-empty.
    """
    from glacierflow.catalog.database import catalog_database
    from glacierflow.catalog.loader import init_catalog, load_granules

    settings = _settings()
    files = [f for p in paths for f in (sorted(p.rglob("*.nc")) if p.is_dir() else [p])]
    with _exit_on_input_errors(), catalog_database(settings.data_dir) as dsn:
        init_catalog(dsn, settings.collection_ids)
        report = load_granules(
            dsn, files, settings.collection_id("granules"), settings.data_href, keep_empty
        )
    for path, reason in report.rejected.items():
        _say(f"skipped {path}: {reason}")
    for path in report.empty:
        _say(f"left out {path}: not one valid cell, so no footprint (--keep-empty to load it)")
    outside = [f for f in files if settings.data_href(f) is None]
    if outside:
        _say(
            f"note: {len(outside)} file(s) lie outside GLACIERFLOW_DATA_DIR, so the API does "
            "not serve them and leaves their assets out of its answers"
        )
    _say(f"loaded {len(report.loaded)} granule item(s)")
    if report.rejected:
        sys.exit(1)


@catalog.command("export")
@click.option(
    "--geoparquet",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the items as one stac-geoparquet file (*.parquet), for DuckDB, GeoPandas or "
    "rustac.",
)
@click.option(
    "--collection",
    "collections",
    multiple=True,
    help="Only this collection's items (repeatable); all collections by default.",
)
@click.option(
    "--base-url",
    help="Where the data directory is published (e.g. https://HOST/data), so that asset "
    "hrefs in the file are URLs; default GLACIERFLOW_PUBLIC_DATA_URL, else they stay "
    "relative to the data directory.",
)
def catalog_export(out: Path, collections: tuple[str, ...], base_url: str | None) -> None:
    """Export the catalog as stac-geoparquet (the collections go in the file's metadata).

    Streams any number of items with flat memory; the file appears when complete.
    """
    from glacierflow.catalog.database import catalog_database
    from glacierflow.catalog.export import ExportError, export_geoparquet

    settings = _settings()
    base = base_url or (str(settings.public_data_url) if settings.public_data_url else None)
    try:
        with _exit_on_input_errors(), catalog_database(settings.data_dir) as dsn:
            report = export_geoparquet(
                dsn,
                out,
                collections=[settings.collection_id(c) for c in collections],
                base_url=base,
                progress=lambda n: _say(f"  {n:,} items"),
            )
    except ExportError as err:
        _say(f"error: {err}")
        sys.exit(2)
    per = ", ".join(f"{cid} {n:,}" for cid, n in report.collections.items())
    _say(f"exported {report.items:,} item(s) ({per}) to {report.path}")
    if base is None:
        _say("note: data files' hrefs are relative to the data directory (--base-url for URLs)")


@main.group()
def cube() -> None:
    """Datacubes: granules restructured into Zarr cubes on ITS_LIVE's 100 km tile grid."""


def _store_path(store: str | None) -> Path:
    """A local folder, or a file:// URL of one (object stores are not supported yet)."""
    if store is None:
        return _settings().cube_store
    if "://" in store:
        scheme, _, rest = store.partition("://")
        if scheme != "file":
            raise click.BadParameter(
                f"{scheme}:// stores are not supported yet; give a local folder or file:// URL",
                param_hint="--store",
            )
        return Path(rest)
    return Path(store)


_STORE_OPTION = click.option(
    "--store",
    help="Folder (or file:// URL) holding the cubes [default: GLACIERFLOW_DATA_DIR/cubes].",
)


@cube.command("ingest")
@click.argument("granules", nargs=-1, required=True, type=click.Path(path_type=Path))
@_STORE_OPTION
@click.option(
    "--consolidate/--no-consolidate",
    default=False,
    show_default=True,
    help="Fold the recent segments into each cube's history now, whatever their number.",
)
@click.option(
    "--catalog/--no-catalog",
    "register",
    default=True,
    show_default=True,
    help="Create or update the cubes' STAC items in the catalog.",
)
def cube_ingest(
    granules: tuple[Path, ...], store: str | None, consolidate: bool, register: bool
) -> None:
    """Write GRANULES (files or folders of .nc) into every cube they reach.

    Granules already in a cube are passed over; unreadable ones, ones without valid data
    and ones whose mid_date a cube already holds are listed with the reason, and the rest
    still go in (exit 1 when any file was unreadable). Granules in another projection than
    the cube are resampled into it with their vectors rotated. One Dask task per cube:
    local threads, or GLACIERFLOW_DASK_SCHEDULER=tcp://host:port.
    """
    from glacierflow.processing.cubes.ingest import ingest

    settings = _settings()
    root = _store_path(store)
    files = [f for p in granules for f in (sorted(p.rglob("*.nc")) if p.is_dir() else [p])]
    report = ingest(
        files,
        root,
        scheduler=settings.dask_scheduler,
        consolidate_after=settings.cube_consolidate_after,
        force_consolidate=consolidate,
        progress=_say,
        url_of=settings.public_href,
        consolidate_delay_s=settings.cube_consolidate_delay_s,
        update_catalog=register,
    )
    for granule, reason in report.skipped.items():
        _say(f"skipped {granule}: {reason}")
    changed = [root / name for name, c in report.cubes.items() if c.added or c.consolidated]
    if register and changed:
        _register_cubes(changed)
    _say(f"{report.added} layer(s) added to {len(report.cubes)} cube(s) in {root}")
    if any(reason.startswith("unreadable") for reason in report.skipped.values()):
        sys.exit(1)


def _register_cubes(paths: list[Path]) -> None:
    from glacierflow.catalog.database import catalog_database
    from glacierflow.catalog.loader import init_catalog, load_cubes

    settings = _settings()
    with _exit_on_input_errors(), catalog_database(settings.data_dir) as dsn:
        init_catalog(dsn, settings.collection_ids)
        ids = load_cubes(dsn, paths, settings.collection_id("cubes"), settings.data_href)
    _say(f"catalog: {len(ids)} cube item(s) updated")


@cube.command("consolidate")
@_STORE_OPTION
@click.option(
    "--catalog/--no-catalog",
    "register",
    default=True,
    show_default=True,
    help="Update the cubes' STAC items in the catalog.",
)
def cube_consolidate(store: str | None, register: bool) -> None:
    """Fold every cube's recent segments into its time-contiguous history (what ingest
    does by itself once a cube has GLACIERFLOW_CUBE_CONSOLIDATE_AFTER segments)."""
    from glacierflow.processing.cubes.ingest import consolidate_store
    from glacierflow.processing.cubes.store import cube_names

    root = _store_path(store)
    done = consolidate_store(root, cube_names(root))
    if register and done:
        _register_cubes([root / name for name in done])
    _say(f"{len(done)} cube(s) consolidated in {root}")


def _window_in_order(
    ctx: click.Context, param: click.Parameter, value: tuple[int, int]
) -> tuple[int, int]:
    if value[0] > value[1]:
        raise click.BadParameter(f"{value[0]} comes after {value[1]}", ctx, param)
    return value


# the composites' fit options (`composite`, and `mosaic build` for the composites it makes)
_WINDOW_OPTION = click.option(
    "--window",
    default=(2014, 2022),
    nargs=2,
    type=click.IntRange(1900, 2200),
    show_default=True,
    callback=_window_in_order,
    help="First and last year of the composites' climatology (v0, dv_dt, v_amp, v_phase).",
)
_INTERCEPT_YEAR_OPTION = click.option(
    "--intercept-year",
    default=2018,
    type=click.IntRange(1900, 2200),
    show_default=True,
    help="v0 is the climatology line's value on 1 January of this year.",
)


@main.command()
@click.argument("cube_path", metavar="CUBE", type=click.Path(path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    callback=_writable_output,
    help="The composite NetCDF file to write (.nc).",
)
@_WINDOW_OPTION
@_INTERCEPT_YEAR_OPTION
def composite(cube_path: Path, out: Path, window: tuple[int, int], intercept_year: int) -> None:
    """Annual composite of the cube CUBE (ITS_LIVE's method): annual v, vx, vy and errors,
    climatology, seasonal amplitude and phase, into one NetCDF file. Pixels with too few
    pairs are NaN and counted."""
    from glacierflow.processing.composites.build import (
        CompositeError,
        build_composite,
        open_cube,
        write_composite,
    )
    from glacierflow.processing.composites.fit import Options

    if out.suffix != ".nc":
        raise click.BadParameter(f"{out} does not end in .nc", param_hint="--out")
    try:
        data, summary = build_composite(
            open_cube(cube_path),
            Options(window=window, intercept_year=intercept_year),
            progress=lambda done, total: _say(f"block {done}/{total}"),
        )
    except CompositeError as err:
        _say(f"error: {err}")
        sys.exit(2)
    write_composite(data, out)
    first, last = summary.years
    _say(
        f"{out}: {first}-{last}, {summary.pixels_fitted} pixel(s) fitted, "
        f"{summary.too_few_pairs} with too few pairs"
    )


@main.group()
def mosaic() -> None:
    """Annual and summary mosaics of the cubes' composites (NetCDF + COGs, ITS_LIVE names)."""


class _Year(click.ParamType):
    """A year (1900-2200), 0000 for the climatology, or a range FIRST-LAST."""

    name = "year"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        text = str(value).strip()
        first, _, last = text.partition("-")
        if not (first.isdigit() and (not last or last.isdigit())):
            self.fail(f"{value!r}: give YYYY, 0000 (the summary) or FIRST-LAST", param, ctx)
        low, high = int(first), int(last or first)
        if (low, high) != (0, 0) and not 1900 <= low <= high <= 2200:
            self.fail(f"{value!r}: years run 1900-2200 in order (or 0000)", param, ctx)
        return (0,) if low == 0 else tuple(range(low, high + 1))


def _cubes_given(paths: tuple[Path, ...]) -> list[Path]:
    """Cubes named one by one, or store folders of them."""
    from glacierflow.processing.cubes.store import cube_names

    cubes: list[Path] = []
    for path in paths:
        if not path.exists():
            raise click.BadParameter(f"{path}: no such cube or store folder", param_hint="--cubes")
        names = cube_names(path) if not path.name.endswith(".zarr") else []
        cubes += [path / n for n in names] if names else [path]
    return cubes


@mosaic.command("build")
@click.option(
    "--cubes",
    "cube_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A cube, or a store folder of cubes (repeatable).",
)
@click.option(
    "--bbox",
    nargs=4,
    type=_Number(-180, 180),
    metavar="W S E N",
    help="Longitude/latitude box: mosaic the cubes of --store it touches (needs --region).",
)
@click.option(
    "--region",
    help="A named region (RGI01A ... RGI19A: the cubes of --store in it), or the name of "
    "--bbox or --cubes in the file names [default with --cubes: custom].",
)
@_STORE_OPTION
@click.option(
    "--year",
    "years",
    multiple=True,
    required=True,
    type=_Year(),
    help="Year, 0000 (the summary: climatology) or FIRST-LAST; repeatable.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    callback=_writable_output,
    help="Folder for the mosaic files.",
)
@click.option(
    "--composites",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder of the cubes' composites, built there where missing or older than the "
    "cube [default: OUT/composites].",
)
@_WINDOW_OPTION
@_INTERCEPT_YEAR_OPTION
@click.option(
    "--landice",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Glacier outlines (GeoJSON) or a raster (non-zero on ice): fills `landice`.",
)
@click.option(
    "--catalog/--no-catalog",
    "register",
    default=True,
    show_default=True,
    help="Create or update the mosaics' and composites' STAC items (collection `mosaics`).",
)
def mosaic_build(
    cube_paths: tuple[Path, ...],
    bbox: tuple[float, float, float, float] | None,
    region: str | None,
    store: str | None,
    years: tuple[tuple[int, ...], ...],
    out: Path,
    composites: Path | None,
    window: tuple[int, int],
    intercept_year: int,
    landice: Path | None,
    register: bool,
) -> None:
    """Mosaic the composites of a region's cubes for each --year into OUT:
    ITS_LIVE_velocity_120m_<REGION>_<YYYY>_v02.nc, one COG per variable (…_<var>.tif) and
    a Web-Mercator COG of v (…_v_3857.tif), in one projection (the cube grid's at the
    region's centre). Where cubes overlap, the one with the most pairs (count0) wins.

    The cubes: --cubes, or those of --store that --region (a named region) or --bbox
    touches. Their composites are built (one Dask task per cube) where missing or stale.
    """
    from glacierflow.processing.composites.fit import Options
    from glacierflow.processing.mosaics import MosaicError, build_mosaics
    from glacierflow.processing.mosaics.build import composite_path
    from glacierflow.processing.mosaics.regions import (
        RegionError,
        bbox_region,
        cubes_in_region,
        named_region,
    )

    if cube_paths and bbox:
        raise click.UsageError("give --cubes or --bbox, not both")
    if not (cube_paths or region):
        raise click.UsageError("give --cubes, --bbox W S E N with --region NAME, or --region")
    try:
        if cube_paths:
            cubes, where = _cubes_given(cube_paths), region or "custom"
        else:
            where = bbox_region(region or "", bbox) if bbox else named_region(region or "")
            cubes = cubes_in_region(_store_path(store), where)
            if not cubes:
                root = _store_path(store)
                raise MosaicError(
                    f"no cube in {root} touches {where.name} {where.bbox}: ingest granules "
                    "there first (glacierflow cube ingest), or give another --store or region"
                )
        products = build_mosaics(
            cubes,
            sorted({y for group in years for y in group}),
            out,
            where,
            composites,
            Options(window=window, intercept_year=intercept_year),
            landice,
            _settings().dask_scheduler,
            progress=_say,
        )
    except (MosaicError, RegionError) as err:
        _say(f"error: {err}")
        sys.exit(2)
    for made in products:
        click.echo(str(made.netcdf))
    if register:
        folder = composites or out / "composites"
        _register_mosaics(products, [composite_path(cube, folder) for cube in cubes])


def _register_mosaics(products: list[MosaicProducts], composites: list[Path]) -> None:
    from glacierflow.catalog.database import catalog_database
    from glacierflow.catalog.loader import init_catalog, load_composites, load_mosaics

    settings = _settings()
    collection = settings.collection_id("mosaics")
    if products and settings.data_href(products[0].netcdf) is None:
        _say(
            f"catalog: not registered: {products[0].netcdf.parent} is outside the data "
            f"directory {settings.data_dir} (GLACIERFLOW_DATA_DIR), the only place the API "
            "serves files and tiles from; build with --out under it to catalogue the mosaics"
        )
        return
    with _exit_on_input_errors(), catalog_database(settings.data_dir) as dsn:
        init_catalog(dsn, settings.collection_ids)
        mosaics = load_mosaics(dsn, products, collection, settings.data_href)
        made = load_composites(dsn, composites, collection, settings.data_href)
    _say(
        f"catalog: {len(mosaics)} mosaic item(s) and {len(made)} composite item(s) updated in "
        f"collection '{collection}'"
    )


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=_PORT)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Server processes. Two per core serve the most concurrent clients: keep-alive "
    "connections stay with the process that accepted them, and more processes even the load.",
)
@click.option(
    "--only",
    type=click.Choice(["stac", "timeseries", "tiles"]),
    default=None,
    help="Serve one part alone, at the root (its routes without their /stac or /tiles "
    "prefix), so that parts run and scale as separate processes on one database: the STAC "
    "API, the time series and profiles, or the tile server. Without it, all of them and "
    "the dashboard.",
)
def serve(host: str, port: int, workers: int, only: str | None) -> None:
    """Serve the HTTP API: /stac (STAC API), /timeseries and /profile, /tiles (map tiles,
    WMTS, legend), /healthz, /docs.

    Runs until Ctrl-C, SIGTERM or SIGHUP. A worker process that dies is replaced; when
    they keep dying (5 per worker within a minute) the command stops and exits 1.
    """
    from glacierflow.catalog.database import catalog_database
    from glacierflow.catalog.loader import init_catalog
    from glacierflow.services.server import ServerError, run

    settings = _settings()
    with _exit_on_input_errors():
        settings.transactions_key()  # refused before any database starts
    with _exit_on_input_errors(), catalog_database(settings.data_dir) as dsn:
        init_catalog(dsn, settings.collection_ids)
        try:
            run(settings, dsn, host, port, say=_say, workers=workers, only=only)
        except OSError as err:  # the port: in use, or not ours to take
            _say(f"error: {err.strerror}; choose another --port")
            sys.exit(2)
        except ServerError as err:
            _say(f"error: {err}")
            sys.exit(1)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=_PORT)
@click.option(
    "--serve/--no-serve",
    default=True,
    show_default=True,
    help="Serve the result until interrupted (Ctrl-C), or stop once it is built.",
)
def demo(host: str, port: int, serve: bool) -> None:
    """Build the synthetic demo region end to end, report its accuracy, catalog it and
    serve it (STAC API at /stac).

    Scenes and granules go under GLACIERFLOW_DATA_DIR/demo; a second run reuses them.
    """
    from glacierflow.demo import run_demo

    with _exit_on_input_errors():
        run_demo(_settings(), say=_say, host=host, port=port, serve=serve)


if __name__ == "__main__":
    main()
