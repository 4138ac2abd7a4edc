"""`glacierflow run`: pairs → granules → catalog → cubes → composites → mosaics, on Dask.

Every stage is a set of Dask tasks on one cluster (a `LocalCluster` of processes, or the
running scheduler GLACIERFLOW_DASK_SCHEDULER names); the driver keeps the catalog. Work is
known done by its product, so a run killed anywhere is finished by the next one, which
duplicates nothing: a pair whose granule file is there is not tracked again (granules are
written under temporary names and renamed, so a file there is whole), a granule a cube
holds is not ingested again, a composite newer than its cube and a mosaic newer than its
composites are kept, and catalog loads are upserts by deterministic ids.

A pair that fails (an unreadable scene, a worker lost twice) is retried once, then
reported with its reason; the batch goes on without it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import netCDF4
import xarray as xr
from tqdm import tqdm

from glacierflow.processing.composites.build import open_cube
from glacierflow.processing.composites.fit import Options
from glacierflow.processing.cubes.ingest import ingest_cube, plan, record_skipped
from glacierflow.processing.io.scenes import SceneError
from glacierflow.processing.mosaics import MosaicError, MosaicProducts
from glacierflow.processing.mosaics.build import (
    DEFAULT_REGION,
    ensure_composites,
    existing_mosaic,
    mosaic_from_composites,
)
from glacierflow.processing.mosaics.merge import SUMMARY_YEAR, composite_years
from glacierflow.processing.pipeline import TrackRequest, pair_masks, track_pair
from glacierflow.processing.scenes import Pair
from glacierflow.references import ReferenceMosaic, choose_reference, with_reference
from glacierflow.settings import Settings

if TYPE_CHECKING:
    from distributed import Client, Future

Say = Callable[[str], None]

# the tracker's defaults; ref, sec, times and output are each pair's
TRACK_DEFAULTS = TrackRequest(ref="", sec="", output=Path())


@dataclass
class RunReport:
    """What a run found and did, stage by stage; `ok` when nothing failed."""

    pairs: int = 0
    done_before: list[str] = field(default_factory=list)
    tracked: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # pair id -> reason
    granules: list[Path] = field(default_factory=list)  # every granule of the run's pairs
    catalogued: dict[str, int] = field(default_factory=dict)  # collection kind -> items
    cubes: dict[str, int] = field(default_factory=dict)  # cube -> layers this run added
    skipped: dict[str, str] = field(default_factory=dict)  # granule -> why no cube took it
    composites: list[Path] = field(default_factory=list)
    mosaics: list[MosaicProducts] = field(default_factory=list)
    mosaics_reused: bool = False
    referenced: dict[str, str] = field(default_factory=dict)  # pair id -> reference mosaic
    references: str = "on"  # "on", "off" (--no-references) or why none could be looked up
    problems: list[str] = field(default_factory=list)  # a stage that could not be done
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.problems

    def table(self) -> str:
        """The summary printed at the end of a run."""
        rows = [
            ("pairs", str(self.pairs), ""),
            ("  done before", str(len(self.done_before)), "granule there, not tracked again"),
            ("  tracked", str(len(self.tracked)), self._time("track")),
            ("  failed", str(len(self.failed)), "after one retry" if self.failed else ""),
            ("  with reference", str(len(self.referenced)), self._references()),
            *(("", "", f"{pair}: {reason}") for pair, reason in sorted(self.failed.items())),
            ("granules", str(len(self.granules)), self._catalogued("granules")),
            (
                "cubes",
                str(len(self.cubes)),
                f"{sum(self.cubes.values())} layer(s) added{self._catalogued('cubes', ', ')}"
                + self._time("ingest", ", "),
            ),
            ("  not ingested", str(len(self.skipped)), ""),
            *(("", "", f"{Path(g).name}: {why}") for g, why in sorted(self.skipped.items())),
            ("composites", str(len(self.composites)), self._time("composites")),
            (
                "mosaics",
                str(len(self.mosaics)),
                ("reused" if self.mosaics_reused else "written") + self._time("mosaics", ", "),
            ),
            *(("problem", "", text) for text in self.problems),
        ]
        width = max(len(r[0]) for r in rows)
        count = max(len(r[1]) for r in rows)
        return "\n".join(
            f"{name:<{width}}  {number:>{count}}  {detail}".rstrip()
            for name, number, detail in rows
        )

    def _references(self) -> str:
        if self.references != "on":
            return f"references {self.references}"
        names = sorted(set(self.referenced.values()))
        return f"prior: {', '.join(names)}" if names else "no summary mosaic covers them yet"

    def _time(self, stage: str, sep: str = "") -> str:
        return f"{sep}{self.seconds[stage]:.1f} s" if stage in self.seconds else ""

    def _catalogued(self, kind: str, sep: str = "") -> str:
        return f"{sep}{self.catalogued[kind]} item(s) catalogued" if kind in self.catalogued else ""


def pair_folder(granules: Path, pair: Pair) -> Path:
    """A pair's own folder, named by its id: its granule inside keeps ITS_LIVE's name
    (which holds the valid percentage, known only once tracked)."""
    return Path(granules) / pair.id


def finished_granule(folder: Path) -> Path | None:
    """The complete granule in a pair's folder, if any: a NetCDF file that opens and has
    the pair's information (partial writes carry hidden temporary names)."""
    for path in sorted(Path(folder).glob("[!.]*.nc")):
        try:
            with netCDF4.Dataset(path) as ds:
                if "img_pair_info" in ds.variables and "v" in ds.variables:
                    return path
        except OSError:
            continue
    return None


