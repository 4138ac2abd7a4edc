"""Scene items in the `scenes` collection, whatever STAC API or generator they came from.

A scene item keeps its source's shape (ids, assets with their remote hrefs, properties)
and adds two properties that say which asset is the band to track and which is the QA
band, so one reader turns any of them into a `Scene`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import antimeridian
import psycopg
import pystac
from shapely.geometry import shape

from glacierflow.catalog.collections import COG, PROJECTION_SCHEMA
from glacierflow.catalog.items import HrefOf, _href, _plain, raster_projection
from glacierflow.catalog.loader import load_items
from glacierflow.processing.scenes import Scene

BAND_PROPERTY = "glacierflow:band"  # asset key of the band to track
MASK_PROPERTY = "glacierflow:mask"  # asset key of the QA band (SCL, QA_PIXEL), optional
MASK_ASSET = "cloud"  # the demo region's cloud masks (non-zero: cloud)
# how each mask asset reads (a `MaskKind`), by its key as the sources name it
MASK_KINDS = {"scl": "scl", "qa_pixel": "qa_pixel", MASK_ASSET: "nonzero"}


class NotASceneError(ValueError):
    """A STAC item that lacks what a scene needs, with the reason."""


def _epsg(properties: dict[str, Any], asset: dict[str, Any]) -> int:
    for source in (asset, properties):
        if isinstance(code := source.get("proj:code"), str) and code.upper().startswith("EPSG:"):
            return int(code.split(":", 1)[1])
        if isinstance(epsg := source.get("proj:epsg"), int):
            return epsg
    raise NotASceneError("no projection (proj:code or proj:epsg)")


def scene_from_item(item: dict[str, Any]) -> Scene:
    """The `Scene` of a scene item; `NotASceneError` names what is missing."""
    properties = item.get("properties") or {}
    assets = item.get("assets") or {}
    band = properties.get(BAND_PROPERTY)
    if band not in assets:
        raise NotASceneError(f"item {item.get('id')!r}: no asset named by {BAND_PROPERTY}")
    when = properties.get("datetime")
    if not when:
        raise NotASceneError(f"item {item.get('id')!r}: no acquisition datetime")
    mask = properties.get(MASK_PROPERTY)
    instruments = properties.get("instruments") or ["unknown"]
    try:
        epsg = _epsg(properties, assets[band])
    except NotASceneError as error:
        raise NotASceneError(f"item {item.get('id')!r}: {error}") from None
    return Scene(
        id=item["id"],
        href=assets[band]["href"],
        datetime=datetime.fromisoformat(when.replace("Z", "+00:00")),
        platform=properties.get("platform", "unknown"),
        instrument=str(instruments[0]).lower(),
        epsg=epsg,
        footprint=item["geometry"],
        tile=properties.get("grid:code"),
        cloud_cover=properties.get("eo:cloud_cover"),
        mask_href=assets[mask]["href"] if mask in assets else None,
        collection=item.get("collection"),
        extra={"mask_kind": kind} if (kind := MASK_KINDS.get(str(mask).lower())) else {},
    )


# -- the demo region's scenes as items, and scenes back from the catalog ------------------
EO_SCHEMA = "https://stac-extensions.github.io/eo/v2.0.0/schema.json"
GRID_SCHEMA = "https://stac-extensions.github.io/grid/v1.1.0/schema.json"
VIEW_SCHEMA = "https://stac-extensions.github.io/view/v1.0.0/schema.json"
LANDSAT_SCHEMA = "https://stac-extensions.github.io/landsat/v2.0.0/schema.json"
_CONSTELLATIONS = {"landsat": "landsat", "sentinel-2": "sentinel-2"}


def _landsat_properties(scene: Scene) -> dict[str, Any]:
    """The landsat extension's fields, from a Collection-2 id (LC08_L1TP_PPPRRR_YYYYMMDD_...)."""
    sensor, level, path_row, _, _, number, category = scene.id.split("_")
    day = scene.datetime.timetuple().tm_yday
    return {
        "landsat:scene_id": (
            f"{sensor[:2]}{int(sensor[2:])}{path_row}{scene.datetime:%Y}{day:03d}LGN00"
        ),
        "landsat:collection_category": category,
        "landsat:collection_number": number,
        "landsat:wrs_type": "2",
        "landsat:wrs_path": path_row[:3],
        "landsat:wrs_row": path_row[3:],
        "landsat:cloud_cover_land": scene.cloud_cover,
        "landsat:correction": level,
    }


