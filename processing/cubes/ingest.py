"""Granules into cubes: plan which cubes each granule reaches, then one Dask task per cube.

Idempotent: a granule whose URL a cube already holds is passed over; granules that cannot
go in (unreadable, no valid data, a mid_date the cube already has) are listed with the
reason, and the others still go in. Each task holds its cube's lock, appends its layers as
recent segments (each published atomically) and folds them into the history once there
are `consolidate_after` of them; segments left are folded in by a background consolidator
`consolidate_delay_s` later (background.py), for the readers of the history alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import dask
import numpy as np

from glacierflow.processing.cubes.background import schedule
from glacierflow.processing.cubes.layers import (
    Granule,
    GranuleReadError,
    Layer,
    layer_on_tile,
    read_granule,
    tiles_reached,
)
from glacierflow.processing.cubes.store import (
    MAX_SEGMENT_LAYERS,
    STATE_DIR,
    LivingCube,
    flush_folder,
    flush_tree,
)

SKIP_LEDGER = "skipped_granules.json"


@dataclass
class CubeChange:
    """What one ingest did to one cube."""

    name: str
    added: int = 0
    already_in: int = 0
    segments: int = 0
    consolidated: bool = False
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass
class IngestReport:
    cubes: dict[str, CubeChange] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # granule -> reason

    @property
    def added(self) -> int:
        return sum(c.added for c in self.cubes.values())


UrlOf = Callable[[Path], str | None]


def _read(path: Path, url_of: UrlOf | None) -> Granule:
    """A granule, named by `url_of(path)` when that gives a URL, else by its path."""
    return read_granule(path, url_of(Path(path)) if url_of else None)


def plan(
    paths: Iterable[Path], url_of: UrlOf | None = None
) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """Cube name -> granules that reach it; and the granules that reach none, with why."""
    work: dict[str, list[Path]] = {}
    skipped: dict[str, str] = {}
    for path in paths:
        try:
            granule = _read(path, url_of)
        except GranuleReadError as err:
            skipped[str(path)] = f"unreadable: {err}"
            continue
        tiles = tiles_reached(granule)
        if not tiles:
            skipped[granule.url] = "no valid data"
        for tile in tiles:
            work.setdefault(tile.name, []).append(Path(path))
    return work, skipped


def ingest_cube(
    store: Path,
    name: str,
    paths: list[Path],
    consolidate_after: int = 8,
    force_consolidate: bool = False,
    url_of: UrlOf | None = None,
    consolidate_delay_s: float | None = None,
    update_catalog: bool = False,
) -> CubeChange:
    """Add the granules' layers to one cube (one Dask task; holds the cube's lock)."""
    cube = LivingCube(store, name)
    change = CubeChange(name)
    with cube.locked(), dask.config.set(scheduler="synchronous"):
        urls, dates = cube.contents() if cube.exists() else (set(), set())
        pending: list[Layer] = []
        for path in paths:
            try:
                granule = _read(path, url_of)
            except GranuleReadError as err:  # read once already; changed since
                change.skipped[str(path)] = f"unreadable: {err}"
                continue
            if granule.url in urls:
                change.already_in += 1
                continue
            layer = layer_on_tile(granule, cube.tile)
            if layer is None:
                continue  # its data reach a neighbour tile only
            mid_date = np.datetime64(layer.mid_date, "ns")
            if mid_date in dates:
                change.skipped[granule.url] = f"duplicate mid_date {mid_date} in {name}"
                continue
            dates.add(mid_date)
            urls.add(granule.url)
            pending.append(layer)
            if len(pending) == MAX_SEGMENT_LAYERS:
                change.segments += cube.append(pending, change.skipped)
                change.added += len(pending)
                pending = []
        change.segments += cube.append(pending, change.skipped)
        change.added += len(pending)
        if force_consolidate or len(cube.snapshot().segments) >= consolidate_after:
            change.consolidated = cube.consolidate(change.skipped)
        if consolidate_delay_s is not None and cube.snapshot().segments:
            schedule(cube, consolidate_delay_s, update_catalog)
    return change


def ingest(
    paths: Iterable[Path],
    store: Path,
    scheduler: str | None = None,
    consolidate_after: int = 8,
    force_consolidate: bool = False,
    progress: Callable[[str], None] = print,
    url_of: UrlOf | None = None,
    consolidate_delay_s: float | None = None,
    update_catalog: bool = False,
) -> IngestReport:
    """Ingest granules into the cubes of `store`, one Dask task per cube: on a running
    Dask scheduler (tcp://...) when given, else on local threads. Each layer's
    `granule_url` is `url_of(path)` (Settings.public_href: the public URL, or the path
    relative to the data directory) where that gives one, else the granule's path.
    With `consolidate_delay_s`, recent segments left are folded into the history that
    long after (in the background), and with `update_catalog` the cubes' STAC items
    are then updated."""
    store = Path(store)
    work, skipped = plan(paths, url_of)
    report = IngestReport(skipped=dict(skipped))
    progress(f"{sum(map(len, work.values()))} granule-cube pairs into {len(work)} cube(s)")
    tasks = [
        dask.delayed(ingest_cube)(
            store,
            name,
            files,
            consolidate_after,
            force_consolidate,
            url_of,
            consolidate_delay_s,
            update_catalog,
        )
        for name, files in sorted(work.items())
    ]
    if scheduler:
        from distributed import Client

        with Client(scheduler) as client:
            changes = client.gather(client.compute(tasks))
    else:
        changes = dask.compute(*tasks, scheduler="threads")
    for change in changes:
        report.cubes[change.name] = change
        report.skipped.update(change.skipped)
        progress(
            f"{change.name}: +{change.added} layer(s), {change.already_in} already in"
            + (", consolidated" if change.consolidated else "")
        )
    record_skipped(store, report.skipped)
    return report


def consolidate_store(store: Path, names: Iterable[str]) -> list[str]:
    """Fold every named cube's recent segments into its history; the cubes changed."""
    done = []
    for name in names:
        cube = LivingCube(store, name)
        with cube.locked(), dask.config.set(scheduler="threads"):
            if cube.consolidate():
                done.append(name)
    return done


def record_skipped(store: Path, skipped: dict[str, str]) -> None:
    """Add to the store's ledger of skipped granules (replaced atomically)."""
    if not skipped:
        return
    ledger = store / STATE_DIR / SKIP_LEDGER
    ledger.parent.mkdir(parents=True, exist_ok=True)
    known = json.loads(ledger.read_text()) if ledger.exists() else {}
    known.update(skipped)
    staged = ledger.with_name(f".{ledger.name}.{os.getpid()}")
    staged.write_text(json.dumps(known, indent=1, sort_keys=True))
    flush_tree(staged)
    os.replace(staged, ledger)
    flush_folder(ledger.parent)
