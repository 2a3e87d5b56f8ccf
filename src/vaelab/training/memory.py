"""The largest batch that fits: measure a whole training step's peak memory at a few batch sizes, fit a line.

A step is forward + loss + backward + optimizer step, run twice so the optimizer's state exists (seed 001
measured the forward pass only). On CUDA the peak is `torch.cuda.max_memory_allocated`; on CPU each probe runs
in a fresh process and the peak is that process's VmHWM (the real resident high-water mark, which
includes the interpreter and torch themselves, ~0.3-0.5 GB, but not the training data set). The fit
`peak(B) = fixed + per_sample * B` gives the largest B under `limit * (1 - margin)`; the chosen batch is then
run once more to confirm the estimate (always on CUDA, on CPU with `confirm=True`).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from vaelab.core.config import Config
from vaelab.core.errors import ConfigError
from vaelab.core.progress import advance
from vaelab.training.distributed import LocalContext
from vaelab.training.loss_setup import LossSetup
from vaelab.training.precision import get_precision, resolve_device
from vaelab.training.step import TrainStep

GB = 1024**3
MB = 1024**2
Measure = Callable[[int], int]  # batch size -> peak bytes of one training step


@dataclass
class MemoryReport:
    device: str
    limit_bytes: int
    margin: float
    probes: list[tuple[int, int]]  # (batch, peak bytes)
    fixed_bytes: float  # fit intercept
    per_sample_bytes: float  # fit slope
    batch: int
    predicted_bytes: float
    confirmed_bytes: int | None = None
    capped_at: int | None = None  # the batch was limited by this (e.g. the training set size)
    notes: list[str] = field(default_factory=list)

    def predict(self, batch: int) -> float:
        return self.fixed_bytes + self.per_sample_bytes * batch

    def summary(self) -> str:
        lines = [f"device {self.device}: limit {self.limit_bytes / GB:.2f} GB, safety margin {self.margin:.0%}",
                 "measured peak of a training step (forward, backward, optimizer step):"]
        lines += [f"  batch {b:>7d}: {m / MB:10.1f} MB" for b, m in self.probes]
        lines.append(f"fit: {self.fixed_bytes / MB:.1f} MB fixed + {self.per_sample_bytes / 1024:.2f} KB per sample")
        cap = f" (capped at {self.capped_at}, the training set size)" if self.capped_at else ""
        lines.append(f"largest batch that fits: {self.batch}{cap}, predicted peak {self.predicted_bytes / MB:.1f} MB")
        if self.confirmed_bytes is not None:
            err = (self.predicted_bytes - self.confirmed_bytes) / self.confirmed_bytes
            lines.append(f"confirmed by running batch {self.batch}: {self.confirmed_bytes / MB:.1f} MB (prediction off by {err:+.1%})")
        lines += self.notes
        return "\n".join(lines)


# ----------------------------------------------------------------------------- one step


def data_spec(bundle) -> dict[str, Any]:
    """The bundle's DataSpec as a plain dict (it travels to the probe subprocesses as JSON)."""
    return bundle.spec.to_dict()


def _own_rng(device: torch.device):
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def build_step(cfg: Config, spec: dict[str, Any], device: torch.device) -> Callable[[int], None]:
    """A function running `steps` training steps of this config at a batch size, on synthetic data of the data's shape.

    Each call is a whole optimizer step of the trainer's own `TrainStep` (forward, loss, backward, clipping,
    optimizer, EMA), with a fresh model per `build_step`.
    """
    from vaelab.data.spec import DataSpec
    from vaelab.model.build import build_model

    get_precision(cfg.train.precision, device)  # refuse e.g. fp16 on a CPU before building anything
    data = DataSpec.from_dict(spec)
    lo, hi = data.value_range
    with _own_rng(device):  # the probe's model init and data leave the caller's RNG alone
        model = build_model(cfg.model, data).to(device)
    step = TrainStep.from_config(cfg, model, LossSetup.from_config(cfg, model, (lo, hi)), device)

    def run(batch: int, steps: int = 2) -> None:
        with _own_rng(device):
            for _ in range(steps):
                x = torch.rand(batch, *data.shape, device=device) * (hi - lo) + lo
                c = None
                if model.conditional:
                    c = model.condition_vector(model.condition.random_inputs(batch, device))
                step(x, c, 1.0, apply=True)
                del x, c

    return run


def cuda_measure(cfg: Config, spec: dict[str, Any], device: torch.device) -> Measure:
    """Peak allocated CUDA bytes of two training steps at a batch size (fresh model each time)."""

    def measure(batch: int) -> int:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        build_step(cfg, spec, device)(batch)
        peak = torch.cuda.max_memory_allocated(device) - base
        torch.cuda.empty_cache()
        return int(peak)

    return measure


