"""Scene items in the `scenes` collection, whatever STAC API or generator they came from.

A scene item keeps its source's shape (ids, assets with their remote hrefs, properties)
and adds two properties that say which asset is the band to track and which is the QA
band, so one reader turns any of them into a `Scene`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from glacierflow.processing.scenes import Scene

BAND_PROPERTY = "glacierflow:band"  # asset key of the band to track
MASK_PROPERTY = "glacierflow:mask"  # asset key of the QA band (SCL, QA_PIXEL), optional


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
    )
