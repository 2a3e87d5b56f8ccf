"""How many torch threads to train with: the CPUs this process may use, minus those other processes keep busy.

Why: torch's OpenMP workers spin-wait for each other at the end of every parallel region. When another process
holds one of the cores, a worker loses its core for a whole scheduler slice while the others spin, and a
2-thread run on 2 cores with one of them busy is 5-40x slower than the same run with one thread (measured on
this project's machine: `vaelab train` of the bundled config, 53.7 s with 2 threads vs 10.2 s with 1 at load 1.5).
One thread per *free* core avoids it, so `train.threads: auto`:

- counts the usable CPUs: the affinity mask (`os.sched_getaffinity`, what taskset/cpusets allow), capped by a
  cgroup CPU quota (`cpu.max` in cgroup v2, `cpu.cfs_quota_us` in v1: what docker --cpus / Kubernetes limits
  set) and by `OMP_NUM_THREADS` when the user set it;
- measures how many of those CPUs other processes keep busy (the non-idle time of those CPUs in /proc/stat
  minus this process's own CPU time, over a short window);
- trains with one thread per free CPU (at least one), and re-measures every few seconds while training, so a
  job that starts on the machine halfway through takes a thread away and one that ends gives it back.

`train.threads: N` fixes the count (no measuring); use it for bitwise-reproducible runs, since reductions in
several threads may sum in another order. The count in use is restored when training ends.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

# A CPU counts as taken when other processes use more than this fraction of it: background daemons use a few
# percent; one busy process uses ~1.0. A core that another process holds over a quarter of the time is left
# alone (a thread there would spin-wait through every slice the other process gets).
BUSY_THRESHOLD = 0.25
POLL_SECONDS = 2.0
FIRST_WINDOW_SECONDS = 0.25


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by this process's cgroup quota (quota / period), or None when unlimited or unknown."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]  # cgroup v2: "max 100000" or "200000 100000"
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None


def affinity_cpus() -> list[int]:
    """The CPU ids this process may run on (all of os.cpu_count() where the platform has no affinity call)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def env_thread_cap() -> int | None:
    """OMP_NUM_THREADS when the user set it to a positive integer (an explicit cap that auto honours)."""
    raw = os.environ.get("OMP_NUM_THREADS", "").strip().split(",")[0]
    return int(raw) if raw.isdigit() and int(raw) > 0 else None


def local_processes() -> int:
    """Training processes sharing this machine's CPUs: torchrun's LOCAL_WORLD_SIZE, else 1."""
    raw = os.environ.get("LOCAL_WORLD_SIZE", "1")
    return int(raw) if raw.isdigit() and int(raw) > 0 else 1


def usable_cpus(cpus: list[int] | None = None, quota: float | None = None) -> float:
    """How many CPUs this process may keep busy: the affinity mask, capped by the cgroup quota."""
    n = float(len(cpus if cpus is not None else affinity_cpus()))
    q = cgroup_cpu_limit() if quota is None else quota
    return min(n, q) if q is not None else n


class CpuMeter:
    """How many of the given CPUs other processes kept busy since the last reading.

    Reads the per-CPU jiffies in /proc/stat and this process's CPU time; returns None where /proc/stat is
    missing (not Linux), and the caller then falls back to the load average.
    """

    def __init__(self, cpus: list[int], stat: Path = Path("/proc/stat")):
        self.cpus, self.stat = set(cpus), stat
        self.last = self._read()

    def _read(self) -> tuple[float, float, float] | None:
        """(busy seconds on our CPUs, our own CPU seconds, wall seconds) now."""
        try:
            lines = self.stat.read_text().splitlines()
        except OSError:
            return None
        hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        busy = 0
        for line in lines:
            name, _, rest = line.partition(" ")
            if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in self.cpus):
                continue
            f = [int(v) for v in rest.split()]
            # user nice system idle iowait irq softirq steal guest guest_nice: busy = all but idle and iowait,
            # and guest time is already inside user/nice
            busy += sum(f[:8]) - f[3] - f[4]
        return busy / hz, time.process_time(), time.monotonic()

    def others_busy(self) -> float | None:
        """CPUs' worth of time other processes used on our CPUs since the last call (or construction)."""
        now = self._read()
        before, self.last = self.last, now
        if now is None or before is None or now[2] - before[2] <= 0:
            return None
        wall = now[2] - before[2]
        return max(0.0, ((now[0] - before[0]) - (now[1] - before[1])) / wall)


