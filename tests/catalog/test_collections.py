"""The four collections as written: valid STAC 1.1.0 offline, against core and every
extension each declares, and listed by OGC API - Features clients (`itemType`)."""

from __future__ import annotations

import pytest
from stac_schemas import validate, validator

from glacierflow.catalog.collections import all_collections

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
    assert declared["scenes"] == declared["mosaics"] == set()
    assert {url.split("/")[3] for url in declared["granules"]} == {"item-assets", "render"}
    assert {url.split("/")[3] for url in declared["cubes"]} == {"item-assets"}
