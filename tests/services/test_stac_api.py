"""The STAC API as users meet it: the composed app served by uvicorn on a loopback port,
over the session's private PostgreSQL with the granule files loaded, queried with
pystac-client and plain httpx. Bad requests must get a 4xx that names the problem.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import psycopg
import pytest
from conftest import child_processes, let_postgres_traverse, serving, serving_process
from pystac_client import Client

from glacierflow.catalog.database import EmbeddedCluster
from glacierflow.catalog.items import granule_item
from glacierflow.catalog.loader import init_catalog, load_granules
from glacierflow.services.app import create_app
from glacierflow.services.stac import create_stac_app, postgres_settings
from glacierflow.settings import Settings, SettingsError

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/postgres"
COLLECTIONS = {"scenes", "granules", "cubes", "mosaics"}
GREENLAND = [-49.6, 69.0, -49.4, 69.2]  # around the july and august granules
JULY_2024 = "2024-07-01T00:00:00Z/2024-07-31T23:59:59Z"
API_KEY = "glacierflow-test-key-7f3a"


def _settings(tmp_path_factory: pytest.TempPathFactory, **options) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("serve"), **options)


def _ids(features) -> set[str]:
    return {f["id"] if isinstance(f, dict) else f.id for f in features}


@pytest.fixture(scope="module")
def ids(granule_files: dict[str, Path]) -> dict[str, str]:
    """Item id by granule name."""
    return {name: path.stem for name, path in granule_files.items()}


@pytest.fixture(scope="module")
def base(pgstac_dsn: str, granule_files: dict[str, Path]) -> Iterator[str]:
    """The app (no transactions) over the session catalog holding exactly the granule files."""
    report = load_granules(pgstac_dsn, list(granule_files.values()), "granules", keep_empty=True)
    assert report.rejected == {}
    with psycopg.connect(pgstac_dsn) as conn:
        (count,) = conn.execute("SELECT count(*) FROM pgstac.items").fetchone()
    assert count == len(granule_files), "the session catalog holds other items"
    # the granules' folder is the data directory: their assets are served under /data
    settings = Settings(data_dir=granule_files["july"].parents[1])
    with serving(create_app(settings, pgstac_dsn)) as url:
        yield url


@pytest.fixture(scope="module")
def client(base: str) -> Client:
    return Client.open(f"{base}/stac")


@pytest.fixture
def http(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=30) as session:
        yield session


# -- service endpoints ------------------------------------------------------------------------


def test_healthz_reports_the_database_up(http: httpx.Client) -> None:
    response = http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "up", "database": {"status": "up", "pgstac": "0.10.0"}}


def test_ping_docs_and_openapi(http: httpx.Client) -> None:
    ping = http.get("/stac/_mgmt/ping")
    assert (ping.status_code, ping.json()) == (200, {"message": "PONG"})
    docs = http.get("/docs")
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"] and "swagger" in docs.text.lower()
    openapi = http.get("/openapi.json")
    assert openapi.status_code == 200
    paths = openapi.json()["paths"]
    assert "/stac/search" in paths and "/healthz" in paths


def test_landing_page_and_conformance(client: Client) -> None:
    assert client.title == "glacierflow"
    assert "Glacier velocity" in client.description
    assert client.conforms_to("ITEM_SEARCH")
    assert client.conforms_to("FILTER")
    assert client.conforms_to("FIELDS")
    # pystac-client 0.9's SORT pattern knows v1.0.0 only: both versions are listed
    assert client.conforms_to("SORT")
    conformance = client.to_dict()["conformsTo"]
    assert "https://api.stacspec.org/v1.1.0/item-search#sort" in conformance
    assert "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json" in conformance


def test_landing_page_id_is_glacierflow(http: httpx.Client) -> None:
    assert http.get("/stac/").json()["id"] == "glacierflow"


# -- collections and search -------------------------------------------------------------------


def test_the_four_collections_are_listed(client: Client, ids: dict[str, str]) -> None:
    assert {c.id for c in client.get_collections()} == COLLECTIONS
    granules = client.get_collection("granules")
    assert set(granules.extra_fields["item_assets"]) == {"data", "thumbnail"}
    # the extent was recomputed from the loaded items: not the whole-world placeholder
    assert granules.extent.spatial.bboxes[0] != [-180.0, -90.0, 180.0, 90.0]
    assert {i.id for i in granules.get_items()} == set(ids.values())


def test_search_by_bbox(client: Client, ids: dict[str, str]) -> None:
    found = client.search(bbox=GREENLAND, collections=["granules"]).item_collection()
    assert _ids(found) == {ids["july"], ids["august"]}


def test_search_by_bbox_and_datetime(client: Client, ids: dict[str, str]) -> None:
    found = client.search(bbox=GREENLAND, datetime=JULY_2024).item_collection()
    assert _ids(found) == {ids["july"]}
    # an item matches by its acquisition range, not only by its centre date
    found = client.search(datetime="2024-07-16T00:00:00Z/2024-08-05T00:00:00Z").item_collection()
    assert _ids(found) == {ids["july"], ids["august"]}
    found = client.search(datetime="2023-01-01T00:00:00Z/2023-12-31T23:59:59Z").item_collection()
    assert _ids(found) == {ids["east"]}
    found = client.search(datetime="../1990-01-01T00:00:00Z").item_collection()
    assert _ids(found) == {ids["itslive"]}


def test_search_in_antarctica_finds_the_itslive_sample(
    client: Client, ids: dict[str, str], itslive_granule: Path
) -> None:
    west, south, east, north = granule_item(itslive_granule).bbox
    found = client.search(bbox=[west, south, east, north]).item_collection()
    assert _ids(found) == {ids["itslive"]}
    assert _ids(client.search(bbox=[0, -80, 10, -70]).item_collection()) == set()


def test_cql2_json_filter(client: Client, ids: dict[str, str]) -> None:
    def found(expression: dict) -> set[str]:
        return _ids(client.search(filter=expression, filter_lang="cql2-json").item_collection())

    prop = {"property": "percent_valid_pixels"}
    date_dt = {"property": "date_dt"}
    assert found({"op": ">=", "args": [prop, 90]}) == {ids["august"], ids["east"]}
    assert found(
        {"op": "and", "args": [{"op": "<", "args": [prop, 90]}, {"op": "=", "args": [date_dt, 16]}]}
    ) == {ids["july"]}
    assert found({"op": ">", "args": [date_dt, 30]}) == {ids["itslive"]}
    assert found({"op": "=", "args": [prop, 0]}) == {ids["itslive"]}


def test_cql2_text_filter(http: httpx.Client, ids: dict[str, str]) -> None:
    response = http.get(
        "/stac/search",
        params={"filter": "percent_valid_pixels < 90 AND date_dt = 16", "filter-lang": "cql2-text"},
    )
    assert response.status_code == 200
    assert _ids(response.json()["features"]) == {ids["july"]}


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_paging_with_limit_1_returns_every_item_once(
    client: Client, ids: dict[str, str], method: str
) -> None:
    pages = list(client.search(limit=1, method=method).pages())
    seen = [item.id for page in pages for item in page]
    assert all(len(page) == 1 for page in pages)
    assert len(seen) == len(set(seen)), f"an item came twice: {seen}"
    assert set(seen) == set(ids.values())


def test_searches_are_not_recorded_and_items_come_hydrated(
    http: httpx.Client, pgstac_dsn: str
) -> None:
    """The API reads pgstac read-only (no `pgstac.searches` row per search) and hydrates
    the items itself: what pgstac stored without (an asset's type and title, the
    collection's item_assets) is back in the answer."""
    with psycopg.connect(pgstac_dsn) as conn:
        before = conn.execute("SELECT count(*), max(lastused) FROM pgstac.searches").fetchone()
    for percent in (11, 22, 33):
        response = http.post(
            "/stac/search",
            json={"filter": {"op": ">=", "args": [{"property": "percent_valid_pixels"}, percent]}},
        )
        assert response.status_code == 200
    with psycopg.connect(pgstac_dsn) as conn:
        after = conn.execute("SELECT count(*), max(lastused) FROM pgstac.searches").fetchone()
        stored = conn.execute(
            "SELECT content->'assets'->'data' FROM pgstac.items WHERE collection = 'granules' "
            "LIMIT 1"
        ).fetchone()[0]
    assert after == before
    assert "type" not in stored  # dehydrated: the collection's item_assets carry it
    data = response.json()["features"][0]["assets"]["data"]
    assert data["type"] == "application/x-netcdf"
    assert data["title"] == "Velocity granule (NetCDF4)"
    assert data["roles"] == ["data"]


def test_fields_include_and_exclude(http: httpx.Client) -> None:
    response = http.get("/stac/search", params={"fields": "id,properties.percent_valid_pixels"})
    assert response.status_code == 200
    for feature in response.json()["features"]:
        assert set(feature["properties"]) == {"percent_valid_pixels"}
        assert "assets" not in feature and "geometry" not in feature
    response = http.post(
        "/stac/search",
        json={"fields": {"include": ["properties.date_dt"], "exclude": ["links"]}, "limit": 10},
    )
    assert response.status_code == 200
    features = response.json()["features"]
    assert len(features) == 4
    for feature in features:
        assert set(feature["properties"]) == {"date_dt"}
        assert "links" not in feature
    response = http.get("/stac/search", params={"fields": "-assets,-properties"})
    for feature in response.json()["features"]:
        assert "assets" not in feature and "properties" not in feature and "bbox" in feature


def test_sortby_datetime_get_and_post(http: httpx.Client, ids: dict[str, str]) -> None:
    response = http.get("/stac/search", params={"sortby": "-properties.datetime"})
    assert response.status_code == 200
    newest_first = [f["id"] for f in response.json()["features"]]
    assert newest_first == [ids["august"], ids["july"], ids["east"], ids["itslive"]]
    response = http.post(
        "/stac/search", json={"sortby": [{"field": "properties.datetime", "direction": "asc"}]}
    )
    assert response.status_code == 200
    assert [f["id"] for f in response.json()["features"]] == newest_first[::-1]


def test_sortby_a_number_sorts_numerically(http: httpx.Client, ids: dict[str, str]) -> None:
    response = http.post(
        "/stac/search",
        json={
            "sortby": [
                {"field": "properties.percent_valid_pixels", "direction": "asc"},
                {"field": "properties.datetime", "direction": "desc"},
            ]
        },
    )
    assert response.status_code == 200
    ordered = [f["id"] for f in response.json()["features"]]
    assert ordered == [ids["itslive"], ids["july"], ids["august"], ids["east"]]


# -- bad requests -----------------------------------------------------------------------------

BAD_REQUESTS = [
    # (method, path, query or body, expected status, words the message must contain)
    ("GET", "/stac/search", {"bbox": "1,2,3"}, 400, "must have 4 or 6 values"),
    ("GET", "/stac/search", {"bbox": "a,b,c,d"}, 400, "invalid bbox"),
    ("GET", "/stac/search", {"bbox": "10,10,5,5"}, 400, "latitude"),
    ("GET", "/stac/search", {"bbox": "-200,0,0,95"}, 400, "(-180, -90, 180, 90)"),
    ("POST", "/stac/search", {"bbox": [1, 2, 3]}, 400, "bbox"),
    ("GET", "/stac/search", {"datetime": "not-a-date"}, 400, "Invalid RFC3339 datetime"),
    ("GET", "/stac/search", {"datetime": "2024-13-01T00:00:00Z"}, 400, "month must be in 1..12"),
    (
        "GET",
        "/stac/search",
        {"datetime": "2024-08-01T00:00:00Z/2024-07-01T00:00:00Z"},
        400,
        "Start datetime",
    ),
    (
        "GET",
        "/stac/search",
        {"filter": "percent_valid_pixels >>> 3", "filter-lang": "cql2-text"},
        400,
        "Invalid filter",
    ),
    ("GET", "/stac/collections/nope", None, 404, "Collection nope does not exist"),
    ("GET", "/stac/collections/nope/items", None, 404, "Collection nope does not exist"),
    ("GET", "/stac/collections/granules/items/nope", None, 404, "nope"),
    ("GET", "/stac/search", {"limit": 0}, 400, "greater than 0"),
    ("GET", "/stac/search", {"limit": -1}, 400, "greater than 0"),
    ("GET", "/stac/search", {"limit": "ten"}, 400, "valid integer"),
    ("POST", "/stac/search", {"limit": 0}, 400, "greater than 0"),
    # bbox on every search route: counts, order (heights too), NaN and infinities
    ("GET", "/stac/search", {"bbox": "0,60,500,10,70,100"}, 400, "elevation"),
    ("GET", "/stac/collections", {"bbox": "0,60,500,10,70,100"}, 400, "elevation"),
    ("GET", "/stac/collections/granules/items", {"bbox": "0,60,500,10,70,100"}, 400, "elevation"),
    ("POST", "/stac/search", {"bbox": [0, 60, 500, 10, 70, 100]}, 400, "elevation"),
    ("GET", "/stac/collections", {"bbox": "10,10,5,5"}, 400, "latitude"),
    ("GET", "/stac/collections", {"bbox": "1,2,3"}, 400, "must have 4 or 6 values"),
    ("GET", "/stac/collections", {"bbox": "a,b,c,d"}, 400, "invalid bbox"),
    ("GET", "/stac/search", {"bbox": "nan,nan,nan,nan"}, 400, "finite"),
    ("GET", "/stac/search", {"bbox": "0,60,inf,70"}, 400, "finite"),
    ("GET", "/stac/collections", {"bbox": "nan,60,10,70"}, 400, "finite"),
    ("GET", "/stac/collections/granules/items", {"bbox": "0,-inf,10,70"}, 400, "finite"),
    ("POST", "/stac/search", b'{"bbox": [NaN, 60, 10, 70]}', 400, "finite"),
    ("POST", "/stac/search", b'{"bbox": [0, 60, Infinity, 70]}', 400, "finite"),
    ("POST", "/stac/search", b'{"bbox": [0, 60, 1e999, 70]}', 400, "finite"),
    (
        "POST",
        "/stac/search",
        b'{"limit": 1, "filter": {"op": "=", "args": [1, NaN]}}',
        400,
        "finite",
    ),
    # malformed JSON in query and intersects, on every route that takes them
    ("GET", "/stac/search", {"query": "{bad"}, 400, "not valid JSON"),
    ("GET", "/stac/collections", {"query": "{bad"}, 400, "not valid JSON"),
    ("GET", "/stac/collections/granules/items", {"query": "{bad"}, 400, "not valid JSON"),
    ("GET", "/stac/search", {"intersects": "{bad"}, 400, "not valid JSON"),
    ("GET", "/stac/search", {"filter": "{bad", "filter-lang": "cql2-json"}, 400, "Invalid filter"),
    # free-text syntax errors
    ("GET", "/stac/collections", {"q": "!"}, 400, "free-text"),
    ("GET", "/stac/collections", {"q": "ice & | sheet"}, 400, "free-text"),
    ("GET", "/stac/collections", {"q": "((ice"}, 400, "free-text"),
    # datetimes on the other routes
    ("GET", "/stac/collections", {"datetime": "not-a-date"}, 400, "Invalid RFC3339 datetime"),
    (
        "GET",
        "/stac/collections",
        {"datetime": "2024-08-01T00:00:00Z/2024-07-01T00:00:00Z"},
        400,
        "Start datetime",
    ),
    (
        "GET",
        "/stac/collections/granules/items",
        {"datetime": "2024-08-01T00:00:00Z/2024-07-01T00:00:00Z"},
        400,
        "Start datetime",
    ),
    ("GET", "/stac/search", {"datetime": "0000-01-01T00:00:00Z"}, 400, "out of range"),
    # sort, fields and paging tokens
    ("GET", "/stac/search", {"fields": ","}, 400, "`fields` has an empty entry"),
    ("GET", "/stac/collections", {"fields": "id,"}, 400, "`fields` has an empty entry"),
    ("GET", "/stac/search", {"sortby": "+"}, 400, "`sortby` has an empty entry"),
    ("GET", "/stac/search", {"token": "next:nope"}, 400, "Invalid paging token"),
    ("POST", "/stac/search", {"token": "prev:nope"}, 400, "Invalid paging token"),
    # values the catalog database cannot use, answered in our words
    ("GET", "/stac/search", {"filter": "date_dt > 'abc'"}, 400, "wrong type"),
    (
        "POST",
        "/stac/search",
        {"filter": {"op": "=", "args": [{"property": "date_dt"}, "x"]}},
        400,
        "wrong type",
    ),
    (
        "POST",
        "/stac/search",
        {
            "filter": {
                "op": "s_intersects",
                "args": [{"property": "geometry"}, {"type": "Point", "coordinates": [1]}],
            }
        },
        400,
        "geometries",
    ),
    # search bodies that are not a JSON object
    *[
        ("POST", "/stac/search", body, 400, "must be a JSON object")
        for body in (b"[null, null]", b"1.5", b"null", b'"x"', b"true")
    ],
    ("POST", "/stac/search", b"{nope", 400, "not JSON"),
]


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "words"),
    BAD_REQUESTS,
    ids=[f"{m} {p} {q}" for m, p, q, _, _ in BAD_REQUESTS],
)
def test_bad_requests_get_a_4xx_naming_the_problem(
    http: httpx.Client, method: str, path: str, payload, status: int, words: str
) -> None:
    if isinstance(payload, bytes):  # JSON that json.dumps would not write (NaN)
        kwargs = {"content": payload, "headers": {"content-type": "application/json"}}
    else:
        kwargs = {"json": payload} if method == "POST" else {"params": payload}
    response = http.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    assert words in response.text


