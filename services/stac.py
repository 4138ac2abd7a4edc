"""The STAC API: stac-fastapi-pgstac, composed with glacierflow's settings.

Search (CQL2 text and JSON filter, text by POST too, translated to JSON here; sort; fields;
query with all its operators; token paging), collections with free-text collection search.
Everything it serves is STAC 1.1.0; /docs and /redoc work offline. Transactions are off
unless an API key is configured; then every write needs the `X-API-Key` header (401
without it).

Hostile input is stopped before it reaches a parser: cql2's parser is recursive Rust and
overflows its stack (a segfault that kills the server process) on about 1,500 nested
parentheses, 3,500 chained NOTs or 9,000 chained additions, and its validation slows with
depth; so the nesting and size of filters, and of every JSON a request carries, are
bounded by a non-recursive scan first. What the catalog database refuses (a value of the
wrong type, a free-text syntax error, a bad geometry) is the query's fault: a 400 in our
words, never PostgreSQL's text.
"""

from __future__ import annotations

import json
import logging
import math
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import StrEnum
from importlib.resources import files
from typing import Any, Literal
from urllib.parse import unquote, urlparse

import asyncpg
import attr
import cql2
import orjson
import pystac
from brotli_asgi import BrotliMiddleware
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ValidationError
from stac_fastapi.extensions.sort import (
    ItemCollectionSortExtension,
    SearchSortExtension,
    SortConformanceClasses,
)
from stac_fastapi.pgstac.app import instantiate_api
from stac_fastapi.pgstac.config import PostgresSettings
from stac_fastapi.pgstac.config import Settings as StacSettings
from stac_fastapi.pgstac.core import CoreCrudClient
from stac_fastapi.pgstac.db import (
    ConnectionGetter,
    close_db_connection,
    con_init,
    translate_pgstac_errors,
)
from stac_fastapi.pgstac.extensions import QueryExtension
from stac_fastapi.pgstac.models.extensions import Extensions
from stac_fastapi.pgstac.types.search import PgstacSearch
from stac_fastapi.types.errors import InvalidQueryParameter
from stac_fastapi.types.stac import ItemCollection
from stac_pydantic.api.search import Search
from starlette.datastructures import QueryParams
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from glacierflow.services.middleware import add_limits
from glacierflow.settings import Settings

_READ_METHODS = {"GET", "HEAD", "OPTIONS"}
_TITLE = "glacierflow"
_DESCRIPTION = "Glacier velocity granules, cubes and mosaics (ITS_LIVE layout)"


