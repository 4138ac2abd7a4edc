"""Loading collections and items into pgstac: bulk, idempotent (upsert by id)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pystac
from pypgstac.db import PgstacDB
from pypgstac.load import Loader, Methods

from glacierflow.catalog.collections import all_collections
from glacierflow.catalog.items import NotAGranuleError, cube_item, granule_item

HrefOf = Callable[[Path], str | None]


def load_collections(dsn: str, collections: Iterable[pystac.Collection]) -> None:
    """Create or update collections (their ids decide which)."""
    with PgstacDB(dsn=dsn) as db:
        Loader(db=db).load_collections(
            iter([c.to_dict(include_self_link=False) for c in collections]),
            insert_mode=Methods.upsert,
        )


# Item properties that searches filter and sort on, with pgstac's typed accessors: without
# them pgstac compares and sorts these as text ("100" < "87.3").
QUERYABLES = {
    "percent_valid_pixels": ({"type": "number", "minimum": 0, "maximum": 100}, "to_float"),
    "date_dt": ({"type": "number", "description": "days between the two images"}, "to_float"),
    "stable_shift_flag": ({"type": "integer", "enum": [0, 1, 2]}, "to_int"),
    "platform": ({"type": "string"}, "to_text"),
    "proj:code": ({"type": "string"}, "to_text"),
    "start_datetime": ({"type": "string", "format": "date-time"}, "to_tstz"),
    "end_datetime": ({"type": "string", "format": "date-time"}, "to_tstz"),
}


def init_catalog(dsn: str, collection_ids: dict[str, str]) -> list[str]:
    """The pgstac schema (migrated), the four collections and the queryables; safe to
    run again (extents are recomputed from the items, not reset)."""
    from glacierflow.catalog.database import migrate

    migrate(dsn)
    collections = all_collections(collection_ids)
    load_collections(dsn, collections)
    with psycopg.connect(dsn, options="-c search_path=pgstac,public") as conn:
        for name, (definition, wrapper) in QUERYABLES.items():
            conn.execute(
                """
                INSERT INTO pgstac.queryables (name, definition, property_wrapper)
                SELECT %s, %s::jsonb, %s
                WHERE NOT EXISTS (SELECT 1 FROM pgstac.queryables WHERE name = %s)
                """,
                (name, json.dumps(definition), wrapper, name),
            )
        # one partition per year: date-bounded searches skip the years they cannot match
        conn.execute(
            "UPDATE pgstac.collections SET partition_trunc = 'year' "
            "WHERE id = %s AND partition_trunc IS NULL",
            (collection_ids.get("granules", "granules"),),
        )
        conn.execute("SELECT pgstac.update_collection_extents()")
    return [c.id for c in collections]


def load_items(dsn: str, items: Iterable[dict]) -> None:
    """Upsert items in bulk (pypgstac's COPY path, chunks of 10,000): no per-item round trip;
    then recompute the collection extents."""
    with PgstacDB(dsn=dsn) as db:
        Loader(db=db).load_items(iter(items), insert_mode=Methods.upsert)
        db.query_one("SELECT update_collection_extents();")


@dataclass
class LoadReport:
    """Granules loaded, and the files that were not granules with the reason."""

    loaded: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)


def load_granules(
    dsn: str, paths: Iterable[Path], collection_id: str, href_of: HrefOf | None = None
) -> LoadReport:
    """Build and load the items of many granule files; bad files are reported, not fatal.
    `href_of` gives each file's stored href (Settings.data_href: relative to the data
    directory); without it, or where it gives None, the absolute path is stored."""
    report = LoadReport()
    items = []
    for path in paths:
        try:
            item = granule_item(path, collection_id, href_of(path) if href_of else None)
        except NotAGranuleError as err:
            report.rejected[str(path)] = str(err)
            continue
        items.append(item.to_dict(include_self_link=False))
        report.loaded.append(item.id)
    if items:
        load_items(dsn, items)
    return report


def load_cubes(
    dsn: str, paths: Iterable[Path], collection_id: str, href_of: HrefOf | None = None
) -> list[str]:
    """Create or update the items of cubes (layer count, time span as they are now); hrefs
    as in `load_granules`."""
    items = [
        cube_item(Path(p), collection_id, href_of(Path(p)) if href_of else None).to_dict(
            include_self_link=False
        )
        for p in paths
    ]
    if items:
        load_items(dsn, items)
    return [item["id"] for item in items]
