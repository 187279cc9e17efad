"""Kill `syn2mas migrate` (a real process, a few thousand users) at every step; MAS must stay exactly as it was.

data-migration.md §14.1: one connection, one transaction; a kill, a dropped connection or any failure before
COMMIT leaves every table, column, constraint, index and row as before, and a re-run simply succeeds.
§10.2: the advisory lock lets only one migration run; the other exits 1 ("another migration is running").

The process is observed from outside: its progress lines on standard error and its backends in
`pg_stat_activity`. To kill it at a precise point, it is frozen (SIGSTOP) as soon as the point is seen, the
point is then confirmed from PostgreSQL's view of its backend (a frozen client cannot move on), and only
then is it killed (SIGKILL). A point the process had already passed when it was frozen still gets killed
and checked, and the run is repeated until the point itself is hit.
"""
from __future__ import annotations

import re
import time

import psycopg
import pytest

from faulthelpers import (KillPoint, Monitor, Proc, db_state, dbname_of, diff_states, poll_until, reset_mas,
                          rows, run_cli, write_configs)

ATTEMPTS = 6
PHASE_DONE = re.compile(r"phase (\d) [a-z ]+: done")
PHASE_STARTED = re.compile(r"phase (\d) [a-z ]+: started")
PHASE_LINE = re.compile(r"phase \d [a-z ]+: ")
# Rebuild steps print "rebuilding <index or constraint>" or "computing statistics of <table>"; the account
# tables' steps come between phases 3 and 4, the rest after phase 4, the compat tables' statistics last.
STEP_LINE = re.compile(r" (rebuilding|computing) ")
LAST_REBUILD = "computing statistics of compat_refresh_tokens"
# The last statement before the read phases: the targets, checked empty, are truncated for COPY FREEZE.
LAST_OPENING = ('TRUNCATE "users", "user_passwords", "user_emails", "user_unsupported_third_party_ids", '
                '"upstream_oauth_links", "compat_sessions", "compat_access_tokens", "compat_refresh_tokens"')
USERS_QUERY = "SELECT u.name, u.password_hash"    # phase 1's query
# users; threepids; external ids; devices with their access and refresh tokens (migrator/pipeline.py)
READ_PHASES = 4


