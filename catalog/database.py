"""Where the catalog lives: PostgreSQL + PostGIS + pgstac.

`DATABASE_URL` (or the standard PG* variables) names an existing server; without them
glacierflow runs a private cluster in its data directory from the system's PostgreSQL
binaries, on a free port, and stops it when the command that started it ends.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg

from glacierflow.settings import SettingsError, read_secret_file

INSTALL_HINT = (
    "install PostgreSQL with PostGIS (Debian/Ubuntu: apt-get install postgresql-15 "
    "postgresql-15-postgis-3), or set DATABASE_URL to a server that has them"
)


class DatabaseError(RuntimeError):
    """The catalog database cannot be reached, started or set up; says what to do."""


def external_dsn(environ: dict[str, str] | None = None) -> str | None:
    """The DSN of an external server from DATABASE_URL or PGHOST/PGPORT/..., if any.

    The password may come from a file (a Docker or Kubernetes secret) named by
    PGPASSWORD_FILE, so that it is in no variable, image or repository; it joins a
    DATABASE_URL that has none, or the PG* variables in place of PGPASSWORD.
    """
    env = os.environ if environ is None else environ
    secret = _password_from_file(env)
    if env.get("DATABASE_URL"):
        url = env["DATABASE_URL"]
        if secret is None:
            return url
        parts = urlsplit(url)
        if parts.password is not None:
            raise DatabaseError("DATABASE_URL has a password and PGPASSWORD_FILE another: keep one")
        user, _, host = parts.netloc.rpartition("@")  # the user as written (percent-encoded)
        netloc = f"{user or 'postgres'}:{quote(secret, safe='')}@{host}"
        return urlunsplit(parts._replace(netloc=netloc))
    if env.get("PGHOST"):
        user = quote(env.get("PGUSER", "postgres"), safe="")
        if secret is None:
            secret = env.get("PGPASSWORD") or None
        password = f":{quote(secret, safe='')}" if secret else ""
        host = quote(env["PGHOST"], safe="")  # a socket folder becomes %2Fvar%2Frun...
        port = env.get("PGPORT", "5432")
        name = quote(env.get("PGDATABASE", "postgres"), safe="")
        return f"postgresql://{user}{password}@{host}:{port}/{name}"
    return None


def _password_from_file(env: Mapping[str, str]) -> str | None:
    """The database password in the file PGPASSWORD_FILE names, if set; a DatabaseError
    naming the variable (never the password) when it cannot be used."""
    path = env.get("PGPASSWORD_FILE")
    if not path:
        return None
    if env.get("PGPASSWORD"):
        raise DatabaseError("set PGPASSWORD or PGPASSWORD_FILE, not both")
    try:
        return read_secret_file(Path(path), f"PGPASSWORD_FILE ({path})")
    except SettingsError as err:
        raise DatabaseError(str(err)) from None


def environment_dsn(what: str) -> str:
    """The external server's DSN for an app run from the environment (uvicorn's factories),
    which has no private cluster to fall back on; DatabaseError naming `what` without one."""
    dsn = external_dsn()
    if dsn is None:
        raise DatabaseError(f"set DATABASE_URL (or PGHOST etc.) to run {what} from the environment")
    return dsn


def _server_binaries() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if candidates:
        return candidates[0].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise DatabaseError(f"no PostgreSQL server binaries (initdb) found: {INSTALL_HINT}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class EmbeddedCluster:
    """A private PostgreSQL cluster under `directory` (data, socket and log inside it)."""

    directory: Path

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        """Run a server binary; as root it runs as `postgres`, which PostgreSQL requires."""
        command = [str(_server_binaries() / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=False)

    def running_port(self) -> int | None:
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return None
        lines = pid_file.read_text().splitlines()
        try:
            os.kill(int(lines[0]), 0)
            return int(lines[3])
        except (ProcessLookupError, PermissionError, ValueError, IndexError):
            return None

    def start(self) -> tuple[str, bool]:
        """Start the cluster (creating it the first time); returns (dsn, started_here)."""
        port = self.running_port()
        if port:
            return self.dsn(port), False
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        if not (self.data / "PG_VERSION").exists():
            done = self._run(
                "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
            )
            if done.returncode != 0:
                raise DatabaseError(f"initdb failed in {self.data}: {done.stderr.strip()}")
        port = self._reusable_port()
        options = f"-p {port} -k {self.directory} -c listen_addresses=127.0.0.1"
        log = self.directory / "postgres.log"
        done = self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(log), "-w", "start"
        )
        if done.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else done.stderr
            raise DatabaseError(
                f"the private PostgreSQL in {self.data} did not start: {tail.strip()}"
            )
        return self.dsn(port), True

    def _reusable_port(self) -> int:
        """The port of the last start when it is still free (clients keep working across
        restarts), else any free one; remembered for next time."""
        remembered = self.directory / "port"
        if remembered.exists():
            try:
                port = int(remembered.read_text())
                with socket.socket() as probe:
                    # as PostgreSQL binds: a port in TIME_WAIT from our last run is free
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    probe.bind(("127.0.0.1", port))
                return port
            except (ValueError, OSError):
                pass
        port = _free_port()
        remembered.write_text(str(port))
        return port

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    @staticmethod
    def dsn(port: int) -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def check_postgis(dsn: str) -> None:
    """Fail early, with the fix, where the server lacks the extensions pgstac needs."""
    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            names = {
                row[0]
                for row in conn.execute(
                    "SELECT name FROM pg_available_extensions WHERE name = ANY(%s)",
                    (["postgis", "btree_gist", "unaccent"],),
                )
            }
    except psycopg.OperationalError as err:
        raise DatabaseError(f"cannot connect to the catalog database: {err}") from err
    missing = {"postgis", "btree_gist", "unaccent"} - names
    if missing:
        raise DatabaseError(
            f"the database server lacks {', '.join(sorted(missing))}: {INSTALL_HINT}"
        )


def migrate(dsn: str) -> str:
    """Create or upgrade the pgstac schema (idempotent); returns the pgstac version."""
    from pypgstac.db import PgstacDB
    from pypgstac.migrate import Migrate

    check_postgis(dsn)
    with PgstacDB(dsn=dsn) as db:
        return Migrate(db).run_migration()


FALLBACK_ROOT = Path("/var/lib/glacierflow/clusters")


def cluster_directory(data_dir: Path) -> Path:
    """Where the private cluster of `data_dir` lives: `data_dir/postgres`, unless glacierflow
    runs as root in a folder the `postgres` user cannot reach (e.g. under /root); PostgreSQL
    will not run as root, so the cluster then lives under /var/lib/glacierflow."""
    preferred = (data_dir / "postgres").resolve()
    if os.geteuid() != 0:
        return preferred
    preferred.mkdir(parents=True, exist_ok=True)
    shutil.chown(preferred, "postgres", "postgres")
    reach = subprocess.run(
        ["runuser", "-u", "postgres", "--", "test", "-w", str(preferred)], check=False
    )
    if reach.returncode == 0:
        return preferred
    digest = hashlib.sha1(str(preferred).encode()).hexdigest()[:12]
    fallback = FALLBACK_ROOT / digest
    FALLBACK_ROOT.mkdir(parents=True, exist_ok=True)
    (preferred / "WHERE_IS_THE_DATABASE.txt").write_text(
        f"The postgres user cannot reach this folder, so the catalog's cluster is in {fallback}\n"
    )
    return fallback


@contextmanager
def catalog_database(data_dir: Path) -> Iterator[str]:
    """The catalog's DSN: the external server's, or a private cluster's for the duration."""
    dsn = external_dsn()
    if dsn:
        yield dsn
        return
    with _cluster_user(EmbeddedCluster(cluster_directory(data_dir))) as dsn:
        yield dsn


