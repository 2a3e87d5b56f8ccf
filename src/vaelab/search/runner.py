"""Run a search: one study in a search folder, trials that each train a fresh model into their own run folder.

Search folder: `search.yaml` (the space), `study.journal` (default storage) or `storage.txt` (an external URL),
`trials/trial-NNNN/` (ordinary run folders). Every trial's genes, objectives, predicted values, state, reason
and run folder are in the study's storage the moment it ends. Any number of processes may run the same search
(`--worker`): they share the study; the trial budget counts every trial that is running or has ended, except
those of workers that died (`stale`), which are run again.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from vaelab.core.config import load_config
from vaelab.data import DataBundle, load_data
from vaelab.core.errors import ConfigError, TrainingError
from vaelab.search.objectives import TrialContext, evaluate_objectives
from vaelab.search.pruning import CURVE_ATTR, EpochPruner, make_pruner
from vaelab.search.sampler import PREDICTED_ATTR, make_sampler
from vaelab.search.space import SearchSpace, load_space, space_to_yaml, suggest
from vaelab.search.storage import STORAGE_NOTE, fail_dead_trials, open_storage, owner_attrs, redact

SPACE_NAME = "search.yaml"
FINGERPRINT_ATTR = "space_fingerprint"


@dataclass
class SearchResult:
    folder: Path
    study_name: str
    counts: dict[str, int]  # trial state name -> number of trials
    stale: list[int]  # trials of dead workers marked failed at start


def default_folder(space: SearchSpace) -> Path:
    return Path("searches") / space.name


def open_study(folder: Path, space: SearchSpace, storage_url: str | None = None, *, create: bool = True,
               sampler: optuna.samplers.BaseSampler | None = None) -> tuple[optuna.Study, Any]:
    """Open (or create) the search's study, refusing a folder or study of a different search space."""
    folder = Path(folder)
    fp = space.fingerprint()
    saved = folder / SPACE_NAME
    if saved.is_file():
        old = load_space(saved)
        if old.fingerprint() != fp:
            raise ConfigError(f"search folder {folder} holds a search of a different space ({saved}, fingerprint "
                              f"{old.fingerprint()} vs {fp}); choose another --out, or run the original search file")
    note = folder / STORAGE_NOTE
    if storage_url is None and note.is_file():
        storage_url = note.read_text().strip()
    storage = open_storage(storage_url, folder)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = space.directions()
    if create:
        study = optuna.create_study(storage=storage, study_name=space.name, directions=directions, sampler=sampler,
                                    load_if_exists=True)
    else:
        try:
            study = optuna.load_study(study_name=space.name, storage=storage, sampler=sampler)
        except KeyError:
            raise ConfigError(f"search folder {folder}: no study named {space.name!r} in its storage "
                              f"{redact(storage_url) if storage_url else folder / 'study.journal'}; run `vaelab search` first") from None
    theirs = study.user_attrs.get(FINGERPRINT_ATTR)
    if theirs is not None and theirs != fp:
        raise ConfigError(f"the study {space.name!r} in this storage was made by a different search space (fingerprint "
                          f"{theirs} vs {fp}); rename `name` in the search file or use another --storage/--out")
    if [d.name.lower() for d in study.directions] != directions:
        raise ConfigError(f"the study {space.name!r} has directions {[d.name.lower() for d in study.directions]} "
                          f"but the search file asks for {directions}; rename `name` or use another --out")
    if create:
        if theirs is None:
            study.set_user_attr(FINGERPRINT_ATTR, fp)
            study.set_user_attr("labels", space.labels())
        folder.mkdir(parents=True, exist_ok=True)
        if not saved.is_file():
            saved.write_text(space_to_yaml(space))
        if storage_url is not None and not note.is_file():
            note.write_text(storage_url + "\n")
    return study, storage


def budget_used(study: optuna.Study) -> int:
    """Trials that count against the budget: running or ended, except those of dead workers."""
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state != TrialState.WAITING and not (t.state == TrialState.FAIL and t.user_attrs.get("stale")))


class TrialFailed(Exception):
    """A trial that cannot give objective values (invalid model, NaN); the search goes on."""


