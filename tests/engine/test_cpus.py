"""engine/cpus.py: the CPU count that sizes `migrate`'s workers and `check`'s side-by-side queries.

The quota test runs a real process under a real CFS quota, its cgroup mounted where a container's
runtime puts it (a bind mount in a private mount namespace), as Docker and Kubernetes show it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from engine import cpus

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
V1_CPU = "/sys/fs/cgroup/cpu"
PRINT_CPUS = "from engine.cpus import usable_cpus; print(usable_cpus())"


def _python(code: str, *, prefix: tuple[str, ...] = ()) -> str:
    env = dict(os.environ, PYTHONPATH=ROOT)
    done = subprocess.run([*prefix, sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout.strip()


def test_no_more_cpus_than_the_process_may_run_on():
    assert 1 <= cpus.usable_cpus() <= len(os.sched_getaffinity(0))


def test_a_process_pinned_to_one_cpu_counts_one():
    first = min(os.sched_getaffinity(0))
    assert _python(f"import os; os.sched_setaffinity(0, {{{first}}}); {PRINT_CPUS}") == "1"


def test_unreadable_cgroup_files_fall_back_to_the_affinity(monkeypatch):
    import loky

    def broken(**_kwargs):
        raise ValueError("invalid literal for int() with base 10: 'garbage'")

    monkeypatch.setattr(loky, "cpu_count", broken)
    assert cpus.usable_cpus() == len(os.sched_getaffinity(0))


def _can_make_cpu_cgroups() -> bool:
    return (os.geteuid() == 0 and os.access(V1_CPU, os.W_OK)
            and os.path.exists(os.path.join(V1_CPU, "cpu.cfs_quota_us")))


@pytest.mark.skipif(not _can_make_cpu_cgroups(), reason="needs root and cgroup v1's cpu controller (CI has both)")
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="a one-CPU quota is only visible with two CPUs or more")
def test_a_container_cpu_quota_caps_the_count():
    group = os.path.join(V1_CPU, f"syn2mas-test-{uuid.uuid4().hex[:8]}")
    os.mkdir(group)
    try:
        with open(os.path.join(group, "cpu.cfs_period_us"), "w") as fh:
            fh.write("100000")
        with open(os.path.join(group, "cpu.cfs_quota_us"), "w") as fh:
            fh.write("100000")  # one CPU's worth of time per period
        # Join the group, then show it at the controller's mount point, as a container runtime does.
        enter = (f"echo $$ > {group}/cgroup.procs && exec unshare --mount sh -c "
                 f"'mount --bind {group} {V1_CPU} && exec \"$0\" \"$@\"' \"$0\" \"$@\"")
        count = _python(PRINT_CPUS, prefix=("sh", "-c", enter))
        assert count == "1", f"a one-CPU quota on {len(os.sched_getaffinity(0))} CPUs gave {count}"
    finally:
        os.rmdir(group)
