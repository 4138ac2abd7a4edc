"""/timeseries and /profile on the real stack: cubes found through pgstac, read from the
living store, answered as json, csv (the itslive client's columns) and netcdf; the itslive
client's get_time_series against our /stac; bad queries get 4xx with a message."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
import xarray as xr
from conftest import make_cube_granules, serving
from pyproj import Transformer

from glacierflow.catalog.loader import init_catalog, load_cubes
from glacierflow.processing.cubes.ingest import ingest
from glacierflow.processing.cubes.layers import read_granule
from glacierflow.processing.cubes.store import cube_names
from glacierflow.services import timeseries
from glacierflow.services.app import create_app
from glacierflow.settings import Settings

ITSLIVE_CSV = (
    "mid_date,lat,lon,v [m/yr],v_error [m/yr],vx [m/yr],vx_error [m/yr],vy [m/yr],"
    "vy_error [m/yr],date_dt [days],mission,satellite,epsg"
)


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def served(granule_files, new_catalog, tmp_path_factory):
    """A catalog with one cube of 10 Landsat-8 and 4 Sentinel-2A layers, served."""
    folder = tmp_path_factory.mktemp("ts")
    template = granule_files["july"]
    files = make_cube_granules(template, folder / "l8", 10)
    files += make_cube_granules(template, folder / "s2", 4, first=10, satellite="2A")
    store = folder / "cubes"
    ingest(files, store, progress=quiet)
    settings = Settings(data_dir=folder, collection_ids={"cubes": "itslive-cubes"})
    dsn = new_catalog("timeseries")
    init_catalog(dsn, settings.collection_ids)
    load_cubes(dsn, [store / n for n in cube_names(store)], "itslive-cubes")
    granule = read_granule(template)
    rows, cols = np.nonzero(granule.valid)
    x, y = granule.x[cols[0]], granule.y[rows[0]]
    lon, lat = Transformer.from_crs(3413, 4326, always_xy=True).transform(x + 20, y - 15)
    with serving(create_app(settings, dsn)) as url, httpx.Client(base_url=url, timeout=60) as http:
        yield {
            "http": http,
            "url": url,
            "lon": lon,
            "lat": lat,
            "x": x,
            "y": y,
            "store": store,
            "template": template,
            "folder": folder,
            "dsn": dsn,
        }


def test_a_point_series_names_its_cube_and_pixel_and_holds_the_truth(served) -> None:
    answer = served["http"].get("/timeseries", params={"lon": served["lon"], "lat": served["lat"]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["cube"]["name"] == "ITS_LIVE_vel_EPSG3413_G0120_X-150000_Y-2250000.zarr"
    point = body["returned_point"]
    assert (point["x"], point["y"]) == (served["x"], served["y"])
    assert point["offset_m"] == pytest.approx(25.0, abs=0.01)  # hypot(20, 15)
    assert point["epsg"] == 3413
    series = body["time_series"]
    assert body["count"] == 14
    assert series["vx"] == [100.0 + 10 * k for k in range(14)]
    assert {type(v) for v in series["vx"]} == {int}  # whole m/yr, written as integers
    assert set(series["vy"]) == {-50.0}
    assert series["date_dt"] == [16.0] * 14
    assert series["mid_date"] == sorted(series["mid_date"])
    assert body["units"]["v"] == "meter/year"


def test_filters_select_layers(served) -> None:
    http, lon, lat = served["http"], served["lon"], served["lat"]

    def count(**params) -> int:
        answer = http.get("/timeseries", params={"lon": lon, "lat": lat, **params})
        assert answer.status_code == 200, answer.text
        return answer.json()["count"]

    assert count(sensors="S2A") == 4
    assert count(sensors="L8,S2A") == 14
    assert count(missions="L") == 10
    assert count(start="2023-03-01", end="2023-04-30") == 5  # centres every 12 days
    assert count(min_dt=17) == 0 and count(max_dt=16) == 14
    assert count(max_error=0) <= 14
    only = http.get("/timeseries", params={"lon": lon, "lat": lat, "variables": "v,date_dt"})
    assert set(only.json()["time_series"]) == {"mid_date", "v", "date_dt"}


def test_csv_has_the_itslive_client_columns_and_netcdf_opens_in_xarray(
    served, tmp_path: Path
) -> None:
    http, lon, lat = served["http"], served["lon"], served["lat"]
    text = http.get("/timeseries", params={"lon": lon, "lat": lat, "format": "csv"}).text
    lines = text.splitlines()
    assert lines[0] == ITSLIVE_CSV
    assert len(lines) == 15
    first = lines[1].split(",")
    assert first[5] == "100.0" and first[10] == "L" and first[11] == "8" and first[12] == "3413"
    assert first[9] == "16"
    assert (first[1], first[2]) == (f"{lat:.4f}", f"{lon:.4f}")
    data = http.get("/timeseries", params={"lon": lon, "lat": lat, "format": "netcdf"}).content
    (tmp_path / "series.nc").write_bytes(data)
    with xr.open_dataset(tmp_path / "series.nc") as ds:
        assert ds.sizes["mid_date"] == 14
        np.testing.assert_array_equal(ds["vx"].values[0], 100 + 10 * np.arange(14))


def test_several_points_by_post(served) -> None:
    http, lon, lat = served["http"], served["lon"], served["lat"]
    answer = http.post("/timeseries", json={"points": [[lon, lat], [lon, lat]], "variables": ["v"]})
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert len(results) == 2 and all(r["count"] == 14 for r in results)
    csv = http.post(
        "/timeseries", json={"points": [[lon, lat], [lon, lat]], "format": "csv"}
    ).text.splitlines()
    assert csv[0] == ITSLIVE_CSV and len(csv) == 29


def test_bad_queries_get_4xx_with_a_message(served) -> None:
    http, lon, lat = served["http"], served["lon"], served["lat"]
    outside = http.get("/timeseries", params={"lon": 10.0, "lat": 45.0})
    assert outside.status_code == 404 and "no cube covers" in outside.json()["detail"]
    for params, words in [
        ({"lon": 200, "lat": lat}, "less than or equal to 180"),
        ({"lon": lon, "lat": -91}, "greater than or equal to -90"),
        ({"lon": lon, "lat": lat, "start": "2024-01-01", "end": "2023-01-01"}, "after end"),
        ({"lon": lon, "lat": lat, "variables": "v,speed"}, "unknown variable(s) speed"),
        ({"lon": lon, "lat": lat, "start": "yesterday"}, "datetime"),
        ({"lon": lon, "lat": lat, "format": "xlsx"}, "json"),
    ]:
        answer = http.get("/timeseries", params=params)
        assert answer.status_code == 422, (params, answer.text)
        assert words in answer.text, (params, answer.text)
    bad_line = http.get("/profile", params={"line": "10 60"})
    assert bad_line.status_code == 422 and "two vertices" in bad_line.text
    assert http.post("/timeseries", json={"points": []}).status_code == 422


def test_profile_is_time_by_distance(served) -> None:
    x, y = served["x"], served["y"]
    to_lonlat = Transformer.from_crs(3413, 4326, always_xy=True)
    a = to_lonlat.transform(x, y)
    b = to_lonlat.transform(x + 650, y)  # ~650 m on the ground: samples at 0, 120 .. 600
    line = f"{a[0]} {a[1]},{b[0]} {b[1]}"
    answer = served["http"].get("/profile", params={"line": line, "spacing": 120})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert len(body["distance_m"]) == 6
    assert body["distance_m"][1] == pytest.approx(120.0, abs=0.01)
    values = body["values"]["v"]
    assert len(values) == 14 and len(values[0]) == 6  # time x distance
    expected = np.hypot(100.0, 50.0)
    assert values[0][0] == pytest.approx(expected, abs=1)
    csv = served["http"].get("/profile", params={"line": line, "format": "csv"}).text
    assert csv.splitlines()[0].startswith("distance,mid_date")


def test_a_new_granule_shows_in_the_series_once_ingested(served) -> None:
    http, lon, lat = served["http"], served["lon"], served["lat"]
    new = make_cube_granules(served["template"], served["folder"] / "new", 1, first=20)
    ingest(new, served["store"], progress=quiet, consolidate_after=99)
    body = http.get("/timeseries", params={"lon": lon, "lat": lat}).json()
    assert body["count"] == 15 and body["time_series"]["vx"][-1] == 300.0


def test_the_itslive_client_reads_our_cubes(served, monkeypatch, tmp_path: Path) -> None:
    from itslive.velocity_cubes import _cubes

    monkeypatch.setattr(_cubes, "STAC_CATALOG_URL", served["url"] + "/stac")
    _cubes._open_cached_dataset.cache_clear()
    results = _cubes.get_time_series([(served["lon"], served["lat"])], ["v"])
    assert len(results) == 1
    series = results[0]["time_series"]
    assert series.attrs["projection"] == "3413"
    assert float(results[0]["returned_point_offset_from_requested_in_projection_meters"]) == (
        pytest.approx(25.0, abs=0.01)
    )
    assert list(series["vx"].values[:3]) == [100.0, 110.0, 120.0]
    _cubes.export_csv([(served["lon"], served["lat"])], ["v"], outdir=str(tmp_path))
    (exported,) = tmp_path.glob("*.csv")
    # the same columns as ours and ITS_LIVE's exports (this client version writes lon first)
    header = exported.read_text().splitlines()[0]
    assert sorted(header.split(",")) == sorted(ITSLIVE_CSV.split(","))


def test_the_cube_item_describes_the_cube_as_it_is_now(served) -> None:
    from pystac_client import Client

    items = list(Client.open(served["url"] + "/stac").search(collections=["itslive-cubes"]).items())
    assert len(items) == 1
    item = items[0]
    assert item.properties["proj:code"] == "EPSG:3413"
    assert item.properties["cube:dimensions"]["mid_date"]["type"] == "temporal"
    assert {"v", "vx", "vy", "v_error", "date_dt"} <= set(item.properties["cube:variables"])
    assert item.properties["layer_count"] >= 14
    assert item.assets["data"].href.endswith(".zarr") and "data" in item.assets["data"].roles
    assert xr.open_zarr(item.assets["data"].href).sizes["mid_date"] >= 14


@pytest.mark.parametrize("encoding", ["br", "gzip", "identity"])
def test_answers_are_compressed_as_the_client_accepts(served, encoding: str) -> None:
    params = {"lon": served["lon"], "lat": served["lat"]}
    plain = served["http"].get("/timeseries", params=params, headers={"accept-encoding": ""})
    answer = served["http"].get("/timeseries", params=params, headers={"accept-encoding": encoding})
    assert answer.headers.get("content-encoding", "identity") == encoding
    assert answer.json() == plain.json() and plain.json()["count"] >= 14


def test_json_columns_whole_numbers_as_integers_empty_as_null_fractions_kept() -> None:
    def written(values: list[float]) -> bytes:
        column = timeseries._column(np.array(values, np.float32))
        return orjson.dumps(column, option=orjson.OPT_SERIALIZE_NUMPY)

    assert written([1.0, -2.0]) == b"[1,-2]"
    assert written([3.0, np.nan]) == b"[3,null]"
    assert written([1.25, np.nan]) == b"[1.25,null]"