@attr.s
class _Client(CoreCrudClient):
    """stac-fastapi-pgstac's client, introducing itself as glacierflow."""

    landing_page_id: str = attr.ib(default=_TITLE)
    title: str = attr.ib(default=_TITLE)
    description: str = attr.ib(default=_DESCRIPTION)

    async def _search_base(self, search_request: PgstacSearch, request: Request) -> ItemCollection:
        """Every item answer (search, item lists, one item) with asset hrefs as URLs: the
        catalog stores them relative to the data directory (services/data.py). pgstac
        drops `"datetime": null` from the items it returns (pgstac#158, #425): items with
        a time span (our cubes) get it back, as the STAC spec requires."""
        if getattr(search_request, "query", None):
            search_request = search_request.model_copy(
                update={"query": _pgstac_query(search_request.query)}
            )
        found = await super()._search_base(search_request, request)
        for item in found.get("features", []):
            properties = item.get("properties")
            if isinstance(properties, dict) and "start_datetime" in properties:
                properties.setdefault("datetime", None)
        files = getattr(request.app.state, "data_files", None)
        if files is not None:
            base = files.base_url(request)
            found["features"] = [files.public_item(item, base) for item in found["features"]]
        return found

    def _clean_search_args(self, base_args: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """GET searches (items, a collection's items, collections) checked before pgstac:
        the collection search passes bbox on unchecked, and an empty `fields` entry
        crashes stac-fastapi."""
        _check_bbox(base_args.get("bbox"))
        for name in ("fields", "sortby"):
            if any(not entry.strip(" +-") for entry in kwargs.get(name) or []):
                raise InvalidQueryParameter(f"`{name}` has an empty entry")
        return super()._clean_search_args(base_args, **kwargs)

    # With `fields`, stac-fastapi answers in a plain JSONResponse (the items may not be
    # whole): still GeoJSON, as the fields extension requires. A search by `ids` ignores
    # the other filters, as STAC API item search says (pgstac would apply them all).
    async def get_search(self, request: Request, **kwargs: Any) -> Any:
        if kwargs.get("ids"):
            kwargs.update(dict.fromkeys(_FILTERS_BESIDE_IDS))
        return _as_geojson(await super().get_search(request, **kwargs))

    async def post_search(
        self, search_request: PgstacSearch, request: Request, **kwargs: Any
    ) -> Any:
        if search_request.ids:
            search_request = search_request.model_copy(update=dict.fromkeys(_FILTERS_BESIDE_IDS))
        return _as_geojson(await super().post_search(search_request, request, **kwargs))

    async def item_collection(self, *args: Any, **kwargs: Any) -> Any:
        return _as_geojson(await super().item_collection(*args, **kwargs))


class _QueryOperator(StrEnum):
    """The query extension's operators: stac-fastapi-pgstac's comparisons, and the string
    and list ones it leaves out, which pgstac runs as CQL2 `like` and `in`."""

    EQ = "eq"
    NE = "ne"
    NEQ = "neq"
    LT = "lt"
    LTE = "lte"
    GT = "gt"
    GTE = "gte"
    STARTS_WITH = "startsWith"
    ENDS_WITH = "endsWith"
    CONTAINS = "contains"
    IN = "in"


class _QueryPost(BaseModel):
    query: dict[str, dict[_QueryOperator, Any]] | None = None


class _Query(QueryExtension):
    """The query extension with all its operators."""

    POST = _QueryPost


_LIKE_PATTERNS = {"startsWith": "{}%", "endsWith": "%{}", "contains": "%{}%"}


def _pgstac_query(query: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The query as pgstac runs it: startsWith, endsWith and contains as `like` patterns
    (their own % and _ escaped), `in` with a list."""
    translated: dict[str, dict[str, Any]] = {}
    for name, operations in query.items():
        ops: dict[str, Any] = {}
        for operator, value in operations.items():
            op = str(operator)
            if op in _LIKE_PATTERNS:
                if not isinstance(value, str):
                    raise InvalidQueryParameter(f"`query`: {name} {op} needs a string")
                if "like" in ops:
                    raise InvalidQueryParameter(
                        f"`query`: {name} takes one of startsWith, endsWith and contains"
                    )
                escaped = re.sub(r"([\\%_])", r"\\\1", value)
                ops["like"] = _LIKE_PATTERNS[op].format(escaped)
            elif op == "in" and not isinstance(value, list):
                raise InvalidQueryParameter(f"`query`: {name} in needs a list of values")
            else:
                ops[op] = value
        translated[name] = ops
    return translated


_FILTERS_BESIDE_IDS = ("collections", "bbox", "intersects", "datetime", "query", "filter_expr")


def _as_geojson(answer: Any) -> Any:
    if isinstance(answer, Response):
        answer.headers["content-type"] = "application/geo+json"
    return answer


def _check_bbox(bbox: tuple[float, ...] | list[float] | None) -> None:
    """A bbox of finite numbers, in order, as STAC's search model requires."""
    if bbox is None:
        return
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in bbox):
        raise InvalidQueryParameter(f"bbox values must be finite numbers: {list(bbox)}")
    try:
        Search(bbox=bbox)
    except ValidationError as err:
        reasons = "; ".join(e["msg"].removeprefix("Value error, ") for e in err.errors())
        raise InvalidQueryParameter(f"invalid bbox {list(bbox)}: {reasons}") from None


def postgres_settings(dsn: str) -> PostgresSettings:
    """stac-fastapi's connection settings from a DSN (it reads no DATABASE_URL itself)."""
    url = urlparse(dsn)
    host = unquote(url.netloc.rsplit("@", 1)[-1].rsplit(":", 1)[0]) if url.netloc else ""
    return PostgresSettings(
        pguser=unquote(url.username or "postgres"),
        pgpassword=unquote(url.password or ""),  # stac-fastapi quotes it again itself
        pghost=host or "127.0.0.1",
        pgport=url.port or 5432,
        pgdatabase=unquote((url.path or "/postgres").lstrip("/")) or "postgres",
        # no connection at start-up: the app comes up (and answers 503) while the
        # database is away, and connects once it is back
        db_min_conn_size=0,
    )


class _ApiKeyGuard(BaseHTTPMiddleware):
    """Every method but a read needs the configured key; searches by POST stay open."""

    def __init__(self, app, key: str, prefix: str):
        super().__init__(app)
        self._key = key
        self._prefix = prefix.lower()
        self._search = f"{self._prefix}/search"  # POST /search reads; other writes are guarded

    async def dispatch(self, request: Request, call_next):
        path = request.url.path.rstrip("/").lower()  # as strict as the loosest router
        guarded = path.startswith(self._prefix) and not (
            request.method == "POST" and path == self._search
        )
        if request.method not in _READ_METHODS and guarded:
            given = request.headers.get("x-api-key", "")
            if not secrets.compare_digest(given.encode(), self._key.encode()):
                return JSONResponse(
                    {
                        "code": "Unauthorized",
                        "description": "transactions need a valid X-API-Key header",
                    },
                    status_code=401,
                )
        return await call_next(request)


# One token at a time, without recursion. CQL2 text: string literals and quoted
# identifiers are skipped; brackets nest; a comma, AND or OR separates operands; each
# operator (or NOT) may add a level to the parser's recursion, e.g. NOT NOT NOT … or
# 1 + 1 + 1 …, so they count until the next separator. JSON: strings skipped, brackets.
_CQL2_TEXT_TOKENS = re.compile(
    r"'[^']*(?:''[^']*)*'?"
    r'|"[^"]*(?:""[^"]*)*"?'
    r"|(?P<open>[(\[{])|(?P<close>[)\]}])|(?P<separator>,|\b(?i:and|or)\b)"
    r"|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|(?P<operator>\b(?i:not|div)\b|[-+*/%^=<>])"
    r"|[A-Za-z_][\w:.]*"
)
_JSON_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|(?P<open>[\[{])|(?P<close>[\]}])')

# the parameters something parses recursively (cql2, orjson, PostgreSQL's tsquery), and how
# to scan them; `filter` is added per request, by its filter-lang
_PARSED_PARAMETERS = {
    "q": (_CQL2_TEXT_TOKENS,),
    "query": (_JSON_TOKENS,),
    "intersects": (_JSON_TOKENS,),
}


def _deeper_than(text: str, limit: int, tokens: re.Pattern[str]) -> bool:
    """Whether `text` nests more than `limit` levels (a bound on any parser's recursion)."""
    chained = [0]  # operators chained since the last separator, per open bracket
    total = 0
    for token in tokens.finditer(text):
        kind = token.lastgroup
        if kind == "open":
            chained.append(0)
        elif kind == "close" and len(chained) > 1:
            total -= chained.pop()
        elif kind == "separator":
            total -= chained[-1]
            chained[-1] = 0
        elif kind == "operator":
            chained[-1] += 1
            total += 1
        else:
            continue
        if len(chained) - 1 + total > limit:
            return True
    return False


class _RequestBounds:
    """Refuses, before any parser sees them, STAC parameters and bodies that nest deeper
    or run longer than the settings allow (400, naming the limit); hands POST searches on
    in the form stac-fastapi takes (`_search_body`)."""

    def __init__(self, app: ASGIApp, prefix: str, max_depth: int, max_length: int):
        self.app = app
        self._prefix = prefix.lower()
        self._search = f"{self._prefix}/search"
        self._depth = max_depth
        self._length = max_length

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "").rstrip("/").lower() if scope["type"] == "http" else ""
        if scope["type"] != "http" or not path.startswith(self._prefix):
            await self.app(scope, receive, send)
            return
        problem = self._parameters_problem(QueryParams(scope["query_string"]))
        if problem is None and scope["method"] not in _READ_METHODS:
            client = receive
            body, receive = await _buffered(client)
            declared = dict(scope["headers"]).get(b"content-type", b"").lower()
            is_search = path == self._search
            problem = self._body_problem(
                body, is_search=is_search, not_json=bool(declared) and b"json" not in declared
            )
            if problem is None and is_search:
                try:
                    rewritten = self._search_body(body)
                except ValueError as err:
                    problem = str(err)
                else:
                    if rewritten is not None:
                        scope, receive = _with_body(scope, rewritten, client)
        if problem is None:
            await self.app(scope, receive, send)
            return
        answer = JSONResponse({"code": "BadRequest", "description": problem}, status_code=400)
        await answer(scope, receive, send)

    def _parameters_problem(self, params: QueryParams) -> str | None:
        # a filter is CQL2 text unless every filter-lang given says JSON; scanned as JSON
        # too, so that a JSON string cannot hide brackets from the text scan
        langs = params.getlist("filter-lang")
        json_only = bool(langs) and all(lang == "cql2-json" for lang in langs)
        filters = (_JSON_TOKENS,) if json_only else (_JSON_TOKENS, _CQL2_TEXT_TOKENS)
        scans = {**_PARSED_PARAMETERS, "filter": filters}
        for name, value in params.multi_items():
            if name not in scans:
                continue
            if len(value) > self._length:
                return (
                    f"`{name}` has {len(value)} characters; at most {self._length} are "
                    "allowed (GLACIERFLOW_STAC_FILTER_MAX_LENGTH)"
                )
            if any(_deeper_than(value, self._depth, tokens) for tokens in scans[name]):
                return self._too_deep(f"`{name}`")
        return None

    def _body_problem(self, body: bytes, is_search: bool, not_json: bool) -> str | None:
        if is_search and not_json:  # FastAPI would hand stac-fastapi the raw bytes
            return "send the search body as JSON (Content-Type: application/json)"
        # a body's size is bounded by the app's body limit (GLACIERFLOW_MAX_BODY_BYTES, 413),
        # which runs before this; what a parser could choke on is its depth
        # latin-1 maps every byte to one character: brackets and quotes stay where they are
        if _deeper_than(body.decode("latin-1"), self._depth + 1, _JSON_TOKENS):
            return self._too_deep("the request body")  # + 1: the body's own object
        # Python's JSON reads NaN, Infinity and 1e999, which pydantic lets into a bbox and
        # stac-fastapi's error answer cannot write back; safe to parse now it is shallow
        try:
            parsed = json.loads(body, parse_constant=_not_finite, parse_float=_finite)
        except _NotFiniteError as number:
            return f"the request body has a number that is not finite: {number}"
        except ValueError:
            return "the search body is not JSON" if is_search else None
        if is_search and not isinstance(parsed, dict):
            return 'the search body must be a JSON object, such as {"limit": 10}'
        return None

    def _search_body(self, body: bytes) -> bytes | None:
        """The POST search as stac-fastapi takes it, None when it needs no change: a CQL2
        text filter (pystac-client's `filter_lang="cql2-text"`) translated to CQL2 JSON,
        one collection id given as a string made a list. ValueError names what is wrong
        (such as `"fields": null`, which stac-fastapi would take as no fields)."""
        search = json.loads(body)
        changed = dict(search)
        if "fields" in search and search["fields"] is None:
            raise ValueError(
                '`fields` must be an object such as {"include": ["id"], "exclude": []}, not null'
            )
        if isinstance(search.get("collections"), str):
            changed["collections"] = [search["collections"]]
        text = search.get("filter")
        if isinstance(text, str) and search.get("filter-lang", "cql2-text") == "cql2-text":
            if len(text) > self._length:
                raise ValueError(
                    f"`filter` has {len(text)} characters; at most {self._length} are "
                    "allowed (GLACIERFLOW_STAC_FILTER_MAX_LENGTH)"
                )
            if _deeper_than(text, self._depth, _CQL2_TEXT_TOKENS):
                raise ValueError(self._too_deep("`filter`"))
            try:
                changed["filter"] = cql2.parse_text(text).to_json()
            except (cql2.ParseError, cql2.ValidationError) as err:
                raise ValueError(f"Invalid filter (CQL2 text): {err}") from None
            changed["filter-lang"] = "cql2-json"
        return orjson.dumps(changed) if changed != search else None

    def _too_deep(self, what: str) -> str:
        return (
            f"{what} nests more than {self._depth} levels deep (brackets, and chained "
            "operators in CQL2 text); the limit is GLACIERFLOW_STAC_FILTER_MAX_DEPTH"
        )