class Harness:
    """One Synapse database with a few thousand users, one MAS database, their configurations."""

    def __init__(self, tmp_path, synapse_uri: str, mas_uri: str, baseline: dict, monitor: Monitor):
        self.tmp = tmp_path
        self.synapse_uri, self.mas_uri, self.baseline, self.monitor = synapse_uri, mas_uri, baseline, monitor
        self.syn_db, self.mas_db = dbname_of(synapse_uri), dbname_of(mas_uri)
        self.hs, self.mas_yaml = write_configs(tmp_path, synapse_uri, mas_uri)
        self.synapse_before = db_state(synapse_uri)

    def args(self, *extra: str, report: str = "report.json") -> list[str]:
        return ["migrate", "--synapse-config", self.hs, "--config", self.mas_yaml,
                "--report", str(self.tmp / report), *extra]

    def start(self, *extra: str) -> Proc:
        return Proc(self.args(*extra), cwd=str(self.tmp))

    def where(self, proc: Proc, label: str) -> KillPoint:
        """Describe the frozen process: its output so far and its two backends."""
        time.sleep(0.02)  # let the backends finish whatever the client had sent before it froze
        return KillPoint(label, proc.settled_lines(), self.monitor.backend(self.mas_db, "syn2mas"),
                         self.monitor.backend(self.syn_db, "syn2mas-synapse"),
                         bool(self.monitor.advisory_holders(self.mas_db)))

    def assert_mas_unchanged(self) -> None:
        self.monitor.wait_gone(self.mas_db)
        self.monitor.wait_gone(self.syn_db)
        assert not self.monitor.advisory_holders(self.mas_db), "the migration lock outlived the process"
        after = db_state(self.mas_uri)
        assert after == self.baseline, "MAS changed: " + "; ".join(diff_states(self.baseline, after))
        assert db_state(self.synapse_uri) == self.synapse_before, "the Synapse database changed"

    def rerun_succeeds(self) -> None:
        res = run_cli(self.args(report="rerun.json"), cwd=str(self.tmp))
        assert res.returncode == 0, res.stderr
        assert "migration committed" in res.stdout
        assert "Traceback" not in res.stderr + res.stdout
        assert mas_users(self.mas_uri) == 3000
        assert db_state(self.synapse_uri) == self.synapse_before
        reset_mas(self.mas_uri)
        assert db_state(self.mas_uri) == self.baseline

    def terminate_and_resume(self, proc: Proc, pid: int) -> None:
        """Terminate backend ``pid`` under the frozen ``proc``, let it go on: it must fail cleanly (exit 1)."""
        self.monitor.conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        proc.cont()
        rc = proc.wait()
        assert rc == 1, proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
        assert proc.stdout == ""
        self.assert_mas_unchanged()

    def kill_at(self, label: str, freeze, *extra: str) -> KillPoint:
        """Run, freeze with ``freeze(proc) -> KillPoint | None``, SIGKILL, check MAS; until ``label`` is hit."""
        seen = []
        for _ in range(ATTEMPTS):
            proc = self.start(*extra)
            try:
                point = freeze(proc)
                if point is None:  # finished before the point could be seen
                    rc = proc.wait()
                    seen.append(f"finished rc={rc}")
                    reset_mas(self.mas_uri)
                    continue
                rc = proc.kill()
                assert rc == -9
            finally:
                proc.ensure_dead()
            self.assert_mas_unchanged()
            if point.label == label:
                return point
            seen.append(point.label)
        pytest.fail(f"never froze the migration at {label!r}; froze at {seen}")


def mas_users(uri: str) -> int:
    return rows(uri, "SELECT count(*) FROM users")[0][0]


def phases_done(lines: list[str]) -> int:
    return sum(1 for line in lines if PHASE_DONE.search(line))


def classify(h: Harness, proc: Proc) -> KillPoint:
    """Name the step a frozen migration is at, from its output and its backends."""
    p = h.where(proc, "")
    mas, lines = p.mas, p.lines
    mas_q = mas.query if mas else ""
    done = phases_done(lines)
    # the last rebuild step printed, unless a phase line came after it (the account tables' steps
    # run between phases 3 and 4)
    rebuilding: list[str] = []
    for line in lines:
        if STEP_LINE.search(line):
            rebuilding.append(line)
        elif PHASE_LINE.search(line):
            rebuilding = []
    if not p.locked or mas is None:
        p.label = "before-lock"
    elif mas.state == "active" and mas_q.startswith("COPY") and mas.wait_event == "ClientRead":
        p.label = "copy:" + mas_q.split('"')[1]
    elif mas_q == "COMMIT" or "migration committed" in proc.stdout:
        p.label = "commit"
    elif rebuilding and rebuilding[-1].endswith(LAST_REBUILD) and mas_q.startswith("SELECT"):
        p.label = "before-commit"
    elif rebuilding:
        p.label = "rebuild:" + STEP_LINE.split(rebuilding[-1], 1)[-1]
    elif done == 0 and not (mas_q == LAST_OPENING and mas.state == "idle in transaction"):
        p.label = "opening"
    elif done == READ_PHASES:
        p.label = "final flush"
    else:
        p.label = f"phase {done + 1}"
    return p


@pytest.fixture
def h(tmp_path, scaled_synapse, target_mas, monitor):
    uri, baseline = target_mas
    return Harness(tmp_path, scaled_synapse, uri, baseline, monitor)


def test_kill_before_the_lock(h):
    def freeze(proc):
        if not poll_until(lambda: h.monitor.backend(h.syn_db, "syn2mas-synapse"), proc=proc):
            return None
        proc.stop()
        return classify(h, proc)

    point = h.kill_at("before-lock", freeze)
    assert point.mas is None or not point.locked
    h.rerun_succeeds()


