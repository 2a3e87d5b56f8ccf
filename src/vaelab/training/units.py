"""Posterior collapse made visible: active units and KL per latent dimension, measured once per epoch.

A latent unit u is active when Cov_x(E_q(z|x)[z_u]) > 0.01 (Burda, Grosse & Salakhutdinov 2016, "Importance
weighted autoencoders", section 5.2): its posterior mean moves with the input. Both numbers come from one
encoder pass (no decoder, no sampling, so the run's RNG is untouched) over at most `max_samples` samples.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from vaelab.training.precision import Precision
from vaelab.training.step import condition_of

ACTIVE_THRESHOLD = 0.01  # Burda et al.'s threshold on the variance of the posterior mean
MAX_SAMPLES = 1000


@dataclass(frozen=True)
class UnitStats:
    active: int  # units whose posterior-mean variance exceeds ACTIVE_THRESHOLD
    kl_per_dim: list[float]  # mean KL(q(z_u|x) || N(0, 1)) per unit in nats, flattened latent order
    samples: int

    @property
    def units(self) -> int:
        return len(self.kl_per_dim)


@torch.no_grad()
def unit_stats(model, split, device: torch.device, precision: Precision, *, batch_size: int,
               max_samples: int = MAX_SAMPLES) -> UnitStats:
    """Active units and per-unit KL of `model`'s posterior on the first `max_samples` samples of `split`."""
    was_training = model.training
    model.eval()
    means, kl_sum, n = [], None, 0
    for x, y in split.batches(batch_size, shuffle=False):
        keep = max_samples - n
        x, y = x[:keep].to(device), None if y is None else y[:keep]
        with precision.autocast(device):
            q = model.encode(x, condition_of(model, y, device))
        means.append(q.mean.detach().reshape(len(x), -1).double().cpu())  # (b, units)
        kl = q.kl_per_dim().reshape(len(x), -1).double().sum(dim=0).cpu()  # (units,)
        kl_sum = kl if kl_sum is None else kl_sum + kl
        n += len(x)
        if n >= max_samples:
            break
    model.train(was_training)
    if n == 0:
        return UnitStats(0, [], 0)
    mu = torch.cat(means)  # (n, units)
    variance = mu.var(dim=0, correction=1 if n > 1 else 0)
    kl_per_dim = [float(f"{v:.4g}") for v in (kl_sum / n).tolist()]
    return UnitStats(int((variance > ACTIVE_THRESHOLD).sum()), kl_per_dim, n)


def collapse_warning(stats: UnitStats, epoch: int, split_name: str) -> str:
    """The one line training prints when no unit is active with the KL weight fully on."""
    return (f"warning: posterior collapse at epoch {epoch}: 0 of {stats.units} latent units are active (variance of "
            f"E[z|x] over {stats.samples} {split_name} samples <= {ACTIVE_THRESHOLD}, Burda et al. 2016) with the KL "
            "weight fully on; the usual fixes: a KL warm-up (loss.kl_schedule: {kind: linear, warmup_fraction: 0.5}), "
            "free bits (loss.free_bits: 0.1) or a lower loss.kl_weight")
