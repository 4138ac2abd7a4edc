"""The data files behind the catalog, served under /data, and the URLs that name them.

The catalog stores a data file's href relative to the data directory (`granules/x.nc`,
`cubes/ITS_LIVE_….zarr`); every public answer turns it into a URL: under
`GLACIERFLOW_PUBLIC_DATA_URL` when set, else under this API's own `/data` as the client
reached it (any host name or proxy prefix works). `/data` serves granules, browse images,
rasters and the cubes' Zarr files with HTTP range requests; it serves nothing else of the
data directory (the database cluster, caches, the cubes' state folders), no dotfile, and
nothing a symlink leads out of the data directory.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse

from glacierflow.processing.cubes.store import CubeError, tile_from_name
from glacierflow.settings import Settings

log = logging.getLogger(__name__)

DATA_PREFIX = "/data"
# file kinds served outside cubes; a cube's Zarr tree (a `*.zarr` folder) is served whole
SERVED_SUFFIXES = {".nc", ".png", ".pgw", ".wld", ".xml", ".tif", ".tiff", ".tfw", ".parquet"}
# what glacierflow keeps in the data directory that is not data
PRIVATE_FOLDERS = {"postgres", "cache"}
MEDIA_TYPES = {
    ".nc": "application/x-netcdf",
    ".png": "image/png",
    ".tif": "image/tiff; application=geotiff",
    ".tiff": "image/tiff; application=geotiff",
    ".json": "application/json",
}


class DataFiles:
    """The data directory as the API publishes it: which files, under which URLs, and
    which cube stores /timeseries may read."""

    def __init__(self, settings: Settings) -> None:
        self.root = Path(os.path.realpath(settings.data_dir))
        # each cube store (its real folder: it may be a link to another disk) and its href
        store = settings.cube_store
        self.stores = {Path(os.path.realpath(store)): store.relative_to(settings.data_dir)}
        self._served = (self.root, *self.stores)
        # a series asks for up to one granule per layer: each looked at once
        self.relative = lru_cache(maxsize=65536)(self._relative)
        self.public = (
            str(settings.public_data_url).rstrip("/") if settings.public_data_url else None
        )

    def base_url(self, request: Request) -> str:
        """Where this client reaches the data directory."""
        return self.public or str(request.base_url).rstrip("/") + DATA_PREFIX

    # -- files -------------------------------------------------------------------------
    def file(self, relative: str) -> Path:
        """The file a /data path names; 404 for anything not published (without saying
        which rule refused it, nor where the data directory is)."""
        parts = PurePosixPath(relative).parts
        zarr_tree = any(p.endswith(".zarr") for p in parts[:-1])
        allowed = (
            parts
            and parts[0] not in PRIVATE_FOLDERS
            and not any(p.startswith(".") or "\\" in p or "\0" in p for p in parts)
            and (zarr_tree or PurePosixPath(parts[-1]).suffix.lower() in SERVED_SUFFIXES)
        )
        path = Path(os.path.realpath(self.root.joinpath(*parts))) if allowed else None
        if path is None or not self._published(path) or not path.is_file():
            if allowed:
                log.info("refused /data/%s: not a published file", relative)
            raise HTTPException(404, "no published data file at this URL")
        return path

    # -- hrefs -----------------------------------------------------------------------------
    def _relative(self, href: str) -> str | None:
        """A stored href as a path relative to the data directory; None for a URL or a
        path outside it."""
        if urlsplit(href).scheme:
            return None
        path = Path(os.path.normpath(self.root / href))  # absolute hrefs stay themselves
        if not self._published(Path(os.path.realpath(path))):
            return None
        # the file's own name, not what it links to: a cube is named by its link
        named = Path(os.path.realpath(path.parent)) / path.name
        return named.relative_to(self.root).as_posix() if named.is_relative_to(self.root) else None

    def url(self, href: str, base: str) -> str | None:
        """The public URL of a stored href: URLs unchanged, data files under `base`;
        None for a local path the API does not serve (never shown to clients)."""
        if urlsplit(href).scheme in {"http", "https", "s3", "gs"}:
            return href
        relative = self.relative(href)
        return f"{base}/{quote(relative)}" if relative is not None else None

    def public_item(self, item: dict, base: str) -> dict:
        """An item with every asset href a URL; assets on unserved local paths left out."""
        assets = item.get("assets")
        if not isinstance(assets, dict):
            return item
        for key, asset in list(assets.items()):
            href = asset.get("href") if isinstance(asset, dict) else None
            if not isinstance(href, str):
                continue
            url = self.url(href, base)
            if url is None:
                log.warning(
                    "item %s: asset %r is outside the data directory; left out", item.get("id"), key
                )
                del assets[key]
            else:
                asset["href"] = url
        return item

    def _published(self, real: Path) -> bool:
        return any(real.is_relative_to(folder) for folder in self._served)

    def cube(self, href: str) -> tuple[Path, str] | None:
        """The local cube a catalog href names, and its href relative to the data
        directory, if it lies in a configured store (the link directly in the store, named
        as an ITS_LIVE cube, and what it leads to in the store too); None, logged, for
        anything else."""
        path = None if urlsplit(href).scheme else Path(os.path.normpath(self.root / href))
        if path is not None:
            try:
                tile_from_name(path.name)
                named = True
            except CubeError:
                named = False
            store = Path(os.path.realpath(path.parent))
            inside = named and store in self.stores
            if inside and Path(os.path.realpath(path)).is_relative_to(store):
                return store / path.name, (self.stores[store] / path.name).as_posix()
        log.warning("refused a cube href outside the configured stores: %s", href)
        return None


def data_router(files: DataFiles) -> APIRouter:
    """GET/HEAD /data/{path}: a published file, with range requests."""
    router = APIRouter(tags=["data"])

    def data_file(path: str) -> FileResponse:
        """Served as stored: HTTP range requests, no compression on top (the files are
        compressed already, and a compressed range would not be the range asked for)."""
        found = files.file(path)
        media = MEDIA_TYPES.get(found.suffix.lower(), "application/octet-stream")
        return FileResponse(found, media_type=media, headers={"content-encoding": "identity"})

    # GET and HEAD as two operations: OpenAPI needs one operationId each
    for method in ("GET", "HEAD"):
        router.add_api_route(
            DATA_PREFIX + "/{path:path}",
            data_file,
            methods=[method],
            operation_id=f"data_file_{method.lower()}",
            summary="A data file (granule, browse image, raster, a cube's Zarr file)",
            response_class=FileResponse,
            responses={206: {"description": "the byte ranges asked for"}},
        )
    return router
