"""STAC JSON schemas offline, for the validators the tests run (CI has no network).

Every schema URL maps to a local file: STAC 1.1.0 core and GeoJSON to pystac's own copies,
everything else (extensions, PROJJSON, STAC 1.0.0 core) to ../shared/stac-schemas/, which
is laid out by URL. A schema with no local copy is an error that names its URL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import pystac
import pystac.validation
import pystac.validation.jsonschemas
import requests
from conftest import SHARED
from pystac.validation.stac_validator import JsonSchemaSTACValidator

SCHEMAS = SHARED / "stac-schemas"
_PYSTAC_SCHEMAS = Path(pystac.validation.jsonschemas.__file__).parent
_CORE = f"/v{pystac.get_stac_version()}/"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class NoLocalSchemaError(requests.ConnectionError):
    """A schema URL with no local copy (a requests error, so that validators report it)."""


def schema_file(url: str) -> Path:
    """The local copy of the schema at `url`."""
    parsed = urlparse(url)
    name = PurePosixPath(parsed.path).name
    if parsed.hostname == "schemas.stacspec.org" and parsed.path.startswith(_CORE):
        local = _PYSTAC_SCHEMAS / "stac-spec" / _CORE.strip("/") / name
    elif parsed.hostname == "geojson.org":
        local = _PYSTAC_SCHEMAS / "geojson" / name
    else:
        local = SCHEMAS / (parsed.hostname or "") / parsed.path.lstrip("/")
    if parsed.scheme != "https" or not local.is_file():
        raise NoLocalSchemaError(f"no local copy of the schema {url} (looked for {local})")
    return local


def _local_urls() -> Iterator[str]:
    for path in SCHEMAS.rglob("*.json"):
        yield f"https://{path.relative_to(SCHEMAS).as_posix()}"


def validator() -> JsonSchemaSTACValidator:
    """pystac's JSON-schema validator with every local schema loaded: nothing is fetched."""
    checker = JsonSchemaSTACValidator()
    assert SCHEMAS.is_dir(), f"the STAC schemas are missing from {SCHEMAS}"
    for url in _local_urls():
        checker.schema_cache.setdefault(url, json.loads(schema_file(url).read_text()))
    return checker


def validate(stac: dict[str, Any], checker: JsonSchemaSTACValidator) -> list[str]:
    """Validate an item, collection or catalog against its core schema and every extension
    it declares; returns the schema URLs it was checked against (STACValidationError if
    it is not valid)."""
    used = pystac.validation.validate_dict(stac, validator=checker)
    assert set(stac.get("stac_extensions", [])) <= set(used), used
    return used


class LocalSchemaAdapter(requests.adapters.HTTPAdapter):
    """requests' transport, answering schema URLs from the local files and refusing any
    other URL off the loopback interface (as CI would, more clearly)."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if urlparse(request.url).hostname in LOOPBACK:
            return super().send(request, **kwargs)
        response = requests.Response()
        response.status_code = 200
        response._content = schema_file(str(request.url)).read_bytes()
        response.headers["Content-Type"] = "application/schema+json"
        response.url = str(request.url)
        response.request = request
        return response
