"""Reconstructions with and without the adversarial term (issue 12, point 2): runs side by side on a test split.

For each run folder (e.g. runs/seed001-sd-shapes and runs/seed001-sd-gan, the same recipe without and with
loss.adversarial, equal epochs) on the first run's held-out test split, reconstructions from the posterior mean:
  SSIM   - vaelab's (pytorch_msssim, window 11), mean over images
  MSE    - in the data's units ([-1, 1] for scale: pm1), and PSNR from it
  sharp  - sharpness: the mean absolute Laplacian (3x3, per channel) of the reconstructions divided by that of
           the originals; 1.0 is as sharp as the input, blurry reconstructions fall below 1
  hf     - the share of the originals' high-frequency energy (FFT, above half the Nyquist radius) the
           reconstructions carry, as a second sharpness measure
and a PNG: originals in the first row, then one row per run.

Run: .venv/bin/python benchmarks/bench_adversarial.py RUN [RUN ...] [--n 300] [--png runs/adversarial.png]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F


def laplacian_energy(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B,): mean |3x3 Laplacian| per pixel and channel."""
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    c = x.shape[1]
    return F.conv2d(x, k.repeat(c, 1, 1, 1), groups=c).abs().flatten(1).mean(1)


def high_frequency_energy(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B,): spectral energy above half the Nyquist radius."""
    spec = torch.fft.fftshift(torch.fft.fft2(x - x.mean(dim=(2, 3), keepdim=True)), dim=(-2, -1)).abs().pow(2)
    h, w = x.shape[-2:]
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    return (spec * ((yy.pow(2) + xx.pow(2)).sqrt() > 0.5)).flatten(1).sum(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--n", type=int, default=300, help="test images (the first N of the first run's test split)")
    ap.add_argument("--png", type=Path, default=None, help="write originals and reconstructions here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from vaelab.training.losses import ssim
    from vaelab.use.inputs import dataset_items, open_run
    from vaelab.use.reconstruct import reconstruct_tensor

    runs = [open_run(r) for r in args.runs]
    items = dataset_items(runs[0], limit=args.n)
    x = items.x
    lo, hi = items.value_range
    print(f"{len(x)} test images of {tuple(x.shape[1:])} from {args.runs[0]}'s data ({items.source}), range [{lo:g}, {hi:g}]")
    print("\n| run | epochs | SSIM | MSE | PSNR dB | sharpness (Laplacian, 1 = input) | high-freq energy kept |")
    print("|---|---|---|---|---|---|---|")
    rows = [x[:8]]
    for path, run in zip(args.runs, runs):
        with torch.no_grad():
            y = reconstruct_tensor(run, x).clamp(lo, hi)
        s = float(ssim(y, x, hi - lo).mean())
        mse = float((y - x).pow(2).mean())
        psnr = 10 * torch.log10(torch.tensor((hi - lo) ** 2 / mse))
        sharp = float(laplacian_energy(y).mean() / laplacian_energy(x).mean())
        hf = float(high_frequency_energy(y).mean() / high_frequency_energy(x).mean())
        epochs = run.history[-1]["epoch"] if run.history else "?"
        print(f"| {path} | {epochs} | {s:.3f} | {mse:.4f} | {float(psnr):.1f} | {sharp:.3f} | {hf:.3f} |")
        rows.append(y[:8])
    if args.png is not None:
        from PIL import Image

        grid = torch.cat([torch.cat(list(r), dim=2) for r in rows], dim=1)  # (C, rows*H, 8*W)
        a = ((grid - lo) / (hi - lo) * 255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
        args.png.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a.squeeze(-1) if a.shape[-1] == 1 else a).resize((a.shape[1] * 3, a.shape[0] * 3),
                                                                         Image.NEAREST).save(args.png)
        print(f"\n{args.png}: originals, then one row per run in the order given")


if __name__ == "__main__":
    main()
