"""Map tiles of the velocity rasters, by titiler: COGs of the data directory, and mosaics and
items of the catalog (titiler-pgstac), with the `speed` colormap and its legend.

Mounted at /tiles in the composed app, or served alone (`create_tiles_app_from_environment`).
What is glacierflow's own here is where files may come from, what a request may cost, and
how tiles are read and encoded for speed (PNG level, no per-tile thread pools); the
endpoints are titiler's factories:

- /tiles/cog/...: tiles, point, info, statistics, TileJSON, WMTSCapabilities.xml, preview and
  parts of one COG named by `url`: a path relative to the data directory, or its URL under
  this server's /data (or GLACIERFLOW_PUBLIC_DATA_URL). Anything else (other hosts, absolute
  paths, `..`, GDAL's /vsi paths) is refused with 400, and answers never name a server path.
- /tiles/searches/..., /tiles/collections/{id}/...: pgstac mosaics (a registered search, or
  a whole collection); /tiles/collections/{id}/items/{item}/...: one item. Asset hrefs are
  stored relative to the data directory; the readers resolve them there and refuse the rest.
- /tiles/legend/speed(.png): the speed colormap's stops with their m/yr values.

Outside the data a PNG tile is transparent (200), for every client alike: web maps draw
nothing, and GDAL (QGIS's WMTS engine) reads nodata, where a 404 would fail its read.
Tile indices outside the tile matrix, or image sizes beyond MAX_IMAGE_SIDE, are 400.
GET answers below 400 carry Cache-Control (titiler's middleware), search registration not.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Annotated, Any
from urllib.parse import parse_qsl, unquote, urlsplit

import morecantile
import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image, ImageDraw
from psycopg import OperationalError
from psycopg_pool import ConnectionPool, PoolTimeout
from pydantic import Field
from rasterio.errors import RasterioError
from rio_tiler.colormap import cmap as default_colormaps
from rio_tiler.errors import PointOutsideBounds, RioTilerError, TileOutsideBounds
from rio_tiler.io import MultiBaseReader
from rio_tiler.models import ImageData
from rio_tiler.profiles import PNGProfile, img_profiles
from rio_tiler.types import AssetInfo, AssetType
from starlette.types import ASGIApp, Receive, Scope, Send
from titiler.core.dependencies import PartFeatureParams, create_colormap_dependency
from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers
from titiler.core.factory import (
    ColorMapFactory,
    MultiBaseTilerFactory,
    TilerFactory,
    TMSFactory,
)
from titiler.core.middleware import CacheControlMiddleware
from titiler.extensions import wmtsExtension
from titiler.extensions.render import _adapt_render_for_v2
from titiler.mosaic import factory as titiler_mosaic_factory
from titiler.mosaic.errors import MOSAIC_STATUS_CODES, EmptyMosaicError, NoAssetFoundError
from titiler.mosaic.extensions.wmts import wmtsExtension as mosaicWmtsExtension
from titiler.pgstac.dependencies import CollectionIdParams, ItemIdParams, SearchIdParams
from titiler.pgstac.errors import PGSTAC_STATUS_CODES
from titiler.pgstac.factory import (
    MosaicTilerFactory,
    add_search_list_route,
    add_search_register_route,
)
from titiler.pgstac.reader import PgSTACReader, SimpleSTACReader

from glacierflow.catalog.render import (
    SPEED_COLORMAP_NAME,
    SPEED_TICKS_M_PER_YR,
    colour_index,
    index_speed_range,
    speed_colormap,
)
from glacierflow.services.data import DATA_PREFIX, DataFiles
from glacierflow.services.middleware import add_limits
from glacierflow.services.stac import add_offline_docs
from glacierflow.settings import Settings

log = logging.getLogger(__name__)

TILES_PREFIX = "/tiles"
# the largest image side (px) any request may ask for: tiles, previews, parts
MAX_IMAGE_SIDE = 2048
MAX_TILE_BUFFER = 64  # px added on each side of a tile (buffer, padding)
MAX_HISTOGRAM_BINS = 1000
PART_MAX_SIZE = 1024  # a part's default size, where titiler would read full resolution
CACHE_CONTROL = "public, max-age=3600"
# answers that change with every write to the catalog: not cached
_UNCACHED_PATHS = {r".*/searches(/list)?/?$", r".*/searches/register$"}
# what a request may ask for at most: image sides (px), margins (px), histogram bins
_LIMITS = {
    **dict.fromkeys(("tilesize", "max_size", "width", "height"), MAX_IMAGE_SIDE),
    **dict.fromkeys(("buffer", "padding"), MAX_TILE_BUFFER),
    "histogram_bins": MAX_HISTOGRAM_BINS,
}
_SIZE_PATH = re.compile(r"/(?P<width>\d+)x(?P<height>\d+)(?:\.\w+)?$")  # parts' {width}x{height}
_TILE_PATH = re.compile(
    r"/tiles/(?P<tms>[^/]+)/(?P<z>-?\d+)/(?P<x>-?\d+)/(?P<y>-?\d+)(?:\.(?P<ext>\w+))?$"
)

# Mosaics read their items in turn (titiler's MOSAIC_CONCURRENCY, unless set): the files
# are local, a thread pool made per tile cost 17 ms of a 29 ms tile on 2 cores, and in
# turn the first item that covers the tile ends the read (pixel selection `first`).
if "MOSAIC_CONCURRENCY" not in os.environ:
    titiler_mosaic_factory.MOSAIC_THREADS = 1
# tile matrix sets for glaciers: web maps, plate carrée, and the two polar stereographic grids
TILE_MATRIX_SETS = morecantile.TileMatrixSets(
    {
        name: morecantile.tms.get(name)
        for name in (
            "WebMercatorQuad",
            "WorldCRS84Quad",
            "UPSArcticWGS84Quad",
            "UPSAntarcticWGS84Quad",
        )
    }
)
# PNG tiles at zlib level 1 instead of rio-tiler's 6, in this process: speed fields are
# noisy, so level 6 makes them barely smaller (within 5 %) at 4 to 14 times the cost, most
# of a tile's time (benchmarks/tiles.py)
img_profiles.data["png"] = PNGProfile(zlevel=1)
# rio-tiler's own "speed" (cmocean's, linear) gives way to ours in this server only
COLORMAPS = default_colormaps.register({SPEED_COLORMAP_NAME: speed_colormap()}, overwrite=True)
ColorMapParams = create_colormap_dependency(COLORMAPS)


class OutsideDataError(RioTilerError):
    """An asset href, or a requested file, that is not a published file of the data
    directory: refused whatever it names."""


# -- where files may come from --------------------------------------------------------------
def published_file(files: DataFiles, relative: str) -> Path:
    """The real path of a published data file; OutsideDataError for anything else."""
    try:
        return files.file(relative)
    except HTTPException:
        raise OutsideDataError("not a published file of the data directory") from None


def cog_path_dependency(files: DataFiles) -> Callable[..., str]:
    """titiler's `url` parameter, limited to files of the data directory."""

    def cog_path(
        request: Request,
        url: Annotated[
            str,
            Query(
                description="The COG: its path relative to the data directory (e.g. "
                "`mosaics/….tif`), or its URL under this server's /data",
                max_length=2000,
            ),
        ],
    ) -> str:
        relative = _data_relative(url, _data_bases(request, files))
        return str(published_file(files, relative))

    return cog_path


