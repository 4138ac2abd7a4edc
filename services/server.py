"""Running the composed app with uvicorn (one process; Ctrl-C stops it cleanly)."""

from __future__ import annotations

from collections.abc import Callable

import uvicorn

from glacierflow.services.app import create_app
from glacierflow.settings import Settings


def run(
    settings: Settings, dsn: str, host: str, port: int, say: Callable[[str], None] = print
) -> None:
    app = create_app(settings, dsn)
    say(f"serving on http://{host}:{port}/  (STAC API: /stac, health: /healthz, docs: /docs)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
