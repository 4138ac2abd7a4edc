"""Loading granules into pgstac: every file becomes one row, reloading changes nothing, files
that are not granules are reported while the rest load, collection extents follow the items,
and ten thousand items go in with one call.

Each test module works on catalog databases of its own in the session's private cluster.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import xarray as xr
from conftest import serving

from glacierflow.catalog.items import granule_item
from glacierflow.catalog.loader import TOKEN_INDEX, init_catalog, load_granules, load_items

WORLD = [[-180.0, -90.0, 180.0, 90.0]]


def _rows(dsn: str, collection: str = "granules") -> dict[str, str]:
    """id -> a hash of everything pgstac stores for the item."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT id, md5(concat_ws('|', content::text, ST_AsEWKT(geometry), datetime::text,"
            " end_datetime::text)) FROM pgstac.items WHERE collection = %s",
            (collection,),
        ).fetchall()
    return dict(rows)


def _extent(dsn: str, collection: str = "granules") -> dict:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT content->'extent' FROM pgstac.collections WHERE id = %s", (collection,)
        ).fetchone()[0]


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def loaded(new_catalog, granule_files: dict[str, Path]) -> tuple[str, dict[str, Path]]:
    """A catalog of its own, with every granule file loaded once."""
    dsn = new_catalog("loader")
    assert _rows(dsn) == {}
    assert _extent(dsn)["spatial"]["bbox"] == WORLD  # the placeholder before any item
    report = load_granules(dsn, list(granule_files.values()), "granules", keep_empty=True)
    assert report.rejected == {} and report.empty == []
    assert sorted(report.loaded) == sorted(p.stem for p in granule_files.values())
    return dsn, granule_files


def test_every_granule_is_one_item(loaded: tuple[str, dict[str, Path]]) -> None:
    dsn, files = loaded
    rows = _rows(dsn)
    assert sorted(rows) == sorted(p.stem for p in files.values())
    with psycopg.connect(dsn) as conn:
        (count,) = conn.execute("SELECT count(*) FROM pgstac.items").fetchone()
        content = conn.execute(
            "SELECT content FROM pgstac.items WHERE id = %s", (files["july"].stem,)
        ).fetchone()[0]
    assert count == len(files)
    # pgstac keeps what the item said (dehydrated: the collection's item_assets are factored out)
    item = granule_item(files["july"]).to_dict()
    assert (
        content["properties"]["percent_valid_pixels"] == item["properties"]["percent_valid_pixels"]
    )
    assert content["assets"]["data"]["href"] == item["assets"]["data"]["href"]


def test_reloading_the_same_files_changes_nothing(loaded: tuple[str, dict[str, Path]]) -> None:
    dsn, files = loaded
    before, extent = _rows(dsn), _extent(dsn)
    report = load_granules(dsn, list(files.values()), "granules", keep_empty=True)
    assert sorted(report.loaded) == sorted(before)
    assert _rows(dsn) == before
    assert _extent(dsn) == extent


def test_extent_covers_the_items(loaded: tuple[str, dict[str, Path]]) -> None:
    dsn, files = loaded
    items = [granule_item(p) for p in files.values()]
    extent = _extent(dsn)
    (bbox,) = extent["spatial"]["bbox"]
    assert bbox != WORLD[0]
    for item in items:
        west, south, east, north = item.bbox
        assert bbox[0] <= west and bbox[1] <= south and bbox[2] >= east and bbox[3] >= north
    # ...and no more than them
    assert bbox[0] == pytest.approx(min(i.bbox[0] for i in items))
    assert bbox[3] == pytest.approx(max(i.bbox[3] for i in items))
    ((start, end),) = extent["temporal"]["interval"]
    assert _instant(start) == min(i.common_metadata.start_datetime for i in items)
    assert _instant(end) == max(i.common_metadata.end_datetime for i in items)


def test_init_catalog_again_keeps_the_extent(loaded: tuple[str, dict[str, Path]]) -> None:
    dsn, _ = loaded
    extent = _extent(dsn)
    init_catalog(dsn, {})
    after = _extent(dsn)
    load_items(dsn, [])  # put the computed extent back for the other tests
    assert after == extent


def test_files_that_are_not_granules_are_reported_and_the_rest_load(
    new_catalog, granule_files: dict[str, Path], tmp_path: Path
) -> None:
    dsn = new_catalog("loader_rejects")
    text = tmp_path / "README.nc"
    text.write_text("not data\n")
    other = tmp_path / "temperature.nc"
    xr.Dataset({"t2m": (("y", "x"), [[1.0, 2.0]])}).to_netcdf(other)
    good = [granule_files["july"], granule_files["august"]]
    report = load_granules(dsn, [text, good[0], other, good[1]], "granules")
    assert sorted(report.rejected) == sorted([str(text), str(other)])
    assert "not a NetCDF file" in report.rejected[str(text)]
    assert "no x, y, vx, vy, v, mapping, img_pair_info variable" in report.rejected[str(other)]
    assert report.loaded == [p.stem for p in good]
    assert sorted(_rows(dsn)) == sorted(p.stem for p in good)


