"""The adversarial loss term: PatchGAN, hinge / non-saturating, adaptive weight, start step, exact resume."""
from __future__ import annotations

import pytest
import torch

from vaelab.core.checkpoint import load_checkpoint
from vaelab.core.config import load_config
from vaelab.core.errors import ConfigError
from vaelab.core.vocab import ADVERSARIAL_LOSSES
from vaelab.training.adversarial import PatchDiscriminator
from vaelab.training.runs import read_metrics
from vaelab.training.trainer import train


def test_patchgan_gives_one_logit_per_patch():
    d = PatchDiscriminator(3, 8, 3)
    assert d(torch.rand(2, 3, 32, 32)).shape == (2, 1, 2, 2)
    assert d(torch.rand(2, 3, 64, 64)).shape == (2, 1, 6, 6)


def test_losses_on_known_logits():
    ones = torch.ones(2, 1, 3, 3)
    hinge, ns = ADVERSARIAL_LOSSES.get("hinge"), ADVERSARIAL_LOSSES.get("non_saturating")
    assert float(hinge.discriminator(ones, -ones)) == 0.0  # both sides past the margin
    assert float(hinge.discriminator(-ones, ones)) == pytest.approx(2.0)
    assert torch.allclose(hinge.generator(2 * ones), torch.full((2,), -2.0))
    assert float(ns.discriminator(ones * 50, -ones * 50)) == pytest.approx(0.0, abs=1e-6)
    assert torch.allclose(ns.generator(torch.zeros(2, 1, 3, 3)), torch.full((2,), float(torch.log(torch.tensor(2.0)))))


def _cfg(shapes, **adv):
    return load_config({
        "seed": 1, "data": {"name": "image_folder", "path": str(shapes), "options": {"size": 16, "scale": "pm1"}},
        "model": {"preset": "seed001-sd", "preset_args": {"base": 8, "downsample": 4}},
        "loss": {"recon": "mse", "reduction": "mean", "alpha": 10.0, "kl_weight": 0.001,
                 "adversarial": {"weight": 0.5, "start_step": 2, "channels": 8, "layers": 2, **adv}},
        "train": {"epochs": 3, "batch_size": 4, "progress": False, "figures": False, "threads": 1}})


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from use_runs import make_shapes_folder

    return make_shapes_folder(tmp_path_factory.mktemp("adv") / "shapes", n=12)


def test_term_starts_at_start_step_and_the_discriminator_trains(shapes, tmp_path):
    cfg = _cfg(shapes, start_step=3)  # 3 optimizer steps per epoch (10 training images, batch 4)
    run = train(cfg, tmp_path / "r")
    rows = read_metrics(run)
    assert rows[0]["step"] == 3 and rows[0]["train_adversarial"] == 0.0  # steps 0-2: off
    assert rows[1]["train_adversarial"] != 0.0
    state = load_checkpoint(run)["loss_state"]["adversarial"]
    assert state["steps"] == rows[-1]["step"] and state["weight"] > 0 and state["d_loss"] == state["d_loss"]  # not nan
    torch.manual_seed(0)
    fresh = PatchDiscriminator(3, 8, 2).state_dict()
    assert any(not torch.equal(fresh[k], v) for k, v in state["net"].items() if k.endswith("weight"))


def test_adaptive_weight_is_the_gradient_norm_ratio(shapes):
    from vaelab.data import load_data
    from vaelab.model.build import build_model
    from vaelab.training.loss_setup import LossSetup

    cfg = _cfg(shapes, start_step=0)
    bundle = load_data(cfg.data, cfg.seed)
    model = build_model(cfg.model, bundle.spec)
    setup = LossSetup.from_config(cfg, model, bundle.value_range)
    critic = setup.options.critic
    x, _ = bundle.train.take(4)
    out = model(x)
    terms = setup(out, x, 1.0)
    last = critic.last_layer
    g_nll = torch.autograd.grad(10.0 * (out.x_hat - x).pow(2).flatten(1).mean(1).mean(), last, retain_graph=True)[0]
    g_adv = torch.autograd.grad(critic.loss.generator(critic.net(out.x_hat)).mean(), last, retain_graph=True)[0]
    assert critic.weight == pytest.approx(float(g_nll.norm() / (g_adv.norm() + 1e-4)), rel=1e-4)
    with torch.no_grad():
        want = critic.weight * float(critic.loss.generator(critic.net(out.x_hat)).mean())
    assert float(terms.adversarial.detach()) == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize("loss", ["hinge", "non_saturating"])
def test_resume_continues_exactly(shapes, tmp_path, loss):
    cfg = _cfg(shapes, loss=loss)
    full = train(cfg, tmp_path / "full")

    def stop(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "part", on_epoch=stop)
    resumed = train(resume=tmp_path / "part")
    a, b = read_metrics(full), read_metrics(resumed)
    for key in ("train_loss", "train_adversarial", "val_loss"):
        assert [r[key] for r in a] == pytest.approx([r[key] for r in b], rel=1e-6)
    da, db = (load_checkpoint(p)["loss_state"]["adversarial"]["net"] for p in (full, resumed))
    assert all(torch.allclose(da[k].float(), db[k].float(), atol=1e-6) for k in da)


def test_bad_adversarial_configs(tiny):
    with pytest.raises(ConfigError, match="hinge"):
        load_config(tiny(loss={"adversarial": {"loss": "hing"}}))
    with pytest.raises(ConfigError, match="3 layers need images of at least 24 px, these are 8 px: use layers: 1"):
        train(load_config(tiny(loss={"adversarial": {}})))
    from vaelab.core.vocab import LOSS_TERMS

    assert "needs 2-D images" in LOSS_TERMS.get("adversarial").check((5,))
