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

import dask

from glacierflow.processing.cubes.store import LivingCube

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
    command = [sys.executable, "-m", __name__, str(cube.store), cube.name, str(delay_s)]
    with open(cube.state / "consolidator.log", "ab") as log:
        subprocess.Popen(
            [*command, *(["--catalog"] if register else [])],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # outlives the ingest, its terminal and its Ctrl-C
        )
    return True


def run(cube: LivingCube, delay_s: float, register: bool) -> None:
    """Consolidate the cube whenever its oldest segment is `delay_s` old, until none is
    left; nothing when another consolidator is waiting or the cube is gone."""
    handle = _take(cube.state / GUARD)
    if handle is None:
        return
    try:
        while cube.exists():
            wait = _oldest_age(cube)
            if wait is None:
                continue  # a segment consolidated by another writer while we looked
            if wait < delay_s:
                time.sleep(delay_s - wait)
                continue
            with cube.locked(), dask.config.set(scheduler="threads"):
                changed = cube.consolidate()
                if not cube.snapshot().segments:  # no ingest can publish meanwhile
                    os.close(handle)
                    handle = None
            if changed and register:
                _register(cube)
            if handle is None:
                return
    finally:
        if handle is not None:
            os.close(handle)


def _oldest_age(cube: LivingCube) -> float | None:
    """Seconds since the oldest recent segment was written (infinite when there is none,
    so that the caller lets go); None when one vanished while we looked."""
    try:
        written = [s.stat().st_mtime for s in cube.snapshot().segments]
    except FileNotFoundError:
        return None
    return time.time() - min(written) if written else float("inf")


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
    parser.add_argument("delay_s", type=float)
    parser.add_argument("--catalog", action="store_true", help="update the cube's STAC item")
    args = parser.parse_args()
    run(LivingCube(args.store, args.name), args.delay_s, args.catalog)


if __name__ == "__main__":
    main()