def test_a_broken_granule_does_not_stop_the_others(
    new_catalog, granule_files: dict[str, Path], tmp_path: Path
) -> None:
    dsn = new_catalog("loader_broken")
    broken = tmp_path / "broken.nc"
    with xr.open_dataset(granule_files["july"], decode_cf=False) as ds:
        ds.load().drop_vars("x").to_netcdf(broken)
    report = load_granules(dsn, [broken, granule_files["august"]], "granules")
    assert list(report.rejected) == [str(broken)]
    assert sorted(_rows(dsn)) == [granule_files["august"].stem]


def test_ten_thousand_items_load_in_one_call(new_catalog, granule_files: dict[str, Path]) -> None:
    dsn = new_catalog("loader_bulk")
    template = granule_item(granule_files["july"]).to_dict(include_self_link=False)
    first = datetime(2000, 1, 1, tzinfo=UTC)
    items = []
    for i in range(10_000):
        item = copy.deepcopy(template)
        item["id"] = f"bulk-{i:05d}"
        when = first + timedelta(hours=7 * i)
        item["properties"]["datetime"] = when.isoformat().replace("+00:00", "Z")
        item["properties"]["start_datetime"] = (when - timedelta(days=8)).isoformat()
        item["properties"]["end_datetime"] = (when + timedelta(days=8)).isoformat()
        items.append(item)
    began = time.perf_counter()
    load_items(dsn, items)
    seconds = time.perf_counter() - began
    assert seconds < 20, f"10,000 items took {seconds:.1f} s"
    with psycopg.connect(dsn) as conn:
        (count,) = conn.execute("SELECT count(*) FROM pgstac.items").fetchone()
        stored = conn.execute(
            "SELECT datetime, end_datetime FROM pgstac.items WHERE id = 'bulk-09999'"
        ).fetchone()
    assert count == 10_000
    last = first + timedelta(hours=7 * 9999)
    # pgstac indexes an item by its range, start_datetime..end_datetime
    assert stored == (last - timedelta(days=8), last + timedelta(days=8))
    ((start, end),) = _extent(dsn)["temporal"]["interval"]
    assert _instant(start) == first - timedelta(days=8)
    assert _instant(end) == first + timedelta(hours=7 * 9999, days=8)


