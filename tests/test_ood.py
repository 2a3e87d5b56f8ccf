"""OOD scores: batched likelihood regret == the one-at-a-time loop, complexity, metrics, the `ood` and `report`
commands (the report rendered in headless Chromium when it is installed)."""
from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from use_runs import SHARED, family_configs, train_family
from vaelab.model.vae import VAE
from vaelab.use.ood_scores import auprc, auroc, fpr_at_tpr, nll_scores
from vaelab.use.complexity import complexity_bits
from vaelab.use.regret import regret_scores, regret_scores_loop
from vaelab.use.regret_linear import input_linear_index

REGRET_TOL = 2e-3  # nats: float32 rounding of vmap's batched matmuls vs the per-input ones, over the Adam steps


def small_mlp(cond: int = 0) -> VAE:
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(16 + cond, 32), nn.Tanh())
    heads = (nn.Linear(32, 3), nn.Linear(32, 3))
    dec = nn.Sequential(nn.Linear(3 + cond, 32), nn.ReLU(), nn.Linear(32, 16), nn.Unflatten(1, (1, 4, 4)))
    return VAE(enc, dec, heads=heads, latent_shape=(3,), input_shape=(1, 4, 4),
               condition_kind="label" if cond else None, condition_width=cond or None, condition_after=1).eval()


