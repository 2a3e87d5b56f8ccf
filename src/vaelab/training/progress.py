"""What training shows on stderr: a bar per epoch on a terminal (`vaelab.core.progress`) and one line per epoch
whose weighted terms add up to the total the optimizer minimised."""
from __future__ import annotations

import sys
from typing import Any, ContextManager

from vaelab.core.progress import Stage, stage
from vaelab.core.vocab import LOSS_TERMS


def epoch_bar(label: str, batches: int, enabled: bool) -> ContextManager[Stage]:
    """The epoch's batches as a bar on a terminal (removed when the epoch ends); nothing otherwise, the epoch line
    says it all."""
    return stage(label, batches, unit="batches", enabled=enabled, summary=False)


def loss_equation(row: dict[str, Any], split: str = "train") -> str:
    """`loss 105.2000 = recon 90.1000 + 1*kl 15.1000`: each term as its effective coefficient (weight, times the
    KL schedule averaged over the epoch) times its penalty; rows written before the weighted shares were logged
    get the unweighted terms."""
    total = row[f"{split}_loss"]
    parts = []
    for name in LOSS_TERMS.names():
        raw, share = row.get(f"{split}_{name}"), row.get(f"{split}_weighted_{name}")
        if raw is None:
            continue
        if share is None:
            parts.append(f"{name} {raw:.4f}")
            continue
        term = LOSS_TERMS.get(name)
        penalty = float(term.penalty(_tensor(raw)))
        shown = name if abs(penalty - raw) < 1e-12 else f"(1-{name})"  # ssim's penalty is 1 - SSIM
        coef = share / penalty if penalty else 0.0
        parts.append(f"{shown} {penalty:.4f}" if abs(coef - 1) < 5e-5 else f"{coef:.4g}*{shown} {penalty:.4f}")
    sep = " = " if any(f"{split}_weighted_{n}" in row for n in LOSS_TERMS.names()) else " ("
    body = " + ".join(parts)
    return f"loss {total:.4f}{sep}{body}" + ("" if sep == " = " else ")")


def _tensor(v: float):
    import torch

    return torch.tensor(float(v), dtype=torch.float64)


def report_epoch(row: dict[str, Any], epochs: int) -> None:
    val = f"  val {row['val_loss']:.4f}" if "val_loss" in row else ""
    units = f"  active units {row['active_units']}/{len(row['kl_per_dim'])}" if "active_units" in row else ""
    print(f"epoch {row['epoch']}/{epochs}  {loss_equation(row)}{val}{units}  {row['seconds']:.1f}s",
          file=sys.stderr, flush=True)
