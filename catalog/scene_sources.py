"""The STAC collections scenes can be imported from, and how each one's items are read.

Every provider shapes its items its own way: Earth Search calls Sentinel-2's near-infrared
band `nir`, the Planetary Computer `B08`; Landsat's footprint key is a WRS-2 path/row,
Sentinel-2's an MGRS tile spelt three ways. One small table says, per source collection,
which asset is the band to track, which is the QA band, where the tile key and the cloud
cover are, and whether it is radar. `scene_item` turns a source item into our scene item
(the source's shape kept, its remote hrefs too, plus the properties
`catalog.scenes.scene_from_item` reads); an item of no known shape is refused with the
reason, never guessed at.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from shapely.errors import GEOSException
from shapely.geometry import shape

from glacierflow.catalog.scenes import BAND_PROPERTY, MASK_PROPERTY, NotASceneError, scene_from_item

SOURCE_COLLECTION = "glacierflow:source_collection"  # the collection id the item came from
SOURCE_API = "glacierflow:source_api"  # the STAC API it came from
EARTH_SEARCH = "earth-search.aws.element84.com"
PLANETARY_COMPUTER = "planetarycomputer.microsoft.com"
LANDSATLOOK = "landsatlook.usgs.gov"

Properties = dict[str, Any]
MAX_ID_LENGTH = 256


def mgrs_tile(properties: Properties) -> str | None:
    """The MGRS tile as "MGRS-07VCG", from the mgrs extension or Sentinel-2's own field."""
    zone, band, square = (
        properties.get(f"mgrs:{k}") for k in ("utm_zone", "latitude_band", "grid_square")
    )
    if zone is not None and band and square:
        return f"MGRS-{int(zone):02d}{band}{square}"
    tile = properties.get("s2:mgrs_tile") or properties.get("s2:tile_id")
    if isinstance(tile, str) and len(tile) >= 5:
        return f"MGRS-{tile.removeprefix('T')[-5:]}"
    return None


def wrs2_tile(properties: Properties) -> str | None:
    """The WRS-2 path/row as "WRS2-063018", from the landsat extension."""
    path, row = properties.get("landsat:wrs_path"), properties.get("landsat:wrs_row")
    if path is None or row is None:
        return None
    return f"WRS2-{int(path):03d}{int(row):03d}"


def s2_offset(properties: Properties) -> float:
    """Sentinel-2 L2A reflectance offset: -0.1 from processing baseline 04.00 (Jan 2022) on,
    when ESA added 1000 to the digital numbers."""
    baseline = str(properties.get("s2:processing_baseline") or "0")
    try:
        return -0.1 if float(baseline) >= 4.0 else 0.0
    except ValueError:
        return 0.0


def no_tile(properties: Properties) -> str | None:
    """Radar frames share no fixed grid: such scenes are paired by footprint overlap."""
    return None


@dataclass(frozen=True)
class SceneSource:
    """How one provider's items of one collection become scenes."""

    name: str  # for people: "Earth Search, Sentinel-2 L2A (Collection 1)"
    collection: str  # the source collection id
    hosts: tuple[str, ...]  # API hosts whose `collection` this is (ids clash across APIs)
    band: str  # asset key of the band to track
    mask: str | None  # asset key of the QA band (SCL, QA_PIXEL)
    tile: Callable[[Properties], str | None]
    instrument: str  # for items that do not say (`instruments` missing)
    cloud: str | None = "eo:cloud_cover"  # property of the scene's cloud cover, percent
    radar: bool = False  # amplitude to be tracked in dB with the radar preset
    scale: float | None = None  # of the band's digital numbers, where the items omit it
    offset: Callable[[Properties], float] = lambda properties: 0.0


_EARTH_SEARCH_S2 = SceneSource(
    "Earth Search, Sentinel-2 L2A (Collection 1)",
    "sentinel-2-c1-l2a",
    (EARTH_SEARCH,),
    band="nir",
    mask="scl",
    tile=mgrs_tile,
    instrument="msi",
)
# USGS's Level-2 surface reflectance, as Earth Search and the Planetary Computer both list it
_LANDSAT_L2 = SceneSource(
    "Earth Search, Landsat Collection 2 Level-2",
    "landsat-c2-l2",
    (EARTH_SEARCH,),
    band="nir08",
    mask="qa_pixel",
    tile=wrs2_tile,
    instrument="oli",
    scale=2.75e-05,
    offset=lambda properties: -0.2,
)

SOURCES: tuple[SceneSource, ...] = (
    _EARTH_SEARCH_S2,
    replace(_EARTH_SEARCH_S2, name="Earth Search, Sentinel-2 L2A", collection="sentinel-2-l2a"),
    SceneSource(
        "Planetary Computer, Sentinel-2 L2A",
        "sentinel-2-l2a",
        (PLANETARY_COMPUTER,),
        band="B08",
        mask="SCL",
        tile=mgrs_tile,
        instrument="msi",
        scale=0.0001,
        offset=s2_offset,
    ),
    _LANDSAT_L2,
    replace(
        _LANDSAT_L2,
        name="Planetary Computer, Landsat Collection 2 Level-2",
        hosts=(PLANETARY_COMPUTER,),
    ),
    SceneSource(
        "USGS LandsatLook, Landsat Collection 2 Level-1 (panchromatic, 15 m)",
        "landsat-c2l1",
        (LANDSATLOOK,),
        band="pan",
        mask="qa_pixel",
        tile=wrs2_tile,
        instrument="oli",
    ),
    SceneSource(
        "Planetary Computer, Sentinel-1 RTC (gamma0 amplitude, VV)",
        "sentinel-1-rtc",
        (PLANETARY_COMPUTER,),
        band="vv",
        mask=None,
        tile=no_tile,
        instrument="c-sar",
        cloud=None,
        radar=True,
    ),
)


