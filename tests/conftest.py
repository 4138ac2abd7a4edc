"""Shared helpers: synthetic pairs on the ITS_LIVE-aligned node grid; the catalog database
and granule files to load into it."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import psycopg
import pytest
import uvicorn
from psycopg import sql
from pyproj import CRS

from glacierflow.catalog.database import EmbeddedCluster
from glacierflow.catalog.loader import init_catalog
from glacierflow.processing import synthetic
from glacierflow.processing.composites.fit import Options
from glacierflow.processing.composites.synthetic import synthetic_cube, write_cube
from glacierflow.processing.cubes.grid import CELL_SIZE_M, tile_of
from glacierflow.processing.pipeline import TrackRequest, track_pair
from glacierflow.processing.tracking.grid import ITS_LIVE_X_PHASE, ITS_LIVE_Y_PHASE, node_grid
from glacierflow.processing.tracking.tracker import TrackerOptions, TrackResult, array_reader, track

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
ITSLIVE_SAMPLES = SHARED / "itslive-samples"

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from support import child_processes, chromium_browser, free_port  # noqa: E402, F401  (the tests' helpers too)


def track_synthetic(
    pair: synthetic.SyntheticPair,
    prior: np.ndarray | None = None,
    ref_mask: np.ndarray | None = None,
    sec_mask: np.ndarray | None = None,
    **options,
) -> tuple[TrackResult, np.ndarray]:
    """Track a synthetic pair on the 120 m grid (masks: non-zero where a pixel is
    unusable); returns the result and the vector errors (px)."""
    grid = node_grid(pair.transform, pair.ref.shape, 120.0)
    result = track(
        array_reader(pair.ref, pair.sec, ref_mask, sec_mask),
        pair.ref.shape,
        grid.rows,
        grid.cols,
        TrackerOptions(**options),
        prior=prior,
    )
    rr, cc = np.meshgrid(grid.rows, grid.cols, indexing="ij")
    true_rows, true_cols = pair.field(rr, cc)
    return result, np.hypot(result.rows - true_rows, result.cols - true_cols)


def clouded_pair(
    shape: tuple[int, int], seed: int
) -> tuple[synthetic.SyntheticPair, np.ndarray, np.ndarray]:
    """Ground moving (0.3, -0.7) px under a bright, textured, semi-transparent cloud that
    moves (20, -15) px itself; returns the pair and the cloud's mask in each image."""
    pair = synthetic.make_pair(shape, synthetic.uniform(0.3, -0.7), noise=0.02, seed=seed)
    rng = np.random.default_rng(seed + 100)
    puff = synthetic.fractal_texture((shape[0] + 40, shape[1] + 40), rng)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    centre = np.array(shape) / 2
    masks = []
    for image, (dr, dc) in ((pair.ref, (0, 0)), (pair.sec, (20, -15))):
        inside = (rows - centre[0] - dr) ** 2 + ((cols - centre[1] - dc) / 1.5) ** 2 < 70**2
        texture = puff[20 - dr : 20 - dr + shape[0], 20 - dc : 20 - dc + shape[1]]
        image[inside] = 0.3 * image[inside] + 0.7 * (3.0 + texture[inside])
        masks.append(inside)
    return pair, masks[0], masks[1]


@pytest.fixture(scope="session")
def itslive_granule() -> Path:
    path = next(ITSLIVE_SAMPLES.glob("*.nc"), None)
    assert path is not None, f"the real ITS_LIVE sample granule is missing from {ITSLIVE_SAMPLES}"
    return path


# -- the catalog: a private PostgreSQL + PostGIS + pgstac, and granule files to load -----------


