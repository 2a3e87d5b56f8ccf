"""The one training step the trainer, the memory probe and the compile warm-up share; the global state it
leaves alone; the renamed loss.beta."""
from __future__ import annotations

import copy
import warnings

import pytest
import torch

from vaelab.core.config import load_config
from vaelab.core.errors import ConfigError, DeprecatedKeyWarning
from vaelab.data.spec import DataSpec
from vaelab.model.build import build_model
from vaelab.training.distributed import DistContext, LocalContext
from vaelab.training.loss_setup import LossSetup
from vaelab.training.step import NonFiniteLoss, TrainStep

CPU = torch.device("cpu")


def _cfg(tiny, **train):
    return load_config(tiny(train={"lr": 0.1, "optimizer": {"name": "sgd"}, **train}))


def _model(cfg):
    """The tiny MLP VAE with a posterior so narrow (logvar -30) that its sampling noise is below 1e-6."""
    torch.manual_seed(0)
    model = build_model(cfg.model, DataSpec((1, 8, 8), value_range=(0.0, 1.0)))
    with torch.no_grad():
        for p in model.logvar_head.parameters():
            p.zero_()
        model.logvar_head[-1].bias.fill_(-30.0)
    return model


def _step(cfg, model, parallel=None):
    return TrainStep.from_config(cfg, model, LossSetup.from_config(cfg, model, (0.0, 1.0)), CPU, parallel=parallel)


def _batch():
    return torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def _same_weights(a, b, atol=1e-6) -> bool:
    return all(torch.allclose(p, q, atol=atol) for p, q in zip(a.parameters(), b.parameters()))


def test_two_accumulated_half_batches_equal_one_full_batch(tiny):
    x = _batch()
    full_cfg, accum_cfg = _cfg(tiny), _cfg(tiny, grad_accum=2)
    full, accum = _model(full_cfg), _model(accum_cfg)
    _step(full_cfg, full)(x, None, 1.0, apply=True)
    step = _step(accum_cfg, accum)
    step(x[:4], None, 1.0, apply=False)
    assert _same_weights(accum, _model(accum_cfg), atol=0)  # no optimizer step before the last micro-batch
    step(x[4:], None, 1.0, apply=True)
    assert _same_weights(full, accum)
    assert all(p.grad is None for p in accum.parameters())  # zeroed for the next step


def test_gradient_clipping_bounds_the_update(tiny):
    cfg = _cfg(tiny, grad_clip=1e-3, lr=1.0)
    model = _model(cfg)
    before = [p.detach().clone() for p in model.parameters()]
    _step(cfg, model)(_batch(), None, 1.0)
    moved = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    assert 0 < float(moved) <= 1e-3 * (1 + 1e-4)  # SGD with lr 1: the update is the clipped gradient


def test_non_finite_loss_is_raised_before_any_gradient(tiny):
    cfg = _cfg(tiny)
    model = _model(cfg)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteLoss, match="non-finite loss"):
        _step(cfg, model)(_batch(), None, 1.0)
    assert all(p.grad is None for p in model.parameters())


def test_ema_and_scheduler_advance_once_per_optimizer_step(tiny):
    cfg = _cfg(tiny, ema=0.5, grad_accum=2, scheduler={"name": "cyclic"})
    model = _model(cfg)
    step = _step(cfg, model)
    x = _batch()
    step(x[:4], None, 1.0, apply=False)
    assert step.scheduler.scheduler.last_epoch == 0 and int(step.average.averaged.n_averaged) == 0
    step(x[4:], None, 1.0, apply=True)
    assert step.scheduler.scheduler.last_epoch == 1 and int(step.average.averaged.n_averaged) == 1
    assert step.average.model is not model and step.state_dict()["ema"] is not None


def test_distributed_step_skips_the_all_reduce_until_the_last_micro_batch(tiny, tmp_path):
    """A one-process gloo group: DDP with no_sync on the first micro-batch matches the local step exactly."""
    import torch.distributed as dist

    cfg = _cfg(tiny, grad_accum=2)
    x = _batch()
    local = _model(cfg)
    step = _step(cfg, local, LocalContext())
    step(x[:4], None, 1.0, apply=False)
    step(x[4:], None, 1.0, apply=True)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp_model = _model(cfg)
        ddp = _step(cfg, ddp_model, DistContext(0, 1, 0, "gloo"))
        assert isinstance(ddp.forward_model, torch.nn.parallel.DistributedDataParallel)
        reduced = []

        def count_all_reduce(state, bucket):
            reduced.append(bucket.index())
            fut = torch.futures.Future()
            fut.set_result(bucket.buffer())  # one process: the average is the gradient itself
            return fut

        ddp.forward_model.register_comm_hook(None, count_all_reduce)
        ddp(x[:4], None, 1.0, apply=False)
        assert reduced == []  # inside no_sync: the gradient stays local
        ddp(x[4:], None, 1.0, apply=True)
        assert reduced  # the micro-batch that ends the step reduces the accumulated gradient
    finally:
        dist.destroy_process_group()
    assert _same_weights(local, ddp_model)


