"""The CPU budget: how many threads torch (and polars) may use in this process.

A process in a container with a CPU quota, or pinned to some cores, may see many more cores
than it may use; threads beyond its share only wait for each other. The budget is the number
of CPUs it may really use: its affinity mask, capped by the cgroup CPU quota (v2 ``cpu.max``,
v1 ``cpu.cfs_quota_us / cpu.cfs_period_us``) rounded up. An explicit ``STREAMSYNTH_THREADS``
or ``OMP_NUM_THREADS`` wins.

:func:`configure` applies it once per process (the CLI calls it first thing, the models'
fit and sample call it too). It also asks OpenMP to put idle threads to sleep at once
(``OMP_WAIT_POLICY=PASSIVE``) unless the user set a policy, and only while that can still take
effect (before torch is imported): with the default spin-waiting, a TimeGAN fit of 20
iterations with two threads on two busy cores took 117 s, 18.7 s with passive waiting and 12.8 s
on one thread. :func:`threads_for` runs small work on one thread (the transformer's measured
threshold; TimeGAN's training and sampling are all below it).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

THREADS_ENV = "STREAMSYNTH_THREADS"
#: rows x width below which an op runs on one thread (measured: 16-32 rows of 128 in the transformer)
SMALL_WORK = 4096

_env_done = False
_torch_done = False


def usable_cpus(
    affinity: set[int] | None = None,
    cgroup_root: Path = Path("/sys/fs/cgroup"),
    proc_cgroup: Path = Path("/proc/self/cgroup"),
    host_cpus: int | None = None,
) -> int:
    """CPUs this process may really use: the affinity mask capped by the cgroup quota (>= 1)."""
    if affinity is None:
        affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    cpus = len(affinity) or host_cpus or os.cpu_count() or 1
    quota = cgroup_quota(cgroup_root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def cgroup_quota(
    cgroup_root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")
) -> float | None:
    """The tightest CPU quota (in CPUs) on this process's cgroup and its ancestors; None if unlimited."""
    groups = _own_groups(proc_cgroup)
    limits: list[float] = []
    # cgroup v2: one hierarchy, "0::/path", cpu.max = "max 100000" or "200000 100000"
    v2 = groups.get("")
    roots = [cgroup_root, cgroup_root / "unified"] if v2 is not None else []
    for root in roots:
        for directory in _up_from(root, v2 or "/"):
            limit = _ratio((directory / "cpu.max").read_text().split()) if (directory / "cpu.max").is_file() else None
            if limit is not None:
                limits.append(limit)
    # cgroup v1: the "cpu" controller (mounted as cpu or cpu,cpuacct)
    v1 = next((path for names, path in groups.items() if "cpu" in names.split(",")), None)
    if v1 is not None:
        for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
            for directory in _up_from(cgroup_root / mount, v1):
                quota, period = directory / "cpu.cfs_quota_us", directory / "cpu.cfs_period_us"
                if quota.is_file() and period.is_file():
                    limit = _ratio([quota.read_text().strip(), period.read_text().strip()])
                    if limit is not None:
                        limits.append(limit)
    return min(limits) if limits else None


def _own_groups(proc_cgroup: Path) -> dict[str, str]:
    """``{controllers: path}`` from /proc/self/cgroup ("" is the v2 hierarchy)."""
    try:
        text = proc_cgroup.read_text()
    except OSError:
        return {}
    groups = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            groups[parts[1]] = parts[2] or "/"
    return groups


def _up_from(root: Path, path: str) -> list[Path]:
    """``root/path`` and its parents up to ``root``; inside a container the group's own path
    is often not visible, and its limits are then the ones at the mount's root."""
    out, current = [], Path(path.strip("/"))
    while True:
        directory = root / current
        if directory.is_dir():
            out.append(directory)
        if current == Path("."):
            return out
        current = current.parent


def _ratio(fields: list[str]) -> float | None:
    try:
        quota, period = fields[0], float(fields[1]) if len(fields) > 1 else 100_000.0
    except (IndexError, ValueError):
        return None
    if quota == "max" or period <= 0:
        return None
    try:
        value = float(quota)
    except ValueError:
        return None
    return value / period if value > 0 else None  # v1 writes -1 for "no quota"


def budget(environ: Any = None, **probe: Any) -> int:
    """Threads to use: ``STREAMSYNTH_THREADS``, else ``OMP_NUM_THREADS``, else :func:`usable_cpus`."""
    environ = os.environ if environ is None else environ
    for name in (THREADS_ENV, "OMP_NUM_THREADS"):
        value = str(environ.get(name, "")).strip().split(",")[0]
        if value.isdigit() and int(value) > 0:
            return int(value)
    return usable_cpus(**probe)


def configure() -> int:
    """Apply the budget to this process; returns the thread count. Cheap to call again.

    Environment variables only matter before the library that reads them starts, so they are
    set on the first call if that library is not imported yet: OpenMP's wait policy and thread
    count before torch, polars' pool before polars. torch itself is not imported here (commands
    that never touch it stay fast); once it is, its thread counts are set on the next call.
    """
    global _env_done, _torch_done
    n = budget()
    if not _env_done:
        _env_done = True
        if "torch" not in sys.modules:
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            os.environ.setdefault("OMP_NUM_THREADS", str(n))
        if "polars" not in sys.modules:
            os.environ.setdefault("POLARS_MAX_THREADS", str(n))
    torch = sys.modules.get("torch")
    if torch is not None and not _torch_done:
        _torch_done = True
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        try:  # only possible before any inter-op parallel work has started
            if torch.get_num_interop_threads() > n:
                torch.set_num_interop_threads(n)
        except RuntimeError:
            pass
    return n


@contextmanager
def threads_for(elements: int, device: Any = None) -> Iterator[None]:
    """One CPU thread for work of fewer than :data:`SMALL_WORK` elements, restored after.

    On such matrices thread hand-offs cost more than they save, and on a busy machine much
    more. A CUDA device is left alone."""
    import torch

    before = torch.get_num_threads()
    small = elements < SMALL_WORK and before > 1 and getattr(device, "type", "cpu") == "cpu"
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if small:
            torch.set_num_threads(before)
