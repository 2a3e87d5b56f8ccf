"""scikit-learn's bundled 8x8 digits (1797 images, no download)."""
from __future__ import annotations

from pathlib import Path

import torch

from vaelab.data.base import DATASETS, ArrayData, ImageOptions, Source, rescale01, scale_range


def load_digits(path: Path | None, options: ImageOptions) -> Source:
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = torch.from_numpy(d.data).float().div_(16.0).reshape(-1, 1, 8, 8)  # (1797, 1, 8, 8), pixels 0..16
    y = torch.from_numpy(d.target).long()
    data = ArrayData(rescale01(x, options.scale), y)
    return Source({"all": data}, scale_range(options.scale), 10, [str(i) for i in range(10)])


DATASETS.register(
    "digits", load_digits, options=ImageOptions, reads_path=False,
    doc="scikit-learn 8x8 digits: (1,8,8), 10 classes, 1797 samples; no data.path (ships with scikit-learn)",
)
