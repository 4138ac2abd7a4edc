"""One HTTP app for everything glacierflow serves: /stac (and, as they come, /tiles,
/timeseries, the dashboard), plus /healthz. Each part also runs as an app of its own."""

from __future__ import annotations

import psycopg
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse

from glacierflow.services import stac
from glacierflow.settings import Settings


def health_router(dsn: str) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> JSONResponse:
        """Up, and whether the catalog database answers (503 when it does not)."""
        try:
            async with await psycopg.AsyncConnection.connect(dsn, connect_timeout=3) as conn:
                cursor = await conn.execute("SELECT pgstac.get_version()")
                version = (await cursor.fetchone())[0]
        except psycopg.Error as err:
            body = {"status": "down", "database": {"status": "down", "error": str(err).strip()}}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "up", "database": {"status": "up", "pgstac": version}})

    return router


def create_app(settings: Settings, dsn: str) -> FastAPI:
    """The composed application; `dsn` is the catalog database."""
    app = stac.create_stac_app(settings, dsn, prefix="/stac")
    app.include_router(health_router(dsn))
    return app