def _data_bases(request: Request, files: DataFiles) -> list[str]:
    """The URLs this server's data files are published under, as the client sees them."""
    root = request.scope.get("root_path", "").removesuffix(TILES_PREFIX)
    own = f"{request.url.scheme}://{request.url.netloc}{root}{DATA_PREFIX}"
    return [own] + ([files.public] if files.public else [])


def _data_relative(url: str, bases: list[str]) -> str:
    """A data-relative path from a relative path or a URL under one of `bases`; 400 for
    anything else, without saying more than the rule."""
    for base in bases:
        if url.startswith(base + "/"):
            url = unquote(url[len(base) + 1 :])
            break
    else:
        if urlsplit(url).scheme or url.startswith(("/", "\\")):
            raise HTTPException(
                400,
                "url must be a path relative to the data directory or a URL under this "
                "server's /data; other hosts, absolute paths and GDAL paths are refused",
            )
    if ".." in PurePosixPath(url).parts or not url:
        raise HTTPException(400, "url must not climb out of the data directory ('..')")
    return url


def _data_reader(base: type[MultiBaseReader], files: DataFiles) -> type[MultiBaseReader]:
    """A STAC reader whose asset hrefs (data-relative, as the catalog stores them) resolve
    to files of the data directory; any other href is refused."""

    class DataReader(base):  # type: ignore[misc,valid-type]
        def tile(self, *args: Any, **kwargs: Any) -> ImageData:
            """An item's assets read in turn, not in a thread pool made for each tile:
            local files on a few cores read a tile in 7 ms that way, 18 ms through the
            pool."""
            return super().tile(*args, **{"threads": 0, **kwargs})

        def _get_asset_info(self, asset: AssetType) -> AssetInfo:
            info = super()._get_asset_info(asset)
            href = info["url"]
            if urlsplit(href).scheme:
                raise OutsideDataError("an asset of this item is not a published data file")
            info["url"] = str(published_file(files, href))
            return info

    DataReader.__name__ = f"Data{base.__name__}"
    return DataReader


