"""Tiled vs untiled reconstruction of a large photo (issue 12, point 1): peak memory, time, error, seams.

The image is scikit-learn's china.jpg, centre-cropped square and enlarged to --size (2048) pixels. Each case
runs in its own process so that its peak resident memory (VmHWM) is its own:
  untiled        - model.encode + decode on the whole image (the reference)
  tiled/<mode>   - vaelab.use.tiling.tiled_reconstruct with --tile/--overlap and statistics mode
                   tile (per-tile GroupNorm/attention statistics, as naive tiling), estimate or exact
Errors are in display units (the image scaled to [0, 1]) against the untiled output. The seam metric is the
mean absolute error where two tiles overlap (where seams would show) divided by the mean absolute error
where only one tile covers the image: about 1 means no seams.

Run: .venv/bin/python benchmarks/bench_tiling.py RUN [--size 2048] [--tile 512] [--overlap 128]
     [--modes tile,estimate,exact] [--out DIR] [--skip-untiled]   (RUN: a run folder of a spatial-latent model, e.g. the
     seed001-sd-photos recipe's)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(run: str, case: str, size: int, tile: int, overlap: int, out: str) -> None:
    """One case in this process: writes out.npy (C, H, W) in [0, 1] and out.json (seconds, peak MB)."""
    import torch

    torch.set_num_threads(1)
    from vaelab.data.photos import large_photo
    from vaelab.use.inputs import open_run
    from vaelab.use.tiling import tiled_reconstruct

    r = open_run(run)
    model = r.model.eval()
    lo, hi = r.data_spec.value_range
    x = torch.from_numpy(large_photo(size).copy()).permute(2, 0, 1)[None].float() / 255.0 * (hi - lo) + lo
    base = peak_mb()  # the interpreter, torch, the model and the input image
    t = time.perf_counter()
    with torch.no_grad():
        if case == "untiled":
            y = model.likelihood.mean(model.decoder_output(model.encode(x).mean))
        else:
            y = tiled_reconstruct(model, x, tile=tile, overlap=overlap, stats=case.split("/")[1])
    seconds = time.perf_counter() - t
    np.save(out + ".npy", ((y[0] - lo) / (hi - lo)).clamp(0, 1).numpy())
    Path(out + ".json").write_text(json.dumps({"seconds": seconds, "peak_mb": peak_mb(), "base_mb": base}))


def overlap_mask(size: int, tile: int, overlap: int, f: int) -> np.ndarray:
    """True where two tiles of the encoder's grid overlap (in pixels)."""
    from vaelab.use.tiling import spans

    cover = np.zeros(size, dtype=int)
    for s in spans(size, tile, overlap, f):
        cover[s.start:s.end] += 1
    line = cover > 1
    return line[:, None] | line[None, :]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=128)
    ap.add_argument("--modes", default="tile,estimate,exact")
    ap.add_argument("--out", type=Path, default=None, help="also write the outputs and error maps as PNGs here")
    ap.add_argument("--skip-untiled", action="store_true", help="tiled cases only: time and peak memory, no errors")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.run, args.child[0], args.size, args.tile, args.overlap, args.child[1])
        return
    from vaelab.use.inputs import open_run
    from vaelab.use.tiling import downsampling_factor

    f = downsampling_factor(open_run(args.run).model)
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; image {args.size}x{args.size}, "
          f"factor {f}, tile {args.tile}, overlap {args.overlap}, 1 thread")
    cases = ([] if args.skip_untiled else ["untiled"]) + [f"tiled/{m}" for m in args.modes.split(",") if m]
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            out = str(Path(tmp) / case.replace("/", "-"))
            env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
            subprocess.run([sys.executable, __file__, args.run, "--size", str(args.size), "--tile", str(args.tile),
                            "--overlap", str(args.overlap), "--child", case, out], check=True, env=env)
            res[case] = (json.loads(Path(out + ".json").read_text()), np.load(out + ".npy"))
            m = res[case][0]
            print(f"  {case:15s} {m['seconds']:8.1f} s   peak {m['peak_mb']:8.0f} MB "
                  f"(+{m['peak_mb'] - m['base_mb']:.0f} MB over the loaded model and image)", flush=True)
        if args.skip_untiled:
            return
        ref = res["untiled"][1]
        mask = overlap_mask(args.size, args.tile, args.overlap, f)
        print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        print("\n| case | seconds | peak MB | over base MB | max abs err | mean abs err | mean err in overlaps | "
              "mean err inside tiles | seam ratio |")
        print("|---|---|---|---|---|---|---|---|---|")
        for case, (m, y) in res.items():
            err = np.abs(y - ref).mean(0)  # (H, W), averaged over channels
            row = [f"{m['seconds']:.1f}", f"{m['peak_mb']:.0f}", f"{m['peak_mb'] - m['base_mb']:.0f}"]
            if case == "untiled":
                row += ["-"] * 5
            else:
                seam, inside = err[mask].mean(), err[~mask].mean()
                row += [f"{np.abs(y - ref).max():.2e}", f"{err.mean():.2e}", f"{seam:.2e}", f"{inside:.2e}",
                        f"{seam / max(inside, 1e-12):.2f}"]
            print(f"| {case} | " + " | ".join(row) + " |")
            if args.out is not None:
                _write_pngs(args.out, case, y, err)


def _write_pngs(out: Path, case: str, y: np.ndarray, err: np.ndarray) -> None:
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    name = case.replace("/", "-")
    Image.fromarray((y.transpose(1, 2, 0) * 255).round().astype(np.uint8)).save(out / f"{name}.png")
    if case != "untiled":  # error x 20, so that 0.05 is white
        Image.fromarray((np.clip(err * 20, 0, 1) * 255).round().astype(np.uint8)).save(out / f"{name}-error.png")


if __name__ == "__main__":
    main()