@pytest.mark.parametrize("factored", [True, False])
@pytest.mark.parametrize("cond", [0, 3])
@pytest.mark.parametrize("k", [1, 4])
def test_batched_regret_equals_the_one_at_a_time_loop(cond, k, factored):
    model = small_mlp(cond)
    x = torch.rand(12, 1, 4, 4).round()
    y = torch.arange(12) % 3 if cond else None
    kw = dict(steps=6, lr=5e-3, k=k, weight_decay=0.0)  # the factored path is exact without decay
    assert input_linear_index(model) == 1  # the factored path applies to this encoder
    batched = regret_scores(model, x, y, batch_size=5, factored=factored, generator=torch.Generator().manual_seed(1), **kw)
    loop = regret_scores_loop(model, x, y, generator=torch.Generator().manual_seed(1), **kw)
    assert batched.abs().max() > 0.01  # the fine-tuning really changes the NLL
    torch.testing.assert_close(batched, loop, atol=REGRET_TOL, rtol=0)
    # the model itself is untouched
    torch.testing.assert_close(nll_scores(model, x, y, generator=torch.Generator().manual_seed(0)),
                               nll_scores(small_mlp(cond), x, y, generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("preset,shape,args", [("seed003-conv", (1, 28, 28), {}),
                                               ("seed004-attention", (5,), {"dim": 8, "heads": 2, "ff": 16, "latent": 4})])
def test_batched_regret_on_conv_and_attention_encoders(preset, shape, args):
    from vaelab.model.build import build_model
    from vaelab.core.config import ModelConfig

    torch.manual_seed(0)
    model = build_model(ModelConfig(preset=preset, preset_args=args), shape).eval()
    assert input_linear_index(model) is None  # the generic vmap path
    x = torch.rand(4, *shape)
    a = regret_scores(model, x, steps=3, k=2, generator=torch.Generator().manual_seed(0))
    b = regret_scores_loop(model, x, steps=3, k=2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b, atol=REGRET_TOL * 10, rtol=1e-4)  # 784-pixel sums: larger absolute rounding
    assert torch.backends.mha.get_fastpath_enabled()  # restored


def small_dcgan() -> VAE:
    """The recipe's DCGAN-style VAE in miniature: conv + eval-mode BatchNorm encoder, conv heads with one output
    position (the outer-product gradient of the patches kernel), a 256-way categorical decoder on 8-bit data."""
    from vaelab.core.config import ModelConfig
    from vaelab.data.spec import DataSpec
    from vaelab.model.build import build_model

    torch.manual_seed(0)
    cfg = ModelConfig(encoder=["C2d_1_4_4_2_1", "BN2d_4", "ReLU"],
                      heads={"mu": ["C2d_4_3_4_1_0", "Flatten"], "logvar": ["C2d_4_3_4_1_0", "Flatten"]},
                      decoder=["Unflatten_3_1_1", "CT2d_3_4_4_1_0", "BN2d_4", "ReLU", "CT2d_4_256_4_2_1"],
                      likelihood="categorical256")
    model = build_model(cfg, DataSpec((1, 8, 8), bits=8)).eval()
    for m in model.modules():  # running statistics away from (0, 1), so eval-mode BatchNorm is not the identity
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model


def test_batched_regret_equals_the_loop_on_a_dcgan_style_conv_encoder():
    model = small_dcgan()
    x = torch.randint(0, 256, (6, 1, 8, 8), generator=torch.Generator().manual_seed(0)).float() / 255
    kw = dict(steps=5, lr=1e-2, k=3, weight_decay=5e-5)
    a = regret_scores(model, x, batch_size=4, generator=torch.Generator().manual_seed(0), **kw)
    b = regret_scores_loop(model, x, generator=torch.Generator().manual_seed(0), **kw)
    assert a.abs().max() > 0.1  # the re-fit really moves the NLL
    torch.testing.assert_close(a, b, atol=REGRET_TOL * 10, rtol=1e-4)


def test_regret_items_made_worse_are_counted_not_averaged_away():
    from vaelab.use.ood import regret_lines
    from vaelab.use.ood_scores import regret_summary

    s = regret_summary(torch.tensor([3.0, -1.0, 5.0, -3.0]))  # mean +1: an average alone would hide two worse items
    assert (s["n"], s["n_worse"], s["share_worse"], s["mean_worse_nats"], s["mean_nats"]) == (4, 2, 0.5, -2.0, 1.0)
    lines = regret_lines({"in": {"regret": s}, "out": {"regret": regret_summary(torch.tensor([4.0, 6.0]))}})
    assert lines[0].startswith("regret, in-distribution: mean 1.00 nats")
    assert "made the NLL worse on 2 of 4 items (mean -2.00 nats on those)" in lines[0]
    assert "improved the NLL on all 2 items" in lines[1]


def test_ranking_metrics_treat_ood_as_positive():
    assert auroc([1, 2, 3], [4, 5]) == 1.0
    assert auroc([4, 5], [1, 2, 3]) == 0.0
    assert auprc([1, 2, 3], [4, 5]) == 1.0
    assert fpr_at_tpr([1, 2, 3, 4], [2.5, 5]) == pytest.approx(0.5)  # threshold 2.5 flags 3 and 4 of 4 in-dist
    with pytest.raises(ValueError, match="not finite"):
        auroc([1.0, float("nan")], [2.0])


def test_complexity_orders_simple_below_noisy_inputs():
    flat = torch.full((2, 1, 28, 28), 0.5)
    noise = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    for comp in ("png", "zlib"):
        bits = complexity_bits(torch.cat([flat, noise]), (0.0, 1.0), comp)
        assert bits[:2].max() * 5 < bits[2:].min()


@pytest.fixture(scope="module")
def conv_run(tmp_path_factory) -> Path:
    return train_family("conv", tmp_path_factory.mktemp("ood"))


def test_ood_command_writes_scores_and_metrics(conv_run, tmp_path):
    from typer.testing import CliRunner

    from vaelab.cli import app

    res = CliRunner().invoke(app, ["ood", str(conv_run), "--in", f"mnist:{SHARED / 'mnist'}", "--out",
                                   f"fashion_mnist:{SHARED / 'fashion_mnist'}", "--limit", "16", "--regret-steps", "2", "--regret-k", "4",
                                   "--out-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    for name in ("nll", "regret", "bernoulli"):
        assert name in res.output
    assert "note: complexity skipped" in res.output and "categorical256" in res.output  # a Bernoulli run
    assert "regret, in-distribution: mean" in res.output and "regret, out-of-distribution: mean" in res.output
    lines = (tmp_path / "ood_scores.csv").read_text().splitlines()
    assert lines[0] == "set,index,name,nll,regret" and len(lines) == 33
    summary = json.loads((tmp_path / "ood.json").read_text())
    assert set(summary["metrics"]) == {"nll", "regret"} and "complexity" in summary["notes"]["skipped"]
    assert all(0.0 <= m["auroc"] <= 1.0 for m in summary["metrics"].values())
    assert (tmp_path / "ood_roc.png").stat().st_size > 1000


@pytest.fixture(scope="module")
def live_conv_run(tmp_path_factory) -> Path:
    """seed003-conv trained until its latent units are active (4 epochs on 400 images, about 2 s; 12 of 16 active):
    the one-epoch `conv_run` is collapsed, and re-fitting the encoder of a model whose decoder ignores z cannot
    improve anything, so its regrets are noise around 0."""
    from vaelab.core.config import load_config
    from vaelab.training.trainer import train

    tmp = tmp_path_factory.mktemp("ood-live")
    raw = family_configs(tmp)["conv"]
    raw = {**raw, "data": {**raw["data"], "limit": 400}, "train": {**raw["train"], "epochs": 4}}
    return Path(train(load_config(raw), tmp / "run"))


def test_paper_regret_improves_the_elbo_and_a_bad_configuration_is_reported(live_conv_run, tmp_path):
    from vaelab.use.inputs import dataset_items, open_run
    from vaelab.use.ood import ood

    run = open_run(live_conv_run)
    inside = dataset_items(run, f"mnist:{SHARED / 'mnist'}", limit=8)
    outside = dataset_items(run, f"fashion_mnist:{SHARED / 'fashion_mnist'}", limit=8)
    good = ood(run, inside, outside, tmp_path / "good", scores=("regret",), options={"regret": {"k": 4}})
    assert good.notes["in"]["regret"]["mean_nats"] > 0 and good.notes["warnings"] == []  # paper defaults: 100 steps, 2e-4
    bad = ood(run, inside, outside, tmp_path / "bad", scores=("regret",), options={"regret": {"k": 4, "steps": 3, "lr": 1.0}})
    assert bad.notes["in"]["regret"]["mean_nats"] < 0
    assert "cannot improve the ELBO" in bad.notes["warnings"][0]
    assert bad.notes["in"]["regret"]["n_worse"] > 4 and "made the NLL worse on" in bad.notes["regret"][0]
    assert json.loads((tmp_path / "bad" / "ood.json").read_text())["notes"]["warnings"] == bad.notes["warnings"]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_report_is_self_contained_and_renders(conv_run, tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from vaelab.cli import app

    run = tmp_path / "run"
    shutil.copytree(conv_run, run)
    runner = CliRunner()
    assert runner.invoke(app, ["evaluate", str(run), "--limit", "16", "--k", "4"]).exit_code == 0
    res = runner.invoke(app, ["report", str(run)])
    assert res.exit_code == 0, res.output
    page = (run / "report.html").read_text()
    assert "iw_nll_k4" in page and "preset: seed003-conv" in page
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(srcs) >= 5
    for src in srcs:  # nothing outside the page: every image is an embedded PNG that decodes
        assert src.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium): the browser rendering check was skipped")
    # a copy of the page that records, once loaded, how many images decoded (naturalWidth > 0)
    probe = "<script>addEventListener('load',()=>{const i=[...document.images];const d=document.createElement('div');" \
            "d.id='probe';d.textContent=i.length+'/'+i.filter(m=>m.complete&&m.naturalWidth>0).length;document.body.append(d)})</script>"
    check = tmp_path / "check.html"
    check.write_text(page.replace("</body>", probe + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]
    dom = subprocess.run([browser, *flags, "--dump-dom", check.as_uri()], capture_output=True, text=True, timeout=120).stdout
    m = re.search(r'<div id="probe">(\d+)/(\d+)</div>', dom)
    assert m, "the page did not finish loading in Chromium"
    assert int(m.group(1)) == len(srcs) and m.group(1) == m.group(2), f"images loaded: {m.group(2)} of {m.group(1)}"
    shot = tmp_path / "shot.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1200,1600", (run / "report.html").as_uri()],
                   capture_output=True, timeout=120)
    img = np.asarray(Image.open(shot).convert("L"))
    assert img.std() > 5  # not a blank page