# -- bounded requests ------------------------------------------------------------------------
@dataclass
class BoundedPartParams(PartFeatureParams):
    """Parts (bbox, feature) at most PART_MAX_SIZE px unless asked otherwise: titiler's
    default is the full resolution of any area asked for."""

    max_size: Annotated[int | None, Field(description="Maximum image size to read onto.", gt=0)] = (
        PART_MAX_SIZE
    )


class RequestBounds:
    """400 for tile indices outside their tile matrix, and for image sizes, margins or
    histogram bins past the limits (_LIMITS), before titiler reads anything."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = _tile_index_problem(scope["path"]) or _size_problem(scope)
            if problem:
                await JSONResponse({"detail": problem}, status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _tile_index_problem(path: str) -> str | None:
    found = _TILE_PATH.search(path)
    if not found or found["tms"] not in TILE_MATRIX_SETS.list():
        return None  # not a tile, or an unknown tile matrix set: titiler's 422
    tms = TILE_MATRIX_SETS.get(found["tms"])
    z, x, y = int(found["z"]), int(found["x"]), int(found["y"])
    if not tms.minzoom <= z <= tms.maxzoom:
        return f"zoom {z} is outside {found['tms']}'s {tms.minzoom} to {tms.maxzoom}"
    matrix = tms.matrix(z)
    if not (0 <= x < matrix.matrixWidth and 0 <= y < matrix.matrixHeight):
        return (
            f"tile {z}/{x}/{y} is outside {found['tms']}'s zoom {z} matrix "
            f"(x 0 to {matrix.matrixWidth - 1}, y 0 to {matrix.matrixHeight - 1})"
        )
    return None


def _size_problem(scope: Scope) -> str | None:
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    if sized := _SIZE_PATH.search(scope["path"]):
        query.update(sized.groupdict())
    for name, limit in _LIMITS.items():
        value = query.get(name)
        if value is None:
            continue
        try:  # histogram bins: a count, or the edges themselves
            amount = len(value.split(",")) if "," in value else float(value)
        except ValueError:
            continue  # not a number: titiler's 422 says so
        if amount > limit:
            return f"{name} must be at most {limit}"
    return None


class MountedRootPath:
    """URLs that titiler makes (TileJSON, WMTS, search links) under the mount point: Starlette
    builds them from the outermost app's root path, which lacks /tiles when this app is
    mounted."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, "app_root_path": scope.get("root_path", "")}
        await self.app(scope, receive, send)