def test_a_search_body_that_is_not_declared_json_is_a_400(http: httpx.Client) -> None:
    response = http.post(
        "/stac/search", content=b'{"limit": 1}', headers={"content-type": "text/plain"}
    )
    assert response.status_code == 400, response.text
    assert "application/json" in response.text


def test_an_unknown_collection_in_a_search_finds_nothing(http: httpx.Client) -> None:
    """STAC API item search: collections that do not exist simply match no item."""
    response = http.get("/stac/search", params={"collections": "nope"})
    assert response.status_code == 200
    assert response.json()["features"] == []


def test_a_huge_limit_is_clamped_not_refused(http: httpx.Client, ids: dict[str, str]) -> None:
    """STAC API item search: a limit above the maximum acts as the maximum, no error."""
    response = http.get("/stac/search", params={"limit": 100_000_000})
    assert response.status_code == 200
    assert _ids(response.json()["features"]) == set(ids.values())


def test_an_unknown_cql2_operator_is_a_400(base: str) -> None:
    with httpx.Client(base_url=base, timeout=30) as fresh:  # a 500 closes the connection
        response = fresh.post(
            "/stac/search",
            json={
                "filter": {"op": "bogus", "args": [{"property": "date_dt"}, 1]},
                "filter-lang": "cql2-json",
            },
        )
    assert response.status_code == 400, (response.status_code, response.text)
    assert "bogus" in response.text


