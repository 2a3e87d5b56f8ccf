"""The typed config tree: YAML + `--set dotted.key=value` overrides, validated before any work starts.

This is the only place raw dicts enter. Every error names the dotted field and, for unknown keys,
the closest valid ones.
"""
from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from vaelab.core.data_config import DataConfig
from vaelab.core.errors import ConfigError, DeprecatedKeyWarning
from vaelab.core.layer_specs import LayerLists, parse_layers
from vaelab.core.overrides import apply_override, format_errors, read_yaml  # noqa: F401  (re-exported)
from vaelab.core.quant_config import QuantizeConfig
from vaelab.core.ranges import check_device, check_scheduler_kwargs
from vaelab.core.vocab import (
    ADVERSARIAL_LOSSES,
    CONDITIONS,
    KL_SCHEDULES,
    LIKELIHOODS,
    LOSS_TERMS,
    LOGGERS,
    LR_SCHEDULERS,
    OPTIMIZERS,
    PRECISIONS,
    PRESETS,
    REDUCTIONS,
    build_dataclass_entry,
    entry_options,
)

LayerItem = str | dict[str, Any]

# loss.recon's two names, kept so every config written before model.likelihood means what it meant:
# bce is the Bernoulli likelihood; mse the squared error, i.e. a Gaussian with variance 1/2 minus its constant.
RECON_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "bce": ("bernoulli", {}),
    "mse": ("gaussian", {"variance": 0.5, "normalised": False}),
}


def auto_likelihood(in_unit_interval: bool) -> tuple[str, dict[str, Any]]:
    """model.likelihood auto (and loss.recon auto): bce for data in [0, 1], mse otherwise."""
    name, args = RECON_ALIASES["bce" if in_unit_interval else "mse"]
    return name, dict(args)



def _lookup(registry: Any, name: str) -> None:
    """A registry miss as a validation error, so the message carries the dotted field."""
    try:
        registry.entry(name)
    except KeyError as e:
        raise ValueError(str(e)) from None


def registered(registry: Any) -> Any:
    """A str field whose value must name an entry of `registry`; a miss lists the closest names."""

    def check(v: str) -> str:
        _lookup(registry, v)
        return v

    return Annotated[str, AfterValidator(check)]


class Strict(BaseModel):
    # allow_inf_nan=False: every float of the config is finite (an lr of inf or a weight of nan is a typo)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ConditionConfig(Strict):
    """How labels or vectors condition the encoder and decoder (seed 002's CVAE)."""

    kind: registered(CONDITIONS) = Field("label", description="label (class labels, one-hot) or vector (condition "
                                         "vectors as given): a name in vaelab.model.conditions.CONDITIONS")
    num_classes: int | None = Field(None, ge=2, description="label: taken from the data when omitted")
    dim: int | None = Field(None, ge=1, description="vector: width of the condition vector")


class HeadsConfig(Strict):
    """Separate layer lists from the encoder output to the posterior mean and log-variance."""

    mu: list[LayerItem]
    logvar: list[LayerItem]


