"""Kill `syn2mas migrate --workers 2` while its workers read: they die with it, MAS stays as it was.

The main process is frozen (SIGSTOP) as soon as its first phase is reported done, confirmed not to have
committed, then killed (SIGKILL). Its workers must not outlive it (the kernel kills them: they asked
for PR_SET_PDEATHSIG), none of the three Synapse connections may stay open, and MAS must equal its
baseline in catalog and contents; a re-run then commits.
"""
from __future__ import annotations

from faulthelpers import Monitor, Proc, db_state, dbname_of, diff_states, reset_mas, run_cli, write_configs


def test_kill_during_a_parallel_read(tmp_path, scaled_synapse, target_mas, monitor: Monitor):
    mas_uri, baseline = target_mas
    hs, mas_yaml = write_configs(tmp_path, scaled_synapse, mas_uri)
    args = ["migrate", "--synapse-config", hs, "--config", mas_yaml, "--workers", "2",
            "--report", str(tmp_path / "report.json")]
    proc = Proc(args, cwd=str(tmp_path))
    assert proc.wait_line(lambda line: "phase 1 users: done" in line), proc.lines[-5:]
    proc.stop()
    lines = proc.settled_lines()
    assert any("reading Synapse with 2 parallel workers" in line for line in lines)
    assert not any("committed" in line for line in lines)
    proc.kill()

    monitor.wait_gone(dbname_of(mas_uri))
    monitor.wait_gone(dbname_of(scaled_synapse))  # the workers' connections too: they are dead
    after = db_state(mas_uri)
    assert after == baseline, "MAS changed: " + "; ".join(diff_states(baseline, after))

    rerun = run_cli(args, cwd=str(tmp_path))
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "migration committed" in rerun.stdout
    reset_mas(mas_uri)
