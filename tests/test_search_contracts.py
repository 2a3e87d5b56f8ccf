"""Contract tests over every search registry (objectives, surrogates, pruners, samplers, template families;
corruptions are covered in test_ood_registry.py): each entry, present or added later, must pass them. Plus exact hypervolume and option checking."""
import itertools
import re
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from vaelab.core.config import load_config
from vaelab.core.errors import ConfigError
from vaelab.data import load_data
from vaelab.data.spec import DataSpec
from vaelab.model.build import build_model
from vaelab.search.families import FAMILIES
from vaelab.search.hypervolume import hypervolume
from vaelab.search.objectives import OBJECTIVES, TrialContext
from vaelab.search.pruning import PRUNERS, EpochPruner, make_pruner
from vaelab.search.sampler import SAMPLERS, make_sampler
from vaelab.search.space import distributions, load_space, suggest
from vaelab.search.surrogate import SURROGATES, Surrogate
from vaelab.training.runs import load_run
from vaelab.training.trainer import train

SPACE = {
    "name": "contract",
    "data": {"name": "digits", "val_fraction": 0.15, "test_fraction": 0.1},
    "genes": {"latent": {"type": "int", "low": 2, "high": 6}, "width": {"type": "choice", "choices": [8, 16, 32]},
              "lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
    "template": {"family": "mlp", "hidden": ["$width"], "latent": "$latent", "set": {"train.lr": "$lr"}},
    "base": {"train": {"epochs": 1, "batch_size": 128, "progress": False, "figures": False}},
    "objectives": [{"name": "neg_elbo"}, {"name": "params"}],
    "search": {"population": 2},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny trained model on digits: what every objective is evaluated on."""
    space = load_space(SPACE)
    bundle = load_data(space.data, 0)
    cfg = load_config(space.trial_config({"latent": 3, "width": 16, "lr": 0.003}, tuple(bundle.shape)))
    run_dir = train(cfg, tmp_path_factory.mktemp("run") / "r", bundle=bundle)
    run = load_run(run_dir)
    return TrialContext(run.model.eval(), cfg, bundle, run.history, seed=0)


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_every_objective_gives_a_finite_value_with_its_defaults(trained, name):
    entry = OBJECTIVES.entry(name)
    assert entry.meta["direction"] in ("minimize", "maximize") and entry.meta.get("doc")
    v = entry.obj(trained)
    assert isinstance(v, float) and np.isfinite(v)
    unit = entry.meta["unit"]  # every objective says what its number is in
    assert (unit(trained) if callable(unit) else unit)


@pytest.mark.parametrize("name", SURROGATES.names())
def test_every_surrogate_learns_a_smooth_function(name):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(40, 3))
    y = np.stack([x[:, 0] + 2 * x[:, 1], x[:, 2] ** 2], axis=1)
    sur = Surrogate(name, seed=0).fit(x, y)
    test = rng.uniform(0, 1, size=(20, 3))
    pred = sur.predict(test)
    truth = np.stack([test[:, 0] + 2 * test[:, 1], test[:, 2] ** 2], axis=1)
    assert pred.shape == (20, 2)
    for k in range(2):
        assert np.corrcoef(pred[:, k], truth[:, k])[0, 1] > 0.6


@pytest.mark.parametrize("name", SURROGATES.names())
def test_every_surrogate_spread_is_a_nonnegative_std_per_prediction(name):
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, size=(30, 2))
    sur = Surrogate(name, seed=0).fit(x, np.stack([x[:, 0], x[:, 0] * x[:, 1]], axis=1))
    near, far = x[:5], np.full((5, 2), 4.0)  # training points, and points far outside the data
    s_near, s_far = sur.spread(near), sur.spread(far)
    assert s_near.shape == s_far.shape == (5, 2) and (s_near >= 0).all() and np.isfinite(s_far).all()
    if name == "gaussian_process":  # a GP is surer where it has seen data
        assert (s_far.mean(axis=0) > s_near.mean(axis=0)).all()


@pytest.mark.parametrize("name", PRUNERS.names())
def test_every_pruner_builds_from_its_example_and_answers_per_epoch(name):
    pruner = make_pruner(name, PRUNERS.entry(name).meta["example"])
    if name == "none":
        assert pruner is None
        return
    finished = [optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, value=1.0 + i, params={},
                                          distributions={}, user_attrs={"val_curve": [3.0 + i, 2.0 + i, 1.0 + i]})
                for i in range(4)]
    check = EpochPruner(pruner, finished)
    answers = [check.step(epoch, 50.0) for epoch in (1, 2, 3)]
    assert all(isinstance(a, bool) for a in answers)


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_every_sampler_proposes_genes_inside_the_space(name):
    space = load_space({**SPACE, "search": {"population": 2, "sampler": name}})
    dists = distributions(space)
    study = optuna.create_study(directions=space.directions(), sampler=make_sampler(space))
    rng = np.random.default_rng(0)
    for _ in range(5):
        trial = study.ask()
        genes = suggest(trial, space)
        for gene, value in genes.items():
            assert dists[gene]._contains(dists[gene].to_internal_repr(value))
        study.tell(trial, [float(rng.uniform(1, 2)), float(rng.uniform(1, 2))])


@pytest.mark.parametrize("name", FAMILIES.names())
def test_every_family_gives_a_model_that_builds_and_refuses_one_that_cannot(name):
    template = {"family": name, "hidden": [32, 16], "channels": [4, 8, 8, 8, 8], "kernel": [3, 4, 4, 4, 4],
                "depth": "$depth", "latent": 3}
    space = load_space({**SPACE, "genes": {"depth": {"type": "int", "low": 1, "high": 5}}, "template": template})
    for depth in (1, 2):
        cfg = load_config(space.trial_config({"depth": depth}, (1, 28, 28)))
        model = build_model(cfg.model, DataSpec((1, 28, 28), value_range=(0.0, 1.0)))
        assert tuple(model.input_shape) == (1, 28, 28)
        assert model(torch.rand(2, 1, 28, 28)) is not None
    if name != "mlp":  # 28 -> 14 -> 7 -> 3 -> 1 -> 0 with kernel 4
        with pytest.raises(ConfigError, match="shrink"):
            space.trial_config({"depth": 5}, (1, 28, 28))


@pytest.mark.parametrize("field,value,needle", [
    ("search", {"sampler": "nsga"}, "Did you mean 'nsga2'"),
    ("search", {"pruner": {"name": "medain"}}, "Did you mean 'median'"),
    ("search", {"pruner": {"name": "median", "n_startup": 2}}, "search.pruner.n_startup"),
    ("template", {"family": "conv2"}, "Did you mean 'conv'"),
    ("objectives", [{"name": "neg_elbo"}, {"name": "ood", "samplez": 3}], r"objectives\[1\].samplez"),
    ("objectives", [{"name": "neg_elbo"}, {"name": "ood", "corruption": "blur"}], "unknown corruption 'blur'"),
    ("objectives", [{"name": "neg_elbo"}, {"name": "ood", "data": {"name": "mnits"}}], "Did you mean 'mnist'"),
    ("search", {"heartbeat_interval": 10, "grace_period": 5}, "grace_period"),
])
def test_bad_names_and_options_fail_when_the_file_loads(field, value, needle):
    with pytest.raises(ConfigError, match=needle):
        load_space({**SPACE, field: value})


def brute_force_hypervolume(points: np.ndarray, ref: np.ndarray) -> float:
    """Sum of the grid cells (from every point's coordinates) that some point dominates."""
    axes = [np.unique(np.append(points[:, k], ref[k])) for k in range(len(ref))]
    total = 0.0
    for cell in itertools.product(*[range(len(a) - 1) for a in axes]):
        lower = np.array([axes[k][i] for k, i in enumerate(cell)])
        if np.any(np.all(points <= lower, axis=1)):
            total += float(np.prod([axes[k][i + 1] - axes[k][i] for k, i in enumerate(cell)]))
    return total


@pytest.mark.parametrize("m", [2, 3, 4])
def test_hypervolume_is_exact(m):
    rng = np.random.default_rng(m)
    pts = rng.uniform(0, 1, size=(9, m))
    ref = np.full(m, 1.1)
    assert hypervolume(pts, ref) == pytest.approx(brute_force_hypervolume(pts, ref), rel=1e-12)
    assert hypervolume(np.vstack([pts, pts[:3]]), ref) == pytest.approx(hypervolume(pts, ref))  # duplicates add nothing


def test_search_uses_only_optunas_public_api():
    """The range in pyproject.toml (optuna>=4.0) holds only while no private Optuna name is used."""
    src = Path(__file__).resolve().parents[1] / "src" / "vaelab"
    bad = []
    for path in src.rglob("*.py"):
        text = path.read_text()
        bad += [f"{path.name}: {m}" for m in re.findall(r"optuna(?:\.\w+)*\._(?!_)\w+|from optuna[\w.]* import _\w+|\._trial_id|\._storage\b|\._study_id", text)]
    assert not bad, bad
