"""Where the catalog lives: external DSNs from the environment, the private cluster (start,
reuse, stop), pgstac migrations, and the errors a user sees when the server is unreachable.

Everything runs against real PostgreSQL servers started from the system's binaries.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from conftest import let_postgres_traverse
from psycopg.conninfo import conninfo_to_dict

from glacierflow.catalog.database import (
    DatabaseError,
    EmbeddedCluster,
    catalog_database,
    check_postgis,
    external_dsn,
    migrate,
)

PGSTAC_VERSION = "0.10.0"
# nothing listens on port 1 (privileged, unassigned): connections are refused at once
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/postgres"


def _accepts_connections(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


# -- external servers from the environment ----------------------------------------------------


def test_database_url_is_used_as_given_and_wins_over_pg_variables() -> None:
    url = "postgresql://alice:secret@db.example:6543/stac"
    assert external_dsn({"DATABASE_URL": url}) == url
    assert external_dsn({"DATABASE_URL": url, "PGHOST": "elsewhere", "PGPORT": "1"}) == url


def test_pg_variables_make_a_dsn_libpq_reads_back() -> None:
    env = {
        "PGHOST": "db.example",
        "PGPORT": "6543",
        "PGUSER": "alice",
        "PGPASSWORD": "secret",
        "PGDATABASE": "stac",
    }
    dsn = external_dsn(env)
    assert dsn == "postgresql://alice:secret@db.example:6543/stac"
    assert conninfo_to_dict(dsn) == {
        "host": "db.example",
        "port": "6543",
        "user": "alice",
        "password": "secret",
        "dbname": "stac",
    }


def test_pg_variables_default_to_postgres_on_5432() -> None:
    assert (
        external_dsn({"PGHOST": "db.example"}) == "postgresql://postgres@db.example:5432/postgres"
    )


def test_no_external_server_without_database_url_or_pghost() -> None:
    assert external_dsn({}) is None
    assert external_dsn({"DATABASE_URL": "", "PGHOST": ""}) is None
    # PGPORT/PGUSER alone name no server: the private cluster is used
    assert external_dsn({"PGPORT": "6543", "PGUSER": "alice"}) is None


def test_pg_password_with_url_characters_survives() -> None:
    dsn = external_dsn({"PGHOST": "db.example", "PGUSER": "alice", "PGPASSWORD": "p@ss/word"})
    parsed = conninfo_to_dict(dsn)
    assert (parsed.get("host"), parsed.get("password")) == ("db.example", "p@ss/word")


def test_pghost_socket_directory_survives() -> None:
    parsed = conninfo_to_dict(external_dsn({"PGHOST": "/var/run/postgresql"}))
    assert (parsed.get("host"), parsed.get("dbname")) == ("/var/run/postgresql", "postgres")


# -- the private cluster ---------------------------------------------------------------------


def test_running_cluster_is_reused_not_started_again(
    pg_cluster: EmbeddedCluster, pgstac_dsn: str
) -> None:
    again = EmbeddedCluster(pg_cluster.directory)  # another process's view of the same folder
    dsn, started = again.start()
    assert started is False
    assert dsn == pgstac_dsn
    assert conninfo_to_dict(dsn)["port"] == conninfo_to_dict(pgstac_dsn)["port"]
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_migrate_is_idempotent(pgstac_dsn: str) -> None:
    assert migrate(pgstac_dsn) == PGSTAC_VERSION
    assert migrate(pgstac_dsn) == PGSTAC_VERSION
    with psycopg.connect(pgstac_dsn) as conn:
        assert conn.execute("SELECT pgstac.get_version()").fetchone() == (PGSTAC_VERSION,)
        extensions = {row[0] for row in conn.execute("SELECT extname FROM pg_extension")}
    assert {"postgis", "btree_gist", "unaccent"} <= extensions


def test_check_postgis_passes_on_the_cluster(pgstac_dsn: str) -> None:
    check_postgis(pgstac_dsn)  # PostGIS, btree_gist and unaccent are installed


@pytest.mark.parametrize("call", [check_postgis, migrate], ids=["check_postgis", "migrate"])
def test_unreachable_server_is_a_database_error_that_says_so(call) -> None:
    began = time.perf_counter()
    with pytest.raises(DatabaseError) as caught:
        call(UNREACHABLE)
    assert time.perf_counter() - began < 5, "a refused connection must fail fast"
    message = str(caught.value)
    assert "cannot connect to the catalog database" in message
    assert "127.0.0.1" in message and "port 1 " in message
    assert "refused" in message.lower()


def test_catalog_database_runs_a_private_cluster_for_its_duration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DATABASE_URL", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"):
        monkeypatch.delenv(name, raising=False)
    let_postgres_traverse(tmp_path)  # else the cluster falls back to /var/lib/glacierflow
    data_dir = tmp_path / "data"
    with catalog_database(data_dir) as dsn:
        port = int(conninfo_to_dict(dsn)["port"])
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert (data_dir / "postgres" / "data" / "PG_VERSION").exists()
        assert _accepts_connections(port)
    assert not _accepts_connections(port), "the private cluster still runs after the block"
    assert not (data_dir / "postgres" / "data" / "postmaster.pid").exists()


def test_catalog_database_leaves_an_already_running_cluster_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster started by someone else (e.g. `glacierflow serve`) survives a CLI command."""
    for name in ("DATABASE_URL", "PGHOST"):
        monkeypatch.delenv(name, raising=False)
    let_postgres_traverse(tmp_path)
    cluster = EmbeddedCluster(tmp_path / "data" / "postgres")
    dsn, started = cluster.start()
    assert started
    try:
        with catalog_database(tmp_path / "data") as inner:
            assert inner == dsn
        assert _accepts_connections(int(conninfo_to_dict(dsn)["port"]))
    finally:
        cluster.stop()


