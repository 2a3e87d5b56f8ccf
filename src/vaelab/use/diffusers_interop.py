"""diffusers' AutoencoderKL <-> a vaelab run, written in seed 001's layer vocabulary.

An AutoencoderKL is seed 001's architecture family: `conv_in`, down blocks of ResnetBlock2D (= VAERB) with a
stride-2 conv after a (0, 1, 0, 1) zero pad (= Pad_0_1_0_1, C2d_c_c_3_2_0), a mid block (VAERB, single-head
attention = VAEA, VAERB), GroupNorm + SiLU + conv_out, the 1x1 quant_conv; the decoder mirrors it with
nearest-neighbour x2 upsampling + conv (UpS_2, C2d_c_c_3_1_1). Every GroupNorm there has eps 1e-6, written as
the blocks' optional arguments (`VAERB_128_128_32_1e-06`). `scaling_factor` is vaelab's `model.latent_scale`;
the decoder has no output activation (`model.output_activation: identity`).

`diffusers_layers(config)` writes the layer lists and, beside each layer, the diffusers module it stands for;
the weights are copied by that pairing (PARAMS says which tensor is which), so the same table serves both
directions. Export writes diffusers' files directly (config.json + diffusion_pytorch_model.safetensors) and
needs no diffusers install; import loads the folder with diffusers' own reader (which also converts older
weight layouts) and so needs the `vaelab[diffusers]` extra.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from vaelab.core.errors import CheckpointError, ConfigError, ModelError
from vaelab.core.registry import Registry
from vaelab.training.runs import Run

EPS = 1e-06  # every GroupNorm in diffusers' VAE encoder/decoder
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
INSTALL_HINT = "install the diffusers extra: pip install 'vaelab[diffusers]' (or .venv/bin/pip install diffusers)"

Layer = tuple[str, str | None]  # (vaelab layer string, diffusers module path or None for parameter-free layers)
BlockFn = Callable[..., list[Layer]]

# diffusers block type -> the layers it stands for; a config naming any other block type does not map
BLOCKS: Registry[BlockFn] = Registry("diffusers block type (vaelab maps the plain AutoencoderKL blocks)")
# vaelab layer type -> [(vaelab tensor name, [diffusers tensor names concatenated along dim 0])]
PARAMS: Registry[list[tuple[str, list[str]]]] = Registry("vaelab layer type with weights")

_PLAIN = [("weight", ["weight"]), ("bias", ["bias"])]
PARAMS.register("C2d", _PLAIN)
PARAMS.register("GN", _PLAIN)
PARAMS.register("VAERB", [(f"{m}.{t}", [f"{m}.{t}"]) for m in ("norm1", "conv1", "norm2", "conv2") for t in ("weight", "bias")]
                + [("skip.weight", ["conv_shortcut.weight"]), ("skip.bias", ["conv_shortcut.bias"])])
PARAMS.register("VAEA", [("norm.weight", ["group_norm.weight"]), ("norm.bias", ["group_norm.bias"]),
                         ("in_proj.weight", ["to_q.weight", "to_k.weight", "to_v.weight"]),
                         ("in_proj.bias", ["to_q.bias", "to_k.bias", "to_v.bias"]),
                         ("out_proj.weight", ["to_out.0.weight"]), ("out_proj.bias", ["to_out.0.bias"])])

# keys of an AutoencoderKL config that change nothing vaelab computes, and what each key becomes
MAPPED_KEYS = {
    "in_channels": "model.input_shape[0]", "out_channels": "the decoder's last C2d", "sample_size": "model.input_shape[1:]",
    "down_block_types": "encoder blocks", "up_block_types": "decoder blocks", "block_out_channels": "block widths",
    "layers_per_block": "VAERB count per block", "act_fn": "SiLU (the only one VAERB uses)",
    "latent_channels": "latent channels", "norm_num_groups": "GN/VAERB/VAEA groups",
    "scaling_factor": "model.latent_scale", "use_quant_conv": "the encoder's last 1x1 C2d",
    "use_post_quant_conv": "the decoder's first 1x1 C2d", "mid_block_add_attention": "VAEA in the mid block",
}
IGNORED_KEYS = {"_class_name", "_diffusers_version", "_name_or_path", "force_upcast"}  # dtype advice, metadata
NOTED_KEYS = {"shift_factor", "latents_mean", "latents_std"}  # latent post-processing done by pipelines, not the VAE


def _rb(c_in: int, c_out: int, g: int) -> str:
    return f"VAERB_{c_in}_{c_out}_{g}_{EPS!r}"


@BLOCKS.register("DownEncoderBlock2D")
def down_encoder_block(i: int, c_in: int, c_out: int, layers: int, final: bool, g: int) -> list[Layer]:
    p = f"encoder.down_blocks.{i}"
    out = [(_rb(c_in if j == 0 else c_out, c_out, g), f"{p}.resnets.{j}") for j in range(layers)]
    if not final:
        out += [("Pad_0_1_0_1", None), (f"C2d_{c_out}_{c_out}_3_2_0", f"{p}.downsamplers.0.conv")]
    return out


@BLOCKS.register("UpDecoderBlock2D")
def up_decoder_block(i: int, c_in: int, c_out: int, layers: int, final: bool, g: int) -> list[Layer]:
    p = f"decoder.up_blocks.{i}"
    out = [(_rb(c_in if j == 0 else c_out, c_out, g), f"{p}.resnets.{j}") for j in range(layers + 1)]
    if not final:
        out += [("UpS_2", None), (f"C2d_{c_out}_{c_out}_3_1_1", f"{p}.upsamplers.0.conv")]
    return out


def _mid(prefix: str, c: int, g: int, attention: bool) -> list[Layer]:
    out = [(_rb(c, c, g), f"{prefix}.mid_block.resnets.0")]
    if attention:
        out.append((f"VAEA_{c}_{g}_{EPS!r}", f"{prefix}.mid_block.attentions.0"))
    return out + [(_rb(c, c, g), f"{prefix}.mid_block.resnets.1")]


def _get(cfg: dict[str, Any], key: str, default: Any) -> Any:
    v = cfg.get(key, default)
    return default if v is None else v


def diffusers_layers(cfg: dict[str, Any]) -> tuple[list[Layer], list[Layer]]:
    """(encoder, decoder) layers of an AutoencoderKL config, each paired with its diffusers module."""
    widths = list(_get(cfg, "block_out_channels", [64]))
    down = list(_get(cfg, "down_block_types", ["DownEncoderBlock2D"]))
    up = list(_get(cfg, "up_block_types", ["UpDecoderBlock2D"]))
    layers, g = int(_get(cfg, "layers_per_block", 1)), int(_get(cfg, "norm_num_groups", 32))
    lc, c_in, c_out = int(_get(cfg, "latent_channels", 4)), int(_get(cfg, "in_channels", 3)), int(_get(cfg, "out_channels", 3))
    attention = bool(_get(cfg, "mid_block_add_attention", True))
    if _get(cfg, "act_fn", "silu") != "silu":
        raise ModelError(f"act_fn {cfg['act_fn']!r}: vaelab's VAERB uses SiLU, so only act_fn 'silu' maps")
    if not len(down) == len(up) == len(widths):
        raise ModelError(f"down_block_types ({len(down)}), up_block_types ({len(up)}) and block_out_channels "
                         f"({len(widths)}) must have the same length")
    bad = [w for w in widths if w % g]
    if bad:
        raise ModelError(f"norm_num_groups {g} does not divide block_out_channels {bad}")
    enc: list[Layer] = [(f"C2d_{c_in}_{widths[0]}_3_1_1", "encoder.conv_in")]
    prev = widths[0]
    for i, (kind, w) in enumerate(zip(down, widths)):
        enc += BLOCKS.get(kind)(i, prev, w, layers, i == len(widths) - 1, g)
        prev = w
    enc += _mid("encoder", widths[-1], g, attention)
    enc += [(f"GN_{g}_{widths[-1]}_{EPS!r}", "encoder.conv_norm_out"), ("SiLU", None),
            (f"C2d_{widths[-1]}_{2 * lc}_3_1_1", "encoder.conv_out")]
    if _get(cfg, "use_quant_conv", True):
        enc.append((f"C2d_{2 * lc}_{2 * lc}_1_1_0", "quant_conv"))
    dec: list[Layer] = [(f"C2d_{lc}_{lc}_1_1_0", "post_quant_conv")] if _get(cfg, "use_post_quant_conv", True) else []
    rev = widths[::-1]
    dec += [(f"C2d_{lc}_{rev[0]}_3_1_1", "decoder.conv_in"), *_mid("decoder", rev[0], g, attention)]
    prev = rev[0]
    for i, (kind, w) in enumerate(zip(up, rev)):
        dec += BLOCKS.get(kind)(i, prev, w, layers, i == len(rev) - 1, g)
        prev = w
    dec += [(f"GN_{g}_{widths[0]}_{EPS!r}", "decoder.conv_norm_out"), ("SiLU", None),
            (f"C2d_{widths[0]}_{c_out}_3_1_1", "decoder.conv_out")]
    return enc, dec


def compress(tokens: list[str]) -> list[str]:
    """Runs of identical layer strings as `N*TOKEN` (the config reads as seed 001's lists do)."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        j = i
        while j < len(tokens) and tokens[j] == tokens[i]:
            j += 1
        out.append(tokens[i] if j - i == 1 else f"{j - i}*{tokens[i]}")
        i = j
    return out


def model_section(cfg: dict[str, Any]) -> dict[str, Any]:
    """The vaelab `model:` section equivalent to an AutoencoderKL config."""
    size = _get(cfg, "sample_size", 32)
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    enc, dec = diffusers_layers(cfg)
    return {"encoder": compress([t for t, _ in enc]), "decoder": compress([t for t, _ in dec]),
            "input_shape": [int(_get(cfg, "in_channels", 3)), int(h), int(w)],
            "latent_scale": float(_get(cfg, "scaling_factor", 0.18215)), "output_activation": "identity"}


def pair_keys(enc: list[Layer], dec: list[Layer]) -> list[tuple[str, list[str]]]:
    """(vaelab state-dict key, [diffusers keys]) for every weight of the model the layers build."""
    pairs = []
    for section, layers in (("encoder", enc), ("decoder", dec)):
        for i, (token, path) in enumerate(layers):
            if path is None:
                continue
            kind = token.split("_", 1)[0]
            same_width = kind == "VAERB" and token.split("_")[1] == token.split("_")[2]
            for ours, theirs in PARAMS.get(kind):
                if same_width and ours.startswith("skip."):
                    continue  # in == out: the skip is the identity, no weights on either side
                pairs.append((f"{section}.{i}.{ours}", [f"{path}.{t}" for t in theirs]))
    return pairs


def from_diffusers_state(state: dict[str, torch.Tensor], pairs) -> dict[str, torch.Tensor]:
    missing = [k for _, theirs in pairs for k in theirs if k not in state]
    if missing:
        raise CheckpointError(f"the diffusers weights lack {len(missing)} tensors the config implies, e.g. {missing[0]!r}")
    return {ours: torch.cat([state[t] for t in theirs]) if len(theirs) > 1 else state[theirs[0]] for ours, theirs in pairs}


def to_diffusers_state(state: dict[str, torch.Tensor], pairs) -> dict[str, torch.Tensor]:
    out = {}
    for ours, theirs in pairs:
        parts = state[ours].chunk(len(theirs)) if len(theirs) > 1 else (state[ours],)
        out.update({t: p.detach().cpu().contiguous().clone() for t, p in zip(theirs, parts)})
    return out


# --------------------------------------------------------------------------- import
@dataclass
class Imported:
    run_dir: Path
    notes: list[str] = field(default_factory=list)


def read_diffusers_config(folder: Path) -> dict[str, Any]:
    p = Path(folder) / "config.json"
    if not p.is_file():
        raise CheckpointError(f"{folder}: no config.json; give the folder of a diffusers AutoencoderKL (e.g. a model's vae/ subfolder)")
    try:
        cfg = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{p}: not valid JSON ({e})") from None
    if cfg.get("_class_name") != "AutoencoderKL":
        raise CheckpointError(f"{p}: _class_name is {cfg.get('_class_name')!r}; only AutoencoderKL maps to vaelab's layers")
    return cfg


def config_notes(cfg: dict[str, Any]) -> list[str]:
    notes = [f"{k} = {cfg[k]!r} is applied to latents by diffusers pipelines, not by the VAE; vaelab keeps the "
             "VAE's own latents (scaled by model.latent_scale)" for k in sorted(NOTED_KEYS) if cfg.get(k) is not None]
    unknown = sorted(set(cfg) - set(MAPPED_KEYS) - IGNORED_KEYS - NOTED_KEYS)
    if unknown:
        notes.append(f"keys with no vaelab equivalent, left out: {', '.join(unknown)}")
    return notes


def import_diffusers(folder: str | Path, out: str | Path | None = None, *, name: str | None = None,
                     data: str | None = None, overrides: list[str] | None = None) -> Imported:
    """Write a vaelab run folder holding the AutoencoderKL in `folder`; it then resumes (fine-tunes) like any run.
    `overrides` (dotted.key=value) set what a resume may not change later, e.g. train.batch_size or loss.*."""
    from vaelab.core.config import load_config
    from vaelab.training.runs import default_run_dir

    folder = Path(folder)
    dcfg = read_diffusers_config(folder)
    try:
        from diffusers import AutoencoderKL
    except ImportError:
        raise ConfigError(f"import-diffusers needs diffusers: {INSTALL_HINT}") from None
    raw: dict[str, Any] = {"name": name or folder.resolve().name, "model": model_section(dcfg),
                           "loss": {"recon": "mse"}, "data": _data_section(dcfg, data)}
    cfg = load_config(raw, overrides)
    run_dir = Path(out) if out is not None else default_run_dir(cfg)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise CheckpointError(f"--out {run_dir}: exists and is not empty; choose a new folder (nothing was written)")
    kl = AutoencoderKL.from_pretrained(str(folder), local_files_only=True, low_cpu_mem_usage=False).float().eval()
    enc, dec = diffusers_layers(dcfg)
    state = from_diffusers_state(kl.state_dict(), pair_keys(enc, dec))
    _write_run(run_dir, cfg, state, dcfg)
    return Imported(run_dir, config_notes(dcfg))


def _data_section(dcfg: dict[str, Any], data: str | None) -> dict[str, Any]:
    """The run's data: --data as given, and an image folder's size/channels/scale set to the model's unless given."""
    size = _get(dcfg, "sample_size", 32)
    images = {"size": size if isinstance(size, int) else size[0], "channels": int(_get(dcfg, "in_channels", 3)), "scale": "pm1"}
    if data is None:
        return {"name": "image_folder", "options": images}
    from vaelab.use.inputs import parse_data_spec

    section = parse_data_spec(data).model_dump(mode="json", exclude_none=True)
    if section["name"] == "image_folder":
        section["options"] = {**images, **section.get("options", {})}
    return section


def _write_run(run_dir: Path, cfg, state: dict[str, torch.Tensor], dcfg: dict[str, Any]) -> None:
    """config.yaml + a checkpoint the trainer resumes from (epoch 0, fresh optimizer) for fine-tuning."""
    from vaelab.core.checkpoint import CHECKPOINT_NAME, save_checkpoint
    from vaelab.model.build import build_model
    from vaelab.training.optim import make_optimizer, make_scheduler
    from vaelab.data.spec import SPEC_KEY, DataSpec
    from vaelab.training.runs import write_config

    shape = tuple(cfg.model.input_shape)
    spec = DataSpec(shape, (-1.0, 1.0), name=f"diffusers AutoencoderKL ({dcfg.get('_name_or_path') or 'local folder'})")
    model = build_model(cfg.model, spec)
    model.load_state_dict(state)  # strict: every tensor of the vaelab model comes from the diffusers one
    tc = cfg.train
    opt = make_optimizer(tc.optimizer.name, model.parameters(), lr=tc.lr, weight_decay=tc.optimizer.weight_decay,
                         kwargs=tc.optimizer.kwargs)
    sched = make_scheduler(tc.scheduler.name, opt, tc.scheduler.kwargs, epochs=tc.epochs, steps_per_epoch=1)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, cfg)
    save_checkpoint(run_dir / CHECKPOINT_NAME, {
        "config": cfg.to_dict(), "epoch": 0, "global_step": 0, "model": model.state_dict(), "ema": None,
        "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "scaler": None, "history": [],
        "rng": {"torch": torch.get_rng_state(), "data": torch.Generator().manual_seed(cfg.seed).get_state()},
        "early_stopping": {}, SPEC_KEY: spec.to_dict(), "imported_from": {"diffusers_config": dcfg},
    })


