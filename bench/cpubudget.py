"""A CPU budget for one process: one core at a share of it, through the kernel's cgroups.

The issue asks the agent's figures also "under a CPU budget: one core at 25 %". Where the
machine allows it, :func:`cpu_budget` makes a cgroup whose processes get ``share`` of one
core (CFS bandwidth: quota/period) and only one CPU (cpuset):

- cgroup v2: ``cpu.max`` (and ``cpuset.cpus``) in a child of the unified hierarchy, if the
  ``cpu`` controller is enabled there and writable;
- cgroup v1: ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` in the ``cpu`` hierarchy and
  ``cpuset.cpus`` in the ``cpuset`` one.

``systemd-run --scope -p CPUQuota=25%`` needs systemd as PID 1; it is tried last.
:func:`cpu_budget` yields a :class:`Budget` whose :meth:`Budget.wrap` prefixes a command
so that it starts inside the group (``sh`` joins, then ``exec``s: same pid, no CPU spent
outside), or says why no budget could be set.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PERIOD_US = 100_000
V1 = Path("/sys/fs/cgroup")
V2 = Path("/sys/fs/cgroup")


@dataclass
class Budget:
    share: float
    how: str | None = None  # "cgroup v2", "cgroup v1", "systemd-run"; None: no budget
    why_not: str = ""
    procs_files: list[Path] = field(default_factory=list)
    stat_file: Path | None = None
    prefix: list[str] = field(default_factory=list)

    def wrap(self, argv: list[str]) -> list[str]:
        if self.how is None:
            raise RuntimeError(f"no CPU budget here: {self.why_not}")
        if self.prefix:
            return [*self.prefix, *argv]
        joins = "; ".join(f"echo $$ > {p}" for p in self.procs_files)
        return ["sh", "-c", f'{joins}; exec "$@"', "budget", *argv]

    def throttled(self) -> dict[str, int]:
        """The group's ``cpu.stat`` (periods, throttled periods) so far."""
        if self.stat_file is None:
            return {}
        out: dict[str, int] = {}
        with contextlib.suppress(OSError):
            for line in self.stat_file.read_text().splitlines():
                key, _, value = line.partition(" ")
                if value.strip().isdigit():
                    out[key] = int(value)
        return out


def _cpu() -> str:
    return str(min(os.sched_getaffinity(0)))


def _try_v2(name: str, share: float) -> tuple[Path | None, str]:
    root = V2 if (V2 / "cgroup.controllers").exists() else V2 / "unified"
    controllers = root / "cgroup.subtree_control"
    try:
        enabled = controllers.read_text().split()
    except OSError:
        return None, "no cgroup v2 hierarchy"
    if "cpu" not in enabled:
        return None, f"cgroup v2 at {root} has no cpu controller enabled for children"
    group = root / name
    try:
        group.mkdir()
        (group / "cpu.max").write_text(f"{int(share * PERIOD_US)} {PERIOD_US}\n")
        if "cpuset" in enabled:
            (group / "cpuset.cpus").write_text(_cpu())
    except OSError as exc:
        with contextlib.suppress(OSError):
            group.rmdir()
        return None, f"cgroup v2 not writable: {exc}"
    return group, ""


def _try_v1(name: str, share: float) -> tuple[list[Path], str]:
    cpu, cpuset = V1 / "cpu" / name, V1 / "cpuset" / name
    made: list[Path] = []
    try:
        cpu.mkdir()
        made.append(cpu)
        (cpu / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (cpu / "cpu.cfs_quota_us").write_text(str(int(share * PERIOD_US)))
        cpuset.mkdir()
        made.append(cpuset)
        (cpuset / "cpuset.cpus").write_text(_cpu())
        (cpuset / "cpuset.mems").write_text((V1 / "cpuset" / "cpuset.mems").read_text())
    except OSError as exc:
        for group in reversed(made):
            with contextlib.suppress(OSError):
                group.rmdir()
        return [], f"cgroup v1 cpu/cpuset not writable: {exc}"
    return made, ""


@contextlib.contextmanager
def cpu_budget(name: str, share: float = 0.25) -> Iterator[Budget]:
    """A budget of ``share`` of one core for the processes started through it."""
    budget = Budget(share)
    groups: list[Path] = []
    group2, why2 = _try_v2(name, share)
    if group2 is not None:
        groups = [group2]
        budget.how, budget.procs_files = "cgroup v2 (cpu.max, cpuset.cpus)", \
            [group2 / "cgroup.procs"]
        budget.stat_file = group2 / "cpu.stat"
    else:
        made, why1 = _try_v1(name, share)
        if made:
            groups = made
            budget.how = "cgroup v1 (cpu.cfs_quota_us, cpuset.cpus)"
            budget.procs_files = [g / "cgroup.procs" for g in made]
            budget.stat_file = made[0] / "cpu.stat"
        elif shutil.which("systemd-run") and Path("/run/systemd/system").is_dir():
            budget.how = "systemd-run"
            budget.prefix = ["systemd-run", "--scope", "--quiet",
                             "-p", f"CPUQuota={share * 100:g}%", "-p", f"AllowedCPUs={_cpu()}"]
        else:
            budget.why_not = f"{why2}; {why1}; systemd is not PID 1 (no systemd-run)"
    try:
        yield budget
    finally:
        for group in reversed(groups):
            with contextlib.suppress(OSError):
                group.rmdir()  # empty once its processes have exited