def test_private_cluster_stops_with_its_last_user_not_its_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A background consolidator that started the cluster must not stop it under a `serve`
    that came while it ran: the last glacierflow user out stops it."""
    for name in ("DATABASE_URL", "PGHOST"):
        monkeypatch.delenv(name, raising=False)
    let_postgres_traverse(tmp_path)
    first, second = catalog_database(tmp_path / "data"), catalog_database(tmp_path / "data")
    dsn = first.__enter__()  # starts the cluster
    assert second.__enter__() == dsn
    port = int(conninfo_to_dict(dsn)["port"])
    first.__exit__(None, None, None)
    with psycopg.connect(dsn) as conn:  # still there for the second user
        assert conn.execute("SELECT 1").fetchone() == (1,)
    second.__exit__(None, None, None)
    assert not _accepts_connections(port), "the last user out leaves the cluster running"


def test_private_cluster_started_here_stays_up_for_another_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same across processes: a command that started the cluster and ends while another
    process uses it leaves the cluster to that process, which stops it when it ends."""
    for name in ("DATABASE_URL", "PGHOST"):
        monkeypatch.delenv(name, raising=False)
    let_postgres_traverse(tmp_path)
    data_dir = tmp_path / "data"
    user = catalog_database(data_dir)
    dsn = user.__enter__()
    other = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; import psycopg\n"
            "from glacierflow.catalog.database import catalog_database\n"
            "with catalog_database(Path(sys.argv[1])) as dsn:\n"
            "    print(dsn, flush=True); sys.stdin.readline()\n"
            "    print(psycopg.connect(dsn).execute('SELECT 1').fetchone()[0], flush=True)\n",
            str(data_dir),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout.readline().strip() == dsn
        user.__exit__(None, None, None)
        out, _ = other.communicate("\n", timeout=60)
        assert (other.returncode, out.strip()) == (0, "1"), "stopped under the other process"
        assert not _accepts_connections(int(conninfo_to_dict(dsn)["port"]))
    finally:
        other.kill()


# -- the password from a file (a Docker or Kubernetes secret) ---------------------------------


def _password_file(tmp_path: Path, password: str) -> str:
    path = tmp_path / "db_password"
    path.write_text(password + "\n")
    return str(path)


def test_pgpassword_file_joins_the_pg_variables(tmp_path: Path) -> None:
    env = {
        "PGHOST": "db",
        "PGUSER": "alice",
        "PGPASSWORD_FILE": _password_file(tmp_path, "p@ss/wd"),
    }
    parsed = conninfo_to_dict(external_dsn(env))
    assert (parsed["host"], parsed["user"], parsed["password"]) == ("db", "alice", "p@ss/wd")


def test_pgpassword_file_joins_a_database_url_without_a_password(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": "postgresql://al%40ice@db.example:6543/stac?sslmode=require",
        "PGPASSWORD_FILE": _password_file(tmp_path, "s3cret:@/"),
    }
    dsn = external_dsn(env)
    assert conninfo_to_dict(dsn) == {
        "user": "al@ice",
        "password": "s3cret:@/",
        "host": "db.example",
        "port": "6543",
        "dbname": "stac",
        "sslmode": "require",
    }
    assert dsn.startswith("postgresql://")  # still a URL: stac-fastapi and titiler parse it


@pytest.mark.parametrize(
    "env",
    [
        {"DATABASE_URL": "postgresql://alice:Pw-In-Url@db/stac"},
        {"PGHOST": "db", "PGPASSWORD": "Pw-In-Url"},
    ],
)
def test_a_password_given_twice_is_refused(tmp_path: Path, env: dict[str, str]) -> None:
    env["PGPASSWORD_FILE"] = _password_file(tmp_path, "from-the-file")
    with pytest.raises(DatabaseError, match="PGPASSWORD") as caught:
        external_dsn(env)
    assert "from-the-file" not in str(caught.value) and "Pw-In-Url" not in str(caught.value)


def test_an_unusable_password_file_is_an_error_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match=r"PGPASSWORD_FILE .*No such file"):
        external_dsn({"PGHOST": "db", "PGPASSWORD_FILE": str(tmp_path / "missing")})
    (tmp_path / "empty").write_text("")
    with pytest.raises(DatabaseError, match=r"PGPASSWORD_FILE .*is empty"):
        external_dsn({"PGHOST": "db", "PGPASSWORD_FILE": str(tmp_path / "empty")})