# -- answers outside the data, and errors --------------------------------------------------------
@lru_cache(maxsize=16)
def _transparent_png(size: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (size, size), (0, 0, 0, 0)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


async def _outside_data(request: Request, exc: Exception) -> Response:
    """A PNG tile outside the data is transparent (of the `tilesize` asked for); anything
    else outside is 404."""
    found = _TILE_PATH.search(request.url.path)
    if found and found["ext"] in (None, "png"):
        tilesize = request.query_params.get("tilesize", "")
        size = int(tilesize) if tilesize.isdigit() else 256
        return Response(_transparent_png(size), media_type="image/png")
    return JSONResponse({"detail": "no data here (outside the dataset)"}, status_code=404)


async def _outside_published(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=404)


async def _unreadable(request: Request, exc: Exception) -> JSONResponse:
    """Reading errors name server paths: logged, answered without them."""
    log.error("tiles: %s on %s: %s", type(exc).__name__, request.url.path, exc)
    return JSONResponse({"detail": "the raster could not be read; see the server log"}, 500)


async def _database_away(request: Request, exc: Exception) -> JSONResponse:
    log.warning("tiles: catalog database unavailable: %r", exc)
    return JSONResponse(
        {"detail": "the catalog database is unavailable; try again shortly"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


def _add_error_answers(app: FastAPI) -> None:
    add_exception_handlers(
        app, {**DEFAULT_STATUS_CODES, **MOSAIC_STATUS_CODES, **PGSTAC_STATUS_CODES}
    )
    for outside in (TileOutsideBounds, PointOutsideBounds, NoAssetFoundError, EmptyMosaicError):
        app.add_exception_handler(outside, _outside_data)
    app.add_exception_handler(OutsideDataError, _outside_published)
    for unreadable in (RasterioError, RioTilerError, Exception):
        app.add_exception_handler(unreadable, _unreadable)
    for away in (PoolTimeout, OperationalError):
        app.add_exception_handler(away, _database_away)


# -- the legend ----------------------------------------------------------------------------------
def speed_legend() -> dict[str, Any]:
    """The speed colormap as a client draws a legend from it: every entry with the speeds it
    stands for, and the decade ticks with their colours."""
    colormap = speed_colormap()

    def hex_colour(index: int) -> str:
        return "#{:02x}{:02x}{:02x}".format(*colormap[index][:3])

    stops = []
    for index in range(256):
        low, high = index_speed_range(index)
        stops.append(
            {
                "index": index,
                "min": None if index == 0 else round(low, 6),
                "max": None if index == 255 else round(high, 6),
                "color": hex_colour(index),
            }
        )
    return {
        "colormap_name": SPEED_COLORMAP_NAME,
        "title": "Speed",
        "units": "m/yr",
        "scale": "log10",
        "range": [SPEED_TICKS_M_PER_YR[0], SPEED_TICKS_M_PER_YR[-1]],
        "ticks": [
            {"value": v, "label": f"{v:,.0f}", "color": hex_colour(colour_index(v))}
            for v in SPEED_TICKS_M_PER_YR
        ],
        "stops": stops,
    }


def speed_legend_png(width: int = 320, height: int = 56) -> bytes:
    """A horizontal colour bar with the decade ticks labelled in m/yr."""
    bar_height = height // 2
    colours = np.array([c[:3] for c in speed_colormap().values()], dtype=np.uint8)
    columns = colours[np.linspace(0, 255, width - 20).round().astype(int)]
    image = Image.new("RGBA", (width, height), (255, 255, 255, 255))
    image.paste(Image.fromarray(np.repeat(columns[None], bar_height, axis=0)), (10, 2))
    draw = ImageDraw.Draw(image)
    for tick in SPEED_TICKS_M_PER_YR:
        x = 10 + round(colour_index(tick) / 255 * (width - 21))
        draw.line([(x, bar_height + 2), (x, bar_height + 6)], fill=(0, 0, 0, 255))
        label = f"{tick:,.0f}"
        text_width = draw.textlength(label)
        draw.text((x - text_width / 2, bar_height + 8), label, fill=(0, 0, 0, 255))
    draw.text((width - 40, height - 12), "m/yr", fill=(0, 0, 0, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _add_legend_routes(app: FastAPI) -> None:
    legend_json = speed_legend()
    legend_png = speed_legend_png()

    def unknown(name: str) -> HTTPException:
        return HTTPException(
            404, f"no legend for colormap {name!r}; the legend exists for {SPEED_COLORMAP_NAME!r}"
        )

    # the PNG route first: the JSON route's {colormap_name} would match `speed.png`
    @app.get(
        "/legend/{colormap_name}.png",
        tags=["Legend"],
        summary="A colormap's legend (PNG)",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    def legend_image(colormap_name: str) -> Response:
        if colormap_name != SPEED_COLORMAP_NAME:
            raise unknown(colormap_name)
        return Response(legend_png, media_type="image/png")

    @app.get("/legend/{colormap_name}", tags=["Legend"], summary="A colormap's legend (JSON)")
    def legend(colormap_name: str) -> dict[str, Any]:
        """The colour of every speed: each colormap entry with the m/yr range it is drawn
        for (`min` inclusive, `max` exclusive; open at the ends), and the log ticks."""
        if colormap_name != SPEED_COLORMAP_NAME:
            raise unknown(colormap_name)
        return legend_json


# -- the app ---------------------------------------------------------------------------------------
def _item_renders(reader: PgSTACReader) -> dict[str, Any]:
    renders = reader.item.properties.get("renders", {})
    for render in renders.values():
        _adapt_render_for_v2(render)
    return renders


def _layer_name(src_path: Any) -> str:
    """WMTS layer names: a file's stem, never its server path."""
    return Path(src_path).stem if isinstance(src_path, str) else "glacierflow"


def create_tiles_app(settings: Settings, dsn: str, *, own_lifespan: bool = True) -> FastAPI:
    """The tile server. With `own_lifespan` it opens and closes its database pool itself;
    mounted in another app, that app's lifespan runs `tiles_database` instead (a mounted
    app's lifespan is not run)."""
    files = DataFiles(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with tiles_database(app, settings, dsn):
            yield

    app = FastAPI(
        title="glacierflow tiles",
        description="Map tiles of glacierflow's velocity COGs and catalog mosaics (titiler)",
        lifespan=lifespan if own_lifespan else None,
        docs_url=None,
        redoc_url=None,
    )
    add_offline_docs(app)
    _add_error_answers(app)
    add_limits(app, settings.max_body_bytes)  # search registrations' bodies (413 beyond)
    bounded = {
        "colormap_dependency": ColorMapParams,
        "img_part_dependency": BoundedPartParams,
        "supported_tms": TILE_MATRIX_SETS,
    }

    cog = TilerFactory(
        path_dependency=cog_path_dependency(files),
        router_prefix="/cog",
        add_viewer=False,
        extensions=[wmtsExtension(layer_identifier_provider=_layer_name)],
        **bounded,
    )
    app.include_router(cog.router, prefix="/cog", tags=["COG"])

    mosaic_options = {
        "dataset_reader": _data_reader(SimpleSTACReader, files),
        "add_statistics": True,
        "add_viewer": False,
        "add_part": True,
        **bounded,
    }
    searches = MosaicTilerFactory(
        path_dependency=SearchIdParams,
        router_prefix="/searches/{search_id}",
        extensions=[mosaicWmtsExtension()],
        **mosaic_options,
    )
    app.include_router(searches.router, prefix="/searches/{search_id}", tags=["STAC search mosaic"])
    add_search_list_route(app, prefix="/searches", tags=["STAC search mosaic"])
    add_search_register_route(
        app,
        prefix="/searches",
        tile_dependencies=[
            searches.layer_dependency,
            searches.dataset_dependency,
            searches.pixel_selection_dependency,
            searches.process_dependency,
            searches.render_dependency,
            searches.assets_accessor_dependency,
            searches.reader_dependency,
            searches.backend_dependency,
        ],
        tags=["STAC search mosaic"],
    )
    collections = MosaicTilerFactory(
        path_dependency=CollectionIdParams,
        router_prefix="/collections/{collection_id}",
        extensions=[mosaicWmtsExtension()],
        **mosaic_options,
    )
    app.include_router(
        collections.router, prefix="/collections/{collection_id}", tags=["STAC collection mosaic"]
    )
    items = MultiBaseTilerFactory(
        reader=_data_reader(PgSTACReader, files),
        path_dependency=ItemIdParams,
        router_prefix="/collections/{collection_id}/items/{item_id}",
        add_viewer=False,
        get_renders=_item_renders,
        extensions=[wmtsExtension(layer_identifier_provider=lambda item: item.id)],
        **bounded,
    )
    app.include_router(
        items.router, prefix="/collections/{collection_id}/items/{item_id}", tags=["STAC item"]
    )
    app.include_router(TMSFactory(supported_tms=TILE_MATRIX_SETS).router, tags=["Tiling schemes"])
    app.include_router(ColorMapFactory(supported_colormaps=COLORMAPS).router, tags=["Colormaps"])
    _add_legend_routes(app)

    app.add_middleware(
        CacheControlMiddleware,
        cachecontrol=CACHE_CONTROL,
        cachecontrol_max_http_code=400,
        exclude_path=_UNCACHED_PATHS,
    )
    app.add_middleware(RequestBounds)
    app.add_middleware(MountedRootPath)
    return app


@asynccontextmanager
async def tiles_database(app: FastAPI, settings: Settings, dsn: str) -> AsyncIterator[None]:
    """titiler-pgstac's pool (`app.state.dbpool`), from our DSN as given (titiler-pgstac's
    own settings would read PG*/DATABASE_URL), with the API's connect and statement
    timeouts. Opened without waiting: a database that is down answers 503 per request."""
    statement_ms = round(settings.database_statement_timeout_s * 1000)
    pool = ConnectionPool(
        conninfo=dsn,
        min_size=1,
        max_size=10,
        timeout=settings.database_connect_timeout_s,
        kwargs={
            "options": f"-c search_path=pgstac,public -c application_name=glacierflow-tiles "
            f"-c statement_timeout={statement_ms}",
            "connect_timeout": max(2, round(settings.database_connect_timeout_s)),
        },
        open=False,
    )
    pool.open(wait=False)
    app.state.dbpool = pool
    try:
        yield
    finally:
        pool.close()


def create_tiles_app_from_environment() -> FastAPI:
    """The tile server alone with its health routes, for uvicorn (`--factory`): the database
    from DATABASE_URL (or PG*), the rest from GLACIERFLOW_* settings."""
    from glacierflow.catalog.database import environment_dsn
    from glacierflow.services.app import create_tiles_part  # the app module imports this one

    dsn = environment_dsn("the tiles")
    return create_tiles_part(Settings(), dsn)
