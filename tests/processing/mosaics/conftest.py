"""Synthetic cubes placed where a test needs them (projection, position), written under
their ITS_LIVE names."""

from __future__ import annotations

from pathlib import Path

from pyproj import CRS

from glacierflow.processing.composites.fit import Options
from glacierflow.processing.composites.synthetic import synthetic_cube, write_cube
from glacierflow.processing.cubes.grid import tile_of
from glacierflow.processing.tracking.grid import ITS_LIVE_X_PHASE, ITS_LIVE_Y_PHASE

YEARS = (2018, 2021)
CELL = 120.0
OPTIONS = Options(window=YEARS, intercept_year=2019)


def placed_cube(
    store: Path, epsg: int, x: float, y: float, seed: int, n_pairs: int = 400, side: int = 8
) -> Path:
    """A synthetic cube of side x side pixels in `epsg` whose first (north-west) pixel
    centre is at (x, y) moved onto ITS_LIVE's phase (x ≡ 52.5, y ≡ 67.5 mod 120), named
    after that pixel's tile."""
    x, y = on_phase(x, ITS_LIVE_X_PHASE), on_phase(y, ITS_LIVE_Y_PHASE)
    cube, _ = synthetic_cube(
        ny=side, nx=side, n_pairs=n_pairs, years=YEARS, intercept_year=2019, seed=seed
    )
    cube = cube.assign_coords(x=cube.x - cube.x[0] + x, y=cube.y - cube.y[0] + y)
    cube["mapping"].attrs.update(spatial_epsg=epsg, crs_wkt=CRS.from_epsg(epsg).to_wkt())
    cube.attrs["projection"] = str(epsg)
    path = Path(store) / tile_of(epsg, x, y).name
    write_cube(cube, str(path))
    return path


def on_phase(value: float, phase: float) -> float:
    """The nearest pixel centre of ITS_LIVE's 120 m grid along one axis."""
    return phase + CELL * round((value - phase) / CELL)
