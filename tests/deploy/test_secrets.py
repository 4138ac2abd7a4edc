"""The secrets as a deployment passes them: the database password and the transactions key
in files (Docker's /run/secrets, a Kubernetes secret volume) named by PGPASSWORD_FILE and
GLACIERFLOW_STAC_TRANSACTIONS_API_KEY_FILE, against a PostgreSQL server that checks passwords."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import httpx
import psycopg
import pytest
from conftest import serving_process

from glacierflow.catalog.database import EmbeddedCluster

COLLECTION = {
    "type": "Collection",
    "stac_version": "1.1.0",
    "id": "posted-with-a-key-from-a-file",
    "description": "written through the STAC API with the key a secret file holds",
    "license": "CC-BY-4.0",
    "links": [],
    "extent": {
        "spatial": {"bbox": [[-180, -90, 180, 90]]},
        "temporal": {"interval": [["2020-01-01T00:00:00Z", None]]},
    },
}


@pytest.fixture
def password_server(own_cluster: EmbeddedCluster) -> tuple[str, int, str]:
    """The cluster, with scram-sha-256 passwords over TCP: (host, port, password)."""
    dsn, _ = own_cluster.start()
    password = secrets.token_urlsafe(24)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"ALTER ROLE postgres PASSWORD '{password}'")
        hba = own_cluster.data / "pg_hba.conf"
        hba.write_text("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
        conn.execute("SELECT pg_reload_conf()")
    url = urlparse(dsn)
    return "127.0.0.1", url.port, password


def _environment(host: str, port: int, tmp_path: Path, **files: str) -> dict[str, str]:
    """This process's environment less its database settings, plus the deployment's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL"))}
    env.update(PGHOST=host, PGPORT=str(port), PGUSER="postgres", PGDATABASE="postgres")
    env["GLACIERFLOW_DATA_DIR"] = str(tmp_path / "data")
    for variable, content in files.items():
        path = tmp_path / variable.lower()
        path.write_text(content + "\n")
        env[variable] = str(path)
    return env


def _catalog_init(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "glacierflow.cli", "catalog", "init"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_password_and_the_key_come_from_files(
    password_server: tuple[str, int, str], tmp_path: Path
) -> None:
    host, port, password = password_server
    key = secrets.token_urlsafe(24)
    without = _catalog_init(_environment(host, port, tmp_path))
    assert without.returncode == 2 and "password" in without.stderr.lower(), without.stderr
    env = _environment(
        host,
        port,
        tmp_path,
        PGPASSWORD_FILE=password,
        GLACIERFLOW_STAC_TRANSACTIONS_API_KEY_FILE=key,
    )
    done = _catalog_init(env)
    assert done.returncode == 0, done.stderr
    assert password not in done.stdout + done.stderr
    factory = "glacierflow.services.stac:create_app_from_environment"
    with serving_process(factory, env) as (url, _), httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/healthz").json()["database"]["status"] == "up"
        assert http.post("/collections", json=COLLECTION).status_code == 401
        wrong = http.post("/collections", json=COLLECTION, headers={"X-API-Key": password})
        assert wrong.status_code == 401
        made = http.post("/collections", json=COLLECTION, headers={"X-API-Key": key})
        assert made.status_code in (200, 201), made.text
        assert http.get(f"/collections/{COLLECTION['id']}").status_code == 200


def test_without_a_key_file_the_writes_stay_closed(
    password_server: tuple[str, int, str], tmp_path: Path
) -> None:
    host, port, password = password_server
    env = _environment(host, port, tmp_path, PGPASSWORD_FILE=password)
    assert _catalog_init(env).returncode == 0
    with serving_process("glacierflow.services.stac:create_app_from_environment", env) as (url, _):
        answer = httpx.post(f"{url}/collections", json=COLLECTION, timeout=30)
        assert answer.status_code in (404, 405)
        assert httpx.get(f"{url}/collections/{COLLECTION['id']}", timeout=30).status_code == 404


@pytest.mark.parametrize("content", ["", "too-short"])
def test_serve_refuses_an_unusable_key_file_naming_it_not_its_content(
    content: str, tmp_path: Path
) -> None:
    env = _environment("127.0.0.1", 1, tmp_path, GLACIERFLOW_STAC_TRANSACTIONS_API_KEY_FILE=content)
    done = subprocess.run(
        [sys.executable, "-m", "glacierflow.cli", "serve", "--only", "stac", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "GLACIERFLOW_STAC_TRANSACTIONS_API_KEY_FILE" in done.stderr
    assert "Traceback" not in done.stderr
    assert not content or content not in done.stderr
