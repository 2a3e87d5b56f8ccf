"""Training-loss units follow the run's likelihood, reduction and weights (not loss.recon's name): a fixed-variance
Gaussian trained without its constant says so, with its variance; weighted totals name their weights."""
from __future__ import annotations

from vaelab.core.config import load_config
from vaelab.model.likelihoods import LIKELIHOODS, likelihood_choice
from vaelab.training.runs import load_run
from vaelab.training.trainer import train
from vaelab.use.units import LossUnits, run_units, training_units, unit_of, with_unit


def _lik(name: str, **args):
    cls, opts = likelihood_choice(name, args, True)
    return cls(opts)


def test_units_follow_the_likelihood_and_reduction():
    assert training_units(_lik("bernoulli"), "sum") == LossUnits("nats/item", "nats/item", "nats/item")
    mse = training_units(_lik("gaussian", variance=0.5, normalised=False), "sum")
    assert mse.recon == mse.total == "summed squared error/item (Gaussian, variance 0.5, without its constant)"
    other = training_units(_lik("gaussian", variance=0.1, normalised=False), "sum").recon
    assert other == "nats/item less the Gaussian constant (Gaussian, variance 0.1, without its constant)"
    for name in LIKELIHOODS.names():  # every normalised likelihood trains on its true NLL: nats
        if name != "gaussian":
            assert training_units(_lik(name), "sum").recon == "nats/item", name
    assert training_units(_lik("gaussian", variance=0.1), "sum").recon == "nats/item"
    mean = training_units(_lik("bernoulli"), "mean")
    assert (mean.total, mean.recon, mean.kl) == ("mean per value", "nats/value (mean)", "nats/latent dim (mean)")


def test_weighted_totals_name_their_weights():
    u = training_units(_lik("gaussian", normalised=False), "sum", {"recon": 100.0, "kl": 3.0})
    assert u.total == "weighted: 100 x recon + 3 x kl; recon in " + u.recon
    assert unit_of("val_loss", training=u) == u.total and unit_of("training_loss", training=u) == u.total
    assert unit_of("val_recon", training=u) == u.recon and unit_of("train_kl", training=u) == "nats/item"
    assert with_unit("threads", 1) == "1 torch threads" and unit_of("rotation_error_deg") == "degrees"


def test_a_run_reports_the_likelihood_it_trained_with(tmp_path, tiny):
    cfg = load_config(tiny(loss={"recon": "mse", "alpha": 2.0}, train={"epochs": 1, "batch_size": 64, "progress": False,
                                                                       "figures": False}))
    u = run_units(load_run(train(cfg, tmp_path / "r")))
    assert u.recon.startswith("summed squared error/item (Gaussian, variance 0.5")
    assert u.total.startswith("weighted: 2 x recon + 1 x kl")
