"""Schemathesis hooks for test_fuzz.py, loaded by `st run` (SCHEMATHESIS_HOOKS=fuzz_hooks):
generated requests are also aimed at the served cube (GLACIERFLOW_FUZZ_REGION, JSON with
lon, lat and line), so the fuzzer reaches the reads and filters behind /timeseries and
/profile rather than only the 404 of a point outside every cube."""

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