def test_itslive_collection_names_work_with_the_itslive_client(
    new_catalog, granule_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A deployment can publish ITS_LIVE's collection ids; the itslive client's default
    collection (`itslive-granules`) then finds our granules with no extra argument."""
    import itslive

    from glacierflow.catalog.items import granule_item
    from glacierflow.services.app import create_app
    from glacierflow.settings import Settings

    dsn = new_catalog("itslive_names")
    ids = {"granules": "itslive-granules", "cubes": "itslive-cubes"}
    assert set(init_catalog(dsn, ids)) == {"scenes", "itslive-granules", "itslive-cubes", "mosaics"}
    report = load_granules(dsn, [granule_files["august"]], "itslive-granules")
    assert report.loaded == [granule_files["august"].stem]
    # the granule's folder is the data directory: the API serves it under /data
    settings = Settings(data_dir=granule_files["august"].parent, collection_ids=ids)
    with serving(create_app(settings, dsn)) as url:
        found = itslive.search(
            type="pgstac",
            base_catalog_href=f"{url}/stac",
            bbox=granule_item(granule_files["august"]).bbox,
            start="2024-01-01",
            end="2024-12-31",
        )
    assert found == [f"{url}/data/{granule_files['august'].name}"]


def _collections(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM pgstac.collections")}


def test_a_renamed_collection_takes_its_items_along(
    new_catalog, granule_files: dict[str, Path]
) -> None:
    """Setting GLACIERFLOW_COLLECTION_IDS on a catalog that has items moves them to the new
    id (content unchanged but for `collection`), drops the old collection, and renaming back
    works the same way."""
    dsn = new_catalog("rename")
    files = [granule_files["july"], granule_files["august"]]
    load_granules(dsn, files, "granules")
    before = _rows(dsn)
    assert len(before) == 2

    ids = {"granules": "itslive-granules", "cubes": "itslive-cubes"}
    init_catalog(dsn, ids)
    assert _collections(dsn) == {"scenes", "itslive-granules", "itslive-cubes", "mosaics"}
    assert _rows(dsn, "granules") == {}
    moved = _rows(dsn, "itslive-granules")
    assert set(moved) == set(before)
    assert _extent(dsn, "itslive-granules")["spatial"]["bbox"] != WORLD  # from the items
    with psycopg.connect(dsn) as conn:
        (item,) = conn.execute(
            "SELECT pgstac.get_item(%s, 'itslive-granules')", (files[0].stem,)
        ).fetchone()
    assert item["collection"] == "itslive-granules"
    assert item["assets"]["data"]["href"] == granule_item(files[0]).assets["data"].href
    assert item["properties"]["percent_valid_pixels"] > 0

    # loading again under the new id upserts: still two items
    load_granules(dsn, files, "itslive-granules")
    assert set(_rows(dsn, "itslive-granules")) == set(before)

    init_catalog(dsn, {})  # back to the defaults, from the recorded ids
    assert _collections(dsn) == {"scenes", "granules", "cubes", "mosaics"}
    assert set(_rows(dsn)) == set(before)


def test_a_rename_fills_the_empty_collection_an_earlier_version_made(
    new_catalog, granule_files: dict[str, Path]
) -> None:
    """Before renames moved items, setting the ids created an empty collection beside the
    full one: the next init fills it."""
    from glacierflow.catalog.collections import collection
    from glacierflow.catalog.loader import load_collections

    dsn = new_catalog("rename_empty")
    load_granules(dsn, [granule_files["july"]], "granules")
    with psycopg.connect(dsn) as conn:  # a catalog from before ids were recorded
        conn.execute("DROP TABLE IF EXISTS glacierflow.collection_ids")
    load_collections(dsn, [collection("granules", "itslive-granules")])
    init_catalog(dsn, {"granules": "itslive-granules"})
    assert set(_rows(dsn, "itslive-granules")) == {granule_files["july"].stem}
    assert "granules" not in _collections(dsn)


@pytest.mark.parametrize(
    ("ids", "words"),
    [
        ({"cube": "itslive-cubes"}, "unknown collection kind(s) cube"),
        ({"cubes": "granules"}, "distinct"),
        ({"granules": " "}, "not empty"),
    ],
)
def test_collection_ids_that_would_lose_or_mix_items_are_refused(
    ids: dict[str, str], words: str
) -> None:
    from pydantic import ValidationError

    from glacierflow.settings import Settings

    with pytest.raises(ValidationError, match=re.escape(words)):
        Settings(collection_ids=ids)


def test_processes_setting_up_one_new_catalog_at_once_take_turns(
    pgstac_dsn: str, tmp_path: Path
) -> None:
    """The parts of a deployment start together, each setting up the catalog: on a new
    database their migrations would collide (duplicate schema objects) without turns."""
    with psycopg.connect(pgstac_dsn, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS init_race WITH (FORCE)")
        conn.execute("CREATE DATABASE init_race")
    env = {
        **os.environ,
        "DATABASE_URL": f"{pgstac_dsn.rsplit('/', 1)[0]}/init_race",
        "GLACIERFLOW_DATA_DIR": str(tmp_path),
    }
    command = [sys.executable, "-m", "glacierflow.cli", "catalog", "init"]
    starts = [
        subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) for _ in range(3)
    ]
    for process in starts:
        _, errors = process.communicate(timeout=300)
        assert process.returncode == 0, errors
    with psycopg.connect(env["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT count(*) FROM pgstac.collections").fetchone() == (4,)


def test_a_paging_token_finds_its_item_through_an_index(
    loaded: tuple[str, dict[str, Path]],
) -> None:
    """pgstac looks a token's item up by `id = convert_from(...)` ("C" collation), which
    the primary keys cannot serve: init_catalog's index in "C" does, on every partition."""
    dsn, _ = loaded
    with psycopg.connect(dsn, options="-c search_path=pgstac,public") as conn:
        conn.execute("SET enable_seqscan = off")  # a table this small would be scanned anyway
        (item_id,) = conn.execute("SELECT id FROM items LIMIT 1").fetchone()
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                "EXPLAIN SELECT * FROM items "
                "WHERE collection = convert_from(decode(%s, 'hex'), 'UTF8') "
                "AND id = convert_from(decode(%s, 'hex'), 'UTF8')",
                (b"granules".hex(), item_id.encode().hex()),
            )
        )
        declared = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'pgstac' AND indexname = %s",
            (TOKEN_INDEX,),
        ).fetchone()
        partitions = conn.execute(
            "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE c.relkind = 'r' AND c.relname LIKE '\\_items\\_%%'"
        ).fetchone()[0]
    assert partitions > 1  # granules: a partition per year
    assert "Seq Scan" not in plan, plan
    assert declared is not None and 'COLLATE "C"' in declared[0]
    assert plan.count("_id_idx") == partitions, plan  # the index's copy on each partition
