"""The connection to MAS is lost during COMMIT: syn2mas finds out whether the migration was committed
(data-migration.md §14.1) instead of guessing, on a real server and a real socket.

To lose the connection at exactly that point, MAS is reached through a small TCP relay that, once armed,
passes the client's COMMIT to the server, lets the server answer, and closes both sockets before the
answer reaches the client.
"""
from __future__ import annotations

import logging
import socket
import threading
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from engine.errors import DatabaseError
from mighelpers import execute, rows, run

ALICE = "@alice:example.org"


class CommitDroppingRelay:
    """Relays TCP connections to a PostgreSQL server; once armed, the reply to the next COMMIT is dropped
    and that connection closed on both sides (the server has committed by then)."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.dropping = threading.Event()
        self.fired = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self) -> None:
        self.armed.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            threading.Thread(target=self._client_to_server, args=(client, server), daemon=True).start()
            threading.Thread(target=self._server_to_client, args=(server, client), daemon=True).start()

    def _client_to_server(self, client: socket.socket, server: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                if self.armed.is_set() and b"COMMIT" in data:
                    self.armed.clear()
                    self.dropping.set()  # before the server can answer
                    server.sendall(data)
                    return
                server.sendall(data)
        except OSError:
            pass

    def _server_to_client(self, server: socket.socket, client: socket.socket) -> None:
        try:
            while data := server.recv(65536):
                if self.dropping.is_set():  # the COMMIT's answer: the client never sees it
                    self.dropping.clear()
                    self.fired.set()
                    for sock in (client, server):
                        sock.shutdown(socket.SHUT_RDWR)
                    return
                client.sendall(data)
        except OSError:
            pass

    def uri(self, real_uri: str) -> str:
        parts = urlsplit(real_uri)
        user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{self.port}"))

    def close(self) -> None:
        self.listener.close()


def seed(synapse_db: str) -> None:
    execute(synapse_db, f"INSERT INTO users (name, password_hash, creation_ts) VALUES ('{ALICE}', NULL, 1600000000)")


def test_lost_before_the_server_got_the_commit_reports_nothing_committed(synapse_db, mas):
    seed(synapse_db)

    def hook(step: str) -> None:
        if step == "before-commit":  # the server process goes before COMMIT reaches it
            execute(mas, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE application_name = 'syn2mas' AND datname = current_database()")

    with pytest.raises(DatabaseError) as exc:
        run(synapse_db, mas, fail_hook=hook)
    assert "lost during COMMIT" in exc.value.message and "nothing was committed" in exc.value.message
    assert rows(mas, "SELECT count(*) FROM users") == [(0,)]
    run(synapse_db, mas)  # the lock went with the connection: a new run succeeds
    assert rows(mas, "SELECT username FROM users") == [("alice",)]


def test_a_dry_run_whose_rollback_fails_names_the_rollback(synapse_db, mas):
    seed(synapse_db)

    def hook(step: str) -> None:
        if step == "before-commit":
            execute(mas, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE application_name = 'syn2mas' AND datname = current_database()")

    with pytest.raises(DatabaseError) as exc:
        run(synapse_db, mas, fail_hook=hook, dry_run=True)
    assert exc.value.message.startswith("ROLLBACK failed: ") and "nothing was committed" in exc.value.message
    assert "COMMIT" not in exc.value.message
    assert rows(mas, "SELECT count(*) FROM users") == [(0,)]


def test_lost_after_the_server_committed_reports_success_with_a_warning(synapse_db, mas, caplog):
    seed(synapse_db)
    host, port = urlsplit(mas).hostname, urlsplit(mas).port
    relay = CommitDroppingRelay(host, port)
    try:
        def hook(step: str) -> None:
            if step == "before-commit":
                relay.arm()

        with caplog.at_level(logging.WARNING, logger="syn2mas.migrator"):
            report = run(synapse_db, relay.uri(mas), fail_hook=hook)
    finally:
        relay.close()
    assert relay.fired.is_set()  # the client really lost the COMMIT's answer
    assert report.reconciled
    assert rows(mas, "SELECT username FROM users") == [("alice",)]
    assert any("lost during COMMIT, but the migration was committed" in r.getMessage() for r in caplog.records)
    # the lock went with the lost session
    with psycopg.connect(mas, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()[0] == 0
