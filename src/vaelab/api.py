"""The Python API behind the CLI: every command is one call here, plus tensor-in, tensor-out helpers.

    from vaelab.api import load_run, encode, decode, sample, reconstruct   # tensors, nothing written
    from vaelab.api import write_samples, write_reconstructions, evaluate  # what the CLI commands write

Everything is imported on first use, so `import vaelab.api` does not import torch (tests/test_api.py
measures it); `dir(vaelab.api)` lists every name for notebook completion.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # for type checkers and IDEs; at run time these load lazily through __getattr__
    from vaelab.core.config import Config, load_config
    from vaelab.model.build import LayerRow
    from vaelab.training.runs import Run, load_run
    from vaelab.training.trainer import train
    from vaelab.use.tensors import decode, encode, reconstruct, sample


@dataclass
class CheckReport:
    name: str
    input_shape: tuple[int, ...]
    latent_shape: tuple[int, ...]
    rows: list[LayerRow]
    parameters: int
    output_activation: str
    likelihood: str  # the decoder likelihood with its options, e.g. categorical256
    output_shape: tuple[int, ...]  # per sample: what the decoder must output for that likelihood
    memory: str = ""  # the training-memory estimate and the limit it was checked against


def check_config(
    source: str | Path | Mapping[str, Any] | Config | None, overrides: list[str] | None = None, *, load_data: bool = True
) -> CheckReport:
    """Validate a config and trace its model without training (what `vaelab check` prints).

    The model is built on the meta device (no weights allocated) and its training memory checked against the
    limit `train` would apply, so `check` refuses what `train` would refuse and never exhausts the machine."""
    from vaelab.core.config import Config, load_config
    from vaelab.data import load_data as load
    from vaelab.model.footprint import memory_limit
    from vaelab.training.loss_setup import LossSetup
    from vaelab.training.precision import resolve_device
    from vaelab.training.preflight import preflight

    cfg = source if isinstance(source, Config) else load_config(source, overrides)
    spec, train_size = None, None
    if load_data:  # also with model.input_shape, which must then match the data (as `train` checks)
        bundle = load(cfg.data, cfg.seed)
        spec, train_size = bundle.spec, len(bundle.train)
    else:
        spec = declared_spec(cfg)
    vr = spec.value_range if spec is not None else (0.0, 1.0)
    device = resolve_device(cfg.train.device)
    fp = preflight(cfg, spec, device, train_size=train_size)  # refuses a likelihood that does not fit the data
    LossSetup.from_config(cfg, fp.model, vr)  # the loss checks the trainer makes
    lik = fp.model.likelihood
    batch = cfg.train.batch_size if isinstance(cfg.train.batch_size, int) else 1
    limit, limit_from = memory_limit(cfg, device)
    memory = fp.describe(batch, ema=cfg.train.ema is not None) + (f" (limit {limit / 1024**3:.3g} GB: {limit_from})" if limit else "")
    return CheckReport(cfg.name, fp.input_shape, fp.latent_shape, fp.rows, fp.parameters, fp.output_activation,
                       lik.describe(), lik.output_shape(fp.input_shape), memory)


def declared_spec(cfg):
    """What the config says about its data without reading it (`check --no-data`): model.input_shape, and the
    value range its dataset options state (`scale: pm1` is [-1, 1], so the decoder gets tanh as `train` would give
    it, not sigmoid); None when the options state nothing beyond [0, 1] (the model then assumes [0, 1])."""
    from vaelab.core.vocab import DATASETS, LIKELIHOODS, dataset_options
    from vaelab.data.spec import DataSpec

    if not cfg.model.input_shape or cfg.data.name not in DATASETS:
        return None
    opts = dataset_options(cfg.data.name, cfg.data.options)
    if getattr(opts, "standardize", False):
        value_range = (-float("inf"), float("inf"))  # standardised units: no bounded range, identity output
    elif getattr(opts, "scale", None) == "pm1":
        value_range = (-1.0, 1.0)
    else:
        return None
    lik = cfg.model.likelihood
    discrete = lik in LIKELIHOODS and LIKELIHOODS.get(lik).discrete
    return DataSpec(tuple(cfg.model.input_shape), value_range=value_range, bits=8 if discrete else None)


# name -> (module, name there): everything else, imported on first use so that `import vaelab.api` stays light
_LAZY: dict[str, tuple[str, str]] = {
    "Config": ("vaelab.core.config", "Config"), "load_config": ("vaelab.core.config", "load_config"),
    "train": ("vaelab.training.trainer", "train"), "load_run": ("vaelab.training.runs", "load_run"),
    "Run": ("vaelab.training.runs", "Run"), "LayerRow": ("vaelab.model.build", "LayerRow"),
    # tensors in, tensors out
    "encode": ("vaelab.use.tensors", "encode"), "decode": ("vaelab.use.tensors", "decode"),
    "sample": ("vaelab.use.tensors", "sample"), "reconstruct": ("vaelab.use.tensors", "reconstruct"),
    # what the CLI commands of the same name write (folders of arrays and figures)
    "write_reconstructions": ("vaelab.use.reconstruct", "reconstruct"), "compare": ("vaelab.use.reconstruct", "compare"),
    "write_encodings": ("vaelab.use.codec", "encode"), "write_decodings": ("vaelab.use.codec", "decode"),
    "write_samples": ("vaelab.use.sampling", "sample"), "interpolate": ("vaelab.use.sampling", "interpolate"),
    "load_items": ("vaelab.use.inputs", "load_items"), "open_run": ("vaelab.use.inputs", "open_run"),
    "evaluate": ("vaelab.use.evaluate", "evaluate"), "ood": ("vaelab.use.ood", "ood"),
    "build_report": ("vaelab.use.report", "build_report"),
    "export_run": ("vaelab.use.export", "export_run"), "import_diffusers": ("vaelab.use.diffusers_interop", "import_diffusers"),
    "nll_scores": ("vaelab.use.ood_scores", "nll_scores"), "auroc": ("vaelab.use.ood_scores", "auroc"),
    "load_data": ("vaelab.data", "load_data"), "describe_dataset": ("vaelab.data.report", "describe_dataset"),
    "make_shapes": ("vaelab.data.synthetic", "make_shapes"), "make_amass": ("vaelab.data.synthetic", "make_amass"),
    "run_search": ("vaelab.search", "run_search"), "load_space": ("vaelab.search", "load_space"),
    "search_report": ("vaelab.search.report", "search_report"),
    "recon_error_vs_bits": ("vaelab.model.quantize", "recon_error_vs_bits"),
    "make_photo_patches": ("vaelab.data.photos", "make_photo_patches"), "large_photo": ("vaelab.data.photos", "large_photo"),
    # tiled encode/decode of images of any size (spatial-latent models)
    "tiled_posterior": ("vaelab.use.tiling", "tiled_posterior"),
    "tiled_decode_logits": ("vaelab.use.tiling", "tiled_decode_logits"),
    "tiled_reconstruct": ("vaelab.use.tiling", "tiled_reconstruct"),
    "Tiling": ("vaelab.use.tiled_files", "Tiling"), "folder_images": ("vaelab.use.tiled_files", "folder_images"),
    "write_tiled_reconstructions": ("vaelab.use.tiled_files", "reconstruct_tiled"),
    "write_tiled_encodings": ("vaelab.use.tiled_files", "encode_tiled"),
    "write_tiled_decodings": ("vaelab.use.tiled_files", "decode_tiled"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'vaelab.api' has no attribute {name!r}")


__all__ = ["check_config", "CheckReport", *_LAZY]


def __dir__() -> list[str]:
    return sorted(set(__all__) | {k for k in globals() if not k.startswith("_")})
