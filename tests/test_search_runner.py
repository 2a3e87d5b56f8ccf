"""Search runs end to end on digits with tiny training: surrogate, report, bad input, shared storage, killed worker."""
import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from vaelab.core.errors import ConfigError
from vaelab.training.runs import load_run
from vaelab.search.report import search_report
from vaelab.search.runner import open_study, run_search
from vaelab.search.space import load_space

TINY = {
    "name": "tiny",
    "data": {"name": "digits", "val_fraction": 0.15, "test_fraction": 0.1},
    "genes": {"latent_dim": {"type": "int", "low": 3, "high": 10}, "mid_layer": {"type": "int", "low": 10, "high": 50}},
    "template": {"family": "mlp", "hidden": ["$mid_layer"], "latent": "$latent_dim"},
    "base": {"train": {"epochs": 1, "batch_size": 128, "progress": False, "figures": False}},
    "objectives": [{"name": "neg_elbo"}, {"name": "ood", "samples": 200}],
    "search": {"population": 4, "trials": 8, "seed": 0},
}


def tiny(**changes):
    raw = copy.deepcopy(TINY)
    for k, v in changes.items():
        raw[k] = v
    return raw


def states(study):
    return [t.state.name for t in study.get_trials()]


def test_surrogate_search_then_report(tmp_path):
    res = run_search(load_space(tiny()), out=tmp_path / "s")
    assert res.counts == {"COMPLETE": 8}
    space = load_space(tmp_path / "s" / "search.yaml")
    study, _ = open_study(tmp_path / "s", space, create=False)
    later = [t for t in study.get_trials() if t.number >= 4]
    assert all(set(t.user_attrs["predicted"]) == {"loss", "OOD"} for t in later)  # generation 1 was pre-screened
    assert len({tuple(sorted(t.params.items())) for t in later}) == 4  # distinct children, not seen before
    t0 = study.get_trials()[0]
    run = load_run(tmp_path / "s" / t0.user_attrs["run_dir"])  # every trial is an ordinary run folder
    assert run.config.model.encoder[1] == f"Linear_64_{t0.params['mid_layer']}"
    assert 0.0 <= t0.values[1] <= 1.0 and t0.values[0] > 0
    rep = search_report(tmp_path / "s")
    header = rep.trials_csv.read_text().splitlines()[0].split(",")
    assert header[:5] == ["latent_dim", "mid_layer", "loss", "OOD", "predicted"]
    rows = rep.trials_csv.read_text().splitlines()[1:]
    assert [r.split(",")[4] for r in rows] == ["0"] * 4 + ["1"] * 4
    assert len(rep.hypervolume) == 2 and rep.hypervolume[1] >= rep.hypervolume[0] > 0
    assert rep.pareto and all("Linear_" in " ".join(p["layers"]["encoder"]) for p in rep.pareto)
    assert rep.quality and rep.quality[0]["generation"] == 1 and "tau_loss" in rep.quality[0]
    assert all(p.stat().st_size > 1000 for p in rep.figures)


def test_invalid_model_and_nan_fail_with_reason_and_the_search_goes_on(tmp_path):
    raw = tiny(genes={"depth": {"type": "choice", "choices": [1, 4]}, "lr": {"type": "choice", "choices": [0.003, 1.0e30]}},
               template={"family": "conv", "channels": [4, 4, 4, 4], "depth": "$depth", "latent": 3, "set": {"train.lr": "$lr"}},
               search={"population": 2, "trials": 3, "sampler": "random"})
    space = load_space(raw)
    study, _ = open_study(tmp_path / "s", space)
    for params in ({"depth": 4, "lr": 0.003}, {"depth": 1, "lr": 1.0e30}, {"depth": 1, "lr": 0.003}):
        study.enqueue_trial(params)
    run_search(space, out=tmp_path / "s")
    t = study.get_trials()
    assert states(study) == ["FAIL", "FAIL", "COMPLETE"]
    assert "Error" in t[0].user_attrs["fail_reason"]  # the too-deep conv stack: shape check names the layer
    assert "non-finite" in t[1].user_attrs["fail_reason"]


def test_pruner_stops_hopeless_trials(tmp_path):
    raw = tiny(search={"population": 2, "trials": 2, "pruner": {"name": "threshold", "upper": 1.0}},
               base={"train": {"epochs": 3, "batch_size": 128, "progress": False, "figures": False}})
    res = run_search(load_space(raw), out=tmp_path / "s")
    assert res.counts == {"PRUNED": 2}
    study, _ = open_study(tmp_path / "s", load_space(raw), create=False)
    assert all(len(t.user_attrs["val_curve"]) == 1 for t in study.get_trials())


def test_bad_storage_and_foreign_folder_are_refused(tmp_path):
    space = load_space(tiny())
    with pytest.raises(ConfigError, match="cannot open the database"):
        open_study(tmp_path / "a", space, f"sqlite:///{tmp_path}/no/such/dir/x.db")
    with pytest.raises(ConfigError, match="grpcio|no gRPC storage proxy"):
        open_study(tmp_path / "a", space, "grpc://127.0.0.1:1")
    with pytest.raises(ConfigError, match="unknown kind of storage"):
        open_study(tmp_path / "a", space, "redis2://x")
    open_study(tmp_path / "b", space)
    other = load_space(tiny(genes={**TINY["genes"], "latent_dim": {"type": "int", "low": 2, "high": 4}}))
    with pytest.raises(ConfigError, match="different space"):
        open_study(tmp_path / "b", other)
    db = f"sqlite:///{tmp_path}/shared.db"  # same study name in a database, different space: refused too
    open_study(tmp_path / "c", space, db)
    with pytest.raises(ConfigError, match="different search space"):
        open_study(tmp_path / "d", other, db)


def _vaelab(*args):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "vaelab", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, text=True)


def test_two_workers_share_a_study_one_killed_mid_trial_then_resume(tmp_path):
    raw = tiny(base={"train": {"epochs": 3, "batch_size": 64, "progress": False, "figures": False}},
               search={"population": 2, "trials": 4, "seed": 1})
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(raw))
    out = tmp_path / "s"
    a = _vaelab("search", space_file, "--worker", "--out", out)
    b = _vaelab("search", space_file, "--worker", "--out", out)
    space = load_space(space_file)
    deadline, killed = time.time() + 120, None
    while time.time() < deadline and killed is None:
        time.sleep(0.3)
        if not (out / "study.journal").exists():
            continue
        study, _ = open_study(out, space, create=False)
        for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
            if t.user_attrs.get("pid") == b.pid:
                b.send_signal(signal.SIGKILL)
                killed = t.number
                break
    b.wait(30)
    assert killed is not None, "worker b never started a trial"
    assert a.wait(240) == 0, a.stdout.read()
    study, _ = open_study(out, space, create=False)
    by_number = {t.number: t.state.name for t in study.get_trials()}
    assert by_number[killed] == "RUNNING"  # the dead worker's trial is left behind: at most that one is lost
    assert sum(s == "COMPLETE" for s in by_number.values()) == 3  # worker a finished the rest of the budget
    run_search(space_file, out=out)  # resume: marks the dead trial failed (stale) and runs its replacement
    trials = study.get_trials()
    stale = [t for t in trials if t.user_attrs.get("stale")]
    assert [t.number for t in stale] == [killed] and stale[0].state.name == "FAIL"
    assert "died" in stale[0].user_attrs["fail_reason"]
    assert sum(t.state.name == "COMPLETE" for t in trials) == 4 and len(trials) == 5
