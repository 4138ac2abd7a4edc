"""The STAC that `glacierflow serve` answers with, held to the specifications offline: every
collection and item it serves (granules, the real ITS_LIVE sample, a cube) against STAC
core and each extension it declares, and the whole API against stac-api-validator, the
STAC API's own conformance checker, with every conformance class the server claims and
the validator checks. Schemas come from local files (tests/stac_schemas.py)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator

import httpx
import pytest
import requests.sessions
from conftest import ServedRegion, glacierflow_serve
from pystac_client import Client
from stac_api_validator.validations import QueryConfig, validate_api
from stac_schemas import LocalSchemaAdapter, validate, validator

# What stac-api-validator checks and the server claims (its landing page's conformsTo).
# Not here: browseable and children (not implemented: items are reached by search and
# /items, not by `item` links), and transaction (see the README: the validator's item has
# no `links`, and it wants 204 where stac-fastapi answers 200 with the item). The
# features#fields, #sort and #query classes are accepted by the validator but not
# checked by it.
CONFORMANCE = (
    "core",
    "features",
    "collections",
    "item-search",
    "item-search#filter",
    "features#filter",
    "item-search#sort",
    "item-search#fields",
    "item-search#query",
)

# stac-api-validator 0.6.8's checks that contradict the extensions (and themselves), by
# the start of their messages. Fields: excluding `geometry` must not also drop the nested
# property it names, and an answer with only the fields asked for cannot also have five
# of them. Query `in`: it takes the property for a list and compares the characters of a
# string property with the values (test_query_string_and_list_operators checks `in`).
_NESTED = "properties.percent_valid_pixels"
_VALIDATOR_FIELDS_FAULTS = {
    *(
        f"[Item Search - Fields Ext] : POST {{'fields': {{'exclude': ['geometry'], "
        f"'include': {include}}}}} response contained '{_NESTED}', but should have been excluded"
        for include in ("[]", "None")
    ),
    f"[Item Search - Fields Ext] : POST {{'fields': {{'exclude': ['properties'], 'include': "
    f"['{_NESTED}']}}}} response contained fewer than 5 fields "
    "['id', 'collection', 'properties', 'links']",
}


@pytest.fixture(scope="module")
def server(served_region: ServedRegion, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("stac-validity") / "serve.log"
    with glacierflow_serve(served_region, log=log) as process:
        yield process.url


@pytest.fixture(scope="module")
def http(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=60) as session:
        yield session


def _pages(http: httpx.Client, url: str) -> Iterator[dict]:
    """Every page of a paged STAC answer, following its `next` links."""
    while url:
        answer = http.get(url)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        yield page
        url = next((link["href"] for link in page["links"] if link["rel"] == "next"), "")


def test_every_served_collection_and_item_is_valid_stac(
    http: httpx.Client, served_region: ServedRegion
) -> None:
    checker = validator()
    landing = http.get("/stac/").json()
    assert landing["stac_version"] == "1.1.0"
    validate(landing, checker)
    collections = http.get("/stac/collections").json()["collections"]
    assert {c["id"] for c in collections} == {"scenes", "granules", "cubes", "mosaics"}
    items = []
    for listed in collections:
        assert listed["itemType"] == "feature"  # OGC API - Features
        assert listed["stac_version"] == "1.1.0"
        one = http.get(f"/stac/collections/{listed['id']}").json()
        validate(one, checker)
        for page in _pages(http, f"/stac/collections/{listed['id']}/items?limit=3"):
            items += page["features"]
    assert {i["collection"] for i in items} == {"granules", "cubes"}
    assert len(items) == 5  # the cube, our three granules and the ITS_LIVE sample
    declared = set()
    for item in items:
        assert item["stac_version"] == "1.1.0"
        declared |= set(validate(item, checker))
        one = http.get(f"/stac/collections/{item['collection']}/items/{item['id']}").json()
        validate(one, checker)
    assert {
        "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
        "https://stac-extensions.github.io/datacube/v2.2.0/schema.json",
    } <= declared
    cube = http.get(f"/stac/collections/cubes/items/{served_region.cube_item}").json()
    properties = cube["properties"]
    assert properties["datetime"] is None
    assert properties["start_datetime"] < properties["end_datetime"]


def _query_config(http: httpx.Client) -> QueryConfig:
    """Query extension values that match some of the served granules (as strings, the way
    the validator's command line takes them): comparisons on percent_valid_pixels, string
    operators and `in` on platform."""
    items = http.get("/stac/collections/granules/items", params={"limit": 100}).json()
    percents = sorted(f["properties"]["percent_valid_pixels"] for f in items["features"])
    platforms = sorted({f["properties"]["platform"] for f in items["features"]})
    low, high, platform = str(percents[0]), str(percents[-1]), platforms[-1]
    assert percents[0] < percents[-1] and len(platform) > 3, (percents, platforms)
    return QueryConfig(
        query_comparison_field="percent_valid_pixels",
        query_eq_value=high,
        query_neq_value=low,
        query_lt_value=high,
        query_lte_value=low,
        query_gt_value=low,
        query_gte_value=high,
        query_substring_field="platform",
        query_starts_with_value=platform[:2],
        query_ends_with_value=platform[-2:],
        query_contains_value=platform[1:-1],
        query_in_field="platform",
        query_in_values=",".join(platforms),
    )


def test_stac_api_validator_passes_every_class_the_server_claims(
    server: str, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the validators fetch schemas with requests: from the local copies
    monkeypatch.setattr(requests.sessions, "HTTPAdapter", LocalSchemaAdapter)
    config = _query_config(http)
    greenland = {
        "type": "Polygon",
        "coordinates": [[[-50, 68], [-48, 68], [-48, 70], [-50, 70], [-50, 68]]],
    }
    found_warnings, errors = validate_api(
        root_url=f"{server}/stac/",
        ccs_to_validate=list(CONFORMANCE),
        collection="granules",
        geometry=json.dumps(greenland),
        auth_bearer_token=None,
        auth_query_parameter=None,
        fields_nested_property=_NESTED,
        validate_pagination=True,
        query_config=config,
        transaction_collection=None,
        headers=None,
    )
    in_query = json.dumps({config.query_in_field: {"in": config.query_in_values.split(",")}})
    faults = (
        *_VALIDATOR_FIELDS_FAULTS,
        *(
            f"[Item Search - Query Ext] : {method} search with Query '{in_query}' had "
            "non-matching results"
            for method in ("GET", "POST")
        ),
    )
    unexpected = [str(e) for e in errors if not str(e).startswith(faults)]
    assert unexpected == [], "\n".join(unexpected)
    assert found_warnings is not None


def test_pystac_client_sorts_without_a_conformance_warning(server: str) -> None:
    client = Client.open(f"{server}/stac")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = client.search(collections=["granules"], sortby="-properties.datetime", limit=10)
        dates = [item.datetime for item in found.items()]
    assert dates == sorted(dates, reverse=True) and len(dates) == 4


def test_pystac_client_cql2_text_by_post(server: str) -> None:
    client = Client.open(f"{server}/stac")
    by_text = client.search(
        collections=["granules"],
        filter="percent_valid_pixels >= 90 AND date_dt = 16",
        filter_lang="cql2-text",
        method="POST",
    )
    ids = {item.id for item in by_text.items()}
    assert ids, "the filter matches some granules"
    assert all(
        item.properties["percent_valid_pixels"] >= 90 and item.properties["date_dt"] == 16
        for item in by_text.items()
    )
    by_json = client.search(
        collections=["granules"],
        filter={
            "op": "and",
            "args": [
                {"op": ">=", "args": [{"property": "percent_valid_pixels"}, 90]},
                {"op": "=", "args": [{"property": "date_dt"}, 16]},
            ],
        },
        filter_lang="cql2-json",
        method="POST",
    )
    assert {item.id for item in by_json.items()} == ids


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"filter": "percent_valid_pixels >>> 3", "filter-lang": "cql2-text"}, "Invalid filter"),
        ({"filter": "(" * 500 + "a = 1" + ")" * 500, "filter-lang": "cql2-text"}, "nests more"),
        ({"fields": None}, "`fields` must be an object"),
    ],
)
def test_bad_post_searches_are_400s_naming_the_problem(
    http: httpx.Client, body: dict, words: str
) -> None:
    answer = http.post("/stac/search", json=body)
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["description"]


def test_a_collection_id_given_as_a_string_is_that_collection(http: httpx.Client) -> None:
    answer = http.post("/stac/search", json={"collections": "cubes"})
    assert answer.status_code == 200, answer.text
    assert {f["collection"] for f in answer.json()["features"]} == {"cubes"}


@pytest.mark.parametrize(
    ("method", "url", "payload"),
    [
        ("GET", "/stac/search", {"params": {"fields": "id,properties.date_dt"}}),
        ("POST", "/stac/search", {"json": {"fields": {"include": ["properties.date_dt"]}}}),
        ("GET", "/stac/collections/granules/items", {"params": {"fields": "-assets"}}),
    ],
)
def test_fields_answers_are_geojson(http: httpx.Client, method: str, url: str, payload) -> None:
    answer = http.request(method, url, **payload)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/geo+json"
    assert answer.json()["type"] == "FeatureCollection"


def test_docs_and_redoc_load_everything_from_the_server(http: httpx.Client) -> None:
    for page in ("/docs", "/redoc"):
        answer = http.get(page)
        assert answer.status_code == 200
        assert "text/html" in answer.headers["content-type"]
        assert "cdn." not in answer.text and "googleapis" not in answer.text
        sources = [part.split('"', 1)[0] for part in answer.text.replace("'", '"').split('="')[1:]]
        assets = [s for s in sources if s.startswith("/docs-assets/")]
        assert assets, answer.text
        for asset in assets:
            loaded = http.get(asset)
            assert loaded.status_code == 200 and len(loaded.content) > 1000, asset


def test_the_root_is_the_dashboard_linking_the_services(http: httpx.Client) -> None:
    answer = http.get("/")
    assert answer.status_code == 200, "the dashboard is not built (./run test builds it)"
    assert answer.headers["content-type"].startswith("text/html")
    for link in ('href="stac/"', 'href="docs"', 'href="redoc"', 'href="browser/"'):
        assert link in answer.text
    for target in ("/stac/", "/stac/collections", "/docs", "/redoc", "/healthz", "/browser/"):
        assert http.get(target).status_code == 200, target


def test_the_readme_example_runs(server: str) -> None:
    """The README's pystac-client search: a CQL2 text filter, sent the way pystac-client
    chooses (POST, translated to JSON by the `cql2` package that glacierflow installs)."""
    catalog = Client.open(f"{server}/stac")
    found = catalog.search(collections=["granules"], filter="percent_valid_pixels > 50")
    items = list(found.items())
    assert items and all(i.properties["percent_valid_pixels"] > 50 for i in items)
    assert all(i.assets["data"].href.startswith(f"{server}/data/") for i in items)
    assert httpx.head(items[0].assets["data"].href).status_code == 200


@pytest.mark.parametrize(
    ("operations", "matches"),
    [
        ({"startsWith": "LT"}, lambda p: p.startswith("LT")),
        ({"endsWith": "05"}, lambda p: p.endswith("05")),
        ({"contains": "T0"}, lambda p: "T0" in p),
        ({"contains": "%"}, lambda p: "%" in p),  # a literal %, not a wildcard
        ({"in": ["LT05", "nope"]}, lambda p: p in {"LT05", "nope"}),
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_query_string_and_list_operators(
    http: httpx.Client, operations: dict, matches, method: str
) -> None:
    query = {"platform": operations}
    every = {
        f["id"]: f["properties"]["platform"]
        for f in http.get("/stac/search", params={"limit": 100}).json()["features"]
        if "platform" in f["properties"]
    }
    if method == "GET":
        answer = http.get("/stac/search", params={"query": json.dumps(query), "limit": 100})
    else:
        answer = http.post("/stac/search", json={"query": query, "limit": 100})
    assert answer.status_code == 200, answer.text
    found = {f["id"] for f in answer.json()["features"]}
    assert found == {i for i, platform in every.items() if matches(platform)}


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({"platform": {"startsWith": 5}}, "needs a string"),
        ({"platform": {"startsWith": "L", "endsWith": "5"}}, "one of startsWith"),
        ({"platform": {"in": "LT05"}}, "needs a list"),
        ({"platform": {"regex": "L.*"}}, "regex"),
    ],
)
def test_bad_query_operators_are_400s(http: httpx.Client, query: dict, words: str) -> None:
    answer = http.post("/stac/search", json={"query": query})
    assert answer.status_code == 400, answer.text
    assert words in answer.text
