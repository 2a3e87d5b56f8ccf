"""One training step, shared by the trainer, the memory probe (`vaelab memory`) and the torch.compile warm-up.

A step is one micro-batch: forward under the precision's autocast, the loss, a (scaled) backward of loss/accum,
and, when the micro-batch ends an optimizer step, unscale -> clip -> optimizer step -> scaler update ->
zero grads -> scheduler batch step -> weight average. Under DDP the micro-batches that do not end a step
skip the gradient all-reduce (`no_sync`). Precision, scaler, parallel context and weight average are objects
with one interface each (no-ops where unused), so the step has no branch on any of them.
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from vaelab.core.config import Config
from vaelab.core.errors import TrainingError
from vaelab.training.distributed import LocalContext, ParallelContext
from vaelab.training.loss_setup import LossSetup
from vaelab.training.losses import LossTerms
from vaelab.training.optim import Stepper, make_optimizer, make_scheduler
from vaelab.training.precision import Precision, get_precision


_NO_CONTEXT = contextlib.nullcontext()  # reusable: the micro-batch that ends a step syncs as usual


class NonFiniteLoss(TrainingError):
    """The loss of a micro-batch is NaN or infinite; raised before its backward, so no weight has moved."""

    def __init__(self, value: float):
        self.value = value
        super().__init__(f"non-finite loss ({value}); lower train.lr or set train.grad_clip")


class NoAverage:
    """No weight averaging: evaluation reads the trained model itself."""

    def __init__(self, model: nn.Module):
        self.model = model

    def update(self, model: nn.Module) -> None:
        pass

    def state_dict(self) -> None:
        return None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        pass


class EMAverage:
    """Exponential moving average of the weights and buffers (`train.ema`); evaluation reads the average."""

    def __init__(self, model: nn.Module, decay: float):
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self.model = self.averaged.module

    def update(self, model: nn.Module) -> None:
        self.averaged.update_parameters(model)

    def state_dict(self) -> dict[str, Any]:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state:
            self.averaged.load_state_dict(state)


def weight_average(model: nn.Module, decay: float | None) -> NoAverage | EMAverage:
    return EMAverage(model, decay) if decay else NoAverage(model)


def condition_of(model: nn.Module, y: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """The decoder/encoder condition for labels or vectors `y`; None for unconditional models."""
    return model.condition_vector(None if y is None else y.to(device))


class TrainStep:
    """Call `step(x, c, kl_scale, apply=...)` once per micro-batch; `apply` marks the one that ends an optimizer step."""

    def __init__(self, model: nn.Module, loss: LossSetup, optimizer: torch.optim.Optimizer, scheduler: Stepper,
                 precision: Precision, device: torch.device, *, grad_clip: float | None = None, grad_accum: int = 1,
                 average: NoAverage | EMAverage | None = None, parallel: ParallelContext | None = None):
        precision.check(device)
        self.model, self.loss, self.optimizer, self.scheduler = model, loss, optimizer, scheduler
        self.precision, self.device = precision, device
        self.grad_clip, self.grad_accum = grad_clip, grad_accum
        self.average = average if average is not None else NoAverage(model)
        self.parallel = parallel if parallel is not None else LocalContext()
        self.scaler = precision.scaler(device)
        self.forward_model = self.parallel.wrap(model, device)  # what the forward calls: DDP- and/or compile-wrapped
        self._params = [p for p in model.parameters() if p.requires_grad]

    @classmethod
    def from_config(cls, cfg: Config, model: nn.Module, loss: LossSetup, device: torch.device, *,
                    parallel: ParallelContext | None = None, steps_per_epoch: int = 1) -> "TrainStep":
        """The step `cfg.train` describes: optimizer, LR scheduler, precision, clipping, accumulation, EMA.

        steps_per_epoch: optimizer steps per epoch (batch-interval LR schedulers span epochs * steps_per_epoch).
        """
        tc = cfg.train
        precision = get_precision(tc.precision, device)
        optimizer = make_optimizer(tc.optimizer.name, model.parameters(), lr=tc.lr,
                                   weight_decay=tc.optimizer.weight_decay, kwargs=tc.optimizer.kwargs)
        scheduler = make_scheduler(tc.scheduler.name, optimizer, tc.scheduler.kwargs, epochs=tc.epochs,
                                   steps_per_epoch=steps_per_epoch)
        return cls(model, loss, optimizer, scheduler, precision, device, grad_clip=tc.grad_clip,
                   grad_accum=tc.grad_accum, average=weight_average(model, tc.ema), parallel=parallel)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None):
        with self.precision.autocast(self.device):
            return self.forward_model(x, c)

    def __call__(self, x: torch.Tensor, c: torch.Tensor | None, kl_scale: float, *, apply: bool = True) -> LossTerms:
        """Forward, loss and backward of one micro-batch; the optimizer step too when `apply`.

        Raises NonFiniteLoss before the backward when the loss is NaN or infinite.
        """
        sync = self.parallel.no_sync(self.forward_model) if not apply else _NO_CONTEXT
        with sync:
            terms = self.loss(self.forward(x, c), x, kl_scale)
            if not torch.isfinite(terms.total):
                raise NonFiniteLoss(float(terms.total.detach()))
            total = terms.total if self.grad_accum == 1 else terms.total / self.grad_accum  # / 1 would change no bit
            self.scaler.scale(total).backward()
        if apply:
            self.apply()
        return terms

    def apply(self) -> None:
        """The optimizer step on the accumulated gradients, then everything that follows one."""
        opt = self.optimizer
        self.scaler.unscale_(opt)
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self._params, self.grad_clip)
        self.scaler.step(opt)
        self.scaler.update()
        opt.zero_grad(set_to_none=True)
        self.scheduler.step_batch()
        self.average.update(self.model)
        self.loss.after_step()  # stateful loss terms (the adversarial term's discriminator step)

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The step's share of a checkpoint (the keys the trainer has always written)."""
        return {"ema": self.average.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict() or None,
                "loss_state": self.loss.state_dict()}

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        self.average.load_state_dict(ckpt.get("ema"))
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.loss.load_state_dict(ckpt.get("loss_state"))

