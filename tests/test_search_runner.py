"""Search runs end to end on digits with tiny training: surrogate, report, bad input, shared journal, killed worker,
re-runs that continue the random stream, identical genes never trained twice, exact budget."""
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
from vaelab.search.report import pareto_lines, search_report
from vaelab.search.runner import open_study, run_search
from vaelab.search.space import load_space
from vaelab.search.trials import KEY_ATTR, genes_key, outcome
from vaelab.training.runs import load_run

SRC = Path(__file__).resolve().parents[1] / "src"
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


def outcomes(study):
    return [outcome(t) for t in study.get_trials()]


def test_surrogate_search_then_report(tmp_path):
    res = run_search(load_space(tiny()), out=tmp_path / "s")
    assert res.counts == {"trained": 8}
    space = load_space(tmp_path / "s" / "search.yaml")
    study, _ = open_study(tmp_path / "s", space, create=False)
    assert study.metric_names == ["loss", "OOD"]  # optuna-dashboard shows these names
    later = [t for t in study.get_trials() if t.number >= 4]
    assert all(set(t.user_attrs["predicted"]) == {"loss", "OOD"} for t in later)  # generation 1 was pre-screened
    assert len({genes_key(t.params) for t in study.get_trials()}) == 8  # distinct children, not seen before
    t0 = study.get_trials()[0]
    run = load_run(tmp_path / "s" / t0.user_attrs["run_dir"])  # every trial is an ordinary run folder
    assert run.config.model.encoder[1] == f"Linear_64_{t0.params['mid_layer']}"
    assert 0.0 <= t0.values[1] <= 1.0 and t0.values[0] > 0
    rep = search_report(tmp_path / "s")
    assert "loss" in pareto_lines(rep)[0] and "(nats/item)" in pareto_lines(rep)[0]  # values with their units
    assert "(1 - AUROC (0..1) of NLLs in nats/item under bernoulli)" in pareto_lines(rep)[0]
    header = rep.trials_csv.read_text().splitlines()[0].split(",")
    assert header[:5] == ["latent_dim", "mid_layer", "loss", "OOD", "predicted"]
    rows = rep.trials_csv.read_text().splitlines()[1:]
    assert [r.split(",")[4] for r in rows] == ["0"] * 4 + ["1"] * 4
    assert len(rep.hypervolume) == 2 and rep.hypervolume[1] >= rep.hypervolume[0] > 0
    assert rep.pareto and all("Linear_" in " ".join(p["layers"]["encoder"]) for p in rep.pareto)
    assert rep.quality and rep.quality[0]["generation"] == 1 and "tau_loss" in rep.quality[0]
    assert all(p.stat().st_size > 1000 for p in rep.figures)


def test_objectives_that_need_no_training_are_measured_not_predicted(tmp_path):
    space = load_space(tiny(objectives=[{"name": "neg_elbo"}, {"name": "params"}], search={"population": 2, "trials": 4}))
    run_search(space, out=tmp_path / "s")
    study, _ = open_study(tmp_path / "s", space, create=False)
    screened = [t for t in study.get_trials() if t.user_attrs.get("predicted")]
    assert screened and all(t.user_attrs["predicted"]["params"] == t.values[1] for t in screened)
    # each trained trial records which likelihood and weighting its loss objective is in
    units = [t.user_attrs["objective_units"] for t in study.get_trials() if t.user_attrs.get("outcome") == "trained"]
    assert units and all(u == {"loss": "nats/item", "params": "parameters"} for u in units)