def cpu_measure(cfg: Config, spec: dict[str, Any]) -> Measure:
    """Peak resident bytes (VmHWM) of a fresh Python process running two training steps at a batch size."""
    payload = {"config": cfg.to_dict(), "spec": spec}

    def measure(batch: int) -> int:
        proc = subprocess.run([sys.executable, "-m", "vaelab.training.memory"], input=json.dumps({**payload, "batch": batch}),
                              capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise ConfigError(f"memory probe at batch {batch} failed: {tail}")
        return int(proc.stdout.strip().splitlines()[-1])

    return measure


def _probe_main() -> None:
    from vaelab.core.config import load_config

    req = json.loads(sys.stdin.read())
    cfg = load_config(req["config"])
    torch.manual_seed(0)
    build_step(cfg, req["spec"], torch.device("cpu"))(int(req["batch"]))
    print(peak_rss_bytes())


def peak_rss_bytes() -> int:
    """This process's resident high-water mark: VmHWM of its own memory map.

    Not ru_maxrss where /proc exists: Linux carries the parent's high-water mark into ru_maxrss across
    fork/exec, so a probe started by a large process (a test runner) would report the parent's size.
    """
    import resource

    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


# ----------------------------------------------------------------------------- the fit


def fit_line(probes: list[tuple[int, int]]) -> tuple[float, float]:
    b = np.array([p[0] for p in probes], dtype=np.float64)
    m = np.array([p[1] for p in probes], dtype=np.float64)
    slope, intercept = np.polyfit(b, m, 1)
    return float(intercept), float(slope)


class _Prober:
    """Runs and remembers probes; None marks a batch that ran out of memory."""

    def __init__(self, measure: Measure, parallel: int):
        self.measure, self.parallel = measure, parallel
        self.probes: dict[int, int | None] = {}

    def one(self, b: int) -> int | None:
        try:
            return int(self.measure(b))
        except torch.cuda.OutOfMemoryError:  # type: ignore[attr-defined]
            torch.cuda.empty_cache()
            return None

    def at(self, *bs: int) -> list[int | None]:
        todo = sorted({b for b in bs if b not in self.probes})
        if self.parallel > 1 and len(todo) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(self.parallel, len(todo))) as pool:
                self.probes.update(zip(todo, pool.map(self.one, todo)))
        else:
            self.probes.update((b, self.one(b)) for b in todo)
        advance(len(todo))  # the open progress stage, if any (here: the caller's thread, not the pool's)
        return [self.probes[b] for b in bs]

    def ok(self) -> list[tuple[int, int]]:
        return sorted((b, m) for b, m in self.probes.items() if m is not None)