# --------------------------------------------------------------------------- export
def diffusers_config_of(run: Run) -> dict[str, Any]:
    """The AutoencoderKL config whose layers are exactly the run's; ModelError naming the first mismatch if none."""
    from vaelab.core.layer_specs import parse_layers
    from vaelab.model.build import resolve_layers

    m = run.model
    if m.conditional or m.latent_quantizer is not None or m.mu_head is not None:
        what = "conditional" if m.conditional else "latent-quantized" if m.latent_quantizer is not None else "separate-head"
        raise ModelError(f"a {what} model does not map to diffusers' AutoencoderKL (plain spatial-latent VAEs only)")
    if m.output_activation != "identity":
        raise ModelError(f"model.output_activation is {m.output_activation!r}: AutoencoderKL's decoder has no output "
                         "activation, so diffusers would decode differently; train with model.output_activation: identity")
    lists = resolve_layers(run.config.model, m.input_shape, 0, m.likelihood.params_per_value)
    enc = [str(one) for spec in lists.encoder for one in spec.expand()]
    dec = [str(one) for spec in lists.decoder for one in spec.expand()]
    guess = _guess_config(enc, dec, tuple(m.input_shape), m.latent_scale)
    want_enc, want_dec = diffusers_layers(guess)
    for section, ours, theirs in (("encoder", enc, want_enc), ("decoder", dec, want_dec)):
        canon = [str(s) for s in parse_layers([t for t, _ in theirs], "x")]
        mine = [str(s) for s in parse_layers(ours, "x")]
        for i, (a, b) in enumerate(zip(mine, canon)):
            if a != b:
                raise ModelError(f"model.{section} layer {i} {a!r} does not map to AutoencoderKL (its layer there is {b!r})")
        if len(mine) != len(canon):
            raise ModelError(f"model.{section} has {len(mine)} layers where AutoencoderKL would have {len(canon)}")
    return guess