def test_invalid_genes_are_pruned_before_training_and_nan_fails_with_reason(tmp_path):
    raw = tiny(genes={"depth": {"type": "choice", "choices": [1, 4]}, "lr": {"type": "choice", "choices": [0.003, 1.0e30]}},
               template={"family": "conv", "channels": [4, 4, 4, 4], "depth": "$depth", "latent": 3, "set": {"train.lr": "$lr"}},
               search={"population": 2, "trials": 2, "sampler": "random"})
    space = load_space(raw)
    study, _ = open_study(tmp_path / "s", space)
    for params in ({"depth": 4, "lr": 0.003}, {"depth": 1, "lr": 1.0e30}, {"depth": 1, "lr": 0.003}):
        study.enqueue_trial(params)
    run_search(space, out=tmp_path / "s")
    t = study.get_trials()
    assert outcomes(study)[:3] == ["invalid", "failed", "trained"]
    assert t[0].state.name == "PRUNED" and "shrink" in t[0].user_attrs["fail_reason"]  # 8 -> 4 -> 2 -> 1 -> 0
    assert "run_dir" not in t[0].user_attrs and not (tmp_path / "s" / "trials" / "trial-0000").exists()
    assert "non-finite" in t[1].user_attrs["fail_reason"]
    assert len(t) == 3  # the budget counts trainings: the invalid trial took none


def test_pruner_stops_hopeless_trials(tmp_path):
    raw = tiny(search={"population": 2, "trials": 2, "pruner": {"name": "threshold", "upper": 1.0}},
               base={"train": {"epochs": 3, "batch_size": 128, "progress": False, "figures": False}})
    res = run_search(load_space(raw), out=tmp_path / "s")
    assert res.counts == {"pruned": 2}
    study, _ = open_study(tmp_path / "s", load_space(raw), create=False)
    assert all(len(t.user_attrs["val_curve"]) == 1 for t in study.get_trials())


def test_identical_genes_reuse_the_finished_result(tmp_path):
    space = load_space(tiny(search={"population": 2, "trials": 2, "sampler": "random"}))
    study, _ = open_study(tmp_path / "s", space)
    for params in ({"latent_dim": 4, "mid_layer": 20}, {"latent_dim": 4, "mid_layer": 20}):
        study.enqueue_trial(params)
    run_search(space, out=tmp_path / "s")
    t = study.get_trials()
    assert outcomes(study)[:2] == ["trained", "reused"]
    assert t[1].user_attrs["reused_from"] == 0 and t[1].values == t[0].values and "run_dir" not in t[1].user_attrs
    assert sum(o == "trained" for o in outcomes(study)) == 2  # the reused trial took no training
    assert len(search_report(tmp_path / "s").pareto) == len({genes_key(p["genes"]) for p in search_report(tmp_path / "s").pareto})


def test_genes_the_family_ignores_do_not_make_a_new_model(tmp_path):
    space = load_space(tiny(genes={"family": {"type": "choice", "choices": ["mlp", "conv"]},
                                   "width": {"type": "choice", "choices": [16, 32]}},
                            template={"family": "$family", "hidden": ["$width"], "channels": [4], "latent": 3},
                            search={"population": 2, "trials": 2, "sampler": "random"}))
    study, _ = open_study(tmp_path / "s", space)
    for width in (16, 32):  # the conv family has no `hidden`: both are the same model
        study.enqueue_trial({"family": "conv", "width": width})
    run_search(space, out=tmp_path / "s")
    assert outcomes(study)[:2] == ["trained", "reused"]


@pytest.mark.parametrize("sampler", ["random", "nsga2"])
def test_a_rerun_continues_the_random_stream(tmp_path, sampler):
    """A search stopped (or killed) after 3 trials and run again draws new genes, not the first run's again."""
    space = load_space(tiny(search={"population": 4, "trials": 6, "sampler": sampler, "seed": 5}))
    run_search(space, out=tmp_path / "s", trials=3)
    run_search(space, out=tmp_path / "s", trials=6)
    study, _ = open_study(tmp_path / "s", space, create=False)
    assert outcomes(study) == ["trained"] * 6
    fresh = tmp_path / "fresh"
    run_search(space, out=fresh, trials=3)
    first, _ = open_study(fresh, space, create=False)
    assert [t.params for t in first.get_trials()] == [t.params for t in study.get_trials()[:3]]  # seeded: reproducible
    assert len({genes_key(t.params) for t in study.get_trials()}) == 6