class _NotFiniteError(Exception):
    """A JSON number that is NaN or infinite."""


def _not_finite(constant: str) -> float:
    raise _NotFiniteError(constant)


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _NotFiniteError(text)
    return number


async def _buffered(receive: Receive) -> tuple[bytes, Receive]:
    """The whole request body, and a `receive` that hands it on to the app."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client left
            return b"", receive
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    return body, _replaying(body, receive)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands `body` to the app, then waits on the client."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _with_body(scope: Scope, body: bytes, receive: Receive) -> tuple[Scope, Receive]:
    """The request with another body (and its length)."""
    headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    return {**scope, "headers": headers}, _replaying(body, receive)


# what asyncpg raises when the server is gone, refuses connections, does not answer in
# time (TimeoutError is an OSError), cancels a statement at the statement timeout, shuts
# down, or lacks the resources (connections, memory) to take the query
DATABASE_UNAVAILABLE = (
    OSError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)
log = logging.getLogger(__name__)


def connect_options(settings: Settings) -> dict[str, object]:
    """asyncpg connection options that bound every wait on the catalog database: the
    connection, and each statement, on the server and on the client (a frozen server does
    not enforce its own statement_timeout)."""
    statement_ms = round(settings.database_statement_timeout_s * 1000)
    return {
        "timeout": settings.database_connect_timeout_s,
        "command_timeout": settings.database_statement_timeout_s,
        "server_settings": {"statement_timeout": str(statement_ms)},
    }


async def _create_pool(postgres: PostgresSettings, settings: Settings) -> asyncpg.Pool:
    """stac-fastapi's pool (its sizes, codecs and search path), with the timeouts; pgstac
    read-only: it would otherwise record every search (a row written and committed in
    `pgstac.searches` per request), which the API never reads back: ~5 ms of each
    10-item search (BENCHMARKS.md "Catalog at scale"). The tile service's searches are
    registered through its own pool, which still records them."""
    options = connect_options(settings)
    options["server_settings"] = {
        **postgres.server_settings.model_dump(),
        **options["server_settings"],
        "pgstac.readonly": "true",
    }
    return await asyncpg.create_pool(
        postgres.connection_string,
        min_size=postgres.db_min_conn_size,
        max_size=postgres.db_max_conn_size,
        max_queries=postgres.db_max_queries,
        max_inactive_connection_lifetime=postgres.db_max_inactive_conn_lifetime,
        init=con_init,
        **options,
    )


def _connection_getter(settings: Settings) -> ConnectionGetter:
    """stac-fastapi's connection getter, bounded: waiting for a pooled connection (or a new
    one) takes at most the connect timeout, and a connection whose server did not answer
    in time is dropped at once instead of being cancelled and reset (which would wait on
    that server again)."""

    @asynccontextmanager
    async def get_connection(
        request: Request, readwrite: Literal["r", "w"] = "r"
    ) -> AsyncIterator[asyncpg.Connection]:
        pool = getattr(request.app.state, "writepool" if readwrite == "w" else "readpool")
        with translate_pgstac_errors():
            conn = await pool.acquire(timeout=settings.database_connect_timeout_s)
            try:
                yield conn
            except TimeoutError:
                conn.terminate()
                raise
            finally:
                await pool.release(conn)

    return get_connection


# What the catalog database refuses, by SQLSTATE class (or code: PostGIS raises XX000 on
# a bad geometry), is the query's fault; our words replace PostgreSQL's, which would
# describe its internals.
_QUERY_FAULTS = {
    "22": "a value in the search has the wrong type or is out of range (check filter, "
    "query, bbox and datetime)",
    "42": "the search has a syntax error (check the free-text `q` and the filter)",
    "54": "the search is too large or complex for the catalog",
    "XX000": "the catalog could not evaluate the search; check its geometries (bbox, "
    "intersects, spatial filters) and values",
}

_TRANSIENT = {"08", "53", "57"}  # connection lost, out of resources, cancelled or shut down


async def _database_refused(request: Request, exc: Exception) -> JSONResponse:
    """A query the catalog database could not run: 400 in our words; pgstac's own
    messages (an unknown CQL2 operator, a bad paging token) pass, as they name the problem."""
    state = getattr(exc, "sqlstate", None) or ""
    if state == "P0001":  # pgstac's RAISE
        message = str(exc).splitlines()[0] if str(exc) else "the catalog refused the search"
        return JSONResponse({"code": "BadRequest", "description": message}, status_code=400)
    fault = _QUERY_FAULTS.get(state) or _QUERY_FAULTS.get(state[:2])
    if fault is not None:
        return JSONResponse({"code": "BadRequest", "description": fault}, status_code=400)
    if state[:2] in _TRANSIENT:
        return JSONResponse(
            {"code": "ServiceUnavailable", "description": "the catalog database is busy; retry"},
            status_code=503,
        )
    return JSONResponse(
        {"code": "InternalServerError", "description": "the catalog database failed"},
        status_code=500,
    )


async def _malformed_json(request: Request, exc: Exception) -> JSONResponse:
    """stac-fastapi parses `query` and `intersects` with orjson, unguarded."""
    return JSONResponse(
        {"code": "BadRequest", "description": f"`query` or `intersects` is not valid JSON: {exc}"},
        status_code=400,
    )


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """Fail fast with 503 while the database is away or not answering; the pool reconnects
    when it returns. What went wrong (host, port, PostgreSQL's text) goes to the log only."""
    log.warning("catalog database unavailable (%s %s): %r", request.method, request.url.path, exc)
    return JSONResponse(
        {
            "code": "ServiceUnavailable",
            "description": "the catalog database is unreachable or not answering; try again",
        },
        status_code=503,
        headers={"Retry-After": "1"},
    )


def create_stac_app(settings: Settings, dsn: str, prefix: str = "") -> FastAPI:
    """The STAC API under `prefix` ("" when it runs on its own, "/stac" in `serve`).

    Other parts of glacierflow add their routers to the app this returns.
    """
    key = settings.transactions_key()  # refuses an empty or short key
    transactions = key is not None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        postgres = postgres_settings(dsn)
        app.state.readpool = await _create_pool(postgres, settings)
        if transactions:
            app.state.writepool = await _create_pool(postgres, settings)
        app.state.get_connection = _connection_getter(settings)
        yield
        await close_db_connection(app)

    stac_settings = StacSettings(
        stac_fastapi_title=_TITLE,
        stac_fastapi_description=_DESCRIPTION,
        stac_fastapi_landing_id=_TITLE,
        stac_fastapi_version="0.1.0",
        enable_transactions_extensions=transactions,
        cors_origins=settings.cors_origins,
        prefix_path=prefix,
        openapi_url="/openapi.json",
        docs_url="/docs",
        # items stay hydrated by pgstac: the API-side hydration (`use_api_hydrate`, ~2x
        # faster searches at 1 M items, BENCHMARKS.md "Catalog at scale") drops the fields
        # extension's default fields (id, geometry, ...) from answers with `fields`
    )
    # the sort extension as it is (v1.1.0), and as v1.0.0 clients such as pystac-client
    # look for it: the two versions' sortby is the same for GET and POST
    sort_v1_0 = "https://api.stacspec.org/v1.0.0/{}#sort"
    extensions = Extensions(
        settings=stac_settings,
        search_map={
            "query": _Query(),
            "sort": SearchSortExtension(
                conformance_classes=[
                    sort_v1_0.format("item-search"),
                    SortConformanceClasses.ITEM_SEARCH_SORT,
                ]
            ),
        },
        item_collection_map={
            "sort": ItemCollectionSortExtension(
                conformance_classes=[
                    sort_v1_0.format("ogcapi-features"),
                    SortConformanceClasses.FEATURES_SORT,
                ]
            )
        },
    )
    api = instantiate_api(
        client=_Client, extensions=extensions, settings=stac_settings, lifespan=lifespan
    )
    # the STAC version of everything the API serves (pystac writes the items and
    # collections), not stac-pydantic's 1.0.0
    api.client.stac_version = pystac.get_stac_version()
    # compression at the fast end: a 20,000-layer time series (920 kB of JSON) takes
    # 1.5 ms in brotli at quality 0 (7 ms at stac-fastapi's 4, for 23 % fewer bytes), and
    # 4.5 ms in gzip at level 1 for clients without brotli such as `requests` (111 ms at
    # brotli-asgi's level 9). gzip goes outside: it leaves an answer in brotli alone.
    api.app.user_middleware = [
        replaced
        for m in api.app.user_middleware
        for replaced in (
            [
                Middleware(GZipMiddleware, compresslevel=1),
                Middleware(BrotliMiddleware, quality=0, gzip_fallback=False),
            ]
            if m.cls is BrotliMiddleware
            else [m]
        )
    ]
    add_offline_docs(api.app)
    add_limits(api.app, settings.max_body_bytes)
    for unavailable in DATABASE_UNAVAILABLE:
        api.app.add_exception_handler(unavailable, _database_unavailable)
    # what the database refuses is the query's fault (400 in our words), unless the more
    # specific handlers above say it is unavailable
    api.app.add_exception_handler(asyncpg.PostgresError, _database_refused)
    api.app.add_exception_handler(orjson.JSONDecodeError, _malformed_json)
    # inside the body limit (a 20 MB upload gets its 413 before anything buffers it) and
    # inside CORS (its 400s carry CORS headers)
    api.app.user_middleware.append(
        Middleware(
            _RequestBounds,
            prefix=prefix,
            max_depth=settings.stac_filter_max_depth,
            max_length=settings.stac_filter_max_length,
        )
    )
    if transactions:
        api.app.add_middleware(_ApiKeyGuard, key=key, prefix=prefix)
    return api.app


_DOCS_ASSETS = "/docs-assets"


def add_offline_docs(app: FastAPI) -> None:
    """Swagger UI at /docs and ReDoc at /redoc, their scripts and styles served from the
    files the fastapi-offline package installs instead of a CDN: both work offline."""
    app.router.routes = [
        route for route in app.router.routes if not getattr(route, "path", "").startswith("/docs")
    ]
    assets = StaticFiles(directory=str(files("fastapi_offline") / "static"))
    app.mount(_DOCS_ASSETS, assets, name="docs-assets")

    # named as FastAPI names its own: stac-fastapi's landing page links to it by that name
    @app.get("/docs", include_in_schema=False, name="swagger_ui_html")
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{_DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{_DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{_DOCS_ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{_DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{_DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )


def create_app_from_environment() -> FastAPI:
    """The STAC API on its own, as `serve --only stac` runs it (DATABASE_URL or PG* name
    the database): `uvicorn --factory glacierflow.services.stac:create_app_from_environment`."""
    from glacierflow.catalog.database import environment_dsn
    from glacierflow.services.app import create_stac_part  # which composes this module

    dsn = environment_dsn("the STAC API")
    return create_stac_part(Settings(), dsn)
