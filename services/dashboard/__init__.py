"""The web front ends `glacierflow serve` carries: the dashboard at `/` and STAC Browser at
`/browser/`, both static builds made from npm packages at set-up (`./run` builds them when
their sources change; this folder holds the sources, `dist/` and `stac-browser/dist/` the
built files, which git ignores). A missing build leaves the API running: the page says how
to build it."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from glacierflow.processing.cubes.grid import NORTH_POLAR_EPSG, SOUTH_POLAR_EPSG
from glacierflow.settings import Settings

HERE = Path(__file__).resolve().parent
DASHBOARD_DIST = HERE / "dist"
BROWSER_DIST = HERE / "stac-browser" / "dist"
# the npm folders, as `./run` and the README name them (from the repository's root)
DASHBOARD_SOURCE = "services/dashboard"
BROWSER_SOURCE = "services/dashboard/stac-browser"
# the front ends ask the server for their files each time (ETag: unchanged files cost a 304)
_REVALIDATE = {"Cache-Control": "no-cache"}


def _not_built(what: str, npm_folder: str) -> HTMLResponse:
    """What `/` or `/browser/` answers before the front ends are built (503: the API runs)."""
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>glacierflow</title></head>
<body><h1>glacierflow</h1>
<p>The {what} is not built. Build it with <code>./run demo</code> or <code>./run test</code>
(they build what changed), or by hand with Node.js and npm:
<code>npm --prefix {npm_folder} ci &amp;&amp; npm --prefix {npm_folder} run build</code>,
then reload this page.</p>
<p>The API works meanwhile: <a href="/stac/">STAC API</a>, <a href="/docs">API documentation</a>,
<a href="/healthz">health</a>.</p></body></html>"""
    return HTMLResponse(page, status_code=503, headers={"Retry-After": "60"})


def missing_builds() -> list[str]:
    """The front ends whose built files are missing, for `serve` to say at start."""
    built = {DASHBOARD_SOURCE: DASHBOARD_DIST, BROWSER_SOURCE: BROWSER_DIST}
    return [name for name, folder in built.items() if not (folder / "index.html").is_file()]


class _Revalidated(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(_REVALIDATE)
        return response


@lru_cache(maxsize=1)
def _itslive_crs() -> dict[str, str]:
    """WKT of the projections of ITS_LIVE's grid (polar stereographic north and south, the
    UTM zones), which STAC Browser would otherwise ask a web service for."""
    from pyproj import CRS
    from pyproj.enums import WktVersion

    codes = [NORTH_POLAR_EPSG, SOUTH_POLAR_EPSG, *range(32601, 32661), *range(32701, 32761)]
    return {f"EPSG:{c}": CRS.from_epsg(c).to_wkt(WktVersion.WKT1_GDAL) for c in codes}


def _browser_config(settings: Settings) -> str:
    """STAC Browser's settings at run time: our catalog only (its URL from where this script
    is served, so a proxy's prefix carries over), the dashboard's basemap or none."""
    config = {
        "catalogTitle": "glacierflow",
        "allowExternalAccess": False,
        "socialSharing": [],
        "crs": _itslive_crs(),
    }
    url = settings.dashboard_basemap_url
    basemap = url and {"url": url, "attribution": settings.dashboard_basemap_attribution}
    return (
        f"window.GLACIERFLOW_BASEMAP = {json.dumps(basemap)};\n"
        f"window.STAC_BROWSER_CONFIG = Object.assign({json.dumps(config)}, "
        '{catalogUrl: new URL("../stac/", document.currentScript.src).href});\n'
    )


def add_front_ends(
    app: FastAPI,
    settings: Settings,
    dashboard: Path = DASHBOARD_DIST,
    browser: Path = BROWSER_DIST,
) -> None:
    """Routes for the dashboard (`/`, `/dashboard/...`) and STAC Browser (`/browser/...`),
    served from their built folders."""

    @app.get("/", include_in_schema=False)
    async def dashboard_page() -> Response:
        page = dashboard / "index.html"
        if not page.is_file():
            return _not_built("dashboard", DASHBOARD_SOURCE)
        return FileResponse(page, headers=_REVALIDATE)

    @app.get("/dashboard/config.json", include_in_schema=False)
    async def dashboard_config() -> JSONResponse:
        """The settings the page needs: where cubes, granules and mosaics are catalogued, the
        basemap."""
        return JSONResponse(
            {
                "cubes_collection": settings.collection_id("cubes"),
                "granules_collection": settings.collection_id("granules"),
                "mosaics_collection": settings.collection_id("mosaics"),
                "basemap_url": settings.dashboard_basemap_url,
                "basemap_attribution": settings.dashboard_basemap_attribution,
                "max_points": settings.timeseries_max_points,
            },
            headers=_REVALIDATE,
        )

    app.mount(
        "/dashboard",
        _Revalidated(directory=dashboard / "dashboard", check_dir=False),
        name="dashboard",
    )

    @app.get("/browser/config.js", include_in_schema=False)
    async def stac_browser_config() -> Response:
        return Response(
            _browser_config(settings), media_type="text/javascript", headers=_REVALIDATE
        )

    @app.get("/browser", include_in_schema=False)
    async def stac_browser_root() -> Response:
        return RedirectResponse("browser/")  # relative: a proxy's prefix stays

    @app.get("/browser/{path:path}", include_in_schema=False)
    async def stac_browser(path: str) -> Response:
        """STAC Browser's files; any other path is one of its pages (history mode), which
        its index.html draws."""
        page = browser / "index.html"
        if not page.is_file():
            return _not_built("STAC Browser", BROWSER_SOURCE)
        target = (browser / path).resolve()
        if target.is_relative_to(browser.resolve()) and target.is_file():
            return FileResponse(target, headers=_REVALIDATE)
        return FileResponse(page, headers=_REVALIDATE)