def run_search(source: str | Path | SearchSpace, *, out: str | Path | None = None, storage: str | None = None,
               trials: int | None = None, worker: bool = False, bundle: DataBundle | None = None,
               log=sys.stderr) -> SearchResult:
    """Run trials of `source` in the folder `out` until `trials` (default search.trials) are running or ended."""
    space = source if isinstance(source, SearchSpace) else load_space(source)
    folder = Path(out) if out is not None else default_folder(space)
    s = space.search
    worker_seed = (s.seed * 7919 + os.getpid()) % (2**31) if worker else None  # workers must not draw the same genes
    sampler = make_sampler(space, worker_seed=worker_seed)
    study, store = open_study(folder, space, storage, sampler=sampler)
    pruner = make_pruner(s.pruner.name, s.pruner.options())
    budget = trials if trials is not None else s.trials
    if budget < 1:
        raise ConfigError(f"--trials must be >= 1, got {budget}")
    stale = fail_dead_trials(study, store)
    if stale:
        print(f"marked failed: trials {stale} of workers that died; they will be run again", file=log)
    if bundle is None:
        bundle = load_data(space.data, int(space.base.get("seed", 0)))
    while budget_used(study) < budget:
        trial = study.ask()
        for k, v in owner_attrs().items():
            trial.set_user_attr(k, v)
        t0 = time.perf_counter()
        curve: list[float] = []
        try:
            values = _run_trial(trial, space, bundle, folder, sampler, pruner, study, curve)
        except optuna.TrialPruned:
            _finish(trial, curve, t0)
            study.tell(trial, state=TrialState.PRUNED)
            print(f"trial {trial.number}: pruned after {len(curve)} epochs", file=log)
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C)")
            study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as e:  # noqa: BLE001 - any trial error fails that trial only, with its reason
            reason = f"{type(e).__name__}: {e}"
            trial.set_user_attr("fail_reason", reason[:2000])
            _finish(trial, curve, t0)
            study.tell(trial, state=TrialState.FAIL)
            print(f"trial {trial.number}: failed: {reason.splitlines()[0][:300]}", file=log)
        else:
            _finish(trial, curve, t0)
            study.tell(trial, values)
            shown = ", ".join(f"{k} {v:.4g}" for k, v in zip(space.labels(), values))
            print(f"trial {trial.number}: {trial.params} -> {shown}", file=log)
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return SearchResult(folder, space.name, counts, stale)


def _finish(trial: optuna.Trial, curve: list[float], t0: float) -> None:
    trial.set_user_attr("seconds", round(time.perf_counter() - t0, 3))
    if curve:
        trial.set_user_attr(CURVE_ATTR, curve)


def _run_trial(trial: optuna.Trial, space: SearchSpace, bundle: DataBundle, folder: Path, sampler, pruner,
               study: optuna.Study, curve: list[float]) -> list[float]:
    from vaelab.training.runs import load_run
    from vaelab.training.trainer import train

    genes = suggest(trial, space)
    hook = getattr(sampler, "surrogate_hook", None)
    predicted = hook.predictions.pop(trial.number, None) if hook is not None else None
    if predicted is not None:
        trial.set_user_attr(PREDICTED_ATTR, predicted)
    cfg = load_config(space.trial_config(genes, tuple(bundle.shape)))
    run_dir = folder / "trials" / f"trial-{trial.number:04d}"
    trial.set_user_attr("run_dir", str(run_dir.relative_to(folder)))
    trial.set_user_attr("layers", {"encoder": cfg.model.encoder, "heads": cfg.model.heads.model_dump() if cfg.model.heads else None,
                                   "decoder": cfg.model.decoder})
    checker = EpochPruner(pruner, study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))) \
        if pruner is not None else None

    def on_epoch(row: dict[str, Any]) -> None:
        loss = row.get("val_loss", row["train_loss"])
        curve.append(float(loss))
        if checker is not None and checker.step(row["epoch"], loss):
            raise optuna.TrialPruned(f"pruned at epoch {row['epoch']}")

    train(cfg, run_dir, bundle=bundle, on_epoch=on_epoch)
    run = load_run(run_dir)
    ctx = TrialContext(run.model.eval(), cfg, bundle, run.history, seed=cfg.seed)
    values = evaluate_objectives(ctx, space.objectives)
    bad = [label for label, v in zip(space.labels(), values) if not math.isfinite(v)]
    if bad:
        raise TrainingError(f"objective(s) {', '.join(bad)} came out non-finite ({values}); the model diverged")
    return values