def _args(token: str) -> list[str]:
    return token.split("_")[1:]


def _guess_config(enc: list[str], dec: list[str], shape: tuple[int, ...], scale: float) -> dict[str, Any]:
    """Read the AutoencoderKL parameters off the layer strings; `diffusers_config_of` then checks them exactly."""
    if len(shape) != 3 or not enc or not enc[0].startswith("C2d_"):
        raise ModelError("only image models (C, H, W) whose encoder starts with a C2d map to AutoencoderKL")
    gn = next((t for t in enc if t.startswith("GN_")), None)
    if gn is None:
        raise ModelError("model.encoder has no GN layer before its output conv, so it is not AutoencoderKL-shaped")
    g = int(_args(gn)[0])
    end = enc.index(gn)
    attention = end >= 2 and enc[end - 2].startswith("VAEA")
    body = enc[1 : end - (3 if attention else 2)]  # the down blocks, without the mid block
    widths, counts, current = [], [], 0
    for t in body + ["Pad_end"]:
        if t.startswith("VAERB_"):
            current += 1
            width = int(_args(t)[1])
        elif t.startswith("Pad") and current:
            widths.append(width)
            counts.append(current)
            current = 0
    if not widths:
        raise ModelError("model.encoder has no VAERB blocks, so it is not AutoencoderKL-shaped")
    conv_out = enc[end + 2] if len(enc) > end + 2 else ""
    latent2 = int(_args(conv_out)[1]) if conv_out.startswith("C2d_") else 0
    return {
        "_class_name": "AutoencoderKL", "in_channels": shape[0], "out_channels": int(_args(dec[-1])[1]) if dec[-1].startswith("C2d_") else 0,
        "down_block_types": ["DownEncoderBlock2D"] * len(widths), "up_block_types": ["UpDecoderBlock2D"] * len(widths),
        "block_out_channels": widths, "layers_per_block": counts[0], "act_fn": "silu", "latent_channels": latent2 // 2,
        "norm_num_groups": g, "sample_size": shape[1] if shape[1] == shape[2] else list(shape[1:]),
        "scaling_factor": scale, "use_quant_conv": len(enc) > end + 3, "use_post_quant_conv": dec[0].endswith("_1_1_0"),
        "mid_block_add_attention": attention, "force_upcast": True,
    }


