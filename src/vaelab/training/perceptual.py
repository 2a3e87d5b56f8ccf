"""LPIPS (Zhang et al. 2018, the `lpips` package's VGG variant) from weights the user already has on disk.

Nothing downloads: `loss.perceptual.backbone` is a VGG16 state dict (torchvision's `vgg16-397923af.pth`, or
any file with its `features.N.weight/bias` keys, .pth or .safetensors) and `loss.perceptual.linear` the LPIPS
linear heads (the `lpips` package's `weights/v0.1/vgg.pth`: `lin0.model.1.weight` ... `lin4.model.1.weight`).
The distance, as in lpips.LPIPS(net="vgg"): inputs in [-1, 1] through the ScalingLayer, VGG16's relu1_2,
relu2_2, relu3_3, relu4_3 and relu5_3 features, each unit-normalised over channels, squared differences
weighted by the 1x1 linear heads, averaged over space and summed over the five layers. Grey images are
repeated to 3 channels; images need sides of at least 16 px (four 2x2 max pools before relu5_3).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from vaelab.core.errors import ConfigError

_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]  # torchvision's "D"
_TAPS = (3, 8, 15, 22, 29)  # indices of relu1_2 ... relu5_3 in torchvision's vgg16().features
_WIDTHS = (64, 128, 256, 512, 512)
_SHIFT, _SCALE = (-0.030, -0.088, -0.188), (0.458, 0.448, 0.450)  # lpips' ScalingLayer
MIN_SIDE = 16


class PerceptualWeightsError(ConfigError):
    """A weights file that is missing, unreadable or not in the expected format (the message names it)."""


def vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    c = 3
    for v in _VGG16:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=False)]
            c = v
    return nn.Sequential(*layers)  # indices match torchvision's vgg16().features[:30]


class LPIPS(nn.Module):
    """(B, C, H, W) x (B, C, H, W) in `value_range` -> (B,) perceptual distances; frozen, always in eval mode."""

    def __init__(self, backbone: dict[str, Tensor], linear: dict[str, Tensor], value_range: Sequence[float] = (-1, 1)):
        super().__init__()
        with torch.device("meta"):  # no random initialisation: every weight comes from the files
            self.features = vgg16_features()
            self.lins = nn.ModuleList(nn.Conv2d(w, 1, 1, bias=False) for w in _WIDTHS)
        feats = {k.removeprefix("features."): v.float() for k, v in backbone.items()}
        self.features.load_state_dict({k: v for k, v in feats.items()  # torchvision's file has the classifier too
                                       if k.split(".")[0].isdigit() and int(k.split(".")[0]) < len(self.features)},
                                      assign=True)
        self.lins.load_state_dict({k.replace("lin", "", 1).replace(".model.1", ""): v.float()
                                   for k, v in linear.items()}, assign=True)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))
        self.lo, self.hi = float(value_range[0]), float(value_range[1])
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "LPIPS":  # noqa: ARG002 - frozen: never leaves eval mode
        return super().train(False)

    def _taps(self, x: Tensor) -> list[Tensor]:
        x = 2 * (x.float() - self.lo) / (self.hi - self.lo) - 1  # to [-1, 1], lpips' input range
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _TAPS:
                out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))  # unit norm over channels
        return out

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        dist = a.new_zeros(a.shape[0], dtype=torch.float32)
        for fa, fb, lin in zip(self._taps(a), self._taps(b), self.lins):
            dist = dist + lin((fa - fb).pow(2)).mean(dim=(1, 2, 3))  # (B,)
        return dist


def _read(path: Path, field: str) -> dict[str, Tensor]:
    if not path.is_file():
        raise PerceptualWeightsError(f"{field}: no file {str(path)!r}; point it at LPIPS weights you have locally "
                                     "(vaelab downloads nothing)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input error, reported with its name
        raise PerceptualWeightsError(f"{field}: cannot read {str(path)!r} as a state dict ({type(e).__name__}: {e})") from None
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise PerceptualWeightsError(f"{field}: {str(path)!r} is not a state dict of tensors")
    return sd


def load_lpips(backbone: str | Path, linear: str | Path, value_range: Sequence[float]) -> LPIPS:
    """LPIPS-VGG from two local files (see the module docstring); a wrong file is refused with its name."""
    sds = _read(Path(backbone), "loss.perceptual.backbone"), _read(Path(linear), "loss.perceptual.linear")
    try:
        return LPIPS(*sds, value_range=value_range)
    except RuntimeError as e:  # load_state_dict: missing or unexpected keys, wrong shapes
        detail = " ".join(str(e).split())[:300]
        raise PerceptualWeightsError(
            f"loss.perceptual: {str(backbone)!r} and {str(linear)!r} must be torchvision's VGG16 state dict and "
            f"lpips' weights/v0.1/vgg.pth ({detail})") from None


__all__ = ["LPIPS", "load_lpips", "vgg16_features", "PerceptualWeightsError", "MIN_SIDE"]
