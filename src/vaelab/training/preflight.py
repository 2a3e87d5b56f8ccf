"""What `train` refuses, checked before anything is built or written; `vaelab check` runs the same checks.

The model is measured on the meta device (`vaelab.model.footprint`), the optimizer and scheduler are built over
one dummy parameter (torch validates their arguments), so a config that `check` passes does not fail in `train`
for any of these reasons. (The loss set-up is checked by the trainer before it writes anything, and by `check`.)
"""
from __future__ import annotations

import math
import torch

from vaelab.core.config import Config
from vaelab.core.errors import ConfigError
from vaelab.data.spec import DataSpec
from vaelab.model.footprint import Footprint, check_fits, estimate
from vaelab.training.optim import make_optimizer, make_scheduler
from vaelab.training.precision import get_precision


def check_optimizer(cfg: Config, batches_per_epoch: int = 1) -> None:
    """Build the configured optimizer and lr scheduler over one dummy parameter (no model needed)."""
    tc = cfg.train
    opt = make_optimizer(tc.optimizer.name, [torch.nn.Parameter(torch.zeros(1))], lr=tc.lr,
                         weight_decay=tc.optimizer.weight_decay, kwargs=tc.optimizer.kwargs)
    make_scheduler(tc.scheduler.name, opt, tc.scheduler.kwargs, epochs=tc.epochs,
                   steps_per_epoch=max(1, math.ceil(batches_per_epoch / tc.grad_accum)))


def preflight(
    cfg: Config,
    spec: DataSpec | None,
    device: torch.device,
    *,
    train_size: int | None = None,
) -> Footprint:
    """Raise a ConfigError for anything `train` would refuse before building; return the model's footprint.
    spec: the data's (None: model.input_shape, nothing else known)."""
    get_precision(cfg.train.precision, device)  # e.g. fp16 needs CUDA
    fp = estimate(cfg.model, spec)
    check_fits(fp, cfg, device)
    width, num_classes = fp.model.condition_width, None if spec is None else spec.num_classes
    if fp.model.conditional and fp.model.condition.takes_labels and num_classes is not None and width < num_classes:
        raise ConfigError(f"model.condition.num_classes is {width} but the data has {num_classes} classes; "
                          f"set it to {num_classes} or leave it out (it is taken from the data)")
    batch = cfg.train.batch_size if isinstance(cfg.train.batch_size, int) else 1
    check_optimizer(cfg, math.ceil(train_size / batch) if train_size else 1)
    return fp

