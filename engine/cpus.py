"""How many CPUs this process can use, for sizing its own parallelism.

``os.cpu_count()`` is the machine's count. In a container, a CPU quota (cgroups' ``cpu.max``, or
``cpu.cfs_quota_us`` in cgroup v1) or a CPU set can leave far fewer: a pod limited to two CPUs on a
64-core node would otherwise start eight worker processes that only take turns, each with its own
memory and database connection. loky (joblib's process-pool library) reads the quota, the affinity
and the machine's count, and returns the smallest.
"""
from __future__ import annotations

import os


def usable_cpus() -> int:
    """The CPUs this process may use: the least of its affinity, its cgroup CPU quota (rounded up)
    and the machine's count; at least 1."""
    try:
        from loky import cpu_count  # imported here: only the commands that size their parallelism pay for it

        return max(1, int(cpu_count(only_physical_cores=False)))
    except (OSError, ValueError):  # unreadable cgroup files: fall back to the affinity
        return _affinity()


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1