def test_database_refusals_never_carry_postgresql_text_or_where_it_runs(
    http: httpx.Client, pgstac_dsn: str
) -> None:
    """What PostgreSQL or PostGIS says about a bad query stays on the server."""
    requests = [
        ("GET", "/stac/collections", {"params": {"q": "!"}}),
        ("GET", "/stac/collections", {"params": {"q": "ice & | sheet"}}),
        ("GET", "/stac/search", {"params": {"filter": "date_dt > 'abc'"}}),
        ("GET", "/stac/collections/granules/items", {"params": {"filter": "date_dt > 'abc'"}}),
        (
            "POST",
            "/stac/search",
            {"json": {"filter": {"op": "=", "args": [{"property": "date_dt"}, "x"]}}},
        ),
        (
            "POST",
            "/stac/search",
            {
                "json": {
                    "filter": {
                        "op": "s_intersects",
                        "args": [{"property": "geometry"}, {"type": "Point", "coordinates": [1]}],
                    }
                }
            },
        ),
    ]
    port = str(postgres_settings(pgstac_dsn).pgport)
    for method, path, kwargs in requests:
        response = http.request(method, path, **kwargs)
        assert response.status_code == 400, (path, kwargs, response.text)
        text = response.text.lower()
        for leak in ("tsquery", "double precision", "ordinates", "detail:", "sqlstate", port):
            assert leak not in text, (path, kwargs, response.text)
        assert "/tmp" not in text and "postgres" not in text, response.text


