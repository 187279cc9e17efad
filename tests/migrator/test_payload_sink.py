"""A parallel worker's payloads: complete binary COPY data, sent by size, every row exactly once."""
from __future__ import annotations

import threading
from multiprocessing import Pipe

import psycopg

from migrator.copytypes import pg_timestamp
from migrator.parallel import PayloadSink


class Collector(threading.Thread):
    """Reads the pipe as the main process does (a full pipe blocks the sender until it is read)."""

    def __init__(self, receiver):
        super().__init__(daemon=True)
        self.receiver, self.messages = receiver, []

    def run(self) -> None:
        try:
            while True:
                kind, table = self.receiver.recv()
                self.messages.append((kind, table, self.receiver.recv_bytes()))  # as the main process reads
        except EOFError:
            pass


def test_payloads_are_sent_by_size_and_load_every_row_once(mas_db):
    receiver, sender = Pipe(duplex=False)
    collector = Collector(receiver)
    collector.start()
    sink = PayloadSink(sender, payload_bytes=64 << 10)
    rows = [(i << 80 | 7, i << 80 | 9, f"syt_token_{i:06d}", pg_timestamp(1_600_000_000_000 + i), None)
            for i in range(3000)]
    for row in rows:
        sink.add("compat_access_tokens", row)
    sink.add("compat_sessions", (1 << 80, 2 << 80, None, None, pg_timestamp(0), False, None, None, None))
    sink.flush_all()
    sink.flush_all()  # nothing left: sends nothing
    sender.close()
    collector.join(timeout=30)
    sent_during_adds = collector.messages[:-2]
    at_end = collector.messages[-2:]

    assert len(sent_during_adds) >= 2  # about 100 bytes a row: 300 KB in 64 KiB payloads
    assert sorted(m[1] for m in at_end) == ["compat_access_tokens", "compat_sessions"]
    with psycopg.connect(mas_db, autocommit=True) as conn:
        conn.execute("CREATE TEMPORARY TABLE t (LIKE compat_access_tokens)")
        for kind, table, payload in sent_during_adds + [m for m in at_end if m[1] == "compat_access_tokens"]:
            assert (kind, table) == ("copy", "compat_access_tokens")
            with conn.cursor().copy("COPY t (compat_access_token_id, compat_session_id, access_token, created_at, "
                                    "expires_at) FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(payload)
        got = conn.execute("SELECT access_token FROM t ORDER BY access_token").fetchall()
    assert [g[0] for g in got] == [r[2] for r in rows]
