"""/timeseries and /profile on the real stack: cubes found through pgstac, read from the
living store, answered as json, csv (the itslive client's columns) and netcdf; bad queries
get 4xx with a message. The itslive client itself: test_itslive_client.py."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
import xarray as xr
from conftest import make_cube_granules, measured_pixel, serving
from pyproj import Transformer

from glacierflow.catalog.loader import init_catalog, load_cubes
from glacierflow.processing.cubes.ingest import ingest
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
    load_cubes(dsn, [store / n for n in cube_names(store)], "itslive-cubes", settings.data_href)
    x, y = measured_pixel(template)
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
    for point in ([lon, False], [True, lat], ["1", lat]):  # JSON booleans are no coordinates
        refused = http.post("/timeseries", json={"points": [point]})
        assert refused.status_code == 422, refused.text


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
    # the filters are query parameters, as on /timeseries
    for filters, rows in (({"sensors": "S2A"}, 4), ({"missions": "L"}, 10)):
        only = served["http"].get("/profile", params={"line": line, **filters})
        assert only.status_code == 200, only.text
        assert len(only.json()["values"]["v"]) == rows


def test_a_new_granule_shows_in_the_series_once_ingested(served) -> None:
    http, lon, lat = served["http"], served["lon"], served["lat"]
    new = make_cube_granules(served["template"], served["folder"] / "new", 1, first=20)
    ingest(new, served["store"], progress=quiet, consolidate_after=99)
    body = http.get("/timeseries", params={"lon": lon, "lat": lat}).json()
    assert body["count"] == 15 and body["time_series"]["vx"][-1] == 300.0


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
    assert item.assets["data"].href == f"{served['url']}/data/cubes/{TILE}"
    metadata = httpx.get(item.assets["data"].href + "/zarr.json").json()  # xarray: see below
    assert metadata["consolidated_metadata"]["metadata"]["vx"]["shape"][0] >= 14


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


TILE = "ITS_LIVE_vel_EPSG3413_G0120_X-150000_Y-2250000.zarr"
NO_CUBE = {"lon": -40.0, "lat": 72.0}  # another tile of EPSG:3413, where no cube is


def _point(served) -> dict[str, float]:
    return {"lon": served["lon"], "lat": served["lat"]}


def _line(served) -> str:
    to_lonlat = Transformer.from_crs(3413, 4326, always_xy=True)
    a = to_lonlat.transform(served["x"], served["y"])
    b = to_lonlat.transform(served["x"] + 250, served["y"])
    return f"{a[0]} {a[1]},{b[0]} {b[1]}"


def test_answers_carry_urls_never_server_paths(served) -> None:
    http, url, folder = served["http"], served["url"], served["folder"]
    body = http.get("/timeseries", params={**_point(served), "variables": "v,granule_url"}).json()
    assert body["cube"]["href"] == f"{url}/data/cubes/{TILE}"
    granules = body["time_series"]["granule_url"]
    assert len(granules) >= 14 and all(u.startswith(f"{url}/data/l8/") for u in granules[:10])
    assert http.get(granules[0]).content[:4] == b"\x89HDF"  # the granule itself
    for answer in [
        http.get(
            "/timeseries", params={**_point(served), "variables": "v,granule_url", "format": f}
        )
        for f in ("json", "csv", "netcdf")
    ] + [
        http.post(
            "/timeseries",
            json={"points": [list(_point(served).values())], "variables": ["granule_url"]},
        ),
        http.get("/profile", params={"line": _line(served), "variables": "v,granule_url"}),
    ]:
        assert answer.status_code == 200, answer.text
        assert str(folder).encode() not in answer.content
        assert str(folder.resolve()).encode() not in answer.content


def test_the_cube_opens_over_http_from_its_answer_href(served) -> None:
    """xarray (zarr over fsspec's HTTP) reads the cube from the URL /timeseries gives, in a
    process of its own (zarr and a server in one process can stall each other), in dask
    chunks of 50 x 50 pixels with default arguments (a full tile: 17 x 17)."""
    import subprocess
    import sys

    href = served["http"].get("/timeseries", params=_point(served)).json()["cube"]["href"]
    script = (
        "import sys, xarray as xr\n"
        "ds = xr.open_zarr(sys.argv[1])\n"
        "v = ds['vx'].sel(x=float(sys.argv[2]), y=float(sys.argv[3])).values\n"
        "blocks = 'x'.join(map(str, ds['vx'].data.numblocks))\n"
        "print(ds.sizes['mid_date'], ds.attrs['url'], blocks, sorted(v[v == v].tolist())[:3])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, href, str(served["x"]), str(served["y"])],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    layers, name, blocks, first = done.stdout.split(maxsplit=3)
    assert int(layers) >= 14 and blocks == "1x17x17"
    assert name == TILE  # no server path inside the cube either
    assert first.strip() == "[100.0, 110.0, 120.0]"


def test_cube_hrefs_outside_the_configured_store_are_refused(
    served, new_catalog, tmp_path: Path, caplog
) -> None:
    """Hostile cube items in the real catalog: a copy of the cube elsewhere, reached by an
    absolute path, a relative path climbing out, a folder of the data directory that is not
    the store, a URL; none is read."""
    import shutil

    from glacierflow.catalog.items import cube_item
    from glacierflow.catalog.loader import load_items

    folder = served["folder"]
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(served["store"], elsewhere, symlinks=True)
    shutil.copytree(served["store"], folder / "not-a-store", symlinks=True)
    dsn = new_catalog("hostile_cubes")
    init_catalog(dsn, {"cubes": "itslive-cubes"})
    item = cube_item(elsewhere / TILE, "itslive-cubes").to_dict(include_self_link=False)
    hrefs = [
        str(elsewhere / TILE),
        os.path.relpath(elsewhere / TILE, folder),
        f"cubes/../not-a-store/{TILE}",
        f"not-a-store/{TILE}",
        f"https://example.org/{TILE}",
        "/etc/passwd",
    ]
    load_items(
        dsn,
        [
            {
                **item,
                "id": f"hostile-{n}",
                "assets": {"data": {**item["assets"]["data"], "href": h}},
            }
            for n, h in enumerate(hrefs)
        ],
    )
    settings = Settings(data_dir=folder, collection_ids={"cubes": "itslive-cubes"})
    with serving(create_app(settings, dsn)) as url, httpx.Client(base_url=url, timeout=60) as http:
        answer = http.get("/timeseries", params=_point(served))
        assert answer.status_code == 404, answer.text
        assert http.get("/profile", params={"line": _line(served)}).status_code == 404
        points = {"points": [list(_point(served).values())]}
        assert http.post("/timeseries", json=points).status_code == 404
        found = http.get("/stac/collections/itslive-cubes/items").json()["features"]
    assert "refused a cube href outside the configured stores" in caplog.text
    # the STAC API shows the URL and leaves the local paths it does not serve out
    shown = {f["id"]: f["assets"].get("data", {}).get("href") for f in found}
    assert shown["hostile-4"] == f"https://example.org/{TILE}"
    assert shown["hostile-3"] == f"{url}/data/not-a-store/{TILE}"  # a data file, not a store
    assert shown["hostile-0"] is None and shown["hostile-1"] is None and shown["hostile-5"] is None


@pytest.mark.parametrize("route", ["GET /timeseries", "POST /timeseries", "GET /profile"])
def test_time_zones_are_moved_to_utc_and_may_be_mixed(served, route: str) -> None:
    """The first layer's mid_date is 2023-01-13T12:00 UTC; offsets put bounds around it."""
    http = served["http"]

    def count(**dates: str) -> int:
        method, path = route.split()
        if method == "POST":
            answer = http.post(path, json={"points": [list(_point(served).values())], **dates})
            assert answer.status_code == 200, answer.text
            return answer.json()["results"][0]["count"]
        params = (
            {**_point(served), **dates}
            if path == "/timeseries"
            else {"line": _line(served), **dates}
        )
        answer = http.get(path, params=params)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        return body["count"] if path == "/timeseries" else len(body["mid_date"])

    first_two = {"end": "2023-01-25T12:00:00Z"}
    assert count(**first_two) == 2
    assert count(start="2023-01-13T15:00:00+05:00", **first_two) == 2  # 10:00 UTC
    assert count(start="2023-01-13T13:00:00+00:00", **first_two) == 1
    assert count(start="2023-01-01", end="2023-01-13T09:00:00-05:00") == 1  # 14:00 UTC
    assert count(start="2023-01-01T00:00:00+01:00", end="2023-01-25T12:00:00") == 2  # mixed
    assert count(start="2023-01-01", end="2023-01-25T13:00:00+01:00") == 2


BAD_NUMBERS = {
    "lon": ["nan", "inf", "-inf", "181", "1e999", "east"],
    "lat": ["nan", "inf", "-inf", "-91", "1e999", "north"],
    "spacing": ["nan", "inf", "-inf", "0", "-120", "1e999", "wide"],
    "min_dt": ["nan", "inf", "-inf", "-1", "1e999", "x"],
    "max_dt": ["nan", "inf", "-inf", "-1", "1e999", "x"],
    "max_error": ["nan", "inf", "-inf", "-1", "1e999", "x"],
}
BAD_DATES = ["yesterday", "2023-13-01", "9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+05:00"]


def _bad_queries(served) -> list[tuple[str, str, dict | str]]:
    """(route, parameter, request) for every bad value of every parameter of every route;
    POST requests as JSON text (Python's json writes no 1e999)."""
    cases: list[tuple[str, str, dict | str]] = []
    point, line = _point(served), {"line": _line(served)}
    lonlat = f"[[{point['lon']}, {point['lat']}]]"

    def body(member: str) -> str:
        return '{"points": ' + lonlat + ", " + member + "}"

    for name, values in BAD_NUMBERS.items():
        for value in values:
            if name != "spacing":
                cases.append(("GET /timeseries", name, {**point, name: value}))
            if name not in ("lon", "lat"):
                cases.append(("GET /profile", name, {**line, name: value}))
            if name not in ("lon", "lat", "spacing"):
                cases.append(("POST /timeseries", name, body(f'"{name}": "{value}"')))
                if value.lstrip("-")[:1].isdigit():  # and as a JSON number
                    cases.append(("POST /timeseries", name, body(f'"{name}": {value}')))
    for name in ("start", "end"):
        for value in BAD_DATES:
            cases.append(("GET /timeseries", name, {**point, name: value}))
            cases.append(("GET /profile", name, {**line, name: value}))
            cases.append(("POST /timeseries", name, body(f'"{name}": "{value}"')))
    for value in ['"nan", 60', '10, "inf"', "200, 60", "10, -91", "10", "10, 1e999", "-1e999, 1"]:
        cases.append(("POST /timeseries", "points", '{"points": [[' + value + "]]}"))
    for value in ["inf 60,10 60", "nan 60,10 60", "10 60", "10 60,abc", ",".join(["10 60"] * 1001)]:
        cases.append(("GET /profile", "line", {"line": value}))
    cases.append(("GET /profile", "line", {"line": "-48 69,-47 69", "spacing": "1"}))  # samples
    return cases


def test_every_bad_query_gets_4xx_naming_its_parameter(served) -> None:
    http = served["http"]
    failures = []
    for route, name, request in _bad_queries(served):
        method, path = route.split()
        if method == "POST":
            answer = http.post(path, content=request, headers={"content-type": "application/json"})
        else:
            answer = http.get(path, params=request)
        if not (400 <= answer.status_code < 500 and name in answer.text):
            failures.append((route, name, request, answer.status_code, answer.text[:200]))
    assert not failures, (len(failures), failures[:5])


def test_post_points_are_counted_before_the_body_is_parsed(served) -> None:
    http, point = served["http"], list(_point(served).values())
    many = http.post("/timeseries", json={"points": [point] * 101})
    assert many.status_code == 422 and "points: at most 100" in many.text
    # within the app's body limit (1 MiB), but far more than 100 points need: refused
    # while reading, before any of it is parsed
    large = http.post(
        "/timeseries", content=b'{"points": [' + b"[10.0, 60.0]," * 50_000 + b"[10, 60]]}"
    )
    assert large.status_code == 413 and "100 points" in large.text
    huge = http.post(  # over the app's body limit: refused by it, unread
        "/timeseries", content=b'{"points": [' + b"[10.0, 60.0]," * 2_000_000 + b"[10, 60]]}"
    )
    assert huge.status_code == 413 and "ContentTooLarge" in huge.text
    for body in (b"not json", b"[1, 2]", b'{"points": 5}', b""):
        answer = http.post("/timeseries", content=body)
        assert answer.status_code == 422, (body, answer.text)
    settings = Settings(
        data_dir=served["folder"],
        collection_ids={"cubes": "itslive-cubes"},
        timeseries_max_points=2,
    )
    with serving(create_app(settings, served["dsn"])) as url:
        few = httpx.post(f"{url}/timeseries", json={"points": [point] * 3}, timeout=60)
        assert few.status_code == 422 and "at most 2" in few.text
        two = httpx.post(f"{url}/timeseries", json={"points": [point] * 2}, timeout=60)
        assert two.status_code == 200 and len(two.json()["results"]) == 2
    with pytest.raises(ValueError, match="timeseries_max_points"):
        Settings(timeseries_max_points=1_000_000)


def test_the_post_body_schema_is_in_the_openapi_document(served) -> None:
    schema = served["http"].get("/openapi.json").json()
    body = schema["paths"]["/timeseries"]["post"]["requestBody"]["content"]["application/json"]
    assert {"points", "start", "format"} <= set(body["schema"]["properties"])


def test_database_faults_answer_503_at_once_known_cubes_keep_answering_all_recover(
    served, own_cluster
) -> None:
    """The catalog database stopped, then frozen (SIGSTOP): points whose cube is known keep
    their series, other points get 503 within the client's 10 s (no hang, no 500), and
    everything works again by itself once the database is back."""
    import signal
    import time

    from conftest import postmaster_pid

    dsn, _ = own_cluster.start()
    ids = {"cubes": "itslive-cubes"}
    init_catalog(dsn, ids)
    settings = Settings(data_dir=served["folder"], collection_ids=ids)
    load_cubes(dsn, [served["store"] / TILE], "itslive-cubes", settings.data_href)
    point, line = _point(served), {"line": _line(served)}
    remembered_s = timeseries.DB_RETRY_AFTER_S + 0.5  # the lookups' memory and the pause

    def until(check, what: str) -> None:
        deadline = time.monotonic() + 30
        while not check():
            assert time.monotonic() < deadline, what
            time.sleep(0.5)

    def answers(http: httpx.Client) -> None:
        """Known cubes answer, unknown points get 503 with Retry-After."""
        assert http.get("/timeseries", params=point).json()["count"] >= 14
        assert len(http.get("/profile", params=line).json()["distance_m"]) == 3
        posted = http.post("/timeseries", json={"points": [list(point.values())]})
        assert posted.status_code == 200, posted.text
        for unknown in (
            http.get("/timeseries", params=NO_CUBE),
            http.post("/timeseries", json={"points": [list(NO_CUBE.values())]}),
            http.get("/profile", params={"line": "-40 72,-40 72.001"}),
        ):
            assert unknown.status_code == 503, unknown.text
            assert unknown.headers["retry-after"] and "unavailable" in unknown.text
            assert "127.0.0.1" not in unknown.text and "postgres" not in unknown.text

    with serving(create_app(settings, dsn)) as url, httpx.Client(base_url=url, timeout=10) as http:
        assert http.get("/timeseries", params=point).status_code == 200
        assert http.get("/profile", params=line).status_code == 200
        assert http.get("/timeseries", params=NO_CUBE).status_code == 404
        own_cluster.stop()
        time.sleep(remembered_s)  # what was looked up must be looked up again
        answers(http)
        own_cluster.start()  # on the same port
        until(lambda: http.get("/timeseries", params=NO_CUBE).status_code == 404, "recovery")
        pid = postmaster_pid(own_cluster)
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(remembered_s)
            answers(http)
        finally:
            os.kill(pid, signal.SIGCONT)
        until(lambda: http.get("/timeseries", params=NO_CUBE).status_code == 404, "thawed")