def test_kill_while_dropping_constraints(h):
    """Blocked at a deterministic point: a session holds a lock on `user_terms`, whose foreign key into
    `users` is the last one dropped from another table; every earlier DROP has already happened."""
    blocker = psycopg.connect(h.mas_uri)
    blocker.execute("LOCK TABLE user_terms IN ROW EXCLUSIVE MODE")
    proc = h.start()
    try:
        mas = poll_until(lambda: next((b for b in h.monitor.backends(h.mas_db, "syn2mas")
                                       if b.wait_type == "Lock"), None), proc=proc)
        assert mas is not None, proc.stderr
        assert mas.query == 'ALTER TABLE user_terms DROP CONSTRAINT "user_terms_user_id_fkey"'
        assert h.monitor.advisory_holders(h.mas_db) == [mas.pid]
        assert proc.kill() == -9
    finally:
        proc.ensure_dead()
        blocker.rollback()
        blocker.close()
    h.assert_mas_unchanged()
    h.rerun_succeeds()


@pytest.mark.parametrize("phase", range(1, READ_PHASES + 1))
def test_kill_during_each_read_phase(h, phase):
    def freeze(proc):
        if phase == 1:
            seen = poll_until(lambda: (lambda b: b and USERS_QUERY in b.query)(
                h.monitor.backend(h.syn_db, "syn2mas-synapse")), proc=proc)
        else:
            seen = proc.wait_line(lambda line: (m := PHASE_STARTED.search(line)) and int(m.group(1)) == phase)
        if not seen:
            return None
        proc.stop()
        return classify(h, proc)

    point = h.kill_at(f"phase {phase}", freeze)
    assert phases_done(point.lines) == phase - 1
    h.rerun_succeeds()


@pytest.mark.parametrize("table", ["users", "compat_access_tokens"])
def test_kill_mid_copy(h, table):
    """Frozen while PostgreSQL waits for more COPY data from the client: a half-sent COPY."""
    def freeze(proc):
        def copying():
            b = h.monitor.backend(h.mas_db, "syn2mas")
            return b and b.state == "active" and b.query.startswith(f'COPY "{table}"')
        while poll_until(copying, proc=proc):
            proc.stop()
            point = classify(h, proc)
            if point.label == f"copy:{table}":
                return point
            proc.cont()
        return None

    point = h.kill_at(f"copy:{table}", freeze)
    assert point.mas.wait_event == "ClientRead"
    h.rerun_succeeds()


@pytest.mark.parametrize("step", ["rebuilding index users_username_trgm_idx",
                                  "rebuilding constraint compat_access_tokens_access_token_unique on "
                                  "compat_access_tokens",
                                  "rebuilding constraint user_sessions_user_id_fkey on user_sessions",
                                  "computing statistics of compat_sessions"])
def test_kill_during_rebuild(h, step):
    """Killed during a rebuild step: an index or key, a foreign key from another table, or the ANALYZE
    that now runs inside the transaction (so that a committed MAS has statistics at once)."""
    name = step.split()[-1] if step.startswith("computing") else step.split()[2]
    # what the statement holds (the reconciliation's SELECTs also name compat_sessions)
    needle = f'ANALYZE "{name}"' if step.startswith("computing") else name

    def freeze(proc):
        if not proc.wait_line(lambda line: line.endswith(step)):
            return None
        # wait until the statement has reached the server, then freeze
        if not poll_until(lambda: (lambda b: b and needle in b.query)(h.monitor.backend(h.mas_db, "syn2mas")),
                          proc=proc):
            return None
        proc.stop()
        return classify(h, proc)

    point = h.kill_at("rebuild:" + STEP_LINE.split(" " + step, 1)[-1], freeze)
    assert name in point.mas.query
    verb = "ANALYZE" if step.startswith("computing") else "CREATE" if " index " in step else "ALTER TABLE"
    assert point.mas.query.startswith(verb)
    h.rerun_succeeds()


