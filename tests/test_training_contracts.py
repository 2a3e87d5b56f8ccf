"""Contracts every registered training entry must keep: loss terms, reductions, KL schedules, optimizers,
learning-rate schedulers and precisions. A new entry is tested here without writing a test of its own."""
from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch

from vaelab.core.config import LossConfig, load_config
from vaelab.core.errors import ConfigError
from vaelab.core.vocab import KL_SCHEDULES, LOSS_TERMS, LR_SCHEDULERS, OPTIMIZERS, PRECISIONS, REDUCTIONS
from vaelab.model.distributions import DiagonalGaussian
from vaelab.training.losses import LossOptions, term_weights, weigh_terms
from vaelab.training.optim import make_optimizer, make_scheduler
from vaelab.training.precision import get_precision
from vaelab.training.schedules import make_schedule

CPU = torch.device("cpu")


def _output(requires_grad: bool = False):
    """A batch of 3 images (1, 16, 16) in [0, 1] with decoder logits and a (3, 4) posterior (16 px: LPIPS's least)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 16, 16, generator=g)
    logits = torch.randn(3, 1, 16, 16, generator=g).requires_grad_(requires_grad)
    mean = torch.randn(3, 4, generator=g).requires_grad_(requires_grad)
    logvar = (0.1 * torch.randn(3, 4, generator=g)).requires_grad_(requires_grad)
    out = SimpleNamespace(x_logits=logits, x_hat=torch.sigmoid(logits), posterior=DiagonalGaussian(mean, logvar))
    return out, x, (logits, mean, logvar)


def _options(name: str) -> LossOptions:
    """The options a term needs; a stateful term gets its state (the adversarial term a small discriminator)."""
    if name == "adversarial":
        from vaelab.core.config import AdversarialConfig
        from vaelab.training.adversarial import Critic

        torch.manual_seed(0)
        critic = Critic(AdversarialConfig(adaptive=False, layers=1, channels=4), 1, None, None, 1e-3, CPU)
        return LossOptions(critic=critic)
    if name == "perceptual":  # random weights under the real files' key names (nothing may download)
        from vaelab.training.perceptual import LPIPS, vgg16_features

        torch.manual_seed(0)
        backbone = vgg16_features().state_dict()
        linear = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 128, 256, 512, 512))}
        return LossOptions(perceptual=LPIPS(backbone, linear, (0, 1)))
    return LossOptions()


# ------------------------------------------------------------------------------------------- loss terms
@pytest.mark.parametrize("name", LOSS_TERMS.names())
def test_loss_term_is_per_sample_float32_and_differentiable(name):
    term = LOSS_TERMS.get(name)
    out, x, leaves = _output(requires_grad=True)
    value = term.value(out, x, _options(name))
    assert value.shape == (3,) and value.dtype == torch.float32 and torch.isfinite(value).all()
    value.sum().backward()
    assert any(t.grad is not None and t.grad.abs().sum() > 0 for t in leaves), f"{name} passes no gradient back"
    with torch.no_grad():  # the same value from bf16 network outputs (autocast), still in float32
        low = SimpleNamespace(x_logits=out.x_logits.bfloat16(), x_hat=out.x_hat.bfloat16(),
                              posterior=DiagonalGaussian(out.posterior.mean.bfloat16(), out.posterior.logvar.bfloat16()))
        assert term.value(low, x, _options(name)).dtype == torch.float32


@pytest.mark.parametrize("name", LOSS_TERMS.names())
def test_loss_term_weight_adds_weight_times_penalty(name):
    term = LOSS_TERMS.get(name)
    out, x, _ = _output()
    res = weigh_terms(out, x, {name: 0.7}, _options(name), kl_scale=0.5)
    coef = 0.7 * (0.5 if term.scheduled else 1.0)
    value = term.value(out, x, _options(name))
    torch.testing.assert_close(res.total, coef * term.penalty(value.mean()))
    torch.testing.assert_close(res.per_sample.mean(), res.total)
    torch.testing.assert_close(getattr(res, name), value.mean())  # what the logs report under the term's name
    assert set(res.to_floats()) == {"total", name}


@pytest.mark.parametrize("name", LOSS_TERMS.names())
def test_loss_term_weight_is_read_from_its_config_key(name):
    term = LOSS_TERMS.get(name)
    default = term.weight(LossConfig())
    assert default is None or default >= 0
    assert (name in term_weights(LossConfig())) == (default is not None)
    if term.key is None:  # weighted through loss.extra_terms
        assert term.weight(LossConfig(extra_terms={name: 0.25})) == 0.25
    else:
        section, field = term.key.split(".")
        assert section == "loss" and field in LossConfig.model_fields


def test_a_new_term_is_one_registered_function(monkeypatch, tmp_path, tiny):
    """Registering a term is all it takes: loss.extra_terms weighs it, the loss adds it, the trainer logs it."""
    from vaelab.core.registry import Registry
    from vaelab.training.losses import loss_term
    from vaelab.training.runs import read_metrics
    from vaelab.training.trainer import train

    monkeypatch.setattr(LOSS_TERMS, "_entries", dict(LOSS_TERMS._entries))  # the registration ends with the test
    assert isinstance(LOSS_TERMS, Registry)

    @loss_term("mean_logvar", doc="mean posterior log-variance (a test term)")
    def _mean_logvar(out, x, options):
        return out.posterior.logvar.float().mean(dim=1)

    cfg = load_config(tiny(loss={"extra_terms": {"mean_logvar": 0.5}}))
    assert term_weights(cfg.loss) == {"recon": 1.0, "kl": 1.0, "mean_logvar": 0.5}
    out, x, _ = _output()
    res = weigh_terms(out, x, term_weights(cfg.loss), LossOptions())
    torch.testing.assert_close(res.total, res.recon + res.kl + 0.5 * out.posterior.logvar.mean())
    row = read_metrics(train(cfg, tmp_path / "r"))[-1]
    assert math.isfinite(row["train_mean_logvar"])
    with pytest.raises(ConfigError, match=r"loss\.extra_terms.*'mean_logvr'.*mean_logvar"):
        load_config(tiny(loss={"extra_terms": {"mean_logvr": 1.0}}))


def test_terms_with_their_own_key_are_refused_in_extra_terms():
    with pytest.raises(ConfigError, match=r"loss\.extra_terms: the 'ssim' term is weighted by loss\.ssim_weight"):
        load_config({"loss": {"extra_terms": {"ssim": 1.0}}})


# ------------------------------------------------------------------------------------------- reductions
@pytest.mark.parametrize("name", REDUCTIONS.names())
def test_reduction_maps_batch_rows_to_one_number_each(name):
    reduce = REDUCTIONS.get(name)
    t = torch.arange(12, dtype=torch.float32).view(3, 4)
    r = reduce(t)
    assert r.shape == (3,)
    assert torch.equal(reduce(torch.ones(3, 4) * 2), 2 * reduce(torch.ones(3, 4)))  # linear in the values
    assert load_config({"loss": {"reduction": name}}).loss.reduction == name


def test_unknown_reduction_names_the_field_and_the_close_one():
    with pytest.raises(ConfigError, match=r"loss\.reduction: unknown reduction 'sun'\. Did you mean 'sum'"):
        load_config({"loss": {"reduction": "sun"}})


# ---------------------------------------------------------------------------------------- KL schedules
@pytest.mark.parametrize("kind", KL_SCHEDULES.names())
def test_kl_schedule_is_a_pure_bounded_function_of_the_step(kind):
    schedule = make_schedule(kind)
    total = 40
    values = [schedule(step, total) for step in range(total + 10)]
    assert all(math.isfinite(v) and v >= 0 for v in values)
    assert values == [schedule(step, total) for step in range(total + 10)]  # no hidden state
    assert len(set(values[total - 1:])) == 1  # past the end it holds its last value
    assert load_config({"loss": {"kl_schedule": {"kind": kind}}}).loss.kl_schedule.kind == kind


# ------------------------------------------------------------------------------ optimizers, LR schedulers
def _quadratic_model():
    torch.manual_seed(0)
    return torch.nn.Linear(3, 1)


def _loss(model) -> torch.Tensor:
    return model(torch.ones(4, 3)).pow(2).mean()


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_optimizer_lowers_a_quadratic_and_round_trips_its_state(name):
    model = _quadratic_model()
    opt = make_optimizer(name, model.parameters(), lr=0.01)
    first = float(_loss(model).detach())
    for _ in range(20):
        opt.zero_grad()
        _loss(model).backward()
        opt.step()
    assert float(_loss(model).detach()) < first
    twin = _quadratic_model()
    twin.load_state_dict(model.state_dict())
    twin_opt = make_optimizer(name, twin.parameters(), lr=0.01)
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # state_dict() shares the tensors
    for m, o in ((model, opt), (twin, twin_opt)):
        o.zero_grad()
        _loss(m).backward()
        o.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters()))
    assert load_config({"train": {"optimizer": {"name": name}}}).train.optimizer.name == name


@pytest.mark.parametrize("name", LR_SCHEDULERS.names())
def test_lr_scheduler_keeps_a_positive_rate_and_round_trips(name):
    def run(stepper, opt, model, epochs):
        lrs = []
        for _ in range(epochs):
            for _ in range(3):
                opt.zero_grad()
                _loss(model).backward()
                opt.step()
                stepper.step_batch()
            stepper.step_epoch(1.0)
            lrs += stepper.lrs()
        return lrs

    model = _quadratic_model()
    opt = make_optimizer("sgd", model.parameters(), lr=0.1)
    stepper = make_scheduler(name, opt, {}, epochs=6, steps_per_epoch=3)
    lrs = run(stepper, opt, model, 3)
    assert all(math.isfinite(lr) and lr > 0 for lr in lrs)
    twin = _quadratic_model()
    twin.load_state_dict(model.state_dict())
    twin_opt = make_optimizer("sgd", twin.parameters(), lr=0.1)
    twin_stepper = make_scheduler(name, twin_opt, {}, epochs=6, steps_per_epoch=3)  # built first, as on resume
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    twin_stepper.load_state_dict(copy.deepcopy(stepper.state_dict()))
    assert run(twin_stepper, twin_opt, twin, 2) == pytest.approx(run(stepper, opt, model, 2))
    assert load_config({"train": {"scheduler": {"name": name}}}).train.scheduler.name == name


# ------------------------------------------------------------------------------------------- precisions
@pytest.mark.parametrize("name", PRECISIONS.names())
def test_precision_trains_a_step_on_cpu_or_refuses_with_the_fix(name):
    from vaelab.data.spec import DataSpec
    from vaelab.model.build import build_model
    from vaelab.training.loss_setup import LossSetup
    from vaelab.training.step import TrainStep

    precision = PRECISIONS.get(name)
    cfg = load_config({"model": {"preset": "mlp", "preset_args": {"hidden": 16, "latent": 2}},
                       "train": {"precision": name, "lr": 0.01}})
    assert precision.scaler(CPU).is_enabled() == precision.scaled
    if precision.cuda_only:
        with pytest.raises(ConfigError, match=rf"train\.precision: {name} needs a CUDA device.*use bf16 on CPU"):
            get_precision(name, CPU)
        return
    torch.manual_seed(0)
    model = build_model(cfg.model, DataSpec((1, 8, 8), value_range=(0.0, 1.0)))
    step = TrainStep.from_config(cfg, model, LossSetup.from_config(cfg, model, (0.0, 1.0)), CPU)
    before = [p.detach().clone() for p in model.parameters()]
    terms = step(torch.rand(4, 1, 8, 8), None, 1.0)
    assert terms.total.dtype == torch.float32 and torch.isfinite(terms.total)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert step.state_dict()["scaler"] is None  # nothing to store for an unscaled precision
    with precision.autocast(CPU):
        y = torch.nn.Linear(2, 2)(torch.ones(1, 2))
    assert y.dtype == (precision.dtype or torch.float32)