class ModelConfig(Strict):
    preset: str | None = None
    preset_args: dict[str, Any] = Field(default_factory=dict)
    encoder: list[LayerItem] | None = Field(None, description="layer strings, or the path of seed 001's .mstruct JSON list")
    heads: HeadsConfig | None = None
    decoder: list[LayerItem] | None = Field(None, description="layer strings, or the path of seed 001's .mstruct JSON list")
    input_shape: list[int] | None = Field(None, description="per-sample shape where no data fixes it")
    latent_scale: float = Field(1.0, gt=0, description="seed 001's latent scale factor (0.18215 in Stable Diffusion)")
    output_activation: Literal["auto", "sigmoid", "tanh", "identity"] = "auto"
    likelihood: str = Field("auto", description="decoder likelihood p(x|z) (see `vaelab likelihoods`); auto: bernoulli "
                            "for [0, 1] data, else loss.recon's mse Gaussian")
    likelihood_args: dict[str, Any] = Field(default_factory=dict, description="options of model.likelihood")
    condition: ConditionConfig | None = None
    quantize: QuantizeConfig | None = Field(None, description="latent quantization and fake-quantized layers")
    _layers: LayerLists | None = PrivateAttr(default=None)  # the parsed encoder/heads/decoder (None for a preset)

    @field_validator("encoder", "decoder", mode="before")
    @classmethod
    def _read_mstruct(cls, v: Any) -> Any:
        return read_layer_file(v) if isinstance(v, (str, Path)) else v

    @model_validator(mode="after")
    def _layers_parse(self) -> "ModelConfig":
        """Parse the layer lists once, here; the model is built from `layers` and never parses strings again."""
        if self.preset is not None:
            if self.encoder is not None or self.decoder is not None or self.heads is not None:
                raise ValueError("give either model.preset or model.encoder/model.decoder, not both")
            _lookup(PRESETS, self.preset)
            self._layers = None
        else:
            if self.encoder is None or self.decoder is None:
                missing = "model.encoder" if self.encoder is None else "model.decoder"
                raise ValueError(f"{missing} is missing: give model.encoder and model.decoder (lists of layer strings) or a model.preset")
            self._layers = parse_layer_lists(self.encoder, self.decoder,
                                             None if self.heads is None else (self.heads.mu, self.heads.logvar))
        if self.input_shape is not None and any(d <= 0 for d in self.input_shape):
            raise ValueError(f"model.input_shape must be positive sizes, got {self.input_shape}")
        if self.likelihood == "auto":
            if self.likelihood_args:
                raise ValueError("model.likelihood_args: give model.likelihood too (auto takes no options)")
        else:
            entry_options(LIKELIHOODS, self.likelihood, self.likelihood_args, "model.likelihood_args", "model.likelihood")
        return self

    @property
    def layers(self) -> LayerLists | None:
        """The parsed layer lists; None for a preset (its lists depend on the data and are parsed where resolved)."""
        return self._layers


def parse_layer_lists(encoder: list[Any], decoder: list[Any], heads: tuple[list[Any], list[Any]] | None) -> LayerLists:
    """Parse an encoder, decoder and optional (mu, logvar) heads; errors name model.<section>[i] and the token."""
    return LayerLists(
        tuple(parse_layers(encoder, "model.encoder")), tuple(parse_layers(decoder, "model.decoder")),
        None if heads is None else (tuple(parse_layers(heads[0], "model.heads.mu")),
                                    tuple(parse_layers(heads[1], "model.heads.logvar"))),
    )


def read_layer_file(path: str | Path) -> list[Any]:
    """Seed 001's structure file: a JSON list of layer strings (`model_structures/VAE_encoder.mstruct`)."""
    import json

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{str(p)!r} is neither a list of layer strings nor an existing .mstruct/JSON file")
    try:
        items = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{p}: not a JSON list of layer strings ({e})") from None
    if not isinstance(items, list):
        raise ValueError(f"{p}: expected a JSON list of layer strings, got {type(items).__name__}")
    return items