def let_postgres_traverse(folder: Path) -> None:
    """PostgreSQL runs as `postgres` when we are root: it must be able to reach `folder`.

    pytest makes its temporary root 0700; the search bit (o+x, no listing) is enough.
    """
    if os.geteuid() != 0:
        return
    for parent in [folder, *folder.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    """A private cluster for the whole session (started here, stopped at the end)."""
    folder = tmp_path_factory.mktemp("pg")
    let_postgres_traverse(folder)
    cluster = EmbeddedCluster(folder / "postgres")
    _, started = cluster.start()
    assert started, f"a cluster was already running in {cluster.directory}"
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    """A private cluster for one test, to stop, freeze (SIGSTOP) and restart; thawed and
    stopped at the end whatever the test did to it."""
    folder = tmp_path / "own-pg"
    folder.mkdir()
    let_postgres_traverse(folder)
    cluster = EmbeddedCluster(folder / "postgres")
    cluster.start()
    try:
        yield cluster
    finally:
        pid = postmaster_pid(cluster)
        if pid:
            os.kill(pid, signal.SIGCONT)
        cluster.stop()


def postmaster_pid(cluster: EmbeddedCluster) -> int | None:
    """The process id of a running cluster's server, None when it is stopped."""
    pid_file = cluster.data / "postmaster.pid"
    return int(pid_file.read_text().split()[0]) if pid_file.exists() else None


@pytest.fixture(scope="session")
def pgstac_dsn(pg_cluster: EmbeddedCluster) -> str:
    """The DSN of the private cluster's `postgres` database, migrated, with the collections."""
    dsn, started = pg_cluster.start()  # already running: the same server
    assert not started
    init_catalog(dsn, {})
    return dsn


@pytest.fixture(scope="session")
def new_catalog(pgstac_dsn: str) -> Callable[[str], str]:
    """Makes an empty catalog database of its own in the session's cluster; returns its DSN.

    For tests that need to know exactly what a catalog holds (counts, writes).
    """

    def make(name: str) -> str:
        with psycopg.connect(pgstac_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        dsn = f"{pgstac_dsn.rsplit('/', 1)[0]}/{name}"
        init_catalog(dsn, {})
        return dsn

    return make


GRANULE_PAIRS = {
    # name: (acquisition of the reference, of the secondary; grid origin in EPSG:3413; clouds)
    # (july: 3 clouds leave it under 90 % valid, which the filter tests rely on)
    "july": (datetime(2024, 7, 1, 12), datetime(2024, 7, 17, 12), (-180000.0, -2280000.0), 3),
    "august": (datetime(2024, 8, 2, 12), datetime(2024, 8, 18, 12), (-180000.0, -2280000.0), 0),
    "east": (datetime(2023, 6, 10, 12), datetime(2023, 6, 26, 12), (-120000.0, -2280000.0), 0),
}


def write_granule(
    folder: Path,
    name: str,
    ref_time: datetime,
    sec_time: datetime,
    origin: tuple[float, float] = (synthetic.ORIGIN_X, synthetic.ORIGIN_Y),
    clouds: int = 0,
    epsg: int = synthetic.EPSG,
    seed: int = 5,
) -> Path:
    """A small real granule (19 x 19 nodes) tracked from a synthetic 300 x 300 px pair."""
    pair = synthetic.make_pair(
        (300, 300),
        synthetic.uniform(0.3, -0.7),
        seed=seed,
        clouds=clouds,
        ref_time=ref_time,
        sec_time=sec_time,
    )
    pair = dataclasses.replace(pair, origin=origin, epsg=epsg)
    ref, sec = synthetic.write_geotiffs(pair, folder / "scenes", name)
    report = track_pair(
        TrackRequest(
            ref=str(ref),
            sec=str(sec),
            output=folder / "granules",
            chip_min_m=120,
            chip_max_m=480,
            max_speed_m_per_yr=2000,
        )
    )
    return report.path


@pytest.fixture(scope="session")
def granule_files(
    tmp_path_factory: pytest.TempPathFactory, itslive_granule: Path
) -> dict[str, Path]:
    """Granules by name: three of ours (see GRANULE_PAIRS) and the real ITS_LIVE sample."""
    folder = tmp_path_factory.mktemp("catalog-granules")
    files = {
        name: write_granule(folder, name, ref_time, sec_time, origin, clouds, seed=seed)
        for seed, (name, (ref_time, sec_time, origin, clouds)) in enumerate(GRANULE_PAIRS.items())
    }
    files["itslive"] = itslive_granule
    return files


@contextmanager
def serving(app, **config) -> Iterator[str]:
    """Run `app` with uvicorn in a thread on a free loopback port; yields the base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **config)
    )
    exits: list[object] = []

    def run() -> None:
        try:
            server.run()
        except SystemExit as done:  # uvicorn's way out when the app's startup fails
            exits.append(done.code)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the server exited before it started (exit code {exits})")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError("the server did not start within 20 s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def serving_process(factory: str, env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run uvicorn's app `factory` in a process of its own on a free loopback port, so that
    a crash there (a segfault) fails the test instead of killing pytest.

    Yields the base URL and the process; `env` is added to this process's environment.
    """
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", factory, "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--log-level", "warning"], env={**os.environ, **env}
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited before it started ({process.returncode})")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("the server did not start within 60 s") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- cubes: many granules with a known velocity, made from one tracked granule -------------
def measured_pixel(granule: Path) -> tuple[float, float]:
    """Projected centre (x, y) of the first pixel `granule` measured: measured in every cube
    layer made from it (`make_cube_granules` keeps its valid-data mask)."""
    from glacierflow.processing.cubes.layers import read_granule

    layer = read_granule(granule)
    rows, cols = np.nonzero(layer.valid)
    return float(layer.x[cols[0]]), float(layer.y[rows[0]])


CUBE_START = datetime(2023, 1, 5, 12)


def cube_velocity(k: int) -> Callable:
    """The known velocity of the k-th cube granule: vx = 100 + 10 k, vy = -50 m/yr."""
    return lambda x, y, centre: (np.full_like(x, 100.0 + 10 * k), np.full_like(x, -50.0))


def make_cube_granules(
    template: Path, folder: Path, count: int, first: int = 0, satellite: str = "8"
) -> list[Path]:
    """`count` granules 16 days long, every 12 days from CUBE_START (+12 days per `first`)."""
    from datetime import timedelta

    files = []
    for k in range(first, first + count):
        ref = CUBE_START + timedelta(days=12 * k)
        files.append(
            synthetic.granule_copy(
                template,
                folder,
                ref,
                ref + timedelta(days=16),
                cube_velocity(k),
                satellite,
                mission="S" if satellite[-1].isalpha() else "L",
            )
        )
    return files


# -- a served region: cube + granules in a catalog, and `glacierflow serve` as a process ----
@dataclasses.dataclass(frozen=True)
class ServedRegion:
    """What a live server over the region needs (data dir holding `cubes/`, catalog DSN)
    and where to ask it: a point inside the cube, a line across it, the cube's item id, a
    granule's path under /data."""

    data_dir: Path
    dsn: str
    lon: float
    lat: float
    line: str
    cube_item: str
    data_file: str


@pytest.fixture(scope="session")
def served_region(
    granule_files: dict[str, Path],
    new_catalog: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> ServedRegion:
    """Demo-like data for the fuzzer and the soak test: a 12-layer cube (Landsat 8 and
    Sentinel-2A) and the granules in a data directory, loaded into a catalog of their own
    as `glacierflow cube ingest` and `catalog load` would (hrefs relative to it)."""
    import shutil

    from pyproj import Transformer

    from glacierflow.catalog.loader import load_cubes, load_granules
    from glacierflow.processing.cubes.ingest import ingest
    from glacierflow.processing.cubes.store import cube_names
    from glacierflow.settings import Settings

    folder = tmp_path_factory.mktemp("region")
    settings = Settings(data_dir=folder / "data")
    template = granule_files["july"]
    files = make_cube_granules(template, folder / "l8", 8)
    files += make_cube_granules(template, folder / "s2", 4, first=8, satellite="2A")
    store = settings.cube_store
    ingest(files, store, progress=lambda _: None)
    dsn = new_catalog("served_region")
    cubes = [store / name for name in cube_names(store)]
    (cube_item,) = load_cubes(dsn, cubes, "cubes", settings.data_href)
    (settings.data_dir / "granules").mkdir()
    granules = [shutil.copy(f, settings.data_dir / "granules") for f in granule_files.values()]
    report = load_granules(dsn, map(Path, granules), "granules", settings.data_href, True)
    assert not report.rejected, report.rejected
    x0, y0 = GRANULE_PAIRS["july"][2]
    to_lonlat = Transformer.from_crs(synthetic.EPSG, 4326, always_xy=True)
    lon, lat = to_lonlat.transform(x0 + 1000, y0 - 1000)
    ends = [to_lonlat.transform(x0 + dx, y0 - 1000) for dx in (200, 2000)]
    line = ",".join(f"{lo:.6f} {la:.6f}" for lo, la in ends)
    data_file = settings.data_href(Path(granules[0]))
    return ServedRegion(settings.data_dir, dsn, lon, lat, line, cube_item, data_file)


def wait_healthy(server: subprocess.Popen, url: str, output: Callable[[], str]) -> None:
    """Until `serve` at `url` answers /healthz; fails with its `output` if it exits first."""
    deadline = time.monotonic() + 180  # imports take long on a busy 2-core machine
    while True:
        assert server.poll() is None, f"serve exited: {output()}"
        assert time.monotonic() < deadline, "serve did not answer /healthz within 180 s"
        try:
            if httpx.get(f"{url}/healthz", timeout=30).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)


@contextmanager
def glacierflow_serve(
    region: ServedRegion, log: Path, workers: int = 1, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen]:
    """`glacierflow serve` over the region as a real process on a free loopback port, up
    and answering /healthz; its output goes to `log` (a pipe nobody reads would fill and
    stall it); stopped (SIGTERM, then SIGKILL) on the way out. `.url` is its base URL.
    `env`: more environment (GLACIERFLOW_* settings) for the server."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": region.dsn,
        "GLACIERFLOW_DATA_DIR": str(region.data_dir),
        **(env or {}),
    }
    with log.open("w") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "glacierflow.cli", "serve", "--port", str(port),
             "--workers", str(workers)],
            env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server.url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(server, server.url, lambda: log.read_text()[-4000:])
        yield server
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


# -- mosaics: synthetic cubes placed where a test needs them --------------------------------

MOSAIC_YEARS = (2018, 2021)
MOSAIC_OPTIONS = Options(window=MOSAIC_YEARS, intercept_year=2019)


def placed_cube(
    store: Path, epsg: int, x: float, y: float, seed: int, n_pairs: int = 400, side: int = 8
) -> Path:
    """A synthetic cube of side x side pixels in `epsg` whose first (north-west) pixel
    centre is at (x, y) moved onto ITS_LIVE's phase (x ≡ 52.5, y ≡ 67.5 mod 120), named
    after that pixel's tile."""
    x, y = on_phase(x, ITS_LIVE_X_PHASE), on_phase(y, ITS_LIVE_Y_PHASE)
    cube, _ = synthetic_cube(
        ny=side, nx=side, n_pairs=n_pairs, years=MOSAIC_YEARS, intercept_year=2019, seed=seed
    )
    cube = cube.assign_coords(x=cube.x - cube.x[0] + x, y=cube.y - cube.y[0] + y)
    cube["mapping"].attrs.update(spatial_epsg=epsg, crs_wkt=CRS.from_epsg(epsg).to_wkt())
    cube.attrs["projection"] = str(epsg)
    path = Path(store) / tile_of(epsg, x, y).name
    write_cube(cube, str(path))
    return path


def on_phase(value: float, phase: float) -> float:
    """The nearest pixel centre of ITS_LIVE's 120 m grid along one axis."""
    return phase + CELL_SIZE_M * round((value - phase) / CELL_SIZE_M)


# -- the front ends (dashboard, STAC Browser) in Debian's chromium under Playwright ----------
# the dashboard's mosaics (year: (origin x, y) in EPSG:3413, seed)): a glacier ellipse over the
# served region's cube, placed differently each year so that the years draw differently
FRONT_END_MOSAICS = {2023: ((-186_000.0, -2_262_000.0), 1), 2024: ((-192_000.0, -2_268_000.0), 2)}
FRONT_END_MOSAIC_SHAPE = (200, 240)


@pytest.fixture(scope="session")
def front_end_region(
    served_region: ServedRegion,
    granule_files: dict[str, Path],
    new_catalog: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> ServedRegion:
    """The served region's cube and granules, here with their browse images, and annual
    mosaics (2023, 2024) and a summary (year 0) over the cube, written to the mosaic
    contract (mosaic_products.py): in a data directory and a catalog of their own."""
    import shutil

    from mosaic_products import write_mosaic

    from glacierflow.catalog.loader import load_cubes, load_granules, load_mosaics
    from glacierflow.settings import Settings

    settings = Settings(data_dir=tmp_path_factory.mktemp("front-end") / "data")
    shutil.copytree(served_region.data_dir / "cubes", settings.cube_store, symlinks=True)
    (settings.data_dir / "granules").mkdir()
    for granule in granule_files.values():
        for file in granule.parent.glob(f"{granule.stem}.*"):  # the browse PNG and its sidecars
            shutil.copy(file, settings.data_dir / "granules")
    dsn = new_catalog("front_end")
    load_cubes(dsn, sorted(settings.cube_store.glob("*.zarr")), "cubes", settings.data_href)
    granules = sorted((settings.data_dir / "granules").glob("*.nc"))
    assert not load_granules(dsn, granules, "granules", settings.data_href, True).rejected
    folder = settings.data_dir / "mosaics"
    shape = FRONT_END_MOSAIC_SHAPE
    products = [
        write_mosaic(folder, "FRONT", year, origin=origin, shape=shape, seed=seed)
        for year, (origin, seed) in FRONT_END_MOSAICS.items()
    ]
    summary_origin = FRONT_END_MOSAICS[2024][0]
    products.append(write_mosaic(folder, "FRONT", 0, origin=summary_origin, shape=shape))
    load_mosaics(dsn, products, "mosaics", settings.data_href)
    return dataclasses.replace(served_region, data_dir=settings.data_dir, dsn=dsn)


@pytest.fixture(scope="session")
def front_end_server(
    front_end_region: ServedRegion, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`glacierflow serve` over the served region with mosaics (`front_end_region`), with the
    built front ends; its URL."""
    from glacierflow.services.dashboard import missing_builds

    missing = missing_builds()
    assert not missing, (
        f"the front ends in {', '.join(missing)} are not built: ./run test builds them (or "
        "npm --prefix FOLDER ci && npm --prefix FOLDER run build)"
    )
    log = tmp_path_factory.mktemp("front-end-serve") / "serve.log"
    with glacierflow_serve(front_end_region, log=log) as process:
        yield process.url


@pytest.fixture(scope="module")
def chromium() -> Iterator:  # -> playwright.sync_api.Browser
    """Debian's chromium, headless, under Playwright, for one test module: Playwright's
    sync API keeps an asyncio loop running in this thread while it is open, which would
    break later tests that run their own (asyncio.run)."""
    with chromium_browser() as browser:
        yield browser


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests keep their screenshots (under pytest's basetemp)."""
    return tmp_path_factory.mktemp("screenshots", numbered=False)