@contextmanager
def _cluster_user(cluster: EmbeddedCluster) -> Iterator[str]:
    """Use the private cluster for the duration, started if it is not running.

    Several glacierflow processes share one cluster (`serve`, a CLI command, a background
    consolidator): each holds a shared lock on `users.lock` while it uses it, and the last
    one out stops it, where glacierflow started it (a cluster someone started by hand is
    left running). Starting and the last-out check take turns under `turn.lock`, so a
    process arriving as the last one leaves never finds the cluster stopping under it.
    """
    cluster.directory.mkdir(parents=True, exist_ok=True)
    started_here = cluster.directory / "started-by-glacierflow"
    with open(cluster.directory / "users.lock", "a") as users:
        try:
            with _locked(cluster.directory / "turn.lock"):
                fcntl.flock(users, fcntl.LOCK_SH)
                if cluster.running_port() is None:
                    # marked first: a signal that cuts the start short still leaves it ours
                    started_here.touch()
                dsn, _ = cluster.start()
            yield dsn
        finally:
            with _stop_signals_ignored():
                fcntl.flock(users, fcntl.LOCK_UN)
                with _locked(cluster.directory / "turn.lock"):
                    if started_here.exists() and _no_other_user(cluster.directory / "users.lock"):
                        cluster.stop()
                        started_here.unlink()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _no_other_user(users: Path) -> bool:
    with open(users, "a") as probe:
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


@contextmanager
def _stop_signals_ignored() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP are ignored while the cluster stops: we are stopping
    already, and a second press would otherwise cut the stop short and leave it running.
    (Signal handlers belong to the main thread; elsewhere nothing changes.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {stop: signal.signal(stop, signal.SIG_IGN) for stop in stops}
    try:
        yield
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)