def track_task(pair: Pair, granules: Path, template: TrackRequest) -> Path:
    """Track one pair into its folder (a Dask task: everything it needs is an argument)."""
    folder = pair_folder(granules, pair)
    done = finished_granule(folder)
    if done is not None:  # an earlier try finished, its worker lost before it could say so
        return done
    # what a worker killed mid-write left (temporary names), or a file that does not open
    for stale in [*folder.glob(".*.tmp"), *folder.glob("*.nc")]:
        stale.unlink(missing_ok=True)
    request = replace(
        template,
        ref=pair.ref.href,
        sec=pair.sec.href,
        ref_time=pair.ref.datetime.isoformat(),
        sec_time=pair.sec.datetime.isoformat(),
        output=folder,
        **pair_masks(pair),  # the scenes' QA bands or cloud masks
    )
    try:
        return track_pair(request).path
    except SceneError as err:
        reason = str(err)
    # raised again bare: the cause (a rasterio error) does not unpickle on the client,
    # which would turn the message into an Exception's repr
    raise SceneError(reason)


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[Client]:
    """A client of the running scheduler at `scheduler` (tcp://host:port), else of a
    `LocalCluster` of `workers` single-threaded processes (default: one per core), which
    closes with it: processes, so that the tracker's Python glue (outlier filters, I/O)
    runs in parallel too, not only its pyfftw/numpy parts that release the GIL."""
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def gather_results(
    futures: dict[Future, str], what: str, unit: str, say: Say
) -> tuple[dict[str, Any], dict[str, str]]:
    """Results by name as they come, under a progress bar; and failures by name with the
    reason (the task's retry already spent)."""
    from distributed import as_completed

    results: dict[str, Any] = {}
    failures: dict[str, str] = {}
    with tqdm(total=len(futures), desc=what, unit=unit, file=sys.stderr, mininterval=1) as bar:
        for future in as_completed(list(futures)):
            name = futures[future]
            try:
                results[name] = future.result()
            except Exception as err:
                failures[name] = _reason(err)
                bar.write(f"{what}: {name} failed: {failures[name]}", file=sys.stderr)
            future.release()
            bar.update()
    return results, failures


def _reason(err: BaseException) -> str:
    """An error as one line: the message of our own errors, the type of others."""
    text = " ".join(str(err).split()) or repr(err)
    return text if isinstance(err, SceneError) else f"{type(err).__name__}: {text}"


