"""Loading collections and items into pgstac: bulk, idempotent (upsert by id)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pystac
from pypgstac.db import PgstacDB
from pypgstac.load import Loader, Methods

from glacierflow.catalog.collections import all_collections
from glacierflow.catalog.items import (
    HrefOf,
    NotAGranuleError,
    composite_item,
    cube_item,
    granule_item,
    mosaic_item,
)
from glacierflow.settings import COLLECTION_KINDS

if TYPE_CHECKING:
    from glacierflow.processing.mosaics import MosaicProducts


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
    "year": ({"type": "integer", "description": "a mosaic's year; 0: the summary"}, "to_int"),
    "region": ({"type": "string", "description": "a mosaic's region"}, "to_text"),
    "product": ({"type": "string", "enum": ["annual", "summary", "composite"]}, "to_text"),
    "eo:cloud_cover": ({"type": "number", "minimum": 0, "maximum": 100}, "to_float"),
    "grid:code": ({"type": "string", "description": "a scene's footprint tile"}, "to_text"),
}


def init_catalog(dsn: str, collection_ids: dict[str, str]) -> list[str]:
    """The pgstac schema (migrated), the four collections and the queryables; safe to
    run again (extents are recomputed from the items, not reset). A collection whose id
    changed (GLACIERFLOW_COLLECTION_IDS) takes its items along: they move to the new id and
    the old collection goes.

    Processes starting together on one database (the parts of a deployment, each running
    this at start) take turns under an advisory lock: concurrent migrations collide."""
    from glacierflow.catalog.database import DatabaseError

    try:  # a wrong password or an absent server: said plainly (a deployment's first error)
        turn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as err:
        raise DatabaseError(f"cannot connect to the catalog database: {err}") from err
    with turn:
        turn.execute("SELECT pg_advisory_lock(%s)", (_INIT_LOCK,))
        return _init_catalog(dsn, collection_ids)  # the lock goes with the connection


TOKEN_INDEX = "items_id_c_idx"  # the paging tokens' look-up (see _init_catalog)
_INIT_LOCK = 0x676C6163  # "glac": glacierflow's advisory lock key for catalog set-up


def _init_catalog(dsn: str, collection_ids: dict[str, str]) -> list[str]:
    from glacierflow.catalog.database import migrate

    migrate(dsn)
    collections = all_collections(collection_ids)
    load_collections(dsn, collections)
    ids = {kind: c.id for kind, c in zip(COLLECTION_KINDS, collections, strict=True)}
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
            (ids["granules"],),
        )
        # Paging tokens: pgstac finds a token's item by `id = convert_from(...)`, whose
        # result takes the "C" collation of its `name` argument, so the primary keys (in the
        # database's collation) cannot serve it and every page after the first scanned the
        # whole collection (0.5 s a page at 100,000 granules). An index in "C" serves it
        # (0.3 ms); on `items`, so every partition, present and future, has one
        # (BENCHMARKS.md "Catalog at scale").
        conn.execute(f'CREATE INDEX IF NOT EXISTS {TOKEN_INDEX} ON pgstac.items (id COLLATE "C")')
        renamed = _renamed_collections(conn, ids)
    for kind, old in renamed.items():
        _move_items(dsn, old, ids[kind])
    with psycopg.connect(dsn, options="-c search_path=pgstac,public") as conn:
        conn.cursor().executemany(
            "INSERT INTO glacierflow.collection_ids (kind, id) VALUES (%s, %s) "
            "ON CONFLICT (kind) DO UPDATE SET id = excluded.id",
            list(ids.items()),
        )
        conn.execute("SELECT pgstac.update_collection_extents()")
    return list(ids.values())


def _renamed_collections(conn: psycopg.Connection, ids: dict[str, str]) -> dict[str, str]:
    """Kind -> the id its collection had until now, for kinds whose id changed and whose
    old collection is still there. The ids last used are recorded in
    `glacierflow.collection_ids`; a catalog from before that record used the defaults."""
    conn.execute("CREATE SCHEMA IF NOT EXISTS glacierflow")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS glacierflow.collection_ids (kind text PRIMARY KEY, "
        "id text NOT NULL)"
    )
    recorded = dict(conn.execute("SELECT kind, id FROM glacierflow.collection_ids").fetchall())
    existing = {row[0] for row in conn.execute("SELECT id FROM pgstac.collections")}
    renamed = {}
    for kind, new in ids.items():
        old = recorded.get(kind, kind)
        if old != new and old in existing and old not in ids.values():
            renamed[kind] = old
    return renamed


def _move_items(dsn: str, old: str, new: str, page: int = 10_000) -> None:
    """Every item of collection `old` into `new`, a page at a time (upserted in bulk, so a
    move cut short is finished by the next run), then `old` goes. No transaction stays open
    across a page's load: pgstac's loader takes locks that a pending read would block."""
    with psycopg.connect(dsn, autocommit=True, options="-c search_path=pgstac,public") as conn:
        last = ""
        while rows := conn.execute(
            "SELECT id, content_hydrate(items) FROM items WHERE collection = %s AND id > %s "
            "ORDER BY id LIMIT %s",
            (old, last, page),
        ).fetchall():
            load_items(dsn, ({**item, "collection": new} for _, item in rows))
            last = rows[-1][0]
        conn.execute("SELECT delete_collection(%s)", (old,))


def load_items(dsn: str, items: Iterable[dict]) -> None:
    """Upsert items in bulk (pypgstac's COPY path, chunks of 10,000): no per-item round trip;
    then recompute the collection extents."""
    with PgstacDB(dsn=dsn) as db:
        Loader(db=db).load_items(iter(items), insert_mode=Methods.upsert)
        db.query_one("SELECT update_collection_extents();")


@dataclass
class LoadReport:
    """Granules loaded, the files that were not granules with the reason, and the granules
    left out because not one of their cells holds a velocity."""

    loaded: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    empty: list[str] = field(default_factory=list)


def load_granules(
    dsn: str,
    paths: Iterable[Path],
    collection_id: str,
    href_of: HrefOf | None = None,
    keep_empty: bool = False,
) -> LoadReport:
    """Build and load the items of many granule files; bad files are reported, not fatal.
    `href_of` gives each file's stored href (Settings.data_href: relative to the data
    directory); without it, or where it gives None, the absolute path is stored.

    A granule without one valid cell (ITS_LIVE has such, `..._P000.nc`) has no footprint
    to give, and pgstac wants one: it is left out unless `keep_empty`, which catalogues it
    with its whole grid as the footprint (so that a search by place finds the pair)."""
    report = LoadReport()
    items = []
    for path in paths:
        try:
            item = granule_item(path, collection_id, href_of(path) if href_of else None)
        except NotAGranuleError as err:
            report.rejected[str(path)] = str(err)
            continue
        if item.properties["percent_valid_pixels"] == 0 and not keep_empty:
            report.empty.append(str(path))
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


def load_mosaics(
    dsn: str,
    products: Iterable[MosaicProducts],
    collection_id: str = "mosaics",
    href_of: HrefOf | None = None,
) -> list[str]:
    """Create or update the items of mosaics (one per region and year), as `mosaic build`
    made them: each build rewrites the files, and its item follows (statistics, footprint,
    `updated`). Hrefs as in `load_granules`."""
    items = [
        mosaic_item(p, href_of, collection_id).to_dict(include_self_link=False) for p in products
    ]
    if items:
        load_items(dsn, items)
    return [item["id"] for item in items]


def load_composites(
    dsn: str, paths: Iterable[Path], collection_id: str = "mosaics", href_of: HrefOf | None = None
) -> list[str]:
    """Create or update the items of cube composites (NetCDF); hrefs as in `load_granules`."""
    items = [
        composite_item(Path(p), href_of, collection_id).to_dict(include_self_link=False)
        for p in paths
    ]
    if items:
        load_items(dsn, items)
    return [item["id"] for item in items]
