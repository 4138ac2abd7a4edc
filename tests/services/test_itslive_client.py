"""The `itslive` client (0.7.4, as published) against `glacierflow serve` as a real process.

Its `get_time_series` searches a catalog URL fixed in the module that defines it
(`itslive.velocity_cubes._cubes.STAC_CATALOG_URL`; the `itslive.velocity_cubes.STAC_CATALOG_URL`
it re-exports is a copy that its search never reads) for collection `itslive-cubes`, and
opens the cube URL after turning `http://` into `https://`. So a user sets that catalog URL,
and on the server `GLACIERFLOW_COLLECTION_IDS` names the cube collection `itslive-cubes`
(on a catalog that has items, the rename moves them) and, without TLS in front of the
server, `GLACIERFLOW_PUBLIC_DATA_URL` gives `file://` URLs for clients on the same machine.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import ServedRegion, glacierflow_serve, measured_pixel

from glacierflow.catalog.loader import init_catalog, load_cubes, load_granules
from glacierflow.settings import Settings

ITSLIVE_CSV = (
    "mid_date,lat,lon,v [m/yr],v_error [m/yr],vx [m/yr],vx_error [m/yr],vy [m/yr],"
    "vy_error [m/yr],date_dt [days],mission,satellite,epsg"
)
GREENLAND = [-75.0, 58.0, -10.0, 84.0]


@pytest.fixture(scope="module")
def served(served_region: ServedRegion, new_catalog, tmp_path_factory: pytest.TempPathFactory):
    """The served region's cube and granules in a catalog of its own under the default ids,
    then `glacierflow serve` started with the cube collection renamed to `itslive-cubes`:
    the server's start moves the cube item, as on an existing data directory."""
    settings = Settings(data_dir=served_region.data_dir)
    dsn = new_catalog("itslive_client")
    init_catalog(dsn, {})
    cubes = sorted(settings.cube_store.glob("*.zarr"))
    load_cubes(dsn, cubes, "cubes", settings.data_href)
    granules = sorted((settings.data_dir / "granules").glob("*.nc"))
    assert not load_granules(dsn, granules, "granules", settings.data_href).rejected
    region = dataclasses.replace(served_region, dsn=dsn)
    env = {
        "GLACIERFLOW_COLLECTION_IDS": json.dumps({"cubes": "itslive-cubes"}),
        "GLACIERFLOW_PUBLIC_DATA_URL": settings.data_dir.resolve().as_uri(),
    }
    log = tmp_path_factory.mktemp("itslive-serve") / "serve.log"
    with glacierflow_serve(region, log, env=env) as server:
        july = next(g for g in granules if g.name.startswith("july"))
        yield server.url, _measured_point(july), granules


def _measured_point(granule: Path) -> tuple[float, float]:
    """(lon, lat) 20 m east and 15 m south of a pixel centre that the region's cube layers
    (all made from the july granule's valid-data mask) measured."""
    from pyproj import Transformer

    x, y = measured_pixel(granule)
    return Transformer.from_crs(3413, 4326, always_xy=True).transform(x + 20, y - 15)


def test_get_time_series_reads_the_cube_with_only_the_catalog_url_set(
    served, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from itslive.velocity_cubes import _cubes

    url, (lon, lat), _ = served
    monkeypatch.setattr(_cubes, "STAC_CATALOG_URL", f"{url}/stac")  # the one client setting
    _cubes._open_cached_dataset.cache_clear()  # no cube opened by another test
    (result,) = _cubes.get_time_series([(lon, lat)], ["v"])
    series = result["time_series"]
    assert series.attrs["projection"] == "3413"
    offset = result["returned_point_offset_from_requested_in_projection_meters"]
    assert float(offset) == pytest.approx(25.0, abs=0.01)  # hypot(20, 15)
    # the region's cube: layer k has vx = 100 + 10 k m/yr (Landsat 8 first, then Sentinel-2A)
    vx = series["vx"].values
    assert len(vx) >= 8 and list(vx[:3]) == [100.0, 110.0, 120.0]
    assert np.all(series["vy"].values == -50.0)
    assert set(series["mission_img1"].values[:8]) == {"L"}
    assert series["v"].values[0] == pytest.approx(np.hypot(100.0, 50.0), abs=1)

    _cubes.export_csv([(lon, lat)], ["v"], outdir=str(tmp_path))
    (exported,) = tmp_path.glob("*.csv")
    lines = exported.read_text().splitlines()
    # ITS_LIVE's columns (this client version writes lon first), one row per layer
    assert sorted(lines[0].split(",")) == sorted(ITSLIVE_CSV.split(","))
    assert len(lines) - 1 == len(vx)


@pytest.fixture(scope="module")
def served_default_ids(served_region: ServedRegion, tmp_path_factory: pytest.TempPathFactory):
    """`glacierflow serve` over the served region with the default collection ids."""
    settings = Settings(data_dir=served_region.data_dir)
    env = {"GLACIERFLOW_PUBLIC_DATA_URL": settings.data_dir.resolve().as_uri()}
    log = tmp_path_factory.mktemp("itslive-serve-default") / "serve.log"
    with glacierflow_serve(served_region, log, env=env) as server:
        yield server.url


def test_get_time_series_with_the_clients_two_settings_and_no_server_rename(
    served_default_ids: str, served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other way: the server keeps its `cubes` collection, and the client is given
    both of its settings, the catalog URL and the collection."""
    from itslive.velocity_cubes import _cubes

    _, (lon, lat), _ = served
    monkeypatch.setattr(_cubes, "STAC_CATALOG_URL", f"{served_default_ids}/stac")
    monkeypatch.setattr(_cubes, "STAC_COLLECTION", "cubes")
    _cubes._open_cached_dataset.cache_clear()
    (result,) = _cubes.get_time_series([(lon, lat)], ["v"])
    vx = result["time_series"]["vx"].values
    assert len(vx) >= 8 and list(vx[:3]) == [100.0, 110.0, 120.0]


def test_the_itslive_mission_filter_finds_our_landsat_8_granules(served) -> None:
    """`mission="landsat8"` becomes a filter on ITS_LIVE's platform names (LC08, LO08);
    our synthetic scenes imitate Landsat 8 OLI, the real sample is Landsat 5 (LT05)."""
    import itslive

    url, _, granules = served
    common = {
        "type": "pgstac",
        "base_catalog_href": f"{url}/stac",
        "collection": "granules",
        "bbox": GREENLAND,
        "start": "2023-01-01",
        "end": "2024-12-31",
    }
    landsat8 = itslive.search(**common, mission="landsat8")
    ours = {g.name for g in granules if not g.name.startswith("LT05")}
    assert ours and {u.rsplit("/", 1)[-1] for u in landsat8} == ours
    assert all(u.startswith("file:///") for u in landsat8)  # GLACIERFLOW_PUBLIC_DATA_URL
    assert itslive.search(**common, mission="sentinel2") == []


def test_the_renamed_collection_holds_the_cube(served, served_region: ServedRegion) -> None:
    import httpx

    url = served[0]
    found = httpx.get(f"{url}/stac/collections/itslive-cubes/items").json()["features"]
    assert [item["id"] for item in found] == [served_region.cube_item]
    assert httpx.get(f"{url}/stac/collections/cubes").status_code == 404
