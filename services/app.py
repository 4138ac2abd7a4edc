"""One HTTP app for everything glacierflow serves: /stac, /tiles, /timeseries, the dashboard
at / and STAC Browser at /browser/, plus /healthz. Each part also runs as an app of its own."""

from __future__ import annotations

import inspect
import logging
from contextlib import asynccontextmanager

import asyncpg
from fastapi import APIRouter, FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware

from glacierflow.services import stac
from glacierflow.services.dashboard import add_front_ends
from glacierflow.services.data import DataFiles, data_router
from glacierflow.services.middleware import add_limits
from glacierflow.services.tiles import TILES_PREFIX, create_tiles_app, tiles_database
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


def _serve_data(app: FastAPI, settings: Settings) -> DataFiles:
    """/data, and the URLs of its files in the app's answers."""
    files = DataFiles(settings)
    app.state.data_files = files  # the STAC API's asset hrefs become URLs with it
    app.include_router(data_router(files))
    return files


def create_app(settings: Settings, dsn: str) -> FastAPI:
    """The composed application; `dsn` is the catalog database."""
    app = stac.create_stac_app(settings, dsn, prefix="/stac")
    add_front_ends(app, settings)
    app.include_router(health_router(settings, dsn))
    files = _serve_data(app, settings)
    series, finder = timeseries_router(settings, dsn, files)
    app.include_router(series)
    tiles = create_tiles_app(settings, dsn, own_lifespan=False)
    app.mount(TILES_PREFIX, tiles)  # its own OpenAPI document: /tiles/docs
    stac_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with stac_lifespan(app) as state, tiles_database(tiles, settings, dsn):
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
    declare_error_answers(app)
    return app


# -- each part on its own: separate processes (or pods) scaled apart on one database --------
def create_stac_part(settings: Settings, dsn: str) -> FastAPI:
    """The STAC API at the root, with /healthz and the /data files its asset URLs name."""
    app = stac.create_stac_app(settings, dsn)
    app.include_router(health_router(settings, dsn))
    _serve_data(app, settings)
    declare_error_answers(app)
    return app


def create_timeseries_part(settings: Settings, dsn: str) -> FastAPI:
    """/timeseries and /profile at the root, with /healthz, /docs and the /data files their
    granule URLs name."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        finder.close()

    app = FastAPI(
        title="glacierflow time series",
        description="Point time series and line profiles read from the datacubes",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    stac.add_offline_docs(app)
    app.include_router(health_router(settings, dsn))
    files = _serve_data(app, settings)
    series, finder = timeseries_router(settings, dsn, files)
    app.include_router(series)
    app.add_middleware(GZipMiddleware, compresslevel=1)  # as the composed app answers
    app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"])
    add_limits(app, settings.max_body_bytes)
    declare_error_answers(app)
    return app


PARTS = {"stac": create_stac_part, "timeseries": create_timeseries_part, "tiles": create_tiles_app}


# What any route may answer besides its own 2xx, always as a JSON error body: stac-fastapi's
# 400 for bad STAC queries, 404, 413 (body too large), 422 (bad parameters), 503 (database
# or cube store away), and 500 (still JSON). Declared so that clients and the fuzzer in the
# test suite can hold every answer to the document.
_ERROR_STATUSES = {
    "400": "Bad request (STAC query)",
    "404": "Not found",
    "413": "Request body too large",
    "422": "Invalid parameters",
    "500": "Internal error",
    "503": "A backend (catalog database, cube store) is unavailable",
}
_ERROR_SCHEMA = {
    "title": "Error",
    "description": "FastAPI's `detail` (a message or the list of invalid fields), or "
    "stac-fastapi's `code` and `description`.",
    "type": "object",
    "properties": {
        "detail": {"anyOf": [{"type": "string"}, {"type": "array"}]},
        "code": {"type": "string"},
        "description": {"type": "string"},
    },
    "anyOf": [{"required": ["detail"]}, {"required": ["code", "description"]}],
}


def declare_error_answers(app: FastAPI) -> None:
    """Add the error answers to every operation of the app's OpenAPI document."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            document = generate()
            document.setdefault("components", {}).setdefault("schemas", {})["Error"] = _ERROR_SCHEMA
            error = {"$ref": "#/components/schemas/Error"}
            for operations in document.get("paths", {}).values():
                for operation in operations.values():
                    responses = operation.setdefault("responses", {})
                    if _takes_fields(document, operation):
                        _declare_subsets(responses.setdefault("200", {"description": "OK"}))
                    for status, description in _ERROR_STATUSES.items():
                        answer = responses.setdefault(status, {"description": description})
                        json = answer.setdefault("content", {}).setdefault("application/json", {})
                        declared = json.get("schema")  # FastAPI's own 422 stays one choice
                        json["schema"] = {"anyOf": [declared, error]} if declared else error
        return app.openapi_schema

    app.openapi = openapi


def _takes_fields(document: dict, operation: dict) -> bool:
    """Whether the operation takes the STAC fields extension's `fields` (query or body)."""
    if any(p.get("name") == "fields" for p in operation.get("parameters", [])):
        return True
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    ref = body.get("schema", {}).get("$ref", "")
    schema = document["components"]["schemas"].get(ref.rsplit("/", 1)[-1], {})
    return "fields" in schema.get("properties", {})


def _declare_subsets(answer: dict) -> None:
    """With `fields`, STAC answers (items as GeoJSON, collections as JSON) carry only the
    fields asked for: the declared models' required properties may be left out."""
    subset = {"type": "object", "description": "the fields asked for (fields extension)"}
    content = answer.setdefault("content", {})
    for media in content or {"application/json": {}}:
        declared = content.setdefault(media, {}).get("schema")
        content[media]["schema"] = {"anyOf": [declared, subset]} if declared else subset


def create_app_from_environment() -> FastAPI:
    """The composed app for uvicorn's own processes (`serve --workers N`): the database
    from DATABASE_URL (or PG*), the rest from GLACIERFLOW_* settings."""
    from glacierflow.catalog.database import environment_dsn

    dsn = environment_dsn("the app")
    return create_app(Settings(), dsn)


def create_timeseries_part_from_environment() -> FastAPI:
    """The time-series service alone, for uvicorn (`--factory`), configured as above."""
    from glacierflow.catalog.database import environment_dsn

    dsn = environment_dsn("the time series")
    return create_timeseries_part(Settings(), dsn)
