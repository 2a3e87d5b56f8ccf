"""`vaelab convert FILE`: the seeds' own config files as vaelab configs.

- FlexVAE (seed 001): `configs/config.cfg`, a JSON object (or a backup's `{"_variables": {...}}`) whose
  `encoder_struct` / `decoder_struct` name `model_structures/<name>.mstruct` JSON lists of layer strings,
  looked up beside the config and in its parent folder, and inlined.
- pytorch-VAE-MNIST (seed 003): `config/config.yaml` with `train`, `model.architecture` (torch layer mappings,
  which vaelab's layer lists accept as they are) and `test`.

The output YAML names the original key beside every value it came from (`# <- lr`) and lists, at the top,
every key that has no vaelab equivalent, so nothing is dropped silently. The result is validated (and its
layers parsed) before anything is written.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from vaelab.core.config import apply_override, load_config
from vaelab.core.errors import ConfigError
from vaelab.core.registry import Registry


@dataclass
class Conversion:
    """A vaelab config (nested dict), the source key of each dotted field, and the keys left out (with why)."""

    source_format: str
    config: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)  # "train.lr" -> "lr"
    unmapped: dict[str, str] = field(default_factory=dict)  # original key -> reason
    notes: list[str] = field(default_factory=list)

    def set(self, dotted: str, value: Any, source: str | None = None) -> None:
        node = self.config
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
        if source:
            self.origin[dotted] = source

    def leave(self, key: str, why: str) -> None:
        self.unmapped[key] = why


Converter = Callable[[Any, Path], Conversion]
FORMATS: Registry[Converter] = Registry("config format")


# ------------------------------------------------------------------------------------------------- FlexVAE
_FLEX_UNUSED = {  # keys that steer the original script's files, devices and modes rather than the model
    "base_path": "vaelab writes the run folder given by --out", "backup_name": "no backups: every epoch is a checkpoint",
    "load_backup": "resume with vaelab train --resume RUN", "backup_every_n_iter": "every epoch is checkpointed",
    "sample_every_n_iter": "samples are drawn at the end (train.figures) or per epoch with train.log tensorboard",
    "resume": "resume with vaelab train --resume RUN", "resume_path": "resume with vaelab train --resume RUN",
    "reinit_optim": "no equivalent", "reinit_lr": "no equivalent", "multi_GPU": "use torchrun for data parallelism",
    "pin_memory": "no equivalent", "sample_with_ema": "with train.ema every command uses the averaged weights",
    "lat_size": "used only when latent_conversion_disable is false",
    "latent_conversion_disable": "vaelab keeps the spatial latent (the original's Linear conversion is sized wrongly)",
}
_FLEX_USE_PATHS = ("encode_path", "encode_save_path", "decode_path", "decode_save_path", "infer_folder_input",
                   "infer_folder_output", "interpolate_folder1", "interpolate_folder2", "inter_out")


def _mstruct(name: str, cfg_path: Path) -> list[str] | None:
    for folder in (cfg_path.parent, cfg_path.parent.parent):
        p = folder / "model_structures" / f"{name}.mstruct"
        if p.is_file():
            try:
                items = json.loads(p.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
                raise ConfigError(f"{p}: not a JSON list of layer strings ({type(e).__name__}: {e})") from None
            if isinstance(items, list):
                return items
    return None


@FORMATS.register("flexvae", doc="FlexVAE's JSON configs/config.cfg with its model_structures/*.mstruct lists")
def convert_flexvae(raw: Any, path: Path) -> Conversion:
    c = Conversion("flexvae")
    raw = dict(raw.get("_variables", raw))
    take = raw.pop
    c.set("name", take("run_name", "flexvae"), "run_name")
    size = take("image_size", 64)
    c.set("data.name", "image_folder")
    if "dataset_path" in raw:
        c.set("data.path", take("dataset_path"), "dataset_path")
    c.set("data.options", {"size": size, "channels": 3, "scale": "pm1"}, "image_size (RGB in [-1, 1], the seed's transform)")
    if "num_workers" in raw:
        workers = take("num_workers")
        c.leave("num_workers", f"images are held in memory; with data.options.stream: true set num_workers: {workers}")
    enc, dec = take("encoder_struct", "VAE_encoder"), take("decoder_struct", "VAE_decoder")
    enc_list, dec_list = _mstruct(enc, path), _mstruct(dec, path)
    if enc_list is not None and dec_list is not None:
        c.set("model.encoder", enc_list, f"encoder_struct -> model_structures/{enc}.mstruct")
        c.set("model.decoder", dec_list, f"decoder_struct -> model_structures/{dec}.mstruct")
    else:
        c.set("model.preset", "seed001-sd", f"encoder_struct/decoder_struct ({enc}, {dec}): .mstruct files not found, "
                                            "the seed's default structures")
        c.notes.append(f"model_structures/{enc}.mstruct or {dec}.mstruct was not found beside {path.name} or in its "
                       "parent folder: the seed001-sd preset (the seed's default lists) stands in")
    c.set("model.latent_scale", 0.18215, "the seed's fixed 0.18215")
    # the seed's loss: 0.5 * 400 * mean MSE + 0.5 * (1 - SSIM) + kld_weight * mean KL (+ 0 * sparsity)
    c.set("loss", {"recon": "mse", "reduction": "mean", "alpha": 200.0, "ssim": True, "beta": 0.5}, "the seed's loss_function")
    c.set("loss.kl_weight", take("kld_weight", 0.0025), "kld_weight")
    anneal = take("kld_anneal", "none")
    anneal_epochs, cycle = take("kld_anneal_epochs", None), take("kld_anneal_cycle", None)
    if anneal == "linear":
        c.set("loss.kl_schedule", {"kind": "linear", "warmup_fraction": 0.5}, "kld_anneal: linear")
        c.leave("kld_anneal_epochs", f"{anneal_epochs} epochs: vaelab's warm-up is a fraction of training (warmup_fraction)")
    elif anneal in ("cyclical", "cyclic"):
        c.set("loss.kl_schedule", {"kind": "cyclical"}, "kld_anneal: cyclical")
        c.leave("kld_anneal_cycle", f"{cycle} epochs per cycle: vaelab counts cycles (loss.kl_schedule.n_cycles)")
    else:
        for k, v in (("kld_anneal_epochs", anneal_epochs), ("kld_anneal_cycle", cycle)):
            if v is not None:
                c.leave(k, "kld_anneal is none")
    c.set("train.epochs", take("epochs", 1000), "epochs")
    c.set("train.batch_size", take("batch_size", 100), "batch_size")
    c.set("train.grad_accum", take("batch_accum", 1), "batch_accum")
    c.set("train.lr", take("lr", 4e-4), "lr")
    c.set("train.optimizer", {"name": "adamw", "weight_decay": take("weight_decay", 0.01)}, "weight_decay (the seed's AdamW)")
    _flex_scheduler(c, raw)
    if take("useEMA", False):
        c.set("train.ema", take("ema_decay", 0.999), "useEMA, ema_decay")
    else:
        c.set("train.ema", None, "useEMA: false" + (", ema_decay unused" if raw.pop("ema_decay", None) is not None else ""))
    device = take("device", "cuda")
    c.set("train.device", "auto" if str(device).startswith("cuda") else device, f"device ({device}; auto picks CUDA when present)")
    if take("use_amp", False):
        c.set("train.precision", "fp16", "use_amp")
    if take("torch_compile", False):
        c.set("train.compile", True, "torch_compile")
    for key in _FLEX_USE_PATHS:
        if key in raw:
            take(key)
            c.leave(key, "a path for the encode/decode/infer modes: give it to vaelab encode/decode/reconstruct")
    for key in list(raw):
        c.leave(key, _FLEX_UNUSED.get(key, "no vaelab equivalent"))
    return c


def _flex_scheduler(c: Conversion, raw: dict[str, Any]) -> None:
    use, plateau, kind = raw.pop("use_scheduler", True), raw.pop("ReduceLROnPlateau", False), raw.pop("scheduler_type", "step")
    step, gamma = raw.pop("scheduler_step_size", 100), raw.pop("scheduler_gamma", 0.5)
    t_max, eta_min = raw.pop("cosine_t_max", 0), raw.pop("cosine_eta_min", 0.0)
    if plateau:
        c.set("train.scheduler", {"name": "plateau"}, "ReduceLROnPlateau")
    elif not use:
        c.set("train.scheduler", {"name": "constant"}, "use_scheduler: false, ReduceLROnPlateau: false")
    elif kind == "cosine":
        kwargs = {"eta_min": eta_min, **({"T_max": t_max} if t_max else {})}
        c.set("train.scheduler", {"name": "cosine", "kwargs": kwargs},
              "use_scheduler, scheduler_type: cosine, cosine_t_max, cosine_eta_min, ReduceLROnPlateau: false")
    else:
        c.set("train.scheduler", {"name": "steplr", "kwargs": {"step_size": step, "gamma": gamma}},
              "use_scheduler, scheduler_step_size, scheduler_gamma, ReduceLROnPlateau: false (the seed's StepLR)")


# ------------------------------------------------------------------------------------- pytorch-VAE-MNIST
_SEED003_LOSS = {"bceloss": "bce", "mseloss": "mse"}


@FORMATS.register("pytorch-vae-mnist", doc="pytorch-VAE-MNIST's config/config.yaml (torch layer mappings)")
def convert_seed003(raw: Any, path: Path) -> Conversion:
    c = Conversion("pytorch-vae-mnist")
    raw = dict(raw)
    c.set("name", path.parent.parent.name or "pytorch-vae-mnist")
    c.set("data", {"name": "mnist", "path": "data/mnist", "val_fraction": 0.1},
          "the seed's torchvision MNIST with a 90/10 train/validation split; set data.path to your IDX files")
    device = raw.pop("device", "cuda")
    c.set("train.device", "auto" if str(device).startswith("cuda") else device, f"device ({device})")
    tr = dict(raw.pop("train", None) or {})
    c.set("train.batch_size", tr.pop("batch_size", 128), "train.batch_size")
    c.set("train.epochs", tr.pop("train_epochs", 90), "train.train_epochs")
    losses = [str(n).lower() for n in tr.pop("loss", None) or ["bceloss", "regularizationloss"]]
    recon = [n for n in losses if n in _SEED003_LOSS]
    c.set("loss.recon", _SEED003_LOSS[recon[0]] if recon else "auto", f"train.loss ({', '.join(losses)})")
    c.set("loss.reduction", "mean", "the seed's mean BCE and mean KL (regularizationloss)")
    for n in losses:
        if n not in _SEED003_LOSS and n != "regularizationloss":
            c.leave(f"train.loss: {n}", "not a VAE reconstruction loss vaelab offers (bce, mse)")
    c.set("loss.kl_weight", tr.pop("alpha", 0.1), "train.alpha")
    optim = dict(tr.pop("optim", None) or {})
    c.set("train.optimizer.name", str(optim.pop("name", "adam")).lower(), "train.optim.name")
    c.set("train.lr", optim.pop("learning_rate", 1e-3), "train.optim.learning_rate")
    if optim.get("others"):
        c.set("train.optimizer.kwargs", dict(optim.pop("others")), "train.optim.others")
    sched = dict(tr.pop("lr_scheduler", None) or {})
    if sched:
        name = str(sched.pop("name", "constant")).lower()
        if name == "lambdalr":
            c.leave("train.lr_scheduler: lambdalr", "a Python lambda cannot come from a config")
        else:
            c.set("train.scheduler", {"name": name, "kwargs": dict(sched.pop("others", None) or {})},
                  "train.lr_scheduler.name, others")
    for key, why in (("model_path", "checkpoints live in the run folder (--out)"),
                     ("progress_path", "loss_curve.png lives in the run folder"),
                     ("plot_epochs", "the run folder is checkpointed every epoch; figures at the end")):
        if key in tr:
            tr.pop(key)
            c.leave(f"train.{key}", why)
    for key in tr:
        c.leave(f"train.{key}", "no vaelab equivalent")
    arch = dict((raw.pop("model", None) or {}).get("architecture") or {})
    enc = dict(arch.get("encoder") or {})
    logvar = next((k for k in ("log_var", "logvar", "std") if k in enc), None)
    c.set("model.encoder", enc.get("conv") or [], "model.architecture.encoder.conv")
    c.set("model.heads", {"mu": enc.get("mean") or [], "logvar": enc.get(logvar) or []},
          f"model.architecture.encoder.mean and .{logvar} (a log-variance, as the seed's reparameterisation uses it)")
    c.set("model.decoder", arch.get("decoder") or [], "model.architecture.decoder")
    test = dict(raw.pop("test", None) or {})
    if "batch_size" in test:
        c.set("train.eval_batch_size", test.pop("batch_size"), "test.batch_size")
    for key, why in (("model_path", "vaelab evaluate RUN reads the run folder"),
                     ("results_path", "vaelab evaluate RUN --out DIR"),
                     ("n_components", "vaelab evaluate draws a 2-D embedding (PCA, or t-SNE with --tsne)")):
        if key in test:
            test.pop(key)
            c.leave(f"test.{key}", why)
    for key in list(test) + list(raw):
        c.leave(key, "no vaelab equivalent")
    return c


# ---------------------------------------------------------------------------------------------- reading
def read_source(path: Path) -> tuple[str, Any]:
    """(format, parsed content): FlexVAE JSON is recognised by its keys, seed 003 YAML by model.architecture."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; give FlexVAE's configs/config.cfg or pytorch-VAE-MNIST's config/config.yaml")
    try:
        text = path.read_text()
    except (UnicodeDecodeError, OSError) as e:
        raise ConfigError(f"{path}: not a readable text config ({type(e).__name__}); give a JSON or YAML file") from None
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        try:
            raw = yaml.safe_load(text)
        except (yaml.YAMLError, ValueError, RecursionError) as e:  # ValueError: ints over 4300 digits
            raise ConfigError(f"{path}: neither JSON nor YAML ({' '.join(str(e).split())[:200]})") from None
    if isinstance(raw, dict):
        body = raw.get("_variables", raw)
        if isinstance(body, dict) and {"encoder_struct", "decoder_struct", "lat_size", "image_size"} & set(body):
            return "flexvae", raw
        if isinstance(raw.get("model"), dict) and "architecture" in raw["model"]:
            return "pytorch-vae-mnist", raw
    raise ConfigError(f"{path}: not a config vaelab converts (FlexVAE's JSON config.cfg, pytorch-VAE-MNIST's "
                      f"config.yaml); formats: {', '.join(FORMATS.names())}")


