"""Scenes from a public STAC API into the catalog's `scenes` collection.

A search (collection, box, dates, cloud cover) against Earth Search, the Planetary
Computer, USGS LandsatLook or any API serving the same item shapes; each item found is
turned into our scene item by the table of `scene_sources` (remote hrefs kept: the images
stay where they are and are read window by window when tracked). Items that cannot be
scenes are reported with the reason and left out; the rest are loaded together, upserted by
id, so a second import of the same search changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import pystac
import requests
from pystac_client import Client
from pystac_client.conformance import ConformanceClasses
from pystac_client.errors import ClientTypeError
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from urllib3.util.retry import Retry

from glacierflow.catalog.loader import load_items
from glacierflow.catalog.scene_sources import (
    NotASceneError,
    known_collections,
    scene_item,
    source_for,
    sources_of,
)

MAX_ITEMS = 10_000  # the most one import may bring in
PAGE = 100  # items per page asked of the API


class SceneImportError(Exception):
    """The search cannot be made: the API is down, answers what is not STAC, or the
    request names what the importer does not know. The message names the URL."""


@dataclass(frozen=True)
class SceneSearch:
    """What to import: the API, its collection and the search's bounds."""

    api_url: str
    collection: str
    bbox: tuple[float, float, float, float] | None = None
    start: date | datetime | None = None
    end: date | datetime | None = None
    max_cloud: float | None = None  # percent; radar scenes have no cloud cover to filter
    max_items: int = 500
    timeout_s: float = 30.0
    retries: int = 3  # of a refused connection or a 429/5xx answer, with backoff


@dataclass
class ImportReport:
    """Items turned into scene items, those that cannot be scenes with the reason, how many
    were over the cloud cover asked for (an API without a cloud filter returns them), and
    whether the search found more than `max_items` (the rest left for a narrower search)."""

    items: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    cloudy: int = 0
    truncated: bool = False

    @property
    def imported(self) -> list[str]:
        return [item["id"] for item in self.items]


def _interval(search: SceneSearch) -> list[str | datetime | None] | None:
    """The acquisition interval for pystac-client, which reads a date as its whole day."""
    if search.start is None and search.end is None:
        return None
    return [
        when.isoformat() if isinstance(when, date) and not isinstance(when, datetime) else when
        for when in (search.start, search.end)
    ]


def _cloud_filter(client: Client, search: SceneSearch) -> dict[str, Any]:
    """The cloud-cover condition in the API's own language, where it speaks one; items are
    checked here again (an API without `query` or `filter` returns them all)."""
    if search.max_cloud is None or any(s.cloud is None for s in sources_of(search.collection)):
        return {}
    if client.conforms_to(ConformanceClasses.QUERY):
        return {"query": {"eo:cloud_cover": {"lte": search.max_cloud}}}
    if client.conforms_to(ConformanceClasses.FILTER):
        return {
            "filter": {"op": "<=", "args": [{"property": "eo:cloud_cover"}, search.max_cloud]},
            "filter_lang": "cql2-json",
        }
    return {}


def _found(search: SceneSearch) -> Iterator[dict[str, Any]]:
    """The search's items as the API gives them, at most `max_items` + 1 (the one more says
    that there were more)."""
    retry = Retry(
        total=search.retries,
        backoff_factor=0.5,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=None,  # searches are POSTs, and safe to repeat
        raise_on_status=False,  # the last answer, for its status and text
    )
    io = StacApiIO(timeout=search.timeout_s, max_retries=retry)
    client = Client.open(search.api_url, stac_io=io, timeout=search.timeout_s)
    results = client.search(
        collections=[search.collection],
        bbox=search.bbox,
        datetime=_interval(search),
        max_items=search.max_items + 1,
        limit=min(PAGE, search.max_items + 1),
        **_cloud_filter(client, search),
    )
    yield from results.items_as_dicts()


def _answered(search: SceneSearch) -> Iterator[dict[str, Any]]:
    """The search's items; whatever goes wrong talking to the API as a SceneImportError."""
    found = _found(search)
    while True:
        try:
            item = next(found, None)
        except _API_FAILURES as err:
            raise _api_error(search, err) from err
        if item is None:
            return
        if not isinstance(item, dict):
            raise SceneImportError(f"{search.api_url}: answered a feature that is not an object")
        yield item


def _too_cloudy(item: dict[str, Any], search: SceneSearch) -> bool:
    """Over the cloud cover asked for; a scene that does not say is kept."""
    cloud = (item.get("properties") or {}).get("eo:cloud_cover")
    return (
        search.max_cloud is not None and isinstance(cloud, int | float) and cloud > search.max_cloud
    )


def search_scenes(search: SceneSearch, collection_id: str = "scenes") -> ImportReport:
    """Search the API and turn what it finds into scene items of `collection_id`; nothing
    is written. `SceneImportError` when the API cannot be searched."""
    if not sources_of(search.collection):
        raise SceneImportError(
            f"collection {search.collection!r} is not one this importer knows; it reads "
            f"{', '.join(known_collections())}"
        )
    if not 1 <= search.max_items <= MAX_ITEMS:
        raise SceneImportError(f"max_items is {search.max_items}; give 1 to {MAX_ITEMS:,}")
    report = ImportReport()
    seen: set[str] = set()
    for count, item in enumerate(_answered(search)):
        if count == search.max_items:
            report.truncated = True
            break
        name = str(item.get("id") or f"#{count + 1} (no id)")
        try:
            source = source_for(item, search.collection, search.api_url)
            made = scene_item(item, source, collection_id, search.api_url)
        except NotASceneError as err:
            report.skipped[name] = str(err)
            continue
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            report.skipped[name] = f"malformed item ({type(err).__name__}: {err})"
            continue
        if _too_cloudy(made, search):
            report.cloudy += 1
        elif name not in seen:
            seen.add(name)
            report.items.append(made)
    return report


# what talking to something that is not (or not now) a STAC API raises
_API_FAILURES = (
    requests.RequestException,
    APIError,
    ClientTypeError,
    pystac.STACError,
    ValueError,  # invalid JSON
    KeyError,  # JSON, but not STAC's
    TypeError,
    AttributeError,
)


def _api_error(search: SceneSearch, err: Exception) -> SceneImportError:
    """The failure in words, naming the API's URL. pystac-client wraps what requests
    raised in an APIError: the original is its context."""
    url = search.api_url
    cause = err.__context__ if isinstance(err, APIError) and err.__context__ else err
    if isinstance(cause, requests.Timeout):
        return SceneImportError(f"{url}: no answer within {search.timeout_s:g} s")
    if isinstance(cause, requests.ConnectionError):
        refused = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(cause))
        return SceneImportError(
            f"{url}: cannot connect ({refused.group(1) if refused else _first_line(cause)})"
        )
    if isinstance(cause, requests.RequestException):
        return SceneImportError(f"{url}: {_first_line(cause)}")
    if isinstance(err, APIError):
        status = getattr(err, "status_code", None)
        return SceneImportError(
            f"{url}: the API answered an error"
            + (f" (HTTP {status})" if status else "")
            + f": {_first_line(err)}"
        )
    return SceneImportError(
        f"{url}: does not answer as a STAC API ({type(err).__name__}: {_first_line(err)})"
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]


def import_scenes(dsn: str, search: SceneSearch, collection_id: str = "scenes") -> ImportReport:
    """Search, then load the scene items in one go (upserted by id: a re-import duplicates
    nothing). A search that fails loads nothing."""
    report = search_scenes(search, collection_id)
    if report.items:
        load_items(dsn, report.items)
    return report
