"""Training speed of vaelab vs plain PyTorch loops, measured in the same run (issue: core).

Model: pytorch/examples' MLP VAE (784-400-20-400-784), batch 128, Adam 1e-3, BCE(sum) + KL, on the
10,000 MNIST test images. Three ways to train the same model for the same epochs:
  plain      - a hand-written loop over pre-made batch tensors (the floor of Python overhead)
  dataloader - pytorch/examples' loop: DataLoader(TensorDataset, shuffle=True, batch_size=128)
  vaelab     - vaelab.training.loop.Trainer (its shared TrainStep) on the in-memory data (index gather per batch, checkpoint per epoch)
Rounds are interleaved so that machine noise hits all three alike; the best epoch time of each counts.
Then bf16 autocast on CPU vs fp32 through vaelab: speed-up and final-loss difference.

Run: .venv/bin/python benchmarks/bench_train.py [--data ../shared/data/mnist] [--epochs 2] [--rounds 3]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vaelab.core.config import load_config
from vaelab.data.base import ArrayData, ArraySplit, DataBundle
from vaelab.data.idx import find_idx_pairs, load_idx_pair
from vaelab.model.build import build_model
from vaelab.training.loop import Trainer

REPO = Path(__file__).resolve().parents[1]


class ExamplesVAE(nn.Module):
    """pytorch/examples/vae/main.py, verbatim in structure."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

    def forward(self, x):
        h1 = F.relu(self.fc1(x.view(-1, 784)))
        mu, logvar = self.fc21(h1), self.fc22(h1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


def examples_loss(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def epoch_plain(model, opt, batches):
    t = time.perf_counter()
    for x in batches:
        opt.zero_grad()
        recon, mu, logvar = model(x)
        loss = examples_loss(recon, x, mu, logvar)
        loss.backward()
        opt.step()
    return time.perf_counter() - t


def epoch_dataloader(model, opt, loader):
    return epoch_plain(model, opt, (x for (x,) in loader))  # the loader's per-item work is inside the timing


def make_trainer(x: torch.Tensor, precision: str, run_dir: Path) -> Trainer:
    cfg = load_config({"model": {"preset": "examples-mlp"}, "loss": {"recon": "bce"},
                       "train": {"batch_size": 128, "lr": 1e-3, "epochs": 1000, "precision": precision,
                                 "progress": False, "figures": False, "device": "cpu"}})
    bundle = DataBundle(ArraySplit(ArrayData(x)), None, None, (1, 28, 28), (0.0, 1.0), None, "mnist-test")
    model = build_model(cfg.model, bundle.spec)
    return Trainer(cfg, run_dir, bundle, model, torch.device("cpu"))


def epoch_vaelab(trainer: Trainer) -> tuple[float, float]:
    t = time.perf_counter()
    terms = trainer._train_epoch(None)
    trainer.state.epoch += 1
    return time.perf_counter() - t, terms["loss"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "mnist")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--bf16-epochs", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    pairs = find_idx_pairs(args.data)
    x = load_idx_pair(*pairs["test"]).x  # (10000, 1, 28, 28) in [0, 1]
    n = len(x)
    print(f"data: {n} MNIST test images, torch {torch.__version__}, {torch.get_num_threads()} threads")

    plain_model = ExamplesVAE()
    plain_opt = torch.optim.Adam(plain_model.parameters(), lr=1e-3)
    dl_model = ExamplesVAE()
    dl_opt = torch.optim.Adam(dl_model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=128, shuffle=True)
    perm = torch.randperm(n)
    batches = [x[perm[i:i + 128]].contiguous() for i in range(0, n, 128)]  # pre-made batch tensors

    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(x, "fp32", Path(tmp) / "fp32")
        times = {"plain": [], "dataloader": [], "vaelab": []}
        epoch_plain(plain_model, plain_opt, batches)  # warm-up (allocator, threads)
        epoch_vaelab(trainer)
        for r in range(args.rounds):
            times["plain"].append(epoch_plain(plain_model, plain_opt, batches))
            times["vaelab"].append(epoch_vaelab(trainer)[0])
            times["dataloader"].append(epoch_dataloader(dl_model, dl_opt, loader))
        sps = {k: n / min(v) for k, v in times.items()}
        print("\nsamples/s (best epoch of %d interleaved rounds)" % args.rounds)
        for k in ("plain", "dataloader", "vaelab"):
            print(f"  {k:11s} {sps[k]:9.0f}")
        print(f"\nvaelab / plain loop over pre-made batches: {sps['vaelab'] / sps['plain']:.3f}x  (goal >= 0.95)")
        print(f"vaelab / DataLoader loop (pytorch/examples): {sps['vaelab'] / sps['dataloader']:.3f}x  (goal >= 1.0)")

        # bf16 autocast vs fp32, same seed, same epochs
        res = {}
        for precision in ("fp32", "bf16"):
            torch.manual_seed(0)
            tr = make_trainer(x, precision, Path(tmp) / f"p-{precision}")
            ts, loss = [], None
            for _ in range(args.bf16_epochs):
                t, loss = epoch_vaelab(tr)
                ts.append(t)
            res[precision] = (n / min(ts), loss)
        speed = res["bf16"][0] / res["fp32"][0]
        diff = res["bf16"][1] - res["fp32"][1]
        print(f"\nbf16 autocast on CPU: {res['bf16'][0]:.0f} vs fp32 {res['fp32'][0]:.0f} samples/s -> {speed:.2f}x; "
              f"loss after {args.bf16_epochs} epochs {res['bf16'][1]:.2f} vs {res['fp32'][1]:.2f} "
              f"(difference {diff:+.2f} nats/sample, {100 * diff / res['fp32'][1]:+.2f}%)")


if __name__ == "__main__":
    main()
