"""Consolidation in the background, so that plain readers (xarray, the itslive client) see
a new layer a few minutes after its ingest without anyone running a command.

Ingest appends recent segments, which only glacierflow's own readers see. After an ingest
that leaves segments, `schedule` starts one detached process per cube (this module run as
a program). It waits until the oldest segment is `delay_s` old, folds the segments into a
new history (LivingCube.consolidate: atomic, under the cube's lock), updates the cube's
STAC item when asked to, and exits once no segment is left.

At most one such process per cube: it holds `consolidator.lock` while it lives, and lets
go of it only under the cube's lock after finding no segment left; ingest looks at that
lock under the cube's lock after publishing. So a segment is never published unseen: either
the waiting process finds it, or ingest finds the lock free and starts a new process.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from glacierflow.processing.cubes.store import LivingCube

# xarray, dask and the cube code (~200 MB) are imported only once a consolidation is due:
# a waiting consolidator is a small process (~45 MB), one per cube with recent layers
GUARD = "consolidator.lock"


def _take(guard: Path) -> int | None:
    """The guard's descriptor, locked; None when another process holds it."""
    handle = os.open(guard, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(handle)
        return None
    return handle


def schedule(cube: LivingCube, delay_s: float, register: bool) -> bool:
    """Start a consolidator for `cube` unless one is waiting already (call under the
    cube's lock, after publishing segments). True when one was started."""
    handle = _take(cube.state / GUARD)
    if handle is None:
        return False  # a waiting consolidator will find the new segments
    os.close(handle)  # the consolidator takes it; another ingest waits on the cube's lock
    command = [sys.executable, "-m", __name__, str(cube.store), cube.name, str(cube.state)]
    with open(cube.state / "consolidator.log", "ab") as log:
        subprocess.Popen(
            [*command, str(delay_s), *(["--catalog"] if register else [])],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # outlives the ingest, its terminal and its Ctrl-C
        )
    return True


def run(store: Path, name: str, state: Path, delay_s: float, register: bool) -> None:
    """Consolidate the cube once its oldest recent segment is `delay_s` old, until none
    is left; nothing when another consolidator is waiting or the cube is gone."""
    handle = _take(state / GUARD)
    if handle is None:
        return
    try:
        while (store / name).is_symlink():
            age = _oldest_age(state / "recent")
            if age is not None and age < delay_s:
                time.sleep(delay_s - age)
                continue
            cube, changed, done = _fold(store, name, handle)
            if done:
                handle = None  # closed under the cube's lock
            if changed and register:
                _register(cube)
            if done:
                return
    finally:
        if handle is not None:
            os.close(handle)


def _oldest_age(recent: Path) -> float | None:
    """Seconds since the oldest segment in `recent` was written; None when there is none
    (the caller then checks under the cube's lock)."""
    while True:
        try:
            written = [(recent / n).stat().st_mtime for n in os.listdir(recent)]
        except FileNotFoundError:  # no segment yet, or one folded in while we looked
            if not recent.is_dir():
                return None
            continue
        return time.time() - min(written) if written else None


def _fold(store: Path, name: str, guard: int) -> tuple[LivingCube, bool, bool]:
    """Fold the recent segments into the history now: the cube, whether it changed, and
    whether no segment is left, the guard then closed under the cube's lock, so that no
    ingest publishes unseen meanwhile."""
    import dask

    from glacierflow.processing.cubes.store import LivingCube

    cube = LivingCube(store, name)
    with cube.locked(), dask.config.set(scheduler="threads"):
        changed = cube.consolidate()
        done = not cube.snapshot().segments
        if done:
            os.close(guard)
    return cube, changed, done


def _register(cube: LivingCube) -> None:
    """The cube's STAC item, as plain readers now see it."""
    from glacierflow.catalog.database import catalog_database
    from glacierflow.catalog.loader import load_cubes
    from glacierflow.settings import get_settings

    settings = get_settings()
    with catalog_database(settings.data_dir) as dsn:
        load_cubes(dsn, [cube.path], settings.collection_id("cubes"), settings.data_href)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("store", type=Path)
    parser.add_argument("name")
    parser.add_argument("state", type=Path, help="the cube's folder of glacierflow's state")
    parser.add_argument("delay_s", type=float)
    parser.add_argument("--catalog", action="store_true", help="update the cube's STAC item")
    args = parser.parse_args()
    run(args.store, args.name, args.state, args.delay_s, args.catalog)


if __name__ == "__main__":
    main()
