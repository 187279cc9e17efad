"""Helpers for the fault tests: run `syn2mas` as a real process, watch it, freeze it, kill it, and compare
database states (catalog + contents) before and after.

Nothing here reaches into the product: the process is observed from outside, through its standard error
(progress lines) and PostgreSQL's own views (`pg_stat_activity`, `pg_locks`).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVER = "example.org"
PROVIDER_ULID = "01HZX0G3P0V9Y8C6D5E4F3A2B1"  # MAS provider id mapped to Synapse's `oidc-dex`
MIGRATION_LOCK_KEY = 6584285998412104315       # data-migration.md §10.2
EIGHT = ("users", "user_passwords", "user_emails", "user_unsupported_third_party_ids", "upstream_oauth_links",
         "compat_sessions", "compat_access_tokens", "compat_refresh_tokens")
# Every MAS table a migration may touch (the eight, and those whose foreign keys point into them).
MAS_RESET = EIGHT + ("user_sessions", "oauth2_sessions", "user_terms", "personal_sessions",
                     "user_session_authentications", "user_recovery_tickets", "compat_sso_logins",
                     "upstream_oauth_authorization_sessions")
EXIT_CODES = {0, 1, 10, 11}


def syn2mas_cmd() -> list[str]:
    """The installed console script next to this interpreter, else `python cli.py`."""
    script = os.path.join(os.path.dirname(sys.executable), "syn2mas")
    if os.path.exists(script):
        return [script]
    return [sys.executable, os.path.join(ROOT, "cli.py")]


def dbname_of(uri: str) -> str:
    return urllib.parse.urlsplit(uri).path.lstrip("/")


def admin_uri(uri: str) -> str:
    """The same server, database `postgres` (for watching without touching the databases under test)."""
    parts = urllib.parse.urlsplit(uri)
    return urllib.parse.urlunsplit(parts._replace(path="/postgres"))


def execute(uri: str, statements: str, params: dict | tuple | None = None) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(statements, params)


def rows(uri: str, query: str, params: dict | tuple | None = None) -> list[tuple]:
    with psycopg.connect(uri, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def add_provider(mas_uri: str, ulid: str = PROVIDER_ULID) -> None:
    """What `mas-cli config sync` writes for the test provider."""
    from migrator.ids import ulid_to_uuid

    execute(mas_uri, "INSERT INTO upstream_oauth_providers (upstream_oauth_provider_id, scope, client_id, "
                     "token_endpoint_auth_method, created_at) VALUES (%(id)s, 'openid', 'client', "
                     "'client_secret_basic', now())", {"id": ulid_to_uuid(ulid)})


def reset_mas(mas_uri: str) -> None:
    """Empty the tables a committed migration filled (the catalog is untouched by TRUNCATE)."""
    execute(mas_uri, "TRUNCATE " + ", ".join(MAS_RESET) + " CASCADE")


def scale_synapse(pg_server, shared_dir: str, uri: str, n: int, **variables: str) -> None:
    """Add ``n`` users with ../shared/bench/scale-synapse-db.sql."""
    psql = os.path.join(pg_server.bindir, "psql")
    args = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"n={n}"]
    for k, v in variables.items():
        args += ["-v", f"{k}={v}"]
    res = subprocess.run(args + ["-f", os.path.join(shared_dir, "bench", "scale-synapse-db.sql"), uri],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]


# -- configurations ---------------------------------------------------------------------------------
def synapse_yaml(synapse_uri: str, extra: str = "") -> str:
    parts = urllib.parse.urlsplit(synapse_uri)
    return (f"server_name: {SERVER}\n"
            "database:\n  name: psycopg2\n  args:\n"
            f"    user: {parts.username}\n    host: {parts.hostname}\n    port: {parts.port}\n"
            f"    dbname: {dbname_of(synapse_uri)}\n    cp_min: 1\n    cp_max: 5\n"
            # the provider of the generated links (`oidc-dex`), so that they are known to Synapse
            "oidc_providers:\n  - idp_id: dex\n    idp_name: Dex\n    issuer: https://dex.example.org/\n"
            "    client_id: synapse\n    client_secret: dex-client-secret\n    scopes: [openid, profile]\n" + extra)


def mas_yaml(mas_uri: str, extra: str = "") -> str:
    """A MAS configuration that passes `migrate`'s configuration rules against :func:`synapse_yaml` (only the
    warning `synapse-delegation-conflict` remains), so that `migrate` gets as far as the databases."""
    return (f"matrix:\n  homeserver: {SERVER}\n  secret: fault-test-matrix-secret\n"
            f"database:\n  uri: '{mas_uri}'\n"
            "passwords:\n  schemes:\n    - version: 1\n      algorithm: bcrypt\n      unicode_normalization: true\n"
            "    - version: 2\n      algorithm: argon2id\n"
            "upstream_oauth2:\n  providers:\n"
            f"    - id: {PROVIDER_ULID}\n      synapse_idp_id: oidc-dex\n      issuer: https://dex.example.org/\n"
            "      client_id: synapse\n      client_secret: dex-client-secret\n"
            "      token_endpoint_auth_method: client_secret_basic\n" + extra)


def write_configs(directory, synapse_uri: str, mas_uri: str) -> tuple[str, str]:
    hs = os.path.join(str(directory), "homeserver.yaml")
    mas = os.path.join(str(directory), "mas.yaml")
    with open(hs, "w") as fh:
        fh.write(synapse_yaml(synapse_uri))
    with open(mas, "w") as fh:
        fh.write(mas_yaml(mas_uri))
    return hs, mas


# -- database states --------------------------------------------------------------------------------
_CATALOG = {
    "tables": """SELECT c.relname, c.relkind::text, c.relpersistence::text FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
                 ORDER BY 1, 2""",
    "columns": """SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                         pg_get_expr(d.adbin, d.adrelid), a.attnum
                  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                  JOIN pg_namespace n ON n.oid = c.relnamespace
                  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                  WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
                  ORDER BY 1, 6""",
    "constraints": """SELECT conrelid::regclass::text, conname, contype::text, pg_get_constraintdef(oid),
                             convalidated, condeferrable, condeferred
                      FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2""",
    "indexes": """SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid), indisvalid, indisready,
                         indisprimary, indisunique
                  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
                  WHERE c.relnamespace = 'public'::regnamespace ORDER BY 1""",
    "triggers": """SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger
                   WHERE NOT tgisinternal ORDER BY 1, 2""",
    "prepared": "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()",
}


def table_names(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                                       "ORDER BY 1").fetchall()]


def content_digests(conn: psycopg.Connection, tables: list[str]) -> dict[str, tuple[int, str]]:
    """(row count, md5 of the rows' text forms in order) per table."""
    out = {}
    for t in tables:
        out[t] = tuple(conn.execute(sql.SQL(
            "SELECT count(*), md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '')) FROM {} x"
        ).format(sql.Identifier(t))).fetchone())
    return out


def db_state(uri: str) -> dict:
    """Catalog snapshot (tables, columns, constraints, indexes, triggers) and every table's contents."""
    with psycopg.connect(uri, autocommit=True) as conn:
        state = {k: conn.execute(q).fetchall() for k, q in _CATALOG.items()}
        state["sequences"] = conn.execute("SELECT sequencename, last_value FROM pg_sequences "
                                          "WHERE schemaname = 'public' ORDER BY 1").fetchall()
        state["contents"] = content_digests(conn, table_names(conn))
    return state


def diff_states(before: dict, after: dict) -> list[str]:
    """Human-readable differences, for assertion messages."""
    out = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            for t in sorted(set(a) | set(b)):
                if a.get(t) != b.get(t):
                    out.append(f"{key}.{t}: {a.get(t)} -> {b.get(t)}")
        else:
            sa, sb = set(map(tuple, a or [])), set(map(tuple, b or []))
            out.append(f"{key}: missing {sorted(sa - sb)[:5]} extra {sorted(sb - sa)[:5]}")
    return out


# -- watching a process -------------------------------------------------------------------------------
@dataclass
class Backend:
    pid: int
    datname: str
    app: str
    state: str | None
    query: str
    wait_type: str | None
    wait_event: str | None
    xid: str | None
    client_port: int | None


class Monitor:
    """A connection to the server's `postgres` database that watches the backends of syn2mas."""

    def __init__(self, uri: str):
        self.conn = psycopg.connect(admin_uri(uri), autocommit=True)

    def close(self) -> None:
        self.conn.close()

    def backends(self, dbname: str, app: str | None = None) -> list[Backend]:
        q = ("SELECT pid, datname, application_name, state, query, wait_event_type, wait_event, backend_xid::text, "
             "client_port FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()")
        params: list = [dbname]
        if app is not None:
            q += " AND application_name = %s"
            params.append(app)
        return [Backend(*r) for r in self.conn.execute(q, params).fetchall()]

    def backend(self, dbname: str, app: str) -> Backend | None:
        found = self.backends(dbname, app)
        return found[0] if found else None

    def advisory_holders(self, dbname: str) -> list[int]:
        """PIDs holding the migration advisory lock in ``dbname``."""
        key = MIGRATION_LOCK_KEY
        hi, lo = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
        return [r[0] for r in self.conn.execute(
            "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' "
            "AND l.granted AND d.datname = %s AND l.classid::bigint = %s AND l.objid::bigint = %s",
            (dbname, hi, lo)).fetchall()]

    def wait_gone(self, dbname: str, timeout: float = 30.0) -> None:
        """Until no syn2mas backend is left on ``dbname`` (the server noticed the dead client)."""
        deadline = time.monotonic() + timeout
        while True:
            left = [b for b in self.backends(dbname) if b.app.startswith("syn2mas")]
            if not left:
                return
            assert time.monotonic() < deadline, f"syn2mas backends still alive on {dbname}: {left}"
            time.sleep(0.02)


def local_tcp_ports(pid: int) -> set[int]:
    """Local ports of the TCP sockets process ``pid`` has open (to tell which backend is whose)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh)
                for line in fh:
                    cols = line.split()
                    if cols[9] in inodes:
                        ports.add(int(cols[1].rsplit(":", 1)[1], 16))
        except FileNotFoundError:
            continue
    return ports


class Proc:
    """A `syn2mas` process whose standard error is read line by line as it comes."""

    def __init__(self, args: list[str], cwd: str | None = None, env: dict | None = None):
        full_env = dict(os.environ)
        full_env.pop("SYN2MAS_DEBUG", None)
        full_env.update(env or {})
        self.p = subprocess.Popen(syn2mas_cmd() + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL, cwd=cwd, env=full_env)
        self.lines: list[str] = []
        self.out = b""
        self.cond = threading.Condition()
        self._eof = False
        self._t_err = threading.Thread(target=self._read_err, daemon=True)
        self._t_out = threading.Thread(target=self._read_out, daemon=True)
        self._t_err.start()
        self._t_out.start()

    def _read_err(self) -> None:
        for raw in iter(self.p.stderr.readline, b""):
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self._eof = True
            self.cond.notify_all()

    def _read_out(self) -> None:
        self.out = self.p.stdout.read()

    @property
    def pid(self) -> int:
        return self.p.pid

    def wait_line(self, pred, timeout: float = 60.0) -> str | None:
        """The first stderr line satisfying ``pred`` (waiting for it); None if the process ends first."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self.cond:
            while True:
                for line in self.lines[seen:]:
                    if pred(line):
                        return line
                seen = len(self.lines)
                if self._eof:
                    return None
                left = deadline - time.monotonic()
                assert left > 0, f"timed out waiting for a line; got {self.lines[-5:]}"
                self.cond.wait(left)

    def owns(self, backend: Backend) -> bool:
        """Whether ``backend`` serves this process' connection."""
        return backend.client_port in local_tcp_ports(self.p.pid)

    def stop(self) -> None:
        os.kill(self.p.pid, signal.SIGSTOP)

    def cont(self) -> None:
        os.kill(self.p.pid, signal.SIGCONT)

    def settled_lines(self) -> list[str]:
        """Stderr lines once the (stopped or dead) process' output has been drained from the pipe."""
        time.sleep(0.05)
        with self.cond:
            return list(self.lines)

    def kill(self) -> int:
        os.kill(self.p.pid, signal.SIGKILL)
        return self.wait()

    def wait(self, timeout: float = 120.0) -> int:
        rc = self.p.wait(timeout)
        self._t_err.join(10)
        self._t_out.join(10)
        return rc

    @property
    def stderr(self) -> str:
        with self.cond:
            return "\n".join(self.lines)

    @property
    def stdout(self) -> str:
        return self.out.decode("utf-8", "replace")

    def ensure_dead(self) -> None:
        if self.p.poll() is None:
            try:
                os.kill(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.p.wait(30)


def poll_until(pred, timeout: float = 60.0, interval: float = 0.0005, proc: Proc | None = None):
    """Call ``pred`` until it returns something truthy (returned); None if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if proc is not None and proc.p.poll() is not None:
            return None
        assert time.monotonic() < deadline, "timed out polling"
        if interval:
            time.sleep(interval)


def run_cli(args: list[str], cwd: str | None = None, timeout: float = 120.0,
            env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.pop("SYN2MAS_DEBUG", None)
    full_env.update(env or {})
    return subprocess.run(syn2mas_cmd() + args, capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=full_env)


@dataclass
class KillPoint:
    """Where a frozen migration was when it was killed."""

    label: str
    lines: list[str] = field(default_factory=list)
    mas: Backend | None = None
    synapse: Backend | None = None
    locked: bool = False