def composite_options(cubes: Sequence[Path]) -> Options:
    """The composites' climatology: the years the cubes span, its line's intercept in the
    middle (ITS_LIVE's 2014-2022 has 2018), so that any region's data lie in it."""
    years: list[int] = []
    for cube in cubes:
        dates = open_cube(cube)["mid_date"].values
        years += [int(str(dates.min())[:4]), int(str(dates.max())[:4])]
    first, last = min(years), max(years)
    return Options(window=(first, last), intercept_year=(first + last + 1) // 2)


def run_pairs(
    settings: Settings,
    pairs: Sequence[Pair],
    dsn: str | None = None,
    *,
    template: TrackRequest = TRACK_DEFAULTS,
    region: str = DEFAULT_REGION,
    consolidate: bool = True,
    references: bool = True,
    client: Client | None = None,
    say: Say = print,
) -> RunReport:
    """Run the pipeline on `pairs`: track what is not done (with `references`, each pair
    whose footprint a summary mosaic of the catalog covers has its velocities as a prior:
    `glacierflow.references`), catalog the granules (when
    `dsn` names a catalog), ingest them into the cubes (`consolidate`: folded into each
    cube's history at the end, else left as recent segments until the cube has
    GLACIERFLOW_CUBE_CONSOLIDATE_AFTER of them), refresh the cubes' composites and the
    region's mosaics, catalog those. On `client`'s cluster, else on the one the settings
    name (`dask_client`)."""
    if client is None:
        with dask_client(settings.dask_scheduler, settings.dask_workers) as own:
            return run_pairs(
                settings,
                pairs,
                dsn,
                template=template,
                region=region,
                consolidate=consolidate,
                references=references,
                client=own,
                say=say,
            )
    report = RunReport(pairs=len(pairs))
    granules_dir = settings.data_dir / "granules"
    template = replace(
        template,
        memory_budget_bytes=settings.track_memory_budget_mb * 2**20,
        wisdom=template.wisdom or settings.fftw_wisdom,
    )
    clock = time.perf_counter()
    todo: list[Pair] = []
    for pair in pairs:
        done = finished_granule(pair_folder(granules_dir, pair))
        if done is None:
            todo.append(pair)
        else:
            report.done_before.append(pair.id)
            report.granules.append(done)
    say(f"pairs: {len(pairs)}, {len(report.done_before)} done before, {len(todo)} to track")
    candidates = _references(settings, dsn, report) if references and todo else []
    if not references:
        report.references = "off"
    futures = {}
    for pair in todo:
        reference = choose_reference(candidates, pair.ref.footprint)
        if reference is not None:
            report.referenced[pair.id] = reference.id
        request = with_reference(template, reference)
        future = client.submit(
            track_task, pair, granules_dir, request, key=f"track-{pair.id}", retries=1
        )
        futures[future] = pair.id
    tracked, report.failed = gather_results(futures, "track", "pair", say)
    report.tracked = sorted(tracked)
    report.granules += [Path(p) for p in tracked.values()]
    report.granules.sort()
    report.seconds["track"] = time.perf_counter() - clock
    if dsn and report.granules:
        _catalog(report, "granules", lambda: _load_granules(dsn, settings, report.granules))
    cubes = _ingest(settings, report, consolidate, client, say)
    if dsn and cubes:
        _catalog(report, "cubes", lambda: _load_cubes(dsn, settings, cubes))
    if cubes:
        _mosaics(settings, report, cubes, region, client, say)
    if dsn and report.composites:
        _catalog(report, "mosaics", lambda: _load_mosaics(dsn, settings, report))
    return report


def _references(settings: Settings, dsn: str | None, report: RunReport) -> list[ReferenceMosaic]:
    """The catalog's summary mosaics, the candidate priors (none without a catalog)."""
    if not dsn:
        report.references = "off (no catalog)"
        return []
    import psycopg

    from glacierflow.references import summary_mosaics

    try:
        return summary_mosaics(dsn, settings.collection_id("mosaics"), settings.data_dir)
    except (psycopg.Error, OSError) as err:
        report.problems.append(f"references: {_reason(err)}")
        return []


def _ingest(
    settings: Settings, report: RunReport, consolidate: bool, client: Client, say: Say
) -> list[Path]:
    """The run's granules into every cube they reach (a task per cube); the cubes."""
    clock = time.perf_counter()
    store = settings.cube_store
    work, report.skipped = plan(report.granules, settings.public_href)
    futures = {
        client.submit(
            ingest_cube,
            store,
            name,
            files,
            settings.cube_consolidate_after,
            consolidate,
            settings.public_href,
            key=f"ingest-{name}",
            retries=1,
        ): name
        for name, files in sorted(work.items())
    }
    changes, failures = gather_results(futures, "ingest", "cube", say)
    for name, reason in failures.items():
        report.problems.append(f"cube {name} not updated: {reason}")
    for name, change in changes.items():
        report.cubes[name] = change.added
        report.skipped.update(change.skipped)
    record_skipped(store, report.skipped)
    report.seconds["ingest"] = time.perf_counter() - clock
    return [store / name for name in sorted(changes)]


def _mosaics(
    settings: Settings,
    report: RunReport,
    cubes: list[Path],
    region: str,
    client: Client,
    say: Say,
) -> None:
    """The cubes' composites where stale (a task per cube), then the region's mosaics for
    every year they hold and the summary, unless newer than every composite."""
    clock = time.perf_counter()
    folder = settings.data_dir / "composites"
    try:
        # distributed's console progress bar writes to stdout: the CLI's stdout is its result
        with contextlib.redirect_stdout(sys.stderr):
            report.composites = ensure_composites(
                cubes, folder, composite_options(cubes), client.scheduler.address, say
            )
    except MosaicError as err:
        report.problems.append(f"composites: {err}")
        return
    report.seconds["composites"] = time.perf_counter() - clock
    clock = time.perf_counter()
    out = settings.data_dir / "mosaics"
    years: set[int] = {SUMMARY_YEAR}
    for path in report.composites:
        with xr.open_dataset(path) as composite:
            years |= set(composite_years(composite))
    newest = max(path.stat().st_mtime for path in report.composites)
    existing = [existing_mosaic(out, region, year, newest) for year in sorted(years)]
    if all(existing):
        report.mosaics, report.mosaics_reused = [m for m in existing if m], True
    else:
        try:
            report.mosaics = mosaic_from_composites(report.composites, sorted(years), out, region)
        except MosaicError as err:
            report.problems.append(f"mosaics: {err}")
    report.seconds["mosaics"] = time.perf_counter() - clock


def _catalog(report: RunReport, kind: str, load: Callable[[], int]) -> None:
    try:
        report.catalogued[kind] = load()
    except Exception as err:
        from glacierflow.catalog.database import DatabaseError

        if not isinstance(err, DatabaseError | OSError | ValueError):
            raise
        report.problems.append(f"catalog ({kind}): {_reason(err)}")


def _load_granules(dsn: str, settings: Settings, paths: list[Path]) -> int:
    from glacierflow.catalog.loader import load_granules

    loaded = load_granules(dsn, paths, settings.collection_id("granules"), settings.data_href)
    return len(loaded.loaded)


def _load_cubes(dsn: str, settings: Settings, cubes: list[Path]) -> int:
    from glacierflow.catalog.loader import load_cubes

    return len(load_cubes(dsn, cubes, settings.collection_id("cubes"), settings.data_href))


def _load_mosaics(dsn: str, settings: Settings, report: RunReport) -> int:
    from glacierflow.catalog.loader import load_composites, load_mosaics

    collection = settings.collection_id("mosaics")
    made = load_composites(dsn, report.composites, collection, settings.data_href)
    made += load_mosaics(dsn, report.mosaics, collection, settings.data_href)
    return len(made)


def catalog_pairs(
    dsn: str,
    bbox: tuple[float, float, float, float] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    max_pairs: int | None = None,
) -> list[Pair]:
    """The pairs of the catalog's scenes (in the box and time span), by the pairing rules."""
    from glacierflow.catalog.scenes import scenes_from_catalog
    from glacierflow.processing.scenes.pairing import find_pairs

    return find_pairs(scenes_from_catalog(dsn, bbox=bbox, start=start, end=end))[:max_pairs]


def run_pipeline(
    settings: Settings,
    dsn: str,
    *,
    bbox: tuple[float, float, float, float] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    max_pairs: int | None = None,
    template: TrackRequest = TRACK_DEFAULTS,
    region: str = DEFAULT_REGION,
    references: bool = True,
    say: Say = print,
) -> RunReport:
    """The whole pipeline from the catalog's scenes: their pairs, then `run_pairs`."""
    pairs = catalog_pairs(dsn, bbox, start, end, max_pairs)
    return run_pairs(
        settings, pairs, dsn, template=template, region=region, references=references, say=say
    )