def scene_item(
    scene: Scene, href_of: HrefOf | None = None, collection_id: str = "scenes"
) -> pystac.Item:
    """The STAC item of a scene written as local COGs (the demo region's), shaped like a
    Landsat Collection-2 or Earth Search Sentinel-2 item: platform, instruments,
    eo:cloud_cover, proj:* read from the COG, grid:code, the sun's elevation, the band and
    cloud mask as assets named by glacierflow:band and glacierflow:mask. Asset hrefs as
    `href_of` gives them (Settings.data_href: relative to the data directory)."""
    band_key = scene.extra.get("band", "data")
    band_path = Path(scene.href)
    projection = raster_projection(band_path)
    properties: dict[str, Any] = {
        "platform": scene.platform,
        "instruments": [scene.instrument],
        "eo:cloud_cover": scene.cloud_cover,
        "gsd": scene.extra.get("gsd", projection["proj:transform"][0]),
        **projection,
        BAND_PROPERTY: band_key,
    }
    extensions = [PROJECTION_SCHEMA, EO_SCHEMA]
    constellation = next(
        (c for p, c in _CONSTELLATIONS.items() if scene.platform.startswith(p)), None
    )
    if constellation:
        properties["constellation"] = constellation
    if scene.tile:
        properties["grid:code"] = scene.tile
        extensions.append(GRID_SCHEMA)
    if "sun_elevation" in scene.extra:
        properties["view:sun_elevation"] = scene.extra["sun_elevation"]
        extensions.append(VIEW_SCHEMA)
    if scene.platform.startswith("landsat") and scene.id.count("_") == 6:
        properties.update(_landsat_properties(scene))
        extensions.append(LANDSAT_SCHEMA)
    if scene.mask_href:
        properties[MASK_PROPERTY] = MASK_ASSET
    geometry = _plain(antimeridian.fix_shape(scene.footprint, fix_winding=True))
    item = pystac.Item(
        id=scene.id,
        geometry=geometry,
        bbox=list(antimeridian.bbox(shape(geometry))),
        datetime=scene.datetime,
        properties={k: v for k, v in properties.items() if v is not None},
        collection=collection_id,
        stac_extensions=extensions,
    )
    item.add_asset(
        band_key,
        pystac.Asset(
            href=_href(band_path, href_of),
            title=f"The band to track ({properties['gsd']:g} m)",
            media_type=COG,
            roles=["data"],
        ),
    )
    if scene.mask_href:
        item.add_asset(
            MASK_ASSET,
            pystac.Asset(
                href=_href(Path(scene.mask_href), href_of),
                title="Cloud mask (non-zero: cloud)",
                media_type=COG,
                roles=["cloud", "data-mask"],
            ),
        )
    return item


def load_scenes(dsn: str, items: Iterable[pystac.Item | dict[str, Any]]) -> list[str]:
    """Create or update scene items (upsert by id); returns their ids. Each is checked as a
    scene first (`NotASceneError` names the first that is not), so nothing is half-loaded."""
    dicts = [i.to_dict(include_self_link=False) if isinstance(i, pystac.Item) else i for i in items]
    for item in dicts:
        scene_from_item(item)
        if not item.get("collection"):
            raise NotASceneError(f"item {item.get('id')!r}: no collection")
    if dicts:
        load_items(dsn, dicts)
    return [item["id"] for item in dicts]


def scenes_from_catalog(
    dsn: str,
    *,
    bbox: tuple[float, float, float, float] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    collection: str | None = None,
    data_dir: Path | None = None,
) -> list[Scene]:
    """The scenes of a collection (default: the settings' `scenes` collection) whose
    footprint meets `bbox` (lon/lat) and whose time is in [start, end], in time order.
    Hrefs stored relative to the data directory come back as paths under `data_dir`
    (default: the settings'), so that the tracker can open them."""
    from glacierflow.settings import get_settings

    if collection is None or data_dir is None:
        settings = get_settings()
        collection = collection or settings.collection_id("scenes")
        data_dir = data_dir or settings.data_dir
    where = ["collection = %s"]
    args: list[Any] = [collection]
    if bbox is not None:
        west, south, east, north = bbox
        if not (west <= east and south <= north):
            raise ValueError(f"bbox {bbox}: give west, south, east, north")
        where.append("ST_Intersects(geometry, ST_MakeEnvelope(%s, %s, %s, %s, 4326))")
        args += [west, south, east, north]
    if start is not None:
        where.append("datetime >= %s")
        args.append(start)
    if end is not None:
        where.append("datetime <= %s")
        args.append(end)
    query = (
        "SELECT content_hydrate(items) FROM items WHERE "
        + " AND ".join(where)
        + " ORDER BY datetime, id"
    )
    with psycopg.connect(dsn, options="-c search_path=pgstac,public") as conn:
        rows = conn.execute(query, args).fetchall()
    scenes = [scene_from_item(row[0]) for row in rows]
    return [
        replace(
            s,
            href=_local(s.href, Path(data_dir)),
            mask_href=_local(s.mask_href, Path(data_dir)) if s.mask_href else None,
        )
        for s in scenes
    ]


def _local(href: str, root: Path) -> str:
    """A stored href as the tracker opens it: URLs and absolute paths as they are,
    paths relative to the data directory under `root`."""
    if urlsplit(href).scheme or Path(href).is_absolute():
        return href
    return str(root / href)