def test_bad_storage_foreign_folder_and_redirects_are_refused(tmp_path):
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
    # the folder's storage.txt is a note, never a redirect: without --storage the folder is refused, naming the URL
    with pytest.raises(ConfigError, match=r"sqlite:///.*shared\.db.*--storage"):
        open_study(tmp_path / "c", space)
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "study.journal").symlink_to(tmp_path / "elsewhere.journal")
    with pytest.raises(ConfigError, match="symbolic link"):
        open_study(tmp_path / "e", space)
    assert not (tmp_path / "elsewhere.journal").exists()


@pytest.mark.parametrize("name", ["../x", "/abs/x", "a/b", "..", ".hidden", ""])
def test_search_names_are_plain(name):
    with pytest.raises(ConfigError, match="not a plain name"):
        load_space(tiny(name=name))


def test_optuna_log_level_is_left_as_the_caller_set_it(tmp_path):
    before = optuna.logging.get_verbosity()
    try:
        optuna.logging.set_verbosity(optuna.logging.DEBUG)
        run_search(load_space(tiny(search={"population": 2, "trials": 1, "pruner": {"name": "median"}})), out=tmp_path / "s")
        assert optuna.logging.get_verbosity() == optuna.logging.DEBUG
    finally:
        optuna.logging.set_verbosity(before)


def vaelab(*args, **env):
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)  # this checkout's vaelab first
    full = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **env}
    return subprocess.Popen([sys.executable, "-m", "vaelab", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=full, text=True)


def wait_for_running(out: Path, space, pid: int, timeout: float = 120) -> int | None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        time.sleep(0.3)
        if not (out / "study.journal").exists():
            continue
        try:
            study, _ = open_study(out, space, create=False)
        except ConfigError:  # the journal file exists a moment before the study's record is in it
            continue
        for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
            # all genes drawn (the key is set after the last one), not killed half-way through suggesting
            if t.user_attrs.get("pid") == pid and KEY_ATTR in t.user_attrs:
                return t.number
    return None


def test_two_workers_on_a_journal_one_killed_mid_trial(tmp_path):
    raw = tiny(base={"train": {"epochs": 3, "batch_size": 64, "progress": False, "figures": False}},
               search={"population": 2, "trials": 4, "seed": 1})
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(raw))
    out = tmp_path / "s"
    a = vaelab("search", space_file, "--worker", "--out", out)
    b = vaelab("search", space_file, "--worker", "--out", out)
    space = load_space(space_file)
    killed = wait_for_running(out, space, b.pid)
    b.send_signal(signal.SIGKILL)
    b.wait(30)
    assert killed is not None, "worker b never started a trial"
    assert a.wait(240) == 0, a.stdout.read()
    study, _ = open_study(out, space, create=False)
    trials = study.get_trials()
    dead = trials[killed]
    assert outcome(dead) == "stale" and "died" in dead.user_attrs["fail_reason"]  # worker a saw b's pid gone
    retry = [t for t in trials if t.user_attrs.get("retry_of") == killed]
    assert len(retry) == 1 and retry[0].params == dead.params  # its genes were run again
    assert sum(o == "trained" for o in outcomes(study)) == 4  # exactly the budget, nothing lost
    assert len({genes_key(t.params) for t in trials if outcome(t) == "trained"}) == 4


def test_a_sampler_stuck_on_genes_that_give_no_model_gets_a_random_trial(tmp_path):
    raw = tiny(genes={"depth": {"type": "choice", "choices": [1, 4]}, "width": {"type": "choice", "choices": [4, 8]}},
               template={"family": "conv", "channels": ["$width"] * 4, "depth": "$depth", "latent": 3},
               search={"population": 2, "trials": 1, "sampler": "random", "seed": 0})
    space = load_space(raw)
    study, _ = open_study(tmp_path / "s", space)
    for width in (4, 8, 4):  # what GPSampler does when invalid trials teach it nothing: the same region again
        study.enqueue_trial({"depth": 4, "width": width})
    run_search(space, out=tmp_path / "s")
    t = study.get_trials()
    assert outcomes(study)[:3] == ["invalid", "invalid", "invalid"]
    assert not any("drawn_after_idle" in x.user_attrs for x in t[:3])
    assert t[3].user_attrs.get("drawn_after_idle") == 3  # enqueued after 3 proposals that trained nothing