# -- hostile requests: a server process of its own, which must survive them -------------------

LEAF = '{"op": "=", "args": [{"property": "date_dt"}, 1]}'


def _nested_json(levels: int, op: str = "not") -> str:
    """CQL2-JSON nested `levels` deep (written as text: json.dumps itself would recurse)."""
    return f'{{"op": "{op}", "args": [' * levels + LEAF + "]}" * levels


def _nested_arrays(levels: int) -> str:
    return (
        '{"op": "in", "args": [{"property": "date_dt"}, ' + "[" * levels + "1" + "]" * levels + "]}"
    )


def _body(filter_json: str) -> dict:
    return {
        "content": f'{{"filter": {filter_json}}}',
        "headers": {"content-type": "application/json"},
    }


SEARCH_ROUTES = ["/stac/search", "/stac/collections", "/stac/collections/granules/items"]
HOSTILE_FILTERS = {
    # each crashed cql2's parser (segfault) or the app (500) before the limits
    "2000 parentheses": "(" * 2000 + "date_dt = 1" + ")" * 2000,
    "4500 NOTs": "NOT " * 4500 + "date_dt = 1",
    "5000 minus signs": "date_dt = " + "-" * 5000 + "1",
    "9400 additions": "date_dt = " + "+".join(["1"] * 9400),
    "nested functions": "date_dt = " + "f(" * 2000 + "1" + ")" * 2000,
}
HOSTILE = [
    *[
        (f"GET {route} {name}", "GET", route, {"params": {"filter": text, **lang}})
        for route in SEARCH_ROUTES
        for name, text in HOSTILE_FILTERS.items()
        for lang in ({}, {"filter-lang": "cql2-text"})
    ],
    *[
        (f"GET {route} cql2-json {name}", "GET", route, {"params": {"filter": text, **lang}})
        for route in SEARCH_ROUTES
        for name, text in {
            "700 NOTs": _nested_json(700),
            "400 ANDs": _nested_json(400, "and"),
            "5000 arrays": _nested_arrays(5000),
        }.items()
        for lang in ({"filter-lang": "cql2-json"}, {"filter-lang": ["cql2-text", "cql2-json"]})
    ],
    ("POST search 200 ANDs", "POST", "/stac/search", _body(_nested_json(200, "and"))),
    ("POST search 700 NOTs", "POST", "/stac/search", _body(_nested_json(700))),
    ("POST search 8000 arrays", "POST", "/stac/search", _body(_nested_arrays(8000))),
    ("POST search 100000 brackets", "POST", "/stac/search", {"content": b"[" * 100_000}),
    *[
        (
            f"GET {route} query",
            "GET",
            route,
            {"params": {"query": '{"a": {"eq": ' + "[" * 5000 + "]" * 5000 + "}}"}},
        )
        for route in SEARCH_ROUTES
    ],
    ("GET search intersects", "GET", "/stac/search", {"params": {"intersects": "[" * 5000}}),
    ("GET collections q", "GET", "/stac/collections", {"params": {"q": "(" * 5000 + "ice"}}),
    (
        "GET search long filter",
        "GET",
        "/stac/search",
        {"params": {"filter": "date_dt = 1 OR " * 2000 + "date_dt = 1"}},
    ),
]


