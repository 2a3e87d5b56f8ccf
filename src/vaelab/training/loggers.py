"""Experiment trackers beside metrics.jsonl: `train.log: [jsonl, tensorboard]`.

metrics.jsonl is the run folder's own record and is always written (the trainer rewrites it on resume so it
agrees with the checkpoint); `jsonl` in the list names it for completeness. `tensorboard` writes event files
under RUN/tensorboard with torch's SummaryWriter (needs the `vaelab[tensorboard]` extra):
- scalars per epoch: every number of the epoch's metrics row, as train/<term>, val/<term> (so a run's
  train and val curves sit on one chart per term, and `tensorboard --logdir runs` overlays every run under
  it), plus lr, kl_schedule (the KL weight factor), seconds and samples_per_s; active units when a row has them;
- images per epoch, for image data: the same validation items and their reconstructions, and samples from
  the prior drawn with the same seed each epoch, so the pictures change only because the model does;
- the resolved config as text (YAML) at the first epoch written.
The step is the epoch, so runs with different batch sizes line up. On resume the writer purges events after
the checkpoint's epoch, so the curves never hold an epoch twice.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

from vaelab.core.errors import ConfigError
from vaelab.core.vocab import LOGGERS
from vaelab.plots import make_grid, to_display

TENSORBOARD_DIR = "tensorboard"
N_IMAGES = 8


class EpochLogger(Protocol):
    def log_epoch(self, row: dict[str, Any], model: torch.nn.Module) -> None: ...

    def close(self) -> None: ...


def scalar_tag(key: str) -> str | None:
    """The TensorBoard tag of a metrics key: train_loss -> train/loss, train_kl_scale -> kl_schedule."""
    if key in ("epoch", "step", "stopped_early", "threads"):
        return None
    if key in ("train_kl_scale", "kl_scale"):
        return "kl_schedule"
    for split in ("train", "val"):
        if key.startswith(split + "_"):
            return f"{split}/{key[len(split) + 1:]}"
    return key


class TensorBoardLogger:
    """Writes one run's scalars, images and config into RUN/tensorboard."""

    def __init__(self, run_dir: Path, config: Any, bundle: Any, *, start_epoch: int = 0, seed: int = 0):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("train.log: tensorboard needs the tensorboard package: pip install 'vaelab[tensorboard]' "
                              "(or bash scripts/install.sh tensorboard)") from None
        self.writer = SummaryWriter(str(Path(run_dir) / TENSORBOARD_DIR), purge_step=start_epoch + 1 if start_epoch else None)
        self.config_text = config.to_yaml()
        self.wrote_config = False
        self.seed = seed
        self.value_range = tuple(bundle.value_range)
        shape = tuple(bundle.shape)
        self.images = len(shape) == 3 and shape[0] in (1, 3)
        self.x = self.y = None
        if self.images:
            split = bundle.val if bundle.val is not None and len(bundle.val) else bundle.train
            self.x, self.y = split.take(min(N_IMAGES, len(split)))  # (n, C, H, W), fixed for the whole run

    def log_epoch(self, row: dict[str, Any], model: torch.nn.Module) -> None:
        epoch = int(row["epoch"])
        if not self.wrote_config:
            # a code block: TensorBoard renders text as markdown
            self.writer.add_text("config", "```\n" + self.config_text + "\n```", epoch)
            self.wrote_config = True
        for key, value in row.items():
            tag = scalar_tag(key)
            if tag is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(tag, value, epoch)
        if self.images:
            self._images(model, epoch)
        self.writer.flush()

    @torch.no_grad()
    def _images(self, model: Any, epoch: int) -> None:
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        try:
            x = self.x.to(device)
            c = model.condition_vector(self.y.to(device) if self.y is not None else None) if model.conditional else None
            recon = model(x, c, sample=False).x_hat.float()
            # originals in the first row, their reconstructions in the second
            self._grid("reconstructions", torch.cat([x.float(), recon]), len(x), epoch)
            g = torch.Generator(device="cpu").manual_seed(self.seed)
            if not model.conditional:
                self._grid("samples", model.sample(16, generator=g).float(), 8, epoch)
            elif model.condition.takes_labels:  # one sample per label, in label order
                labels = model.condition.all_labels(1).to(device)
                samples = model.sample(len(labels), model.condition_vector(labels), generator=g)
                self._grid("samples (one per label, 0 first)", samples.float(), min(len(labels), 10), epoch)
        finally:
            model.train(was_training)

    def _grid(self, tag: str, x: torch.Tensor, nrow: int, epoch: int) -> None:
        """(N, C, H, W) in the data's range -> one grid image, cells enlarged to >= 64 px (8x8 digits stay legible)."""
        grid = make_grid(to_display(x, self.value_range), nrow)  # (H', W', C) in [0, 1]
        k = max(1, -(-64 // x.shape[-1]))
        grid = grid.repeat(k, axis=0).repeat(k, axis=1)
        self.writer.add_image(tag, grid, epoch, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


LOGGERS.register("jsonl", lambda *a, **k: None, doc="metrics.jsonl in the run folder (always written)")
LOGGERS.register("tensorboard", TensorBoardLogger, doc="TensorBoard event files in RUN/tensorboard (vaelab[tensorboard])")


class EpochLoggers:
    """Every logger `train.log` names; the trainer calls `log_epoch` after each epoch and `close` at the end."""

    def __init__(self, names: list[str], run_dir: Path, config: Any, bundle: Any, *, start_epoch: int = 0):
        made = (LOGGERS.get(n)(run_dir, config, bundle, start_epoch=start_epoch, seed=config.seed) for n in dict.fromkeys(names))
        self.loggers = [lg for lg in made if lg is not None]

    def log_epoch(self, row: dict[str, Any], model: torch.nn.Module) -> None:
        for lg in self.loggers:
            lg.log_epoch(row, model)

    def close(self) -> None:
        for lg in self.loggers:
            lg.close()


__all__ = ["EpochLoggers", "TensorBoardLogger", "scalar_tag", "TENSORBOARD_DIR"]