def _diffusers_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("diffusers")
    except PackageNotFoundError:
        return "0.30.0"  # any version with AutoencoderKL's current config keys (use_quant_conv: 0.28 on)


def write_diffusers_folder(run: Run, folder: Path, name: str = "") -> list[str]:
    """config.json + diffusion_pytorch_model.safetensors that AutoencoderKL.from_pretrained(folder) loads."""
    from safetensors.torch import save

    from vaelab import __version__

    cfg = diffusers_config_of(run)
    enc, dec = diffusers_layers(cfg)
    state = to_diffusers_state(run.model.state_dict(), pair_keys(enc, dec))
    (folder / "config.json").write_text(json.dumps({**cfg, "_diffusers_version": _diffusers_version()}, indent=2) + "\n")
    (folder / WEIGHTS_NAME).write_bytes(save(state, metadata={"format": "pt", "exported_by": f"vaelab {__version__}"}))
    vr = run.data_spec.value_range
    notes = []
    if list(vr) != [-1.0, 1.0]:
        notes.append(f"the run was trained on data in {list(vr)}; diffusers pipelines feed images in [-1, 1]")
    return notes


__all__ = ["import_diffusers", "Imported", "diffusers_layers", "model_section", "diffusers_config_of",
           "write_diffusers_folder", "pair_keys", "BLOCKS", "PARAMS", "read_diffusers_config"]
