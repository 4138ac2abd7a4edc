"""Loading collections and items into pgstac: bulk, idempotent (upsert by id)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pystac
from pypgstac.db import PgstacDB
from pypgstac.load import Loader, Methods

from glacierflow.catalog.collections import all_collections
from glacierflow.catalog.items import NotAGranuleError, granule_item


def load_collections(dsn: str, collections: Iterable[pystac.Collection]) -> None:
    """Create or update collections (their ids decide which)."""
    with PgstacDB(dsn=dsn) as db:
        Loader(db=db).load_collections(
            iter([c.to_dict(include_self_link=False) for c in collections]),
            insert_mode=Methods.upsert,
        )


def init_catalog(dsn: str, collection_ids: dict[str, str]) -> list[str]:
    """The pgstac schema (migrated) and the four collections; safe to run again."""
    from glacierflow.catalog.database import migrate

    migrate(dsn)
    collections = all_collections(collection_ids)
    load_collections(dsn, collections)
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


def load_granules(dsn: str, paths: Iterable[Path], collection_id: str) -> LoadReport:
    """Build and load the items of many granule files; bad files are reported, not fatal."""
    report = LoadReport()
    items = []
    for path in paths:
        try:
            item = granule_item(path, collection_id)
        except NotAGranuleError as err:
            report.rejected[str(path)] = str(err)
            continue
        items.append(item.to_dict(include_self_link=False))
        report.loaded.append(item.id)
    if items:
        load_items(dsn, items)
    return report
