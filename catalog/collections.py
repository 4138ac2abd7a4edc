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
RENDER_SCHEMA = "https://stac-extensions.github.io/render/v2.0.0/schema.json"
RASTER_SCHEMA = "https://stac-extensions.github.io/raster/v2.0.0/schema.json"
_ITEM_ASSETS = "https://stac-extensions.github.io/item-assets/v1.0.0/schema.json"

_DESCRIPTIONS = {
    "scenes": ("Repeat satellite scenes", "Single-band images that pairs are made from."),
    "granules": (
        "Velocity granules",
        "Surface velocity (m/yr) from one image pair, by FFT normalized cross-correlation "
        "feature tracking, in ITS_LIVE's granule layout (NetCDF4, CF-1.8, 120 m).",
    ),
    "cubes": ("Velocity datacubes", "Zarr cubes of granules on ITS_LIVE's 100 km tile grid."),
    "mosaics": (
        "Annual velocity mosaics",
        "Annual and summary (climatology, year 0000) velocity mosaics of a region as NetCDF "
        "and one Cloud-Optimized GeoTIFF per variable, plus a Web-Mercator COG of speed for "
        "maps; and the per-cube composites they are merged from (NetCDF).",
    ),
}

# what a mosaics item is (its `product` property)
MOSAIC_PRODUCTS = {
    "annual": "a region's mosaic of one year",
    "summary": "a region's climatology over a window of years (ITS_LIVE's year 0000)",
    "composite": "one cube's annual composites and climatology (NetCDF only)",
}
COG = "image/tiff; application=geotiff; profile=cloud-optimized"
# the mosaics' variables (ITS_LIVE's names) and what each is, for asset titles
MOSAIC_VARIABLES = {
    "v": "Speed",
    "vx": "Velocity, x component",
    "vy": "Velocity, y component",
    "v_error": "Error of speed",
    "vx_error": "Error of the x component",
    "vy_error": "Error of the y component",
    "count": "Image pairs in the fit",
    "landice": "Land ice mask",
    "dv_dt": "Trend of speed",
    "v_amp": "Seasonal amplitude of speed",
    "v_phase": "Day of the seasonal maximum of speed",
    "count0": "Image pairs in the climatology window",
    "outlier_percent": "Share of pairs left out as outliers",
}
MOSAIC_NETCDF_TITLE = "Velocity mosaic (NetCDF4, CF-1.8)"
COMPOSITE_NETCDF_TITLE = "Annual velocity composite of a cube (NetCDF4, CF-1.8)"
WEB_MERCATOR_TITLE = "Speed, Web Mercator (EPSG:3857) COG for maps"


def mosaic_renders() -> dict[str, Any]:
    """The render extension's views of a mosaic: speed on the log-scaled colormap."""
    from glacierflow.catalog.render import SPEED_COLORMAP_NAME, speed_render

    return {SPEED_COLORMAP_NAME: speed_render()}


def _mosaic_item_assets() -> dict[str, Any]:
    assets: dict[str, Any] = {
        name: {"title": title, "type": COG, "roles": ["data"]}
        for name, title in MOSAIC_VARIABLES.items()
    }
    assets["v_3857"] = {"title": WEB_MERCATOR_TITLE, "type": COG, "roles": ["data", "visual"]}
    assets["data"] = {
        "title": MOSAIC_NETCDF_TITLE,
        "type": "application/x-netcdf",
        "roles": ["data"],
    }
    return assets


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
        coll.stac_extensions += [_ITEM_ASSETS, RENDER_SCHEMA]
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
    if kind == "mosaics":
        coll.stac_extensions += [_ITEM_ASSETS, RENDER_SCHEMA]
        coll.extra_fields["item_assets"] = _mosaic_item_assets()
        coll.extra_fields["renders"] = mosaic_renders()
        coll.summaries = pystac.Summaries({"gsd": [120], "product": list(MOSAIC_PRODUCTS)})
    return coll


def all_collections(ids: dict[str, str]) -> list[pystac.Collection]:
    """Every collection, in COLLECTION_KINDS order, with ids from `ids` (kind -> id)."""
    return [collection(kind, ids.get(kind, kind)) for kind in COLLECTION_KINDS]