@pytest.fixture(scope="module")
def own_process(
    base: str, pgstac_dsn: str, tmp_path_factory
) -> Iterator[tuple[str, subprocess.Popen]]:
    """The composed app in a uvicorn process of its own, over the loaded session catalog."""
    env = {"DATABASE_URL": pgstac_dsn, "GLACIERFLOW_DATA_DIR": str(tmp_path_factory.mktemp("own"))}
    with serving_process("glacierflow.services.app:create_app_from_environment", env) as served:
        yield served


@pytest.mark.parametrize(
    ("method", "path", "kwargs"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE]
)
def test_hostile_filters_get_a_400_naming_the_limit_and_the_server_lives(
    own_process: tuple[str, subprocess.Popen],
    ids: dict[str, str],
    method: str,
    path: str,
    kwargs: dict,
) -> None:
    url, process = own_process
    with httpx.Client(base_url=url, timeout=60) as http:
        try:
            response = http.request(method, path, **kwargs)
        except httpx.TransportError as err:
            pytest.fail(f"no answer ({err}); the server process exit code: {process.poll()}")
        assert response.status_code == 400, response.text[:300]
        assert "GLACIERFLOW_STAC_FILTER_MAX_" in response.json()["description"]
        assert process.poll() is None, "the server process died"
        normal = http.get(
            "/stac/search", params={"filter": "date_dt = 16 AND percent_valid_pixels > 0"}
        )
        assert normal.status_code == 200
        assert {f["id"] for f in normal.json()["features"]} == {
            ids["july"],
            ids["august"],
            ids["east"],
        }