class UnknownShapeError(NotASceneError):
    """An item of a collection or shape the table does not know."""


def known_collections() -> list[str]:
    return sorted({s.collection for s in SOURCES})


def sources_of(collection: str) -> list[SceneSource]:
    """The table's entries for a source collection id (several where providers share it)."""
    return [s for s in SOURCES if s.collection == collection]


def source_for(item: dict[str, Any], collection: str, api_url: str | None = None) -> SceneSource:
    """The entry that reads `item`: the API host's own where the table has one for this
    collection, else the first of the collection's entries whose band is among the item's
    assets (a mirror or a local API serves the same shapes under another host)."""
    entries = sources_of(collection)
    if not entries:
        raise UnknownShapeError(
            f"collection {collection!r} is not one this importer knows "
            f"({', '.join(known_collections())})"
        )
    assets = item.get("assets") or {}
    host = urlsplit(api_url).hostname if api_url else None
    own = [e for e in entries if host in e.hosts]
    for entry in own or entries:
        if entry.band in assets:
            return entry
    wanted = " or ".join(sorted({repr(e.band) for e in own or entries}))
    raise UnknownShapeError(
        f"item {item.get('id')!r} of {collection!r} has no {wanted} asset "
        f"(assets: {', '.join(sorted(assets)) or 'none'}): not a shape this importer knows"
    )


def _projection(item: dict[str, Any], band: dict[str, Any]) -> str:
    for where in (band, item.get("properties") or {}):
        code = where.get("proj:code")
        if isinstance(code, str) and code.upper().startswith("EPSG:"):
            return code.upper()
        epsg = where.get("proj:epsg")
        if isinstance(epsg, int) and not isinstance(epsg, bool):
            return f"EPSG:{epsg}"
    raise NotASceneError(f"item {item.get('id')!r}: no CRS (proj:code or proj:epsg)")


def _platform(value: Any) -> str:
    """STAC's spelling: "landsat-8", "sentinel-1a" (USGS writes LANDSAT_8, the PC SENTINEL-1A)."""
    return str(value).strip().lower().replace("_", "-") if value else "unknown"


def scene_item(
    item: dict[str, Any], source: SceneSource, collection_id: str, api_url: str | None = None
) -> dict[str, Any]:
    """Our scene item of a source item: the source's own item (ids, assets, remote hrefs)
    moved into `collection_id`, with the band, mask, tile, projection and source recorded.
    `NotASceneError` names what the item lacks (CRS, acquisition time, footprint)."""
    out = copy.deepcopy(item)
    props: Properties = out.setdefault("properties", {})
    assets = out.get("assets") or {}
    if not isinstance(out.get("id"), str) or not 0 < len(out["id"]) <= MAX_ID_LENGTH:
        raise NotASceneError(f"item {item.get('id')!r}: its id is not a string of 1-256 characters")
    try:
        footprint = shape(out["geometry"])
    except (KeyError, TypeError, ValueError, AttributeError, GEOSException):
        raise NotASceneError(f"item {item['id']!r}: no footprint geometry") from None
    if footprint.is_empty:
        raise NotASceneError(f"item {item['id']!r}: its footprint geometry is empty")
    if not props.get("datetime"):
        raise NotASceneError(f"item {item.get('id')!r}: no acquisition datetime")
    band = assets[source.band]
    props["proj:code"] = _projection(out, band)
    props[BAND_PROPERTY] = source.band
    if source.mask and source.mask in assets:
        props[MASK_PROPERTY] = source.mask
    if tile := (props.get("grid:code") or source.tile(props)):
        props["grid:code"] = tile
    props["platform"] = _platform(props.get("platform"))
    if not props.get("instruments"):
        props["instruments"] = [source.instrument]
    if source.cloud and source.cloud != "eo:cloud_cover" and source.cloud in props:
        props["eo:cloud_cover"] = props[source.cloud]
    if source.scale is not None:
        bands = band.setdefault("raster:bands", [{}])
        if bands and "scale" not in bands[0]:
            bands[0].update(scale=source.scale, offset=source.offset(props))
    props[SOURCE_COLLECTION] = item.get("collection") or source.collection
    if api_url:
        props[SOURCE_API] = api_url
    via = [
        {**link, "rel": "via"}
        for link in out.get("links") or []
        if isinstance(link, dict) and link.get("rel") == "self" and link.get("href")
    ]
    out["links"] = via
    out["collection"] = collection_id
    scene_from_item(out)  # what the pipeline will read must read
    return out