def test_compile_warm_up_leaves_weights_gradients_and_rng_alone(tiny):
    from vaelab.training.compile import warm_up

    cfg = _cfg(tiny)
    model = _model(cfg)
    state = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    seconds = warm_up(_step(cfg, model), _batch(), None)
    assert seconds > 0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(rng, torch.get_rng_state())


def test_train_leaves_the_callers_global_rng_alone(tmp_path, tiny):
    from vaelab.training.trainer import train

    torch.manual_seed(123)
    before = torch.get_rng_state()
    train(load_config(tiny()), tmp_path / "r")
    assert torch.equal(before, torch.get_rng_state())


def test_memory_probe_runs_the_trainers_step(tiny):
    from vaelab.training import memory

    cfg = load_config(tiny(train={"ema": 0.9, "grad_clip": 1.0, "grad_accum": 3}))
    spec = {"shape": [1, 8, 8], "value_range": [0.0, 1.0], "num_classes": None, "cond_dim": None}
    rng = torch.get_rng_state()
    run = memory.build_step(cfg, spec, CPU)
    model_rng = torch.get_rng_state()
    run(4, steps=2)  # every call a whole optimizer step, whatever train.grad_accum says
    assert torch.equal(rng, model_rng) and torch.equal(rng, torch.get_rng_state())  # the caller's RNG untouched


# ---------------------------------------------------------------------------------- loss.beta renamed
def test_loss_beta_still_works_and_names_its_new_key():
    with pytest.warns(DeprecatedKeyWarning, match=r"loss\.beta is deprecated: it is now loss\.ssim_weight"):
        cfg = load_config({"loss": {"beta": 0.3, "ssim": True}})
    assert cfg.loss.ssim_weight == 0.3 and "beta" not in cfg.to_dict()["loss"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_config({"loss": {"ssim_weight": 0.3}}).loss.ssim_weight == 0.3
    with pytest.raises(ConfigError, match=r"loss\.beta is the old name of loss\.ssim_weight: give only"):
        load_config({"loss": {"beta": 0.3, "ssim_weight": 0.2}})


def test_cli_shows_the_deprecation_once_as_one_line(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "c.yaml").write_text("data: {name: digits, limit: 100}\nloss: {beta: 0.5}\n"
                                     "model: {preset: mlp, preset_args: {hidden: 8, latent: 2}}\n")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.run([sys.executable, "-m", "vaelab", "check", str(tmp_path / "c.yaml")], capture_output=True,
                       text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if "loss.beta" in ln]
    assert lines == ["warning: loss.beta is deprecated: it is now loss.ssim_weight (same meaning); rename it in your config"]


def test_forward_defers_x_hat_to_its_first_read_in_the_grad_mode_of_the_forward(tiny):
    """A loss that reads only x_params (every likelihood NLL) skips the likelihood's mean; a read gives the same
    tensor as computing it at once, with the graph the forward's grad mode implies."""
    cfg = _cfg(tiny)
    model = _model(cfg)
    x = torch.rand(4, 1, 8, 8)
    torch.manual_seed(1)
    out = model(x)
    with torch.no_grad():  # read later under no_grad: still part of the forward's graph
        x_hat = out.x_hat
    assert x_hat.requires_grad and out.x_hat is x_hat
    assert torch.equal(x_hat, model.likelihood.mean(out.x_params))
    with torch.no_grad():
        out = model(x)
    assert not out.x_hat.requires_grad
    with torch.autocast("cpu", dtype=torch.bfloat16):  # under autocast x_hat is computed inside the autocast region
        out = model(x)
        expected = model.likelihood.mean(out.x_params)
    assert torch.equal(out.x_hat, expected)


def test_mse_reconstruction_skips_its_divide_by_one_bit_for_bit():
    """loss.recon mse is the Gaussian with variance 1/2 unnormalised: (tanh(h) - x)^2 / 1, value and gradient
    identical to the same with the division done."""
    from vaelab.model.likelihoods import Gaussian, GaussianOptions

    lik = Gaussian(GaussianOptions(variance=0.5, normalised=False), value_range=(-1.0, 1.0), activation="tanh")
    torch.manual_seed(0)
    h = torch.randn(3, 2, 5, 5, requires_grad=True)
    x = torch.rand(3, 2, 5, 5) * 2 - 1
    h2 = h.detach().clone().requires_grad_()
    got = lik.loss(h, x)
    want = torch.tanh(h2).sub(x).pow(2) / (2.0 * 0.5)
    got.sum().backward()
    want.sum().backward()
    assert torch.equal(got, want) and torch.equal(h.grad, h2.grad)
    wide = Gaussian(GaussianOptions(variance=2.0, normalised=False), value_range=(-1.0, 1.0), activation="tanh")
    assert torch.equal(wide.loss(h2, x), torch.tanh(h2).sub(x).pow(2) / 4.0)
