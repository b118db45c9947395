"""The CPU budget: affinity capped by cgroup v1/v2 quotas (fake cgroup trees), explicit
overrides, and what the CLI applies to torch, OpenMP and polars in a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamsynth import threads

ROOT = Path(__file__).resolve().parents[2]
FOUR = {0, 1, 2, 3}


def _tree(tmp_path: Path, proc: str, files: dict[str, str]) -> dict[str, Path]:
    root = tmp_path / "cgroup"
    root.mkdir()
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "cgroup.proc").write_text(proc)
    return {"cgroup_root": root, "proc_cgroup": tmp_path / "cgroup.proc"}


@pytest.mark.parametrize(
    ("proc", "files", "expected"),
    [
        ("0::/app\n", {"app/cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs round up
        ("0::/app\n", {"app/cpu.max": "max 100000\n"}, 4),  # no quota: the affinity
        ("0::/a/b\n", {"a/cpu.max": "100000 100000\n", "a/b/cpu.max": "max 100000\n"}, 1),  # a parent's
        ("0::/host/path/unseen\n", {"cpu.max": "200000 100000\n"}, 2),  # container: only the root is visible
        ("0::/\n", {"unified/cpu.max": "300000 100000\n"}, 3),  # hybrid: v2 mounted at unified/
        ("4:cpu,cpuacct:/docker/x\n", {"cpu,cpuacct/docker/x/cpu.cfs_quota_us": "50000\n",
                                       "cpu,cpuacct/docker/x/cpu.cfs_period_us": "100000\n"}, 1),
        ("4:cpu,cpuacct:/docker/x\n", {"cpu,cpuacct/docker/x/cpu.cfs_quota_us": "-1\n",
                                       "cpu,cpuacct/docker/x/cpu.cfs_period_us": "100000\n"}, 4),
        ("1:cpu:/\n", {"cpu/cpu.cfs_quota_us": "800000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4),  # > affinity
        ("garbage\n", {}, 4),
    ],
    ids=["v2", "v2-max", "v2-parent", "v2-container", "hybrid", "v1", "v1-unlimited", "v1-above", "unreadable"],
)
def test_usable_cpus_is_the_affinity_capped_by_the_quota(tmp_path, proc, files, expected):
    assert threads.usable_cpus(affinity=FOUR, **_tree(tmp_path, proc, files)) == expected


def test_no_cgroup_files_at_all(tmp_path):
    missing = {"cgroup_root": tmp_path / "none", "proc_cgroup": tmp_path / "none.txt"}
    assert threads.usable_cpus(affinity={5, 7}, **missing) == 2
    assert threads.cgroup_quota(**missing) is None


def test_explicit_settings_win(tmp_path):
    probe = {"affinity": FOUR, "cgroup_root": tmp_path / "none", "proc_cgroup": tmp_path / "none.txt"}
    assert threads.budget({"STREAMSYNTH_THREADS": "3", "OMP_NUM_THREADS": "5"}, **probe) == 3
    assert threads.budget({"OMP_NUM_THREADS": "5"}, **probe) == 5
    assert threads.budget({"OMP_NUM_THREADS": "2,1"}, **probe) == 2  # nested OpenMP levels: the outer one
    assert threads.budget({"STREAMSYNTH_THREADS": "lots", "OMP_NUM_THREADS": "0"}, **probe) == 4


SHOW = (
    "import os, sys; from streamsynth.cli import main; main(['inspect', sys.argv[1]]); "
    "import torch, polars; "
    "print(torch.get_num_threads(), os.environ['OMP_WAIT_POLICY'], polars.thread_pool_size())"
)


def _show(tmp_path: Path, env: dict[str, str], preexec=None) -> list[str]:
    data = tmp_path / "d.csv"
    data.write_text("a,b\n1,2\n3,4\n")
    clean = {k: v for k, v in os.environ.items()
             if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "POLARS_MAX_THREADS", "STREAMSYNTH_THREADS")}
    clean["PYTHONPATH"] = f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    proc = subprocess.run([sys.executable, "-c", SHOW, str(data)], env={**clean, **env}, capture_output=True,
                          text=True, timeout=120, preexec_fn=preexec)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("\n")[-2].split()


def test_the_cli_applies_the_budget_to_torch_openmp_and_polars(tmp_path):
    assert _show(tmp_path, {"STREAMSYNTH_THREADS": "1"}) == ["1", "PASSIVE", "1"]
    # the user's own OpenMP policy is left alone
    assert _show(tmp_path, {"STREAMSYNTH_THREADS": "2", "OMP_WAIT_POLICY": "ACTIVE"}) == ["2", "ACTIVE", "2"]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two CPUs to pin to one")
def test_a_process_pinned_to_one_cpu_uses_one_thread(tmp_path):
    one = min(os.sched_getaffinity(0))
    assert _show(tmp_path, {}, preexec=lambda: os.sched_setaffinity(0, {one})) == ["1", "PASSIVE", "1"]
