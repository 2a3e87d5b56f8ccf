"""The Python API behind the CLI: every command is one call here."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from vaelab.model.build import LayerRow
from vaelab.core.config import Config, load_config
from vaelab.training.runs import Run, data_meta, load_run
from vaelab.training.trainer import train


@dataclass
class CheckReport:
    name: str
    input_shape: tuple[int, ...]
    latent_shape: tuple[int, ...]
    rows: list[LayerRow]
    parameters: int
    output_activation: str
    recon: str
    memory: str = ""  # the training-memory estimate and the limit it was checked against


def check_config(
    source: str | Path | Mapping[str, Any] | Config | None, overrides: list[str] | None = None, *, load_data: bool = True
) -> CheckReport:
    """Validate a config and trace its model without training (what `vaelab check` prints).

    The model is built on the meta device (no weights allocated) and its training memory checked against the
    limit `train` would apply, so `check` refuses what `train` would refuse and never exhausts the machine."""
    from vaelab.data import load_data as load
    from vaelab.model.footprint import memory_limit
    from vaelab.training.preflight import preflight
    from vaelab.training.loss_setup import LossSetup
    from vaelab.training.precision import resolve_device

    cfg = source if isinstance(source, Config) else load_config(source, overrides)
    shape, meta, train_size = None, {}, None
    if load_data:  # also with model.input_shape, which must then match the data (as `train` checks)
        bundle = load(cfg.data, cfg.seed)
        meta = data_meta(bundle)
        shape, train_size = bundle.shape, len(bundle.train)
    vr = tuple(meta["value_range"]) if meta.get("value_range") else None
    device = resolve_device(cfg.train.device)
    fp = preflight(cfg, shape, device, num_classes=meta.get("num_classes"), cond_dim=meta.get("cond_dim"), value_range=vr,
                   train_size=train_size)
    LossSetup.from_config(cfg, fp.model, vr or (0.0, 1.0))  # the loss checks the trainer makes
    lo, hi = vr or (0.0, 1.0)
    recon = cfg.loss.recon if cfg.loss.recon != "auto" else ("bce" if lo >= 0 and hi <= 1 else "mse")
    batch = cfg.train.batch_size if isinstance(cfg.train.batch_size, int) else 1
    limit, limit_from = memory_limit(cfg, device)
    memory = fp.describe(batch, ema=cfg.train.ema is not None) + (f" (limit {limit / 1024**3:.3g} GB: {limit_from})" if limit else "")
    return CheckReport(cfg.name, fp.input_shape, fp.latent_shape, fp.rows, fp.parameters, fp.output_activation, recon,
                       memory)


# Everything else the CLI does, imported on first use so that `import vaelab.api` stays light.
_LAZY = {
    "reconstruct": "vaelab.use.reconstruct", "compare": "vaelab.use.reconstruct",
    "encode": "vaelab.use.codec", "decode": "vaelab.use.codec",
    "sample": "vaelab.use.sampling", "interpolate": "vaelab.use.sampling",
    "evaluate": "vaelab.use.evaluate", "ood": "vaelab.use.ood", "build_report": "vaelab.use.report",
    "nll_scores": "vaelab.use.ood_scores", "auroc": "vaelab.use.ood_scores",
    "load_data": "vaelab.data", "describe_dataset": "vaelab.data.report",
    "make_shapes": "vaelab.data.synthetic", "make_amass": "vaelab.data.synthetic",
    "run_search": "vaelab.search", "load_space": "vaelab.search", "search_report": "vaelab.search.report",
    "recon_error_vs_bits": "vaelab.model.quantize",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vaelab.api' has no attribute {name!r}")


__all__ = ["Config", "load_config", "check_config", "CheckReport", "train", "load_run", "Run", *_LAZY]
