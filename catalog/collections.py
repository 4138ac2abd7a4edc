"""The four STAC collections: scenes, granules, cubes, mosaics.

Ids are configurable (a deployment can publish ITS_LIVE's `itslive-granules` and
`itslive-cubes` names); extents start empty-ish and are recomputed by pgstac after
every load (`update_collection_extents`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pystac

from glacierflow.settings import COLLECTION_KINDS

LICENSE = "CC-BY-4.0"
PROVIDERS = [
    pystac.Provider(
        name="glacierflow",
        roles=[pystac.ProviderRole.PROCESSOR, pystac.ProviderRole.HOST],
        description="Open glacier-velocity processing, ITS_LIVE-compatible",
    )
]
PROJECTION_SCHEMA = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
DATACUBE_SCHEMA = "https://stac-extensions.github.io/datacube/v2.2.0/schema.json"
_RENDER = "https://stac-extensions.github.io/render/v2.0.0/schema.json"
_ITEM_ASSETS = "https://stac-extensions.github.io/item-assets/v1.0.0/schema.json"

_DESCRIPTIONS = {
    "scenes": ("Repeat satellite scenes", "Single-band images that pairs are made from."),
    "granules": (
        "Velocity granules",
        "Surface velocity (m/yr) from one image pair, by FFT normalized cross-correlation "
        "feature tracking, in ITS_LIVE's granule layout (NetCDF4, CF-1.8, 120 m).",
    ),
    "cubes": ("Velocity datacubes", "Zarr cubes of granules on ITS_LIVE's 100 km tile grid."),
    "mosaics": ("Annual velocity mosaics", "Yearly composites as NetCDF and COGs."),
}


def _granule_item_assets() -> dict[str, Any]:
    return {
        "data": {
            "title": "Velocity granule (NetCDF4)",
            "type": "application/x-netcdf",
            "roles": ["data"],
        },
        "thumbnail": {
            "title": "Speed, browse image",
            "type": pystac.MediaType.PNG,
            "roles": ["thumbnail", "overview"],
        },
    }


def collection(kind: str, collection_id: str | None = None) -> pystac.Collection:
    """The collection of one kind ("scenes", "granules", "cubes", "mosaics")."""
    if kind not in _DESCRIPTIONS:
        raise ValueError(f"unknown collection kind {kind!r}; one of {', '.join(_DESCRIPTIONS)}")
    title, description = _DESCRIPTIONS[kind]
    extent = pystac.Extent(
        pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]),
        pystac.TemporalExtent([[datetime(1982, 1, 1, tzinfo=UTC), None]]),
    )
    coll = pystac.Collection(
        id=collection_id or kind,
        title=title,
        description=description,
        extent=extent,
        license=LICENSE,
        providers=PROVIDERS,
        keywords=["glacier", "ice velocity", "feature tracking", "ITS_LIVE", "cryosphere", kind],
        # an extension is declared only where its fields are (its schema requires them);
        # proj:* and cube:* are on the items
        stac_extensions=[],
        # OGC API - Features: what the collection's items are, for OGC clients
        extra_fields={"itemType": "feature"},
    )
    if kind == "granules":
        coll.stac_extensions += [_ITEM_ASSETS, _RENDER]
        coll.extra_fields["item_assets"] = _granule_item_assets()
        coll.summaries = pystac.Summaries(
            {
                "motion_detection_method": ["feature"],
                "scene_pair_type": ["optical"],
                "gsd": [120],
            }
        )
        coll.extra_fields["renders"] = {
            "speed": {
                "title": "Speed (m/yr)",
                "assets": ["data"],
                "expression": "v",
                "rescale": [[0, 1000]],
                "colormap_name": "plasma",
            }
        }
    if kind == "cubes":
        coll.stac_extensions.append(_ITEM_ASSETS)
        coll.extra_fields["item_assets"] = {
            "data": {
                "title": "Velocity datacube (Zarr v3, ITS_LIVE layout)",
                "type": "application/vnd+zarr",
                "roles": ["data"],
            }
        }
        coll.summaries = pystac.Summaries({"gsd": [120]})
    return coll


def all_collections(ids: dict[str, str]) -> list[pystac.Collection]:
    """Every collection, in COLLECTION_KINDS order, with ids from `ids` (kind -> id)."""
    return [collection(kind, ids.get(kind, kind)) for kind in COLLECTION_KINDS]
