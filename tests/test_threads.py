import json

import pytest
import torch

from vaelab.core.config import load_config
from vaelab.core.errors import ConfigError
from vaelab.training import threads as th
from vaelab.training.runs import read_metrics
from vaelab.training.trainer import train


@pytest.mark.parametrize("usable, others, cap, want", [
    (2, 0.0, None, 2), (2, 0.05, None, 2), (2, 0.3, None, 1), (2, 1.0, None, 1), (2, 2.5, None, 1),
    (16, 8.0, None, 8), (16, 0.0, 4, 4), (1.5, 0.0, None, 1), (2.5, 0.0, None, 2), (8, 0.2, None, 8),
])
def test_threads_for_leaves_busy_cpus_alone(usable, others, cap, want):
    assert th.threads_for(usable, others, cap) == want


def test_cgroup_quota_v2_v1_and_unlimited(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert th.cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert th.cgroup_cpu_limit(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert th.cgroup_cpu_limit(v1) == 3.0
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    assert th.cgroup_cpu_limit(v1) is None
    assert th.cgroup_cpu_limit(tmp_path / "absent") is None


def test_usable_cpus_is_affinity_capped_by_quota():
    assert th.usable_cpus([0, 1, 2, 3], quota=2.0) == 2.0
    assert th.usable_cpus([0, 1], quota=8.0) == 2.0
    assert th.usable_cpus() >= 1


def _stat(busy_jiffies: dict[int, int], idle: int = 1000) -> str:
    lines = ["cpu  1 2 3 4 5 6 7 8 0 0"]
    for cpu, busy in busy_jiffies.items():  # user nice system idle iowait irq softirq steal guest guest_nice
        lines.append(f"cpu{cpu} {busy} 0 0 {idle} 7 0 0 0 {busy // 2} 0")
    return "\n".join(lines + ["intr 1 2 3", "ctxt 5"]) + "\n"


def test_cpu_meter_counts_only_our_cpus_and_not_our_own_time(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text(_stat({0: 0, 1: 0, 2: 0}))
    meter = th.CpuMeter([0, 1], stat)
    hz = th.os.sysconf("SC_CLK_TCK")
    before = meter.last
    stat.write_text(_stat({0: hz, 1: hz // 2, 2: 50 * hz}))  # cpu2 is not ours: ignored
    meter.last = (before[0], before[1], before[2] - 1.0)  # as if one second of wall time had passed
    others = meter.others_busy()
    own = th.time.process_time() - before[1]
    assert others == pytest.approx(1.5 - own, abs=0.05)


def test_cpu_meter_without_proc_stat(tmp_path):
    meter = th.CpuMeter([0], tmp_path / "missing")
    assert meter.last is None and meter.others_busy() is None


def test_governor_fixed_count_is_restored_on_exit():
    before = torch.get_num_threads()
    with th.ThreadGovernor() as gov:
        gov.configure(3)
        assert torch.get_num_threads() == 3 and gov.count == 3
    assert torch.get_num_threads() == before


def test_governor_restores_after_an_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        with th.ThreadGovernor() as gov:
            gov.configure(before + 1)
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_auto_honours_omp_num_threads_without_measuring(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with th.ThreadGovernor() as gov:
        choice = gov.configure("auto")
        assert choice.threads == 1 and gov.meter is None and "OMP_NUM_THREADS=1" in choice.reason


def test_auto_follows_other_processes(monkeypatch, tmp_path):
    """A fake /proc/stat: no other load -> every usable CPU; one CPU busy -> one thread fewer; gone -> back."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(th, "affinity_cpus", lambda: [0, 1, 2, 3])
    monkeypatch.setattr(th, "cgroup_cpu_limit", lambda root=None: None)
    loads = iter([0.0, 1.0, 0.0])
    monkeypatch.setattr(th.CpuMeter, "others_busy", lambda self: next(loads))
    monkeypatch.setattr(th, "FIRST_WINDOW_SECONDS", 0.0)
    before = torch.get_num_threads()
    with th.ThreadGovernor(poll_seconds=0.0) as gov:
        assert gov.configure("auto").threads == 4
        gov.poll()
        assert gov.count == 3 and gov.choice.others_busy == 1.0
        gov.poll()
        assert gov.count == 4
    assert torch.get_num_threads() == before


def test_torchrun_ranks_share_the_cpus(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(th, "affinity_cpus", lambda: list(range(8)))
    monkeypatch.setattr(th, "cgroup_cpu_limit", lambda root=None: None)
    monkeypatch.setattr(th.CpuMeter, "others_busy", lambda self: 0.0)
    monkeypatch.setattr(th, "FIRST_WINDOW_SECONDS", 0.0)
    with th.ThreadGovernor(share=th.local_processes()) as gov:
        assert gov.configure("auto").threads == 4


def test_config_threads_field():
    assert load_config(None).train.threads == "auto"
    assert load_config(None, ["train.threads=2"]).train.threads == 2
    with pytest.raises(ConfigError, match="train.threads"):
        load_config(None, ["train.threads=0"])
    with pytest.raises(ConfigError, match="train.threads"):
        load_config(None, ["train.threads=many"])


def test_run_records_threads_and_restores_the_count(tmp_path, tiny):
    before = torch.get_num_threads()
    run = train(load_config(tiny(train={"epochs": 1, "threads": 1, "progress": False, "figures": False})), tmp_path / "r")
    assert [r["threads"] for r in read_metrics(run)] == [1]
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["threads"] == 1
    assert torch.get_num_threads() == before