def convert(path: str | Path, overrides: list[str] | None = None) -> tuple[Conversion, str]:
    """(conversion, YAML text) for a seed config; `overrides` (dotted.key=value) apply before validation."""
    path = Path(path)
    fmt, raw = read_source(path)
    conv = FORMATS.get(fmt)(raw, path)
    for assignment in overrides or []:
        apply_override(conv.config, assignment)
        conv.origin[assignment.partition("=")[0].strip()] = "--set"
    load_config(conv.config)  # refuses anything vaelab would refuse later, naming the field
    return conv, render(conv, path)


def _flow(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip().removesuffix("\n...").strip()


def _emit(node: dict[str, Any], conv: Conversion, prefix: str, indent: int, out: list[str]) -> None:
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        comment = f"  # <- {conv.origin[dotted]}" if dotted in conv.origin else ""
        pad = "  " * indent
        expand = dotted not in conv.origin or any(k.startswith(dotted + ".") for k in conv.origin)
        if isinstance(value, dict) and value and expand:
            out.append(f"{pad}{key}:{comment}")
            _emit(value, conv, dotted + ".", indent + 1, out)
        elif isinstance(value, list) and value and (any(isinstance(v, dict) for v in value) or len(_flow(value)) > 90):
            out.append(f"{pad}{key}:{comment}")  # layer lists: one layer per line
            out += [f"{pad}  - {_flow(v)}" for v in value]
        else:
            out.append(f"{pad}{key}: {_flow(value)}{comment}")


def render(conv: Conversion, path: Path) -> str:
    lines = [f"# Converted by `vaelab convert` from {conv.source_format} config {path.name}.",
             "# `# <- key` names the original key each value comes from."]
    if conv.unmapped:
        lines.append("# Original keys with no vaelab equivalent, left out:")
        lines += [f"#   {k}: {why}" for k, why in conv.unmapped.items()]
    lines += [f"# Note: {n}" for n in conv.notes]
    _emit(conv.config, conv, "", 0, lines)
    return "\n".join(lines) + "\n"


__all__ = ["convert", "Conversion", "FORMATS", "read_source", "render"]
