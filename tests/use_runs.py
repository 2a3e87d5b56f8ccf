"""Tiny trained runs of every model family, shared by the use/ood tests (trained once per session)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COMMON_TRAIN = {"epochs": 1, "batch_size": 32, "progress": False, "figures": False}


def make_shapes_folder(root: Path, n: int = 24, size: int = 32) -> Path:
    """n small RGB PNGs of coloured squares, in two class subfolders."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        a = np.zeros((size, size, 3), dtype=np.uint8)
        s = int(rng.integers(4, size // 2))
        r, c = rng.integers(0, size - s, 2)
        a[r : r + s, c : c + s] = rng.integers(60, 255, 3)
        d = root / f"class{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(d / f"img{i:02d}.png")
    return root


def family_configs(tmp: Path) -> dict[str, dict]:
    shapes = make_shapes_folder(tmp / "shapes")
    return {
        "mlp": {"name": "mlp", "data": {"name": "digits", "limit": 300}, "train": COMMON_TRAIN,
                "model": {"encoder": ["Flatten", "Linear_64_64", "ReLU"], "heads": {"mu": ["Linear_64_4"], "logvar": ["Linear_64_4"]},
                          "decoder": ["Linear_4_64", "ReLU", "Linear_64_64", "Unflatten_1_8_8"]}},
        "conditional": {"name": "cvae", "data": {"name": "digits", "limit": 300}, "train": COMMON_TRAIN,
                        "model": {"encoder": ["Flatten", "Linear_74_64", "ReLU"], "heads": {"mu": ["Linear_64_4"], "logvar": ["Linear_64_4"]},
                                  "decoder": ["Linear_14_64", "ReLU", "Linear_64_64", "Unflatten_1_8_8"], "condition": {"kind": "label"}}},
        "conv": {"name": "conv", "data": {"name": "mnist", "path": str(SHARED / "mnist"), "limit": 200},
                 "train": COMMON_TRAIN, "model": {"preset": "seed003-conv"}},
        "spatial": {"name": "sd", "data": {"name": "image_folder", "path": str(shapes), "options": {"size": 32, "channels": 3, "scale": "pm1"}},
                    "train": {**COMMON_TRAIN, "batch_size": 8},
                    "model": {"preset": "seed001-sd", "preset_args": {"base": 32, "latent_channels": 4}, "latent_scale": 0.18215},
                    "loss": {"recon": "mse"}},
        "attention": {"name": "pi", "data": {"name": "colored_pi", "path": str(SHARED / "colored_pi"), "limit": 400},
                      "train": COMMON_TRAIN, "model": {"preset": "seed004-attention", "preset_args": {"dim": 8, "heads": 2, "ff": 16, "latent": 4}},
                      "loss": {"recon": "mse"}},
    }


def train_family(name: str, tmp: Path) -> Path:
    import pytest

    if name in ("conv", "attention") and not SHARED.is_dir():
        pytest.skip(f"{SHARED} is not present (the {name} family trains on ../shared/data)")
    from vaelab.core.config import load_config
    from vaelab.training.trainer import train

    cfg = load_config(family_configs(tmp)[name])
    return Path(train(cfg, tmp / f"run-{name}"))