def test_filters_within_the_limits_still_work(http: httpx.Client, ids: dict[str, str]) -> None:
    """The limits leave ordinary filters alone: nesting, negative coordinates, a polygon of
    many vertices, brackets inside strings, JSON at the depth allowed."""
    west, south, east, north = GREENLAND
    ring = [(west + (east - west) * k / 300, south) for k in range(300)]
    ring += [(east, north), (west, north), (west, south)]
    polygon = ", ".join(f"{x} {y}" for x, y in ring)
    text = (
        f"S_INTERSECTS(geometry, POLYGON(({polygon}))) AND ((date_dt = 16 AND NOT "
        "(percent_valid_pixels < -1)) OR platform LIKE '((((((((((((((((((((((((')"
    )
    response = http.get("/stac/search", params={"filter": text})
    assert response.status_code == 200, response.text
    assert _ids(response.json()["features"]) == {ids["july"], ids["august"]}
    deep = '{"op": "not", "args": [' * 7 + LEAF + "]}" * 7  # 17 brackets deep: date_dt != 1
    for method, kwargs in [
        ("GET", {"params": {"filter": deep, "filter-lang": "cql2-json"}}),
        ("POST", _body(deep)),
    ]:
        response = http.request(method, "/stac/search", **kwargs)
        assert response.status_code == 200, response.text
        assert _ids(response.json()["features"]) == set(ids.values())


