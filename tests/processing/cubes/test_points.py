"""Point reads from a living cube while it changes: every answer is a whole, right series."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from conftest import make_cube_granules, measured_pixel

from glacierflow.processing.cubes.ingest import ingest
from glacierflow.processing.cubes.layout import GRIDDED
from glacierflow.processing.cubes.points import CubeReader, SeriesFilter
from glacierflow.processing.cubes.store import LivingCube

TILE = "ITS_LIVE_vel_EPSG3413_G0120_X-150000_Y-2250000.zarr"


def quiet(_: str) -> None:
    pass


def test_reads_racing_consolidations_are_never_served_from_a_removed_version(
    granule_files: dict[str, Path], tmp_path: Path
) -> None:
    """Readers in threads read one pixel without pause while a writer appends a layer and
    consolidates, again and again (each consolidation deletes the parts it replaced).
    Every answer must hold every layer published before the read began, with the known
    velocities: Zarr reads a deleted chunk as fill values, which once gave empty series."""
    template = granule_files["july"]
    files = make_cube_granules(template, tmp_path / "granules", 10)
    store = tmp_path / "cubes"
    ingest(files[:4], store, progress=quiet)
    x, y = measured_pixel(template)
    cube = LivingCube(store, TILE)
    row = int(np.argwhere(cube.tile.y == y)[0][0])
    col = int(np.argwhere(cube.tile.x == x)[0][0])
    reader = CubeReader(cube)
    published = [4]  # layers in the cube for sure (updated once an ingest has returned)
    done = threading.Event()
    answers: list[tuple[int, int]] = []  # (layers published before the read, layers read)
    wrong: list[str] = []

    def read() -> None:
        while not done.is_set():
            before = published[0]
            try:  # every 3-D variable: many files opened per read, a wider window to race
                series = reader.series(row, col, list(GRIDDED), SeriesFilter())
            except Exception as err:  # any failure is a wrong answer
                wrong.append(repr(err))
                continue
            answers.append((before, len(series)))
            expected = 100.0 + 10 * np.arange(len(series))
            if len(series) < before or not np.array_equal(series.columns["vx"], expected):
                wrong.append(f"{before} layers published, read {series.columns['vx'].tolist()}")

    readers = [threading.Thread(target=read) for _ in range(4)]
    for thread in readers:
        thread.start()
    try:
        for k in range(4, 10):
            ingest(files[k : k + 1], store, progress=quiet, force_consolidate=True)
            published[0] = k + 1
    finally:
        done.set()
        for thread in readers:
            thread.join()
    assert not wrong, wrong[:3]
    assert len(cube.snapshot().parts) == 1  # consolidated: a history alone
    assert answers[-1][1] == 10 and len(answers) > 20
