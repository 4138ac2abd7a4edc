"""The STAC API: stac-fastapi-pgstac, composed with glacierflow's settings.

Search (CQL2 text and JSON filter, sort, fields, query, token paging), collections with
free-text collection search. Transactions are off unless an API key is configured; then
every write needs the `X-API-Key` header (401 without it).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal
from urllib.parse import unquote, urlparse

import asyncpg
import attr
from brotli_asgi import BrotliMiddleware
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from stac_fastapi.pgstac.app import instantiate_api
from stac_fastapi.pgstac.config import PostgresSettings
from stac_fastapi.pgstac.config import Settings as StacSettings
from stac_fastapi.pgstac.core import CoreCrudClient
from stac_fastapi.pgstac.db import close_db_connection, con_init, translate_pgstac_errors
from stac_fastapi.pgstac.models.extensions import Extensions
from stac_fastapi.pgstac.types.search import PgstacSearch
from stac_fastapi.types.stac import ItemCollection
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.gzip import GZipMiddleware

from glacierflow.services.middleware import add_limits
from glacierflow.settings import Settings

_WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
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
        catalog stores them relative to the data directory (services/data.py). pgstac drops
        `"datetime": null` (pgstac#158, #425): items with a time span (our cubes) get it
        back, as the STAC spec requires."""
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
    """Writes (transactions) need the configured key; searches by POST stay open."""

    def __init__(self, app, key: str, prefix: str):
        super().__init__(app)
        self._key = key
        self._prefix = prefix
        self._search = f"{prefix}/search"  # POST /search reads; every other write is guarded

    async def dispatch(self, request: Request, call_next):
        path = request.url.path.rstrip("/")
        guarded = path.startswith(self._prefix) and not (
            request.method == "POST" and path == self._search
        )
        if request.method in _WRITE_METHODS and guarded:
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
log = logging.getLogger("glacierflow.services")


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
    """stac-fastapi's pool (its sizes, codecs and search path), with the timeouts."""
    options = connect_options(settings)
    options["server_settings"] = {
        **postgres.server_settings.model_dump(),
        **options["server_settings"],
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


def _connection_getter(settings: Settings):
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


async def _bad_query(request: Request, exc: Exception) -> JSONResponse:
    """pgstac rejects a query it cannot run (an unknown CQL2 operator, say): a 400."""
    return JSONResponse({"code": "BadRequest", "description": str(exc)}, status_code=400)


async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
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
    transactions = settings.stac_transactions_api_key is not None

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
    )
    api = instantiate_api(
        client=_Client,
        extensions=Extensions(settings=stac_settings),
        settings=stac_settings,
        lifespan=lifespan,
    )
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
    add_limits(api.app, settings.max_body_bytes)
    for unavailable in DATABASE_UNAVAILABLE:
        api.app.add_exception_handler(unavailable, database_unavailable)
    # pgstac's own RAISE (SQLSTATE P0001) and invalid-value errors are the query's fault
    for rejected in (asyncpg.exceptions.RaiseError, asyncpg.exceptions.DataError):
        api.app.add_exception_handler(rejected, _bad_query)
    if transactions:
        api.app.add_middleware(_ApiKeyGuard, key=settings.stac_transactions_api_key, prefix=prefix)
    return api.app


def create_app_from_environment() -> FastAPI:
    """The STAC API on its own (DATABASE_URL or PG* name the database):
    `uvicorn --factory glacierflow.services.stac:create_app_from_environment`."""
    from glacierflow.catalog.database import DatabaseError, external_dsn

    dsn = external_dsn()
    if dsn is None:
        raise DatabaseError("set DATABASE_URL (or PGHOST etc.) to run the STAC API on its own")
    return create_stac_app(Settings(), dsn)