def test_the_limits_are_settings(pgstac_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = _settings(tmp_path_factory, stac_filter_max_depth=3, stac_filter_max_length=200)
    with serving(create_stac_app(settings, pgstac_dsn)) as url, httpx.Client(base_url=url) as http:
        assert http.get("/search", params={"filter": "((date_dt = 1))"}).status_code == 200
        deeper = http.get("/search", params={"filter": "(((date_dt = 1)))"})
        assert deeper.status_code == 400 and "more than 3 levels" in deeper.text
        longer = http.get("/search", params={"filter": "date_dt = 1 OR " * 20 + "date_dt = 1"})
        assert longer.status_code == 400 and "at most 200" in longer.text


# -- transactions -----------------------------------------------------------------------------


def _new_item(granule: Path, item_id: str) -> dict:
    item = granule_item(granule).to_dict(include_self_link=False)
    item["id"] = item_id
    item["properties"]["datetime"] = "2030-01-09T12:00:00Z"
    item["properties"]["start_datetime"] = "2030-01-01T12:00:00+00:00"
    item["properties"]["end_datetime"] = "2030-01-17T12:00:00+00:00"
    return item


def test_transactions_are_off_by_default(
    http: httpx.Client, granule_files: dict[str, Path]
) -> None:
    item = _new_item(granule_files["august"], "posted-without-transactions")
    response = http.post("/stac/collections/granules/items", json=item)
    assert response.status_code in (404, 405)
    assert http.delete(f"/stac/collections/granules/items/{item['id']}").status_code in (404, 405)
    assert http.get(f"/stac/collections/granules/items/{item['id']}").status_code == 404


@pytest.fixture(scope="module")
def writable(new_catalog, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """An app with transactions (API_KEY) over a catalog of its own: (base URL, dsn)."""
    dsn = new_catalog("transactions")
    settings = _settings(tmp_path_factory, stac_transactions_api_key=API_KEY)
    with serving(create_app(settings, dsn)) as url:
        yield url, dsn


def test_writes_need_the_api_key(writable: tuple[str, str], granule_files: dict[str, Path]) -> None:
    url, dsn = writable
    item = _new_item(granule_files["july"], "posted-without-key")
    with httpx.Client(base_url=url, timeout=30) as http:
        for headers in ({}, {"X-API-Key": "wrong"}):
            response = http.post("/stac/collections/granules/items", json=item, headers=headers)
            assert response.status_code == 401
            assert "X-API-Key" in response.json()["description"]
        assert http.delete("/stac/collections/granules").status_code == 401
        new_collection = {**http.get("/stac/collections/granules").json(), "id": "sneaked-in"}
        assert http.post("/stac/collections", json=new_collection).status_code == 401
        assert http.get("/stac/collections/sneaked-in").status_code == 404
        # searching by POST is a read: no key needed
        assert http.post("/stac/search", json={"limit": 1}).status_code == 200
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pgstac.items").fetchone() == (0,)


WRITES = [
    (method, path)
    for method, paths in {
        "POST": ["/stac/collections", "/stac/collections/granules/items"],
        "PUT": ["/stac/collections/granules", "/stac/collections/granules/items/x"],
        "PATCH": ["/stac/collections/granules", "/stac/collections/granules/items/x"],
        "DELETE": ["/stac/collections/granules", "/stac/collections/granules/items/x"],
    }.items()
    for plain in paths
    for path in (plain, plain + "/", plain.upper(), plain.replace("/stac/", "/stac//"))
] + [("FOO", "/stac/collections/granules"), ("POST", "/stac/collections/granules/bulk_items")]


def test_every_write_needs_the_api_key(
    writable: tuple[str, str], granule_files: dict[str, Path]
) -> None:
    url, dsn = writable
    item = _new_item(granule_files["july"], "x")
    with httpx.Client(base_url=url, timeout=30) as http:
        for method, path in WRITES:
            for headers in ({}, {"X-API-Key": ""}, {"X-API-Key": API_KEY[:-1]}):
                response = http.request(method, path, json=item, headers=headers)
                assert response.status_code == 401, (method, path, headers, response.text)
        for method in ("HEAD", "OPTIONS"):  # reads: answered, nothing written
            response = http.request(method, "/stac/collections/granules")
            assert response.status_code in (200, 405), (method, response.status_code)
        assert http.get("/stac/collections/granules").status_code == 200
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pgstac.items").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pgstac.collections").fetchone() == (4,)


@pytest.mark.parametrize(
    "key", ["", " ", "short", "x" * 15, " " * 20, "sixteen-chars-ok ", "ключ" * 5]
)
def test_an_empty_or_short_api_key_refuses_to_build_the_app(
    key: str, pgstac_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = _settings(tmp_path_factory, stac_transactions_api_key=key)
    with pytest.raises(SettingsError, match="GLACIERFLOW_STAC_TRANSACTIONS_API_KEY"):
        create_stac_app(settings, pgstac_dsn)
    with pytest.raises(SettingsError, match="GLACIERFLOW_STAC_TRANSACTIONS_API_KEY"):
        create_app(settings, pgstac_dsn)


@pytest.mark.parametrize("key", ["", "short"])
def test_serve_refuses_an_empty_or_short_api_key(key: str, tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL"))},
        "GLACIERFLOW_STAC_TRANSACTIONS_API_KEY": key,
        "GLACIERFLOW_DATA_DIR": str(tmp_path / "data"),
    }
    with socket.socket() as taken:  # were the key let through, serve would stop here
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = subprocess.run(
            [sys.executable, "-m", "glacierflow.cli", "serve", "--port", port],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 2, done.stderr
    assert "GLACIERFLOW_STAC_TRANSACTIONS_API_KEY" in done.stderr
    assert "at least 16" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "data" / "postgres").exists(), "a database was started"


def test_with_the_api_key_an_item_is_created_and_found(
    writable: tuple[str, str], granule_files: dict[str, Path]
) -> None:
    url, _ = writable
    item = _new_item(granule_files["july"], "posted-with-key")
    with httpx.Client(base_url=url, timeout=30) as http:
        response = http.post(
            "/stac/collections/granules/items", json=item, headers={"X-API-Key": API_KEY}
        )
        assert response.status_code in (200, 201), (response.status_code, response.text)
    found = Client.open(f"{url}/stac").search(datetime="2030-01-05T00:00:00Z").item_collection()
    assert _ids(found) == {"posted-with-key"}


def test_an_item_called_search_cannot_be_deleted_without_the_key(
    new_catalog,
    granule_files: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # stac-fastapi-pgstac's own switch, so that the transaction routes exist (see the bug above)
    monkeypatch.setenv("ENABLE_TRANSACTIONS_EXTENSIONS", "true")
    dsn = new_catalog("transactions_guard")
    settings = _settings(tmp_path_factory, stac_transactions_api_key=API_KEY)
    with serving(create_app(settings, dsn)) as url, httpx.Client(base_url=url, timeout=30) as http:
        item = _new_item(granule_files["july"], "search")
        created = http.post(
            "/stac/collections/granules/items", json=item, headers={"X-API-Key": API_KEY}
        )
        assert created.status_code in (200, 201), created.text
        response = http.delete("/stac/collections/granules/items/search")  # no key
        assert response.status_code == 401, (response.status_code, response.text)


# -- the database down ------------------------------------------------------------------------


def test_requests_fail_fast_with_503_while_the_database_is_away_and_recover(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    let_postgres_traverse(tmp_path)
    cluster = EmbeddedCluster(tmp_path / "postgres")
    dsn, _ = cluster.start()
    try:
        init_catalog(dsn, {})
        with serving(create_app(_settings(tmp_path_factory), dsn)) as url:
            assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
            assert httpx.get(f"{url}/stac/search", timeout=10).status_code == 200
            cluster.stop()
            _assert_unavailable_fast(url, dsn)
            body = httpx.get(f"{url}/healthz", timeout=10).json()
            assert body == {"status": "down", "database": {"status": "down"}}
            assert (
                "unreachable" in httpx.get(f"{url}/stac/search", timeout=10).json()["description"]
            )
            # the database returns (on the same port): the API recovers by itself
            assert cluster.start()[0] == dsn
            _assert_available(url)
    finally:
        cluster.stop()


DATABASE_ROUTES = (
    "/healthz",
    "/stac/search",
    "/stac/collections",
    "/stac/collections/granules",
    "/stac/collections/granules/items",
)


def _assert_unavailable_fast(url: str, dsn: str) -> None:
    """Every route that needs the database: 503 within a few seconds (the default connect
    and statement timeouts are 2 s), saying nothing of where the database is."""
    port = str(urlparse(dsn).port)
    for path in DATABASE_ROUTES:
        for request in (
            {"method": "GET", "url": f"{url}{path}"},
            {"method": "POST", "url": f"{url}/stac/search", "json": {"limit": 1}},
        ):
            began = time.perf_counter()
            response = httpx.request(**request, timeout=30)
            assert time.perf_counter() - began < 5, (request, response.text)
            assert response.status_code == 503, (request, response.text)
            assert port not in response.text and "127.0.0.1" not in response.text


def _assert_available(url: str) -> None:
    for path in DATABASE_ROUTES:
        assert httpx.get(f"{url}{path}", timeout=30).status_code == 200, path
    assert httpx.post(f"{url}/stac/search", json={"limit": 1}, timeout=30).status_code == 200


def _cluster_processes(cluster: EmbeddedCluster) -> tuple[int, list[int]]:
    """The postmaster and its children (the backends serving connections, the writers)."""
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    return postmaster, child_processes(postmaster)


def test_a_frozen_database_gets_503_fast_and_the_api_recovers(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """SIGSTOP, as a hung host or a stalled disk looks to clients: connections are accepted
    by the kernel and then nothing answers. A cluster of its own: freezing it breaks others."""
    let_postgres_traverse(tmp_path)
    cluster = EmbeddedCluster(tmp_path / "postgres")
    dsn, _ = cluster.start()
    frozen: list[int] = []
    try:
        init_catalog(dsn, {})
        with serving(create_app(_settings(tmp_path_factory), dsn)) as url:
            _assert_available(url)  # the pool holds open connections now
            postmaster, children = _cluster_processes(cluster)
            # the whole server: pooled connections hang in their queries, new ones at start
            for pid in [postmaster, *children]:
                os.kill(pid, signal.SIGSTOP)
                frozen.append(pid)
            _assert_unavailable_fast(url, dsn)
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
            frozen.clear()
            _assert_available(url)
            # the postmaster alone: pooled connections go on answering, new ones hang
            os.kill(postmaster, signal.SIGSTOP)
            frozen.append(postmaster)
            began = time.perf_counter()
            assert httpx.get(f"{url}/healthz", timeout=30).status_code == 503
            assert time.perf_counter() - began < 5
            for path in DATABASE_ROUTES[1:]:
                began = time.perf_counter()
                assert httpx.get(f"{url}{path}", timeout=30).status_code in (200, 503), path
                assert time.perf_counter() - began < 5, path
            os.kill(postmaster, signal.SIGCONT)
            frozen.clear()
            _assert_available(url)
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        cluster.stop()


def test_healthz_is_503_fast_for_an_unreachable_database(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # without the lifespan, which would open stac-fastapi's pool (see the next test)
    app = create_app(_settings(tmp_path_factory), UNREACHABLE)
    with serving(app, lifespan="off") as url:
        began = time.perf_counter()
        response = httpx.get(f"{url}/healthz", timeout=10)
        assert time.perf_counter() - began < 5
    assert response.status_code == 503
    assert response.json() == {"status": "down", "database": {"status": "down"}}


def test_the_app_starts_and_reports_503_while_the_database_is_down(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with serving(create_app(_settings(tmp_path_factory), UNREACHABLE)) as url:
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 503


# -- connection settings ----------------------------------------------------------------------


def test_postgres_settings_from_a_dsn() -> None:
    settings = postgres_settings("postgresql://alice:secret@db.example:6543/stac")
    assert (settings.pguser, settings.pgpassword, settings.pghost) == (
        "alice",
        "secret",
        "db.example",
    )
    assert (settings.pgport, settings.pgdatabase) == (6543, "stac")
    defaults = postgres_settings("postgresql://db.example")
    assert (defaults.pguser, defaults.pgport, defaults.pgdatabase) == ("postgres", 5432, "postgres")


def test_postgres_settings_decode_a_percent_encoded_password() -> None:
    assert postgres_settings("postgresql://alice:p%40ss@db.example/stac").pgpassword == "p@ss"


# -- the itslive client ------------------------------------------------------------------------


def test_the_itslive_client_finds_granules(base: str, granule_files: dict[str, Path]) -> None:
    """`itslive.search(type="pgstac")` sends CQL2-JSON on percent_valid_pixels and date_dt
    and keeps the `.nc` assets with role `data`: it must work against our /stac."""
    import itslive

    bbox = granule_item(granule_files["july"]).bbox
    common = {
        "type": "pgstac",
        "base_catalog_href": f"{base}/stac",
        "collection": "granules",
        "bbox": bbox,
        "start": "2024-01-01",
        "end": "2024-12-31",
    }
    found = itslive.search(**common, percent_valid_pixels=50, min_interval=10, max_interval=20)
    expected = sorted(f"{base}/data/granules/{granule_files[n].name}" for n in ("july", "august"))
    assert found == expected
    # july has clouds (about 87 % valid): a stricter client-side filter leaves only august
    strict = itslive.search(**common, percent_valid_pixels=95)
    assert strict == [f"{base}/data/granules/{granule_files['august'].name}"]
    assert itslive.search(**common, min_interval=30) == []


def test_the_stac_api_runs_on_its_own_and_honours_cors(
    pgstac_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = _settings(tmp_path_factory).model_copy(
        update={"cors_origins": ["https://maps.example"]}
    )
    with serving(create_stac_app(settings, pgstac_dsn)) as url, httpx.Client(base_url=url) as http:
        landing = http.get("/").json()
        assert landing["id"] == "glacierflow"
        assert any(link["href"] == f"{url}/search" for link in landing["links"])
        allowed = http.get("/collections", headers={"Origin": "https://maps.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://maps.example"
        other = http.get("/collections", headers={"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in other.headers
