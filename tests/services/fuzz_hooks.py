"""Schemathesis hooks for test_fuzz.py, loaded by `st run` (SCHEMATHESIS_HOOKS=fuzz_hooks):
generated requests are also aimed at what the server holds (GLACIERFLOW_FUZZ_REGION, JSON
with lon, lat, line, cube_item and data_file), so the fuzzer reaches the reads and filters
behind /timeseries, /profile, /data and the STAC item routes rather than only their 404s."""

from __future__ import annotations

import json
import os
from typing import Any

import schemathesis
from hypothesis import strategies as st

_REGION: dict[str, Any] = json.loads(os.environ.get("GLACIERFLOW_FUZZ_REGION", "{}"))


@schemathesis.hook
def flatmap_query(context: Any, query: Any) -> st.SearchStrategy:
    """As generated, or with lon/lat and line inside the cube."""
    if not _REGION or not isinstance(query, dict):
        return st.just(query)
    aimed = dict(query)
    if "lon" in aimed and "lat" in aimed:
        aimed.update(lon=_REGION["lon"], lat=_REGION["lat"])
    if "line" in aimed:
        aimed["line"] = _REGION["line"]
    return st.sampled_from([query, aimed])


@schemathesis.hook
def flatmap_body(context: Any, body: Any) -> st.SearchStrategy:
    """As generated, or with POST /timeseries points inside the cube."""
    if not _REGION or not isinstance(body, dict) or not isinstance(body.get("points"), list):
        return st.just(body)
    point = [_REGION["lon"], _REGION["lat"]]
    return st.sampled_from([body, {**body, "points": [point] * max(1, len(body["points"]))}])


@schemathesis.hook
def flatmap_path_parameters(context: Any, parameters: Any) -> st.SearchStrategy:
    """As generated, or the catalogued cube's collection and item, or a served file."""
    if not _REGION or not isinstance(parameters, dict):
        return st.just(parameters)
    aimed = dict(parameters)
    if "collection_id" in aimed:
        aimed["collection_id"] = "cubes"
    if "item_id" in aimed:
        aimed["item_id"] = _REGION["cube_item"]
    if "path" in aimed:
        aimed["path"] = _REGION["data_file"]
    return st.sampled_from([parameters, aimed])