def test_kill_just_before_commit(h):
    """After the last constraint is rebuilt, while the counts are reconciled: everything is written and
    validated inside the transaction, only COMMIT is missing."""
    def freeze(proc):
        if not proc.wait_line(lambda line: line.endswith(LAST_REBUILD)):
            return None
        seen = poll_until(lambda: (lambda b: b and b.query.startswith("SELECT"))(
            h.monitor.backend(h.mas_db, "syn2mas")), proc=proc)
        if not seen:
            return None
        proc.stop()
        return classify(h, proc)

    point = h.kill_at("before-commit", freeze)
    assert point.mas.xid is not None  # the transaction holds the writes
    h.rerun_succeeds()


def test_dropped_connection_mid_copy(h):
    """The MAS backend is terminated (pg_terminate_backend) in the middle of a COPY: exit 1, a message, no
    traceback, MAS untouched."""
    proc = h.start()
    try:
        def copying():
            b = h.monitor.backend(h.mas_db, "syn2mas")
            return b if b and b.state == "active" and b.query.startswith("COPY") else None

        for _ in range(200):
            backend = poll_until(copying, proc=proc)
            assert backend is not None, "the migration finished before a COPY was seen"
            proc.stop()
            point = classify(h, proc)
            if point.label.startswith("copy:"):
                break
            proc.cont()
        else:
            pytest.fail("no COPY in progress was caught")
        h.terminate_and_resume(proc, point.mas.pid)
    finally:
        proc.ensure_dead()
    assert "writing `" in proc.stderr and "nothing was committed" in proc.stderr
    h.rerun_succeeds()


def test_dropped_synapse_connection_mid_read(h):
    """The Synapse backend is terminated during a read phase: exit 1 with a message about the Synapse
    database (not an "internal error"), MAS untouched."""
    proc = h.start()
    try:
        assert proc.wait_line(lambda line: "phase 2 " in line and "done" in line)
        proc.stop()
        h.terminate_and_resume(proc, h.monitor.backend(h.syn_db, "syn2mas-synapse").pid)
    finally:
        proc.ensure_dead()
    assert "Synapse database" in proc.stderr, proc.stderr
    assert "internal error" not in proc.stderr
    h.rerun_succeeds()


def _mas_query_starts(h: Harness, prefix: str):
    return lambda: (lambda b: b if b and b.query.startswith(prefix) else None)(
        h.monitor.backend(h.mas_db, "syn2mas"))


@pytest.mark.parametrize("where", ["after-lock", "reconcile"])
def test_dropped_mas_connection_outside_copy(h, where):
    """The MAS backend is terminated right after the advisory lock, or while the counts are reconciled:
    exit 1, a message about the MAS database saying nothing was committed (not an "internal error")."""
    proc = h.start()
    try:
        if where == "after-lock":
            pid = poll_until(lambda: h.monitor.advisory_holders(h.mas_db), proc=proc)[0]
        else:
            assert proc.wait_line(lambda line: line.endswith(LAST_REBUILD))
            pid = poll_until(_mas_query_starts(h, "SELECT"), proc=proc).pid
        proc.stop()
        h.terminate_and_resume(proc, pid)
    finally:
        proc.ensure_dead()
    assert "MAS database" in proc.stderr and "nothing was committed" in proc.stderr, proc.stderr
    assert "internal error" not in proc.stderr
    h.rerun_succeeds()


def test_unwritable_report_path_is_refused_before_anything_is_written(h):
    """`--report` into a directory that does not exist: exit 1 naming the file, before MAS is touched."""
    res = run_cli(h.args(report="missing-dir/report.json"), cwd=str(h.tmp))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "missing-dir/report.json" in res.stderr
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr
    h.assert_mas_unchanged()


