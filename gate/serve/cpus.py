"""How many CPUs this process may use: what ``workers: auto`` starts.

The CPUs the scheduler lets this process run on (its affinity mask), lowered by a CPU limit of its
control group when there is one (a Kubernetes ``resources.limits.cpu`` becomes one), rounded up: a
limit of 1.5 CPUs gives 2 workers, since a worker's time is mostly short bursts. Go programs such as
sigstore policy-controller size their scheduler the same way (GOMAXPROCS follows the cgroup limit since
Go 1.25), so a comparison on the same machine gives both sides the same cores.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """At least 1. A cgroup file that is missing or unreadable is read as "no limit"."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit(cgroup_root)
    if limit is not None:
        cpus = min(cpus, max(1, math.ceil(limit)))
    return max(1, cpus)


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs a cgroup's quota allows per period (cgroup v2 ``cpu.max``, else v1 ``cpu.cfs_quota_us`` over
    ``cpu.cfs_period_us``); None without a limit."""
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        fields = v2.split()
        if len(fields) == 2 and fields[0] != "max":
            return _ratio(fields[0], fields[1])
        return None
    quota, period = _read(root / "cpu" / "cpu.cfs_quota_us"), _read(root / "cpu" / "cpu.cfs_period_us")
    if quota is None or period is None:
        return None
    return _ratio(quota, period)


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None  # v1 writes -1 for "no limit"


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
