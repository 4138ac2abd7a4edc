"""One HTTP app for everything glacierflow serves: /stac (and, as they come, /tiles,
/timeseries, the dashboard), plus /healthz. Each part also runs as an app of its own."""

from __future__ import annotations

import inspect
import logging
from contextlib import asynccontextmanager

import asyncpg
from fastapi import APIRouter, FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from glacierflow.services import stac
from glacierflow.services.data import DataFiles, data_router
from glacierflow.services.timeseries import timeseries_router
from glacierflow.settings import Settings

log = logging.getLogger(__name__)


def health_router(settings: Settings, dsn: str) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> JSONResponse:
        """Up, and whether the catalog database answers (503 when it does not, within the
        connect and statement timeouts). Why it does not goes to the log only."""
        try:
            conn = await asyncpg.connect(dsn, **stac.connect_options(settings))
            try:
                version = await conn.fetchval("SELECT pgstac.get_version()")
            except BaseException:
                conn.terminate()  # no goodbye to a server that may not answer
                raise
            await conn.close(timeout=settings.database_statement_timeout_s)
        except (*stac.DATABASE_UNAVAILABLE, asyncpg.PostgresError) as err:
            log.warning("health check: catalog database down: %r", err)
            body = {"status": "down", "database": {"status": "down"}}
            return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
        return JSONResponse({"status": "up", "database": {"status": "up", "pgstac": version}})

    return router


def create_app(settings: Settings, dsn: str) -> FastAPI:
    """The composed application; `dsn` is the catalog database."""
    app = stac.create_stac_app(settings, dsn, prefix="/stac")
    app.include_router(health_router(settings, dsn))
    files = DataFiles(settings)
    app.state.data_files = files  # the STAC API's asset hrefs become URLs with it
    app.include_router(data_router(files))
    series, finder = timeseries_router(settings, dsn, files)
    app.include_router(series)
    stac_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with stac_lifespan(app) as state:
            yield state
        finder.close()

    app.router.lifespan_context = lifespan
    stac_invalid = app.exception_handlers.get(RequestValidationError)

    async def invalid(request: Request, exc: RequestValidationError):
        """stac-fastapi answers invalid STAC requests with 400; the rest of the API with
        FastAPI's 422 and the list of what is wrong."""
        if stac_invalid and request.url.path.startswith("/stac"):
            answer = stac_invalid(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        return await request_validation_exception_handler(request, exc)

    app.add_exception_handler(RequestValidationError, invalid)
    return app


def create_app_from_environment() -> FastAPI:
    """The composed app for uvicorn's own processes (`serve --workers N`): the database
    from DATABASE_URL (or PG*), the rest from GLACIERFLOW_* settings."""
    from glacierflow.catalog.database import DatabaseError, external_dsn

    dsn = external_dsn()
    if dsn is None:
        raise DatabaseError("set DATABASE_URL (or PGHOST etc.) to run the app from the environment")
    return create_app(Settings(), dsn)
