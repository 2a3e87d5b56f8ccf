"""`vaelab export RUN --to DIR`: a Hugging Face-style model folder, or a diffusers AutoencoderKL folder.

format "vaelab": config.json (the run's config, data description and last metrics) + model.safetensors (the
weights `load_run` uses: EMA when present) + README.md (a model card with the metrics and their units).
`load_run(DIR)` reads it back (see vaelab.core.exported) and gives the same outputs as the run.
format "diffusers": see vaelab.use.diffusers_interop.

The folder is written beside DIR under a temporary name and renamed into place, so a failed export leaves
nothing behind, and an existing non-empty DIR is never overwritten.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from vaelab import __version__
from vaelab.core.checkpoint import process_umask
from vaelab.core.errors import CheckpointError
from vaelab.core.exported import EXPORT_CONFIG, EXPORT_FORMAT, EXPORT_VERSION, EXPORT_WEIGHTS
from vaelab.data.spec import SPEC_KEY
from vaelab.core.registry import Registry
from vaelab.training.runs import Run, read_metrics
from vaelab.use.units import fmt, run_units, unit_of

CARD_NAME = "README.md"
Writer = Callable[[Run, Path, str], list[str]]  # (run, empty folder, final folder name) -> notes for the user
EXPORT_FORMATS: Registry[Writer] = Registry("export format")


def export_run(run: Run, to: str | Path, *, format: str = "vaelab") -> tuple[Path, list[str]]:
    """Write `run` as a model folder at `to` (which must not exist or be empty); returns (folder, notes)."""
    writer = EXPORT_FORMATS.get(format)
    dest = Path(to)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise CheckpointError(f"--to {dest}: exists and is not an empty folder; choose a new folder (nothing was written)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        notes = writer(run, tmp, dest.name)
        tmp.chmod(0o777 & ~process_umask())  # mkdtemp made it 0700; the files inside follow the umask already
        if dest.exists():
            dest.rmdir()
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest, notes


def export_state(run: Run) -> dict[str, Any]:
    """The weights `load_run` put in the model (EMA when the run has it), contiguous and unshared for safetensors."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in run.model.state_dict().items()}


def last_metrics(run: Run) -> dict[str, Any]:
    """The last epoch's history row and, when `vaelab evaluate` ran, its scalar metrics."""
    history = read_metrics(run.path) or run.history
    out: dict[str, Any] = {"training": dict(history[-1]) if history else {}}
    ev = Path(run.path) / "evaluation.json"
    if ev.is_file():
        data = json.loads(ev.read_text())
        out["evaluation"] = {k: v for k, v in data.items() if isinstance(v, (int, float, str)) and k != "figures"}
    return out


@EXPORT_FORMATS.register("vaelab", doc="config.json + model.safetensors + README.md; load_run reads it back")
def write_vaelab_folder(run: Run, folder: Path, name: str) -> list[str]:
    from safetensors.torch import save

    metrics = last_metrics(run)
    doc = {
        "format": EXPORT_FORMAT, "format_version": EXPORT_VERSION, "library": "vaelab", "vaelab_version": __version__,
        "architecture": "vaelab.model.vae.VAE", "input_shape": list(run.model.input_shape),
        "latent_shape": list(run.model.latent_shape), "parameters": run.model.num_parameters(),
        "config": run.config.to_dict(), SPEC_KEY: run.data_spec.to_dict(), "epoch": len(run.history),
        "metrics": metrics, "history": run.history,
    }
    (folder / EXPORT_CONFIG).write_text(json.dumps(doc, indent=2, default=str) + "\n")
    # save() to bytes, not save_file(): that one writes mode 0600 whatever the umask
    (folder / EXPORT_WEIGHTS).write_bytes(save(export_state(run), metadata={"format": "pt", "library": "vaelab"}))
    (folder / CARD_NAME).write_text(model_card(run, metrics, name))
    return []


def model_card(run: Run, metrics: dict[str, Any], folder_name: str, *, extra: str = "") -> str:
    """A short README: what the model is, what it was trained on, its metrics with units, how to load it."""
    cfg, m = run.config, run.model
    unit = run_units(run)
    arch = cfg.model.preset or "custom layer lists"
    lines = [
        "---", "library_name: vaelab", "tags: [vae, variational-autoencoder, vaelab]", "---", "",
        f"# {cfg.name}", "",
        f"A variational autoencoder trained with vaelab {__version__} ({arch}).", "",
        "| | |", "|---|---|",
        f"| input shape | {tuple(m.input_shape)} |", f"| latent shape | {tuple(m.latent_shape)} |",
        f"| parameters | {m.num_parameters():,} |",
        f"| training data | {run.data_spec.name or cfg.data.name} |",
        f"| epochs | {len(run.history)} |",
        f"| conditional | {m.condition_kind or 'no'} |", "",
    ]
    train = metrics.get("training") or {}
    if train:
        lines += ["## Last training epoch", "", "| metric | value | unit |", "|---|---|---|"]
        lines += [f"| {k} | {fmt(v)} | {unit_of(k, training=unit)} |" for k, v in train.items() if isinstance(v, (int, float))]
        lines.append("")
    ev = metrics.get("evaluation") or {}
    if ev:
        lines += ["## Evaluation (`vaelab evaluate`)", "", "| metric | value | unit |", "|---|---|---|"]
        lines += [f"| {k} | {fmt(v)} | {unit_of(k)} |" for k, v in ev.items()]
        lines.append("")
    lines += [extra or _load_snippet(folder_name), ""]
    return "\n".join(lines)


def _load_snippet(folder_name: str) -> str:
    return "\n".join([
        "## Use", "", "```python", "from vaelab.api import load_run, sample", "",
        f'run = load_run("{folder_name}")', "x = sample(run, 16)  # (16, *input shape) tensor", "```", "",
        f"or from the shell: `vaelab sample {folder_name} -n 16`.",
    ])


@EXPORT_FORMATS.register("diffusers", doc="a diffusers AutoencoderKL folder (seed 001-style architectures only)")
def _write_diffusers(run: Run, folder: Path, name: str) -> list[str]:
    from vaelab.use.diffusers_interop import write_diffusers_folder

    return write_diffusers_folder(run, folder, name)


__all__ = ["export_run", "EXPORT_FORMATS", "model_card", "export_state", "last_metrics"]
