"""How many cores this process may use, and how ``-j`` processes and ``--threads`` share them."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity mask), capped by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs' worth of time the cgroup quota allows (``quota / period``), None without a quota.

    cgroup v2 (``cpu.max``: ``"max 100000"`` or ``"200000 100000"``) in this process's
    group or at ``root``, else cgroup v1 (``cpu/cpu.cfs_quota_us``, -1 for none).
    """
    candidates = [root / group / "cpu.max" for group in _own_v2_groups()] + [root / "cpu.max"]
    for path in candidates:
        try:
            quota, period = path.read_text().split()[:2]
        except (OSError, ValueError):
            continue
        return None if quota == "max" else int(quota) / int(period)
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def _own_v2_groups() -> list[str]:
    """This process's cgroup v2 path (``0::/a/b``) relative to the root, when there is one."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    return [line[3:].strip("/") for line in lines if line.startswith("0::") and line[3:] != "/"]


def threads_per_process(threads: int | None, processes: int, scheduler: str | None) -> int:
    """``--threads`` if given; else 1 on Dask, else the usable cores shared by ``processes``."""
    if threads is not None:
        return threads
    if scheduler is not None:
        return 1
    return max(1, usable_cores() // max(1, processes))