def _explore(prober: _Prober, budget: float, start: int, max_batch: int, refine: int) -> None:
    """Grow a (p, 16p) pair until the batch-dependent part stands out of the measurement noise (>= 10%), then
    probe `refine` batches inside the last interval that fits."""

    def fits(m: int | None) -> bool:
        return m is not None and m <= budget

    p = max(1, min(start, max_batch))
    while True:
        hi = min(16 * p, max_batch)
        (lo_m,) = prober.at(p, hi)[:1] if prober.parallel > 1 else prober.at(p)  # CPU: measure the pair at once
        if not fits(lo_m):
            if p > 1:
                prober.at(1)
            break
        (hi_m,) = prober.at(hi)
        if not fits(hi_m) or hi >= max_batch or hi_m - lo_m >= 0.1 * lo_m:
            break
        p = hi
    ok = prober.ok()
    if len(ok) >= 2 and ok[-1][0] > ok[-2][0] + 2:  # two more probes inside the last interval refine the line
        lo_b, hi_b = ok[-2][0], ok[-1][0]
        if fits(prober.probes[lo_b]):
            prober.at(*[lo_b + k * (hi_b - lo_b) // (refine + 1) for k in range(1, refine + 1)])


def choose_batch(measure: Measure, limit_bytes: int, *, margin: float = 0.1, max_batch: int = 1 << 20,
                 start: int = 8, confirm: bool = False, device: str = "cpu", parallel: int = 1, refine: int = 2) -> MemoryReport:
    """Largest batch whose fitted peak stays under limit*(1-margin); raises ConfigError if batch 1 does not fit.

    `parallel` > 1 runs that many probes at once (CPU probes are separate processes, so they do not interfere).
    """
    if not 0 <= margin < 1:
        raise ConfigError(f"margin must be in [0, 1), got {margin}")
    budget = limit_bytes * (1 - margin)
    prober = _Prober(measure, parallel)
    _explore(prober, budget, start, max_batch, refine)
    ok = prober.ok()
    if not ok:
        raise ConfigError(f"train.batch_size: every probe ran out of memory (batches {sorted(prober.probes)}); "
                          "use a smaller model or train.precision: bf16")
    used = ok[-4:]
    fixed, per = fit_line(used) if len(used) >= 2 else (float(used[0][1]), 0.0)
    if per <= 0.0:  # no measurable growth: the step costs its largest measurement at any batch up to the cap
        fixed, per = float(max(m for _, m in used)), 0.0
    smallest, cost = ok[0]
    if fixed + per > budget or (smallest == 1 and cost > budget):
        raise ConfigError(
            f"train.batch_size: not even batch 1 fits in {limit_bytes / GB:.2f} GB (less the {margin:.0%} margin): "
            f"the step measured {cost / MB:.1f} MB at batch {smallest}, i.e. {fixed / MB:.1f} MB fixed + "
            f"{per / MB:.3f} MB per sample. Use a smaller model, train.precision: bf16, or a larger --limit-gb")
    batch = max_batch if per == 0.0 else int(min(max_batch, math.floor((budget - fixed) / per)))
    batch = max(batch, 1)
    report = MemoryReport(device, int(limit_bytes), margin, ok, fixed, per, batch, fixed + per * batch,
                          capped_at=max_batch if batch == max_batch else None)
    if confirm:
        _confirm(report, prober, limit_bytes)
    return report


def _confirm(report: MemoryReport, prober: _Prober, limit_bytes: int) -> None:
    """Run the chosen batch; shrink it by 20% (up to 4 times) while its real peak overshoots the limit itself."""
    for _ in range(4):
        report.confirmed_bytes = prober.one(report.batch)
        if report.confirmed_bytes is not None and report.confirmed_bytes <= limit_bytes:
            break
        report.notes.append(f"batch {report.batch} did not fit when run; trying {max(1, int(report.batch * 0.8))}")
        report.batch = max(1, int(report.batch * 0.8))
        report.predicted_bytes = report.predict(report.batch)


# ----------------------------------------------------------------------------- entry points


def free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        import psutil  # type: ignore[import-not-found]

        return int(psutil.virtual_memory().available)


def max_batch_for(cfg: Config, spec: dict[str, Any], *, device: str = "auto", limit_gb: float | None = None,
                  margin: float = 0.1, max_batch: int = 1 << 20, confirm: bool | None = None,
                  measure: Measure | None = None, start: int = 8, refine: int = 2) -> MemoryReport:
    """The largest training batch of `cfg` (data described by `spec`, see `data_spec`) fitting the device."""
    dev = resolve_device(device)
    if limit_gb is not None and limit_gb <= 0:
        raise ConfigError(f"--limit-gb must be positive, got {limit_gb}")
    limit = int(limit_gb * GB) if limit_gb is not None else free_bytes(dev)
    if measure is None:
        measure = cuda_measure(cfg, spec, dev) if dev.type == "cuda" else cpu_measure(cfg, spec)
    confirm = (dev.type == "cuda") if confirm is None else confirm
    return choose_batch(measure, limit, margin=margin, max_batch=max_batch, confirm=confirm, device=str(dev), start=start, refine=refine,
                        parallel=1 if dev.type == "cuda" else 2)


def memory_report(cfg: Config, *, device: str = "auto", limit_gb: float | None = None, margin: float = 0.1,
                  confirm: bool | None = None) -> MemoryReport:
    """`vaelab memory`: load the data for its shape, refuse what `train` and `check` refuse (the same preflight and
    loss checks), then `max_batch_for` (the batch is capped at the training set size)."""
    from vaelab.core.progress import stage
    from vaelab.data import load_data
    from vaelab.training.preflight import preflight

    bundle = load_data(cfg.data, cfg.seed)
    at_one = cfg.model_copy(deep=True)
    at_one.train.batch_size = 1  # the configured batch may not fit: finding one that does is this command's job
    fp = preflight(at_one, bundle.spec, resolve_device(device), train_size=len(bundle.train))
    LossSetup.from_config(cfg, fp.model, bundle.spec.value_range)
    with stage("memory: training steps measured", unit="batch sizes"):
        return max_batch_for(cfg, data_spec(bundle), device=device, limit_gb=limit_gb, margin=margin,
                             max_batch=max(1, len(bundle.train)), confirm=confirm)


def resolve_auto_batch(cfg: Config, bundle, device: torch.device, parallel=None) -> Config:
    """A copy of cfg with `train.batch_size: auto` replaced by the measured largest batch (global under torchrun).

    parallel: a vaelab.training.distributed context (LocalContext when omitted)."""
    parallel = parallel if parallel is not None else LocalContext()
    world = parallel.world_size
    batch = None
    if parallel.is_main:
        report = max_batch_for(cfg, data_spec(bundle), device=str(device), max_batch=max(1, len(bundle.train) // world))
        print(f"train.batch_size auto:\n{report.summary()}", file=sys.stderr, flush=True)
        batch = report.batch * world
    batch = parallel.broadcast(batch)
    out = cfg.model_copy(deep=True)
    out.train.batch_size = int(batch)
    return out


if __name__ == "__main__":
    _probe_main()
