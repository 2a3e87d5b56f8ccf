"""Memory layout of a model's convolution weights for fast inference on CPU, and a digest of its weights.

PyTorch's CPU convolutions (oneDNN) run channels-last whenever the input or the weight is channels-last, and
then hand channels-last outputs to the next layer. For the wide last layers of image decoders (256 logits per
pixel for categorical256) that is 2-2.5x faster than the default NCHW layout at the same values (to float
rounding: the kernels sum in another order). `channels_last_weights` switches a model's 4-d conv weights for the
duration of a `with` block and puts the original tensors back on exit, so the model is left exactly as it was.
"""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

CONV_2D = (nn.Conv2d, nn.ConvTranspose2d)


def conv2d_weights(model: nn.Module) -> list[nn.Parameter]:
    """The 4-d parameters of the model's 2-d (transposed) convolutions."""
    return [p for m in model.modules() if isinstance(m, CONV_2D) for p in m.parameters(recurse=False) if p.dim() == 4]


@contextmanager
def channels_last_weights(model: nn.Module) -> Iterator[bool]:
    """Within the block, the model's 2-d conv weights are channels-last copies (same values); yields whether the
    model has any. The original weight tensors are restored on exit, also when the block raises."""
    params = conv2d_weights(model)
    saved = [p.data for p in params]
    try:
        with torch.no_grad():
            for p in params:
                p.data = p.data.contiguous(memory_format=torch.channels_last)
        yield bool(params)
    finally:
        for p, data in zip(params, saved):
            p.data = data


def weights_sha256(model: nn.Module) -> str:
    """sha256 of the model's state (every parameter and buffer: name, dtype, shape and values, in state-dict
    order): equal for two trainings that produced the same weights, whatever else their checkpoints hold."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


__all__ = ["channels_last_weights", "conv2d_weights", "weights_sha256"]
