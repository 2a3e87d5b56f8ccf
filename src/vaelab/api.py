"""The Python API behind the CLI: every command is one call here."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from vaelab.model.build import LayerRow, build_model
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


def check_config(
    source: str | Path | Mapping[str, Any] | Config | None, overrides: list[str] | None = None, *, load_data: bool = True
) -> CheckReport:
    """Validate a config and build its model without training (what `vaelab check` prints)."""
    from vaelab.data import load_data as load

    cfg = source if isinstance(source, Config) else load_config(source, overrides)
    shape, meta = None, {}
    if load_data and cfg.model.input_shape is None:
        bundle = load(cfg.data, cfg.seed)
        meta = data_meta(bundle)
        shape = bundle.shape
    rows: list[LayerRow] = []
    vr = tuple(meta["value_range"]) if meta.get("value_range") else None
    model = build_model(cfg.model, shape, num_classes=meta.get("num_classes"), cond_dim=meta.get("cond_dim"),
                        value_range=vr, trace=rows)
    lo, hi = vr or (0.0, 1.0)
    recon = cfg.loss.recon if cfg.loss.recon != "auto" else ("bce" if lo >= 0 and hi <= 1 else "mse")
    return CheckReport(cfg.name, tuple(model.input_shape), tuple(model.latent_shape), rows, model.num_parameters(),
                       model.output_activation, recon)


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