def test_report_lost_after_commit_does_not_deny_the_commit(h):
    """The report's directory disappears during the run: the migration is committed, and the output says
    it is and that the report could not be written (never "nothing was committed")."""
    (h.tmp / "reports").mkdir()
    proc = Proc(h.args(report="reports/report.json"), cwd=str(h.tmp))
    try:
        assert proc.wait_line(lambda line: " rebuilding " in line), (proc.settled_lines()[-8:], proc.p.poll())
        proc.stop()
        (h.tmp / "reports").rmdir()
        proc.cont()
        rc = proc.wait()
    finally:
        proc.ensure_dead()
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out and "internal error" not in out and "nothing was committed" not in out
    assert "migration committed" in proc.stdout
    assert "reports/report.json" in proc.stderr
    assert rc == 0
    assert mas_users(h.mas_uri) == 3000
    reset_mas(h.mas_uri)


def _race(h: Harness, first: Proc, second: Proc) -> tuple[Proc, Proc]:
    """Both started: freeze the one that took the advisory lock, let the other run into it."""
    holder_pid = poll_until(lambda: h.monitor.advisory_holders(h.mas_db))[0]
    backend = next(b for b in h.monitor.backends(h.mas_db, "syn2mas") if b.pid == holder_pid)
    winner, loser = (first, second) if first.owns(backend) else (second, first)
    assert winner.owns(backend)
    winner.stop()
    rc = loser.wait()
    assert rc == 1, loser.stderr
    assert "another migration is running" in loser.stderr
    assert "Traceback" not in loser.stderr + loser.stdout
    winner.cont()
    assert winner.wait() == 0, winner.stderr
    assert "Traceback" not in winner.stderr + winner.stdout
    return winner, loser


def test_two_concurrent_runs_one_wins(h, second_synapse, tmp_path):
    """Two homeservers' migrations started at once into one MAS: exactly one succeeds, the other exits 1
    saying another migration is running (§10.2) and writes no report."""
    (tmp_path / "other").mkdir()
    other_hs, _ = write_configs(tmp_path / "other", second_synapse, h.mas_uri)
    other = Proc(["migrate", "--synapse-config", other_hs, "--config", h.mas_yaml,
                  "--report", str(tmp_path / "other" / "report.json")], cwd=str(tmp_path / "other"))
    mine = h.start()
    try:
        winner, loser = _race(h, mine, other)
    finally:
        mine.ensure_dead()
        other.ensure_dead()
    assert "migration committed" in winner.stdout
    assert not (tmp_path / ("other" if loser is other else "") / "report.json").exists()
    assert mas_users(h.mas_uri) == 3000
    assert db_state(h.synapse_uri) == h.synapse_before
    reset_mas(h.mas_uri)


def test_two_dry_runs_at_once(h):
    """Two dry runs on the same databases (they only share-lock Synapse): the advisory lock lets one
    through, the other exits 1; MAS is untouched."""
    a, b = h.start("--dry-run"), h.start("--dry-run")
    try:
        winner, _ = _race(h, a, b)
    finally:
        a.ensure_dead()
        b.ensure_dead()
    assert "dry run finished, rolled back" in winner.stdout
    h.assert_mas_unchanged()


def test_second_real_run_on_the_same_synapse_is_refused(h):
    """Two real runs on the same Synapse and MAS: the first holds Synapse's EXCLUSIVE locks for its whole
    run, so the second is refused before it reaches MAS (`synapse-still-running`, exit 10, checks.md 4.3);
    the first commits."""
    first = h.start()
    try:
        assert poll_until(lambda: h.monitor.advisory_holders(h.mas_db), proc=first)
        first.stop()
        res = run_cli(h.args(report="second.json"), cwd=str(h.tmp))
        assert res.returncode == 10, res.stderr
        assert "still using its database" in res.stderr
        assert "Traceback" not in res.stderr + res.stdout
        assert not (h.tmp / "second.json").exists()
        first.cont()
        assert first.wait() == 0, first.stderr
    finally:
        first.ensure_dead()
    reset_mas(h.mas_uri)
