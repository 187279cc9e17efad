"""bench/run.py end to end on a small database: the script anyone runs for the figures keeps working.

It is not a timed test: it checks that every figure is measured and that each migration reconciled.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

USERS = 1500


def test_the_benchmark_measures_every_figure_and_each_migration_reconciles(tmp_path, shared_dir):
    figures = tmp_path / "results.json"
    env = dict(os.environ, SYN2MAS_SHARED=shared_dir)
    run = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "run.py"), "--users", str(USERS),
                          "--repeat", "1", "--workers", "1", "--json", str(figures)],
                         capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(figures.read_text())
    assert results["cpu_probe_ns"]["before"] > 0 and results["cpu_probe_ns"]["after"] > 0
    (size,) = results["sizes"]
    assert size["users"] == USERS and size["synapse_rows"]["users"] == USERS
    assert size["synapse_rows"]["total"] == sum(v for k, v in size["synapse_rows"].items() if k != "total")
    assert size["floor_s"] > 0 and size["migrate_s"] > 0 and size["ratio_migrate_floor"] > 0
    assert len(size["floor_runs"]) == len(size["paired_ratios"]) == 1 and size["ratio_paired_median"] > 0
    # One default run (two readers on a multi-core machine, else one) and one --workers 1 run.
    assert sorted(str(r["workers"]) for r in size["migrate_runs"]) == ["1", "auto"]
    assert all(r["reconciled"] for r in size["migrate_runs"])
    assert all(r["peak_rss_mib"] > 0 and r["timings_s"]["total"] > 0 for r in size["migrate_runs"])
    assert size["entities"]["users"]["read"] == USERS
    # check twice in a row (after the floor, then at once again), and lint
    assert len(size["check_runs"]) == len(size["check_again_runs"]) == 1
    assert all(c["wall_s"] > 0 and c["exit"] in (0, 10, 11) for c in size["check_runs"] + size["check_again_runs"])
    assert size["lint_s"] > 0
    assert "ratio migrate / floor" in run.stdout and "check, at once again" in run.stdout