def load_average_busy() -> float:
    """Fallback without /proc/stat: the 1-minute load average (includes this process when it has been busy)."""
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return 0.0


def threads_for(usable: float, others: float, cap: int | None = None) -> int:
    """One thread per CPU left free by other processes: floor(usable - others + BUSY_THRESHOLD), in [1, cap]."""
    n = max(1, int(math.floor(usable - others + BUSY_THRESHOLD)))
    n = min(n, max(1, int(math.floor(usable + 1e-9))))
    return min(n, cap) if cap is not None else n


@dataclass
class ThreadChoice:
    threads: int
    usable: float
    others_busy: float | None
    reason: str


class ThreadGovernor:
    """Sets torch's intra-op thread count for a training run and restores the previous one on exit.

    `configure(setting)` once the config is known (an int fixes the count; "auto" measures), `poll()` from the
    training loop (cheap: re-measures at most every POLL_SECONDS), `count` for the metrics.
    """

    def __init__(self, *, report: Callable[[str], None] | None = None, poll_seconds: float = POLL_SECONDS,
                 share: int = 1):
        self.report, self.poll_seconds, self.share = report, poll_seconds, max(1, share)
        self.previous: int | None = None
        self.auto = False
        self.meter: CpuMeter | None = None
        self.usable = 1.0
        self.cap: int | None = None
        self.next_poll = math.inf
        self.choice: ThreadChoice | None = None

    def __enter__(self) -> "ThreadGovernor":
        self.previous = torch.get_num_threads()
        return self

    def __exit__(self, *exc) -> None:
        if self.previous is not None and torch.get_num_threads() != self.previous:
            torch.set_num_threads(self.previous)

    @property
    def count(self) -> int:
        return torch.get_num_threads()

    def configure(self, setting: int | str) -> ThreadChoice:
        """Apply `train.threads` (an int, or "auto"); under torchrun each of `share` local ranks gets its part."""
        if setting != "auto":
            self.auto = False
            self.choice = ThreadChoice(int(setting), usable_cpus(), None, "train.threads")
            self._apply(self.choice.threads)
            return self.choice
        cpus = affinity_cpus()
        self.auto, self.usable, self.cap = True, usable_cpus(cpus) / self.share, env_thread_cap()
        if min(self.usable, self.cap or math.inf) < 2:  # one thread whatever the load: nothing to measure
            self.auto = False
            self.choice = ThreadChoice(1, self.usable, None, f"{self.usable:g} usable CPU(s)"
                                       + (f", OMP_NUM_THREADS={self.cap}" if self.cap is not None else ""))
            self._apply(1)
            return self.choice
        self.meter = CpuMeter(cpus)
        if self.meter.last is not None:
            time.sleep(FIRST_WINDOW_SECONDS)  # this process is idle meanwhile: all the busy time is others'
            others = self.meter.others_busy()
        else:
            others = load_average_busy()
        others = 0.0 if others is None else others / self.share
        self.choice = self._choose(others)
        self._apply(self.choice.threads)
        self.next_poll = time.monotonic() + self.poll_seconds
        if self.report and self.choice.threads < math.floor(self.usable + 1e-9):
            self.report(f"training with {self.choice.threads} torch thread(s): {self.choice.reason}")
        return self.choice

    def _choose(self, others: float) -> ThreadChoice:
        n = threads_for(self.usable, others, self.cap)
        why = (f"{self.usable:g} usable CPU(s), {others:.2f} kept busy by other processes"
               + (f", OMP_NUM_THREADS={self.cap}" if self.cap is not None else ""))
        return ThreadChoice(n, self.usable, others, why)

    def poll(self) -> None:
        """Re-measure when POLL_SECONDS have passed and follow the free CPUs (auto only)."""
        if not self.auto or self.meter is None or time.monotonic() < self.next_poll:
            return
        self.next_poll = time.monotonic() + self.poll_seconds
        others = self.meter.others_busy()
        if others is None:
            return
        choice = self._choose(others / self.share)
        if choice.threads != self.count:
            self.choice = choice
            self._apply(choice.threads)

    @staticmethod
    def _apply(n: int) -> None:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


__all__ = ["ThreadGovernor", "ThreadChoice", "threads_for", "usable_cpus", "cgroup_cpu_limit", "affinity_cpus",
           "CpuMeter", "env_thread_cap", "local_processes"]
