"""The four collections as written: valid STAC 1.1.0 offline, against core and every
extension each declares, and listed by OGC API - Features clients (`itemType`)."""

from __future__ import annotations

import pytest
from stac_schemas import validate, validator

from glacierflow.catalog.collections import all_collections
from glacierflow.catalog.render import SPEED_COLORMAP_NAME, speed_render

CHECKER = validator()


@pytest.mark.parametrize("collection", all_collections({}), ids=lambda c: c.id)
def test_each_collection_is_valid_stac_with_its_extensions(collection) -> None:
    stac = collection.to_dict(include_self_link=False)
    used = validate(stac, CHECKER)
    assert (
        used[0] == "https://schemas.stacspec.org/v1.1.0/collection-spec/json-schema/collection.json"
    )
    assert stac["itemType"] == "feature"


def test_an_extension_is_declared_only_where_its_fields_are() -> None:
    declared = {c.id: set(c.stac_extensions) for c in all_collections({})}
    assert declared["scenes"] == set()
    for kind in ("granules", "mosaics"):
        assert {url.split("/")[3] for url in declared[kind]} == {"item-assets", "render"}
    assert {url.split("/")[3] for url in declared["cubes"]} == {"item-assets"}


def test_the_mosaics_collection_describes_its_items_assets_and_speed_view() -> None:
    (mosaics,) = (c for c in all_collections({}) if c.id == "mosaics")
    assets = mosaics.extra_fields["item_assets"]
    assert {"v", "vx", "vy", "v_error", "count", "v_3857", "data"} <= set(assets)
    assert assets["v"]["type"] == "image/tiff; application=geotiff; profile=cloud-optimized"
    assert assets["data"]["type"] == "application/x-netcdf"
    assert mosaics.extra_fields["renders"] == {SPEED_COLORMAP_NAME: speed_render()}
    assert mosaics.summaries.get_list("product") == ["annual", "summary", "composite"]
