"""The catalog as one stac-geoparquet file, as ITS_LIVE publishes its own.

A GeoParquet file answers bbox/datetime/property questions from DuckDB, GeoPandas or
rustac with no API and no database, which is how people mine millions of granules. Items
stream out of pgstac through a server-side cursor and into Parquet chunk by chunk
(stac-geoparquet unifies the chunks' schemas on disk), so memory stays flat whatever
the catalog's size; the file appears whole or not at all.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import psycopg
from psycopg.rows import dict_row
from stac_geoparquet.arrow import parse_stac_items_to_arrow, to_parquet

from glacierflow.processing.io.staging import staged

CHUNK_ITEMS = 10_000  # items per Arrow batch: ~50 MB of JSON for our granules


class ExportError(ValueError):
    """An export that cannot be made as asked, with the reason."""


@dataclass(frozen=True)
class ExportReport:
    path: Path
    items: int
    collections: dict[str, int]


def _collections(conn: psycopg.Connection, wanted: Sequence[str]) -> dict[str, dict[str, Any]]:
    rows = conn.execute("SELECT id, content FROM pgstac.collections ORDER BY id").fetchall()
    known = {row["id"]: row["content"] for row in rows}
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise ExportError(
            f"no collection {', '.join(unknown)} in the catalog (it has: {', '.join(known)})"
        )
    return {cid: known[cid] for cid in (wanted or known)}


def _absolute(item: dict[str, Any], base_url: str | None) -> dict[str, Any]:
    """Asset hrefs as URLs under `base_url`: the catalog keeps data files' hrefs relative to
    the data directory, which means nothing to a reader of a file on its own."""
    if base_url is None:
        return item
    for asset in (item.get("assets") or {}).values():
        href = asset.get("href")
        if isinstance(href, str) and not urlsplit(href).scheme:
            asset["href"] = f"{base_url.rstrip('/')}/{quote(href.lstrip('/'))}"
    return item


def _items(
    conn: psycopg.Connection,
    collections: Sequence[str],
    base_url: str | None,
    counts: dict[str, int],
    progress: Callable[[int], None] | None,
) -> Iterator[dict[str, Any]]:
    """Every item of `collections`, hydrated, in (collection, datetime, id) order."""
    with conn.cursor(name="glacierflow_export", row_factory=dict_row) as cursor:
        cursor.itersize = CHUNK_ITEMS
        cursor.execute(
            "SELECT pgstac.content_hydrate(i) AS item FROM pgstac.items i "
            "WHERE i.collection = ANY(%s) ORDER BY i.collection, i.datetime, i.id",
            (list(collections),),
        )
        for done, row in enumerate(cursor, start=1):
            item = row["item"]
            item.pop("links", None)  # an API's links (self, parent) have no place in a file
            counts[item["collection"]] = counts.get(item["collection"], 0) + 1
            if progress is not None and done % CHUNK_ITEMS == 0:
                progress(done)
            yield _absolute(item, base_url)


def export_geoparquet(
    dsn: str,
    out: Path,
    *,
    collections: Sequence[str] = (),
    base_url: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ExportReport:
    """Write the items of `collections` (all when empty) to `out` as stac-geoparquet, with
    the collections themselves in the file's metadata.

    `base_url` is where the data directory is published (the API's `/data` URL or
    `GLACIERFLOW_PUBLIC_DATA_URL`); without it, data files' hrefs stay relative to the
    data directory.
    """
    out = Path(out)
    if out.suffix.lower() != ".parquet":
        raise ExportError(f"{out.name}: name the output *.parquet")
    counts: dict[str, int] = {}
    # pgstac's functions call each other unqualified
    with psycopg.connect(dsn, row_factory=dict_row, options="-c search_path=pgstac,public") as conn:
        chosen = _collections(conn, collections)
        items = _items(conn, list(chosen), base_url, counts, progress)
        first = next(items, None)
        if first is None:
            raise ExportError(f"no items in {', '.join(chosen)}: nothing to export")
        out.parent.mkdir(parents=True, exist_ok=True)
        with (
            staged(out) as temporary,
            tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as chunks,
        ):
            reader = parse_stac_items_to_arrow(
                chain([first], items), chunk_size=CHUNK_ITEMS, schema="ChunksToDisk", tmpdir=chunks
            )
            to_parquet(reader, temporary, collections=chosen, compression="zstd")
    return ExportReport(out, sum(counts.values()), counts)