class ScheduleConfig(BaseModel):
    """KL-weight schedule; the parameters beside `kind` depend on it (see vaelab.training.schedules)."""

    model_config = ConfigDict(extra="allow")
    kind: str = "constant"

    @model_validator(mode="after")
    def _check(self) -> "ScheduleConfig":
        build_dataclass_entry(KL_SCHEDULES, self.kind, "loss.kl_schedule", self.params())
        return self

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def renamed_keys(data: Any, renames: dict[str, str], section: str) -> Any:
    """Accept old key names in a raw section, with a DeprecatedKeyWarning naming the new key (shown once)."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for old, new in renames.items():
        if old not in data:
            continue
        if new in data:
            raise ValueError(f"{section}.{old} is the old name of {section}.{new}: give only {section}.{new}")
        warnings.warn(f"{section}.{old} is deprecated: it is now {section}.{new} (same meaning); rename it in your config",
                      DeprecatedKeyWarning, stacklevel=1)
        data[new] = data.pop(old)
    return data


class AdversarialConfig(Strict):
    """A PatchGAN discriminator's loss as a term (the latent-diffusion autoencoder's recipe, Rombach et al. 2022):
    weight x adaptive weight x generator loss, from optimizer step `start_step` on."""

    weight: float = Field(0.5, ge=0, description="the term's weight (LDM's disc_weight), times the adaptive weight")
    start_step: int = Field(0, ge=0, description="optimizer steps before the term and the discriminator start")
    loss: registered(ADVERSARIAL_LOSSES) = Field("hinge", description="hinge or non_saturating")
    adaptive: bool = Field(True, description="scale by |grad recon| / |grad adversarial| at the decoder's last layer")
    lr: float | None = Field(None, gt=0, description="the discriminator's Adam learning rate (default train.lr)")
    betas: tuple[float, float] = Field((0.5, 0.9), description="the discriminator's Adam betas")
    layers: int = Field(3, ge=1, le=6, description="stride-2 conv layers of the PatchGAN (its receptive field)")
    channels: int = Field(64, ge=1, le=1024, description="width of its first layer (doubling per layer, up to 8x)")


class PerceptualConfig(Strict):
    """LPIPS (VGG) as a loss term, from weights already on disk (training/perceptual.py); nothing downloads."""

    weight: float = Field(1.0, ge=0, description="the term's weight")
    backbone: Path | None = Field(None, description="a local VGG16 state dict (torchvision's vgg16-397923af.pth)")
    linear: Path | None = Field(None, description="a local LPIPS linear-head file (lpips' weights/v0.1/vgg.pth)")

    @model_validator(mode="after")
    def _weights_given(self) -> "PerceptualConfig":
        missing = [k for k in ("backbone", "linear") if getattr(self, k) is None]
        if missing:
            raise ValueError(f"loss.perceptual needs LPIPS weights you have locally and vaelab downloads none: set "
                             + " and ".join(f"loss.perceptual.{k}" for k in missing)
                             + " (backbone: torchvision's VGG16 state dict; linear: lpips' weights/v0.1/vgg.pth), "
                             "or drop loss.perceptual")
        return self


class LossConfig(Strict):
    """total = alpha*recon + kl_weight*schedule*KL + ssim*ssim_weight*(1-SSIM) + sparse*lambd*mean|mu|
    + the weights in extra_terms; each term is registered in vaelab.training.losses."""

    recon: Literal["auto", "bce", "mse"] = "auto"
    reduction: registered(REDUCTIONS) = Field("sum", description="sum or mean over the non-batch dims")
    alpha: float = Field(1.0, ge=0)
    kl_weight: float = Field(1.0, ge=0)
    ssim: bool = False
    ssim_weight: float = Field(1.0, ge=0, description="weight of (1 - SSIM); was loss.beta")
    sparse: bool = False
    lambd: float = Field(0.0, ge=0)
    free_bits: float = Field(0.0, ge=0)
    data_range: float | None = Field(None, gt=0, description="SSIM data range; from the data when omitted")
    kl_schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    extra_terms: dict[str, float] = Field(default_factory=dict, description="{term: weight} for registered loss "
                                          "terms without a key of their own")
    adversarial: AdversarialConfig | None = Field(None, description="a PatchGAN discriminator term (images only)")
    perceptual: PerceptualConfig | None = Field(None, description="LPIPS from local weights (images only)")

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        return renamed_keys(data, {"beta": "ssim_weight"}, "loss")

    @field_validator("extra_terms")
    @classmethod
    def _known_terms(cls, v: dict[str, float]) -> dict[str, float]:
        for name, weight in v.items():
            _lookup(LOSS_TERMS, name)
            key = LOSS_TERMS.get(name).key
            if key is not None:
                raise ValueError(f"the {name!r} term is weighted by {key}: set that instead")
            if weight < 0:
                raise ValueError(f"{name}: a term's weight must be >= 0, got {weight}")
        return v


def _options(name: str, args: dict[str, Any]) -> Any:
    return entry_options(LIKELIHOODS, name, args, "model.likelihood_args", "model.likelihood")


class OptimizerConfig(Strict):
    name: registered(OPTIMIZERS) = "adam"
    weight_decay: float = Field(0.0, ge=0)
    kwargs: dict[str, Any] = Field(default_factory=dict)


class SchedulerConfig(Strict):
    name: registered(LR_SCHEDULERS) = "constant"
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kwargs")
    @classmethod
    def _in_range(cls, v: dict[str, Any]) -> dict[str, Any]:
        check_scheduler_kwargs(v)
        return v


class EarlyStoppingConfig(Strict):
    patience: int = Field(5, ge=1)
    min_delta: float = Field(0.0, ge=0)


class TrainConfig(Strict):
    epochs: int = Field(10, ge=1)
    batch_size: int | Literal["auto"] = Field(128, description="samples per batch, or auto: the largest that fits (vaelab memory)")
    eval_batch_size: int | None = Field(None, ge=1)
    lr: float = Field(1e-3, gt=0)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    grad_clip: float | None = Field(None, gt=0, description="max global gradient norm")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    ema: float | None = Field(None, gt=0, lt=1, description="EMA decay of the weights, e.g. 0.999")
    early_stopping: EarlyStoppingConfig | None = None
    precision: registered(PRECISIONS) = Field("fp32", description="fp32 | bf16 (CPU and CUDA) | fp16 (CUDA, with gradient scaling)")
    device: str = "auto"
    progress: bool = True
    figures: bool = True
    compile: bool = Field(False, description="torch.compile the model; compile time is reported apart from the speed")
    max_memory_gb: float | None = Field(None, gt=0, allow_inf_nan=False, description="refuse a model whose estimated "
                                        "training memory exceeds this (default: the device's free memory)")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        return check_device(v)

    log: list[str] = Field(default_factory=lambda: ["jsonl"], description="experiment logs: jsonl (always), tensorboard")

    @field_validator("log")
    @classmethod
    def _loggers_known(cls, v: list[str]) -> list[str]:
        for name in v:
            _lookup(LOGGERS, name)
        return v

    @field_validator("batch_size")
    @classmethod
    def _batch_positive(cls, v: int | str) -> int | str:
        if v != "auto" and v < 1:
            raise ValueError(f"train.batch_size must be >= 1 or auto, got {v}")
        return v

    channels_last: bool | Literal["auto"] = Field(
        "auto", description="keep 4-D image batches and conv weights in channels-last memory format; auto: on for "
        "models with 2-D convolutions over images (1.09-1.14x faster on CPU: benchmarks/bench_train_conv.py)")
    threads: int | Literal["auto"] = Field("auto", description="torch threads: auto = one per CPU that other processes "
                                           "leave free (re-measured while training), or a fixed count")

    @field_validator("threads")
    @classmethod
    def _threads_positive(cls, v: int | str) -> int | str:
        if v != "auto" and v < 1:
            raise ValueError(f"train.threads must be >= 1 or auto, got {v}")
        return v


class Config(Strict):
    name: str = "vae"
    seed: int = 0
    model: ModelConfig = Field(default_factory=lambda: ModelConfig(preset="examples-mlp"))
    data: DataConfig = Field(default_factory=DataConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @model_validator(mode="after")
    def _recon_names_a_likelihood(self) -> "Config":
        """loss.recon bce/mse set model.likelihood (see RECON_ALIASES); both given must agree."""
        alias = RECON_ALIASES.get(self.loss.recon)
        if alias is None:
            return self
        name, args = alias
        m = self.model
        if m.likelihood == "auto":
            # a copy (the caller's ModelConfig is not changed), set without re-running this validator
            object.__setattr__(self, "model", m.model_copy(update={"likelihood": name, "likelihood_args": dict(args)}))
        elif m.likelihood != name or _options(name, m.likelihood_args) != _options(name, args):
            def said(n: str, a: dict[str, Any]) -> str:
                return n + (f" {a}" if a else "")

            raise ValueError(f"loss.recon: {self.loss.recon} means model.likelihood {said(name, args)}, but model.likelihood "
                             f"is {said(m.likelihood, m.likelihood_args)}: set loss.recon: auto to keep model.likelihood")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=False)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ---------------------------------------------------------------------------- loading


def format_validation_error(err: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One line per pydantic error, naming the dotted field; unknown keys get the closest valid key of `model`."""
    return format_errors(err, model or Config)


def default_config_path() -> Path:
    """The bundled default config (`vaelab train` without a CONFIG): an MLP VAE on scikit-learn's digits."""
    from importlib import resources

    return Path(str(resources.files("vaelab") / "configs" / "default.yaml"))


def load_config(source: str | Path | Mapping[str, Any] | None = None, overrides: list[str] | None = None) -> Config:
    """Build a validated Config from a YAML path or a mapping, then `dotted.key=value` overrides.

    `None` is the CLI's default, the bundled default.yaml; `{}` is every field at its default."""
    if source is None:
        raw: dict[str, Any] = read_yaml(default_config_path())
    elif isinstance(source, Mapping):
        raw = copy.deepcopy(dict(source))
    else:
        raw = read_yaml(source)
    for assignment in overrides or []:
        apply_override(raw, assignment)
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e)) from None
