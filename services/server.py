"""Running the composed app with uvicorn (one process; Ctrl-C stops it cleanly)."""

from __future__ import annotations

import os
from collections.abc import Callable

import uvicorn

from glacierflow.services.app import create_app
from glacierflow.settings import Settings


def run(
    settings: Settings,
    dsn: str,
    host: str,
    port: int,
    say: Callable[[str], None] = print,
    workers: int = 1,
) -> None:
    """Serve until interrupted; with workers > 1, uvicorn runs that many processes, each
    building the app from the environment (the database passed on as DATABASE_URL)."""
    say(
        f"serving on http://{host}:{port}/  (STAC API: /stac, time series: /timeseries, "
        "health: /healthz, docs: /docs)"
    )
    if workers > 1:
        os.environ["DATABASE_URL"] = dsn
        uvicorn.run(
            "glacierflow.services.app:create_app_from_environment",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
        )
        return
    uvicorn.run(create_app(settings, dsn), host=host, port=port, log_level="warning")
