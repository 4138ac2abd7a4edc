"""The STAC API: stac-fastapi-pgstac, composed with glacierflow's settings.

Search (CQL2 text and JSON filter, sort, fields, query, token paging), collections with
free-text collection search. Transactions are off unless an API key is configured; then
every write needs the `X-API-Key` header (401 without it).
"""

from __future__ import annotations

import secrets
from contextlib import asynccontextmanager
from urllib.parse import urlparse

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from stac_fastapi.pgstac.app import instantiate_api
from stac_fastapi.pgstac.config import PostgresSettings
from stac_fastapi.pgstac.config import Settings as StacSettings
from stac_fastapi.pgstac.db import close_db_connection, connect_to_db
from starlette.middleware.base import BaseHTTPMiddleware

from glacierflow.settings import Settings

_WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
_READ_ONLY_POSTS = ("/search",)


def postgres_settings(dsn: str) -> PostgresSettings:
    """stac-fastapi's connection settings from a DSN (it reads no DATABASE_URL itself)."""
    url = urlparse(dsn)
    return PostgresSettings(
        pguser=url.username or "postgres",
        pgpassword=url.password or "",
        pghost=url.hostname or "127.0.0.1",
        pgport=url.port or 5432,
        pgdatabase=(url.path or "/postgres").lstrip("/") or "postgres",
    )


class _ApiKeyGuard(BaseHTTPMiddleware):
    """Writes (transactions) need the configured key; searches by POST stay open."""

    def __init__(self, app, key: str, prefix: str):
        super().__init__(app)
        self._key = key
        self._prefix = prefix

    async def dispatch(self, request: Request, call_next):
        path = request.url.path
        guarded = path.startswith(self._prefix) and not path.endswith(_READ_ONLY_POSTS)
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


def create_stac_app(settings: Settings, dsn: str, prefix: str = "") -> FastAPI:
    """The STAC API under `prefix` ("" when it runs on its own, "/stac" in `serve`).

    Other parts of glacierflow add their routers to the app this returns.
    """
    transactions = settings.stac_transactions_api_key is not None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await connect_to_db(
            app, postgres_settings=postgres_settings(dsn), add_write_connection_pool=transactions
        )
        yield
        await close_db_connection(app)

    stac_settings = StacSettings(
        stac_fastapi_title="glacierflow",
        stac_fastapi_description="Glacier velocity granules, cubes and mosaics (ITS_LIVE layout)",
        stac_fastapi_landing_id="glacierflow",
        stac_fastapi_version="0.1.0",
        enable_transactions_extensions=transactions,
        cors_origins=settings.cors_origins,
        prefix_path=prefix,
        openapi_url="/openapi.json",
        docs_url="/docs",
    )
    api = instantiate_api(settings=stac_settings, lifespan=lifespan)
    if transactions:
        api.app.add_middleware(_ApiKeyGuard, key=settings.stac_transactions_api_key, prefix=prefix)
    return api.app
