"""The catalog as stac-geoparquet: DuckDB and stac-geoparquet read back what pgstac holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import psycopg
import pyarrow.parquet as pq
import pytest
from stac_geoparquet.arrow import stac_table_to_items

from glacierflow.catalog import export
from glacierflow.catalog.export import ExportError, export_geoparquet
from glacierflow.catalog.loader import load_granules

BASE = "https://data.example.org/itslive"


@pytest.fixture(scope="module")
def catalog(new_catalog, granule_files: dict[str, Path]) -> str:
    dsn = new_catalog("export")
    ours = [granule_files[name] for name in ("july", "august", "east")]
    load_granules(dsn, ours, "granules", lambda path: f"granules/{path.name}")
    return dsn


def _pgstac_ids(dsn: str, where: str = "true", args: tuple = ()) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f"SELECT id FROM pgstac.items WHERE {where} ORDER BY id", args)
        return [row[0] for row in rows]


def test_duckdb_answers_place_time_and_property_questions_as_pgstac_does(
    catalog: str, tmp_path: Path
) -> None:
    out = tmp_path / "catalog.parquet"
    report = export_geoparquet(catalog, out, base_url=BASE)
    assert report.items == 3 and report.collections == {"granules": 3}
    table = f"read_parquet('{out}')"
    # place: the bbox columns as stac-geoparquet writes them, against PostGIS on the footprints
    west, south, east, north = -49.0, 68.0, -40.0, 70.0  # the "east" granule alone
    found = duckdb.sql(
        f"SELECT id FROM {table} WHERE bbox.xmin <= {east} AND bbox.xmax >= {west} "
        f"AND bbox.ymin <= {north} AND bbox.ymax >= {south} ORDER BY id"
    ).fetchall()
    expected = _pgstac_ids(
        catalog, "ST_Intersects(geometry, ST_MakeEnvelope(%s, %s, %s, %s, 4326))",
        (west, south, east, north),
    )  # fmt: skip
    assert [row[0] for row in found] == expected and len(expected) == 1
    # time and a property, typed (a timestamp and a number, not strings)
    summer = duckdb.sql(
        f"SELECT id, percent_valid_pixels FROM {table} "
        "WHERE datetime >= TIMESTAMPTZ '2024-07-01' AND datetime < TIMESTAMPTZ '2024-09-01' "
        "ORDER BY id"
    ).fetchall()
    assert [row[0] for row in summer] == _pgstac_ids(
        catalog, "datetime >= '2024-07-01' AND datetime < '2024-09-01'"
    )
    assert all(isinstance(row[1], float | int) for row in summer)
    assert len(summer) == 2


def test_items_come_back_whole_with_urls_and_the_file_says_what_it_is(
    catalog: str, tmp_path: Path
) -> None:
    out = tmp_path / "granules.parquet"
    export_geoparquet(catalog, out, collections=["granules"], base_url=BASE)
    items = {item["id"]: item for item in stac_table_to_items(pq.read_table(out))}
    with psycopg.connect(catalog, options="-c search_path=pgstac,public") as conn:
        stored = {
            row[0]["id"]: row[0]
            for row in conn.execute("SELECT pgstac.content_hydrate(i) FROM pgstac.items i")
        }
    assert items.keys() == stored.keys()
    for item_id, item in items.items():
        assert item["geometry"]["type"] == stored[item_id]["geometry"]["type"]
        assert item["properties"]["date_dt"] == stored[item_id]["properties"]["date_dt"]
        for key, asset in stored[item_id]["assets"].items():
            assert item["assets"][key]["href"] == f"{BASE}/{asset['href']}"
    metadata = pq.read_schema(out).metadata
    geo = json.loads(metadata[b"geo"])
    assert geo["primary_column"] == "geometry"
    assert json.loads(metadata[b"stac-geoparquet"])["collections"]["granules"]["id"] == "granules"


def test_without_a_base_url_hrefs_stay_relative_to_the_data_directory(
    catalog: str, tmp_path: Path
) -> None:
    out = tmp_path / "relative.parquet"
    export_geoparquet(catalog, out)
    hrefs = duckdb.sql(f"SELECT assets.data.href FROM read_parquet('{out}')").fetchall()
    assert hrefs and all(row[0].startswith("granules/") for row in hrefs)


def test_a_large_catalog_streams_in_chunks_into_one_file(
    catalog: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of one item force the on-disk schema unification path a million items take."""
    monkeypatch.setattr(export, "CHUNK_ITEMS", 1)
    progress: list[int] = []
    out = tmp_path / "chunked.parquet"
    report = export_geoparquet(catalog, out, progress=progress.append)
    assert progress == [1, 2, 3]
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{out}')").fetchall() == [(report.items,)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunked.parquet"]  # no chunks left


def test_bad_requests_name_the_problem_and_write_nothing(
    catalog: str, new_catalog, tmp_path: Path
) -> None:
    with pytest.raises(ExportError, match="no collection lakes in the catalog"):
        export_geoparquet(catalog, tmp_path / "a.parquet", collections=["lakes"])
    with pytest.raises(ExportError, match=r"name the output \*\.parquet"):
        export_geoparquet(catalog, tmp_path / "a.csv")
    with pytest.raises(ExportError, match="nothing to export"):
        export_geoparquet(new_catalog("export_empty"), tmp_path / "empty.parquet")
    assert list(tmp_path.iterdir()) == []


def test_the_command_exports_and_fails_with_exit_2_and_no_file(
    catalog: str, tmp_path: Path
) -> None:
    env = {**os.environ, "DATABASE_URL": catalog, "GLACIERFLOW_DATA_DIR": str(tmp_path / "data")}
    env.pop("GLACIERFLOW_PUBLIC_DATA_URL", None)
    out = tmp_path / "out" / "catalog.parquet"
    command = [sys.executable, "-m", "glacierflow.cli", "catalog", "export", "--geoparquet"]
    done = subprocess.run(
        [*command, str(out), "--base-url", BASE],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "exported 3 item(s) (granules 3)" in done.stderr
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{out}')").fetchall() == [(3,)]
    failed = subprocess.run(
        [*command, str(tmp_path / "x.parquet"), "--collection", "lakes"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert failed.returncode == 2
    assert "error: no collection lakes in the catalog" in failed.stderr
    assert not (tmp_path / "x.parquet").exists()
