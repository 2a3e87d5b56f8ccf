"""Run a search: one study in a search folder, trials that each train a fresh model into their own run folder.

Search folder: `search.yaml` (the space), `study.journal` (default storage), `storage.txt` (an external storage's
URL with the password masked, a note for people: the storage is only ever taken from `--storage`), and
`trials/trial-NNNN/` (ordinary run folders). Any number of processes on any hosts may run the same search
(`--worker`); `vaelab.search.trials` says how they keep an exact budget and never train the same genes twice.
"""
from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from vaelab.core.progress import advance, stage
from vaelab.core.config import Config, load_config
from vaelab.core.errors import ConfigError, TrainingError, VaelabError
from vaelab.data import DataBundle, load_data
from vaelab.search.objectives import OBJECTIVES, TrialContext, evaluate_objectives, objective_units
from vaelab.search.pruning import CURVE_ATTR, EpochPruner, make_pruner, optuna_quiet
from vaelab.search.sampler import PREDICTED_ATTR, draw, generation_quality, make_sampler, predicted_for
from vaelab.search.space import SearchSpace, distributions, load_space, space_to_yaml, suggest
from vaelab.search.storage import (STORAGE_NOTE, Heartbeat, HeartbeatThread, fail_dead_trials, heartbeat_enabled, host_id,
                                   open_storage, owner_attrs, redact)
from vaelab.search.trials import (KEY_ATTR, OUTCOME, Requeue, config_key, counts, genes_key, tally, twin, undeclared_below,
                                  used_before)

SPACE_NAME = "search.yaml"
STUCK = 3  # proposals in a row that train nothing before a worker's next trial is drawn at random
FINGERPRINT_ATTR = "space_fingerprint"
UNITS_ATTR = "objective_units"  # label -> unit of that objective's value for the trial (likelihood, weights)


@dataclass
class SearchResult:
    folder: Path
    study_name: str
    counts: dict[str, int]  # trial outcome -> number of trials (trained, reused, pruned, failed, invalid, ...)
    stale: list[int]  # trials of dead workers this process marked failed


def default_folder(space: SearchSpace) -> Path:
    return Path("searches") / space.name


def open_study(folder: Path, space: SearchSpace, storage_url: str | None = None, *, create: bool = True,
               requeue: Requeue | None = None) -> tuple[optuna.Study, Any]:
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
        raise ConfigError(f"search folder {folder} keeps its study in {note.read_text().strip()} ({note}); give that "
                          "storage with --storage URL (a storage is never taken from a file in the folder)")
    s = space.search
    storage = open_storage(storage_url, folder, Heartbeat(s.heartbeat_interval, s.grace_period), requeue or Requeue())
    directions = space.directions()
    with optuna_quiet():
        if create:
            study = optuna.create_study(storage=storage, study_name=space.name, directions=directions, load_if_exists=True)
        else:
            try:
                study = optuna.load_study(study_name=space.name, storage=storage)
            except KeyError:
                where = redact(storage_url) if storage_url else folder / "study.journal"
                raise ConfigError(f"search folder {folder}: no study named {space.name!r} in its storage {where}; "
                                  "run `vaelab search` first") from None
    theirs = study.user_attrs.get(FINGERPRINT_ATTR)
    if theirs is not None and theirs != fp:
        raise ConfigError(f"the study {space.name!r} in this storage was made by a different search space (fingerprint "
                          f"{theirs} vs {fp}); rename `name` in the search file or use another --storage/--out")
    if [d.name.lower() for d in study.directions] != directions:
        raise ConfigError(f"the study {space.name!r} has directions {[d.name.lower() for d in study.directions]} "
                          f"but the search file asks for {directions}; rename `name` or use another --out")
    if create:
        _first_time(study, space, folder, storage_url)
    return study, storage


def _first_time(study: optuna.Study, space: SearchSpace, folder: Path, storage_url: str | None) -> None:
    if study.user_attrs.get(FINGERPRINT_ATTR) is None:
        study.set_user_attr(FINGERPRINT_ATTR, space.fingerprint())
        study.set_user_attr("labels", space.labels())
    if study.metric_names is None:  # optuna-dashboard shows these names instead of "Objective 0"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(space.labels())
    folder.mkdir(parents=True, exist_ok=True)
    saved = folder / SPACE_NAME
    if not saved.is_file():
        saved.write_text(space_to_yaml(space))
    note = folder / STORAGE_NOTE
    if storage_url is not None and not note.is_file():
        note.write_text(redact(storage_url) + "\n")


def budget_used(study: optuna.Study) -> int:
    """Trials that take the budget: running, or ended after a training (see `vaelab.search.trials`)."""
    return sum(1 for t in study.get_trials(deepcopy=False) if counts(t))


def run_search(source: str | Path | SearchSpace, *, out: str | Path | None = None, storage: str | None = None,
               trials: int | None = None, worker: bool = False, bundle: DataBundle | None = None,
               log=sys.stderr) -> SearchResult:
    """Run trials of `source` in the folder `out` until `trials` (default search.trials) trainings are done."""
    space = source if isinstance(source, SearchSpace) else load_space(source)
    folder = Path(out) if out is not None else default_folder(space)
    budget = trials if trials is not None else space.search.trials
    if budget < 1:
        raise ConfigError(f"--trials must be >= 1, got {budget}")
    requeue = Requeue()
    study, store = open_study(folder, space, storage, requeue=requeue)
    study.sampler = make_sampler(space, existing=len(study.get_trials(deepcopy=False)), worker=worker)
    pruner = make_pruner(space.search.pruner.name, space.search.pruner.options())
    if bundle is None:
        bundle = load_data(space.data, int(space.base.get("seed", 0)))
    w = _Worker(study, store, space, bundle, folder, pruner, requeue, log)
    children = getattr(study.sampler, "vaelab_children", None)
    if children is not None:
        children.measure = w.measure
    quiet = (space.base.get("train") or {}).get("progress", True) is False  # train.progress: false, the trainings too
    with stage(f"search {space.name}: trials", budget, unit="trials", enabled=not quiet):
        advance(min(budget, budget_used(study)))  # a resumed search starts where it stopped
        w.run(budget)
    w.report_surrogate(final=True)
    return SearchResult(folder, space.name, tally(study.get_trials(deepcopy=False)), sorted(set(requeue.failed)))


class _Worker:
    """One process's share of the search: ask, decide, train, tell, until the budget is done."""

    def __init__(self, study, store, space: SearchSpace, bundle: DataBundle, folder: Path, pruner, requeue: Requeue, log):
        self.study, self.store, self.space, self.bundle, self.folder = study, store, space, bundle, folder
        self.pruner, self.requeue, self.log = pruner, requeue, log
        self.poll = min(1.0, float(space.search.heartbeat_interval))  # seconds between looks at others' trials
        self.cache: dict[str, Any] = {}  # shared by the objectives of every trial (OOD data loaded once)
        self.printed: set[int] = set()  # generations whose surrogate quality was printed

    def trials(self) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False)

    def reap(self) -> None:
        before = len(self.requeue.failed)
        fail_dead_trials(self.study, self.store, self.requeue)
        if len(self.requeue.failed) > before:
            print(f"marked failed: trials {self.requeue.failed[before:]} of workers that died; their genes are queued "
                  "again", file=self.log)

    def _watchable(self, t: FrozenTrial) -> bool:
        """A running trial whose end this worker will see: any with heartbeats, else one on this host."""
        return t.state == TrialState.RUNNING and (heartbeat_enabled(self.store) or t.user_attrs.get("host") == host_id())

    def run(self, budget: int) -> None:
        idle, limit = 0, 20 * self.space.search.population + 50
        while True:
            self.reap()
            ts = self.trials()
            if sum(counts(t) for t in ts) >= budget:
                done = sum(counts(t) for t in ts if t.state != TrialState.RUNNING)
                if done < budget and any(self._watchable(t) for t in ts):
                    time.sleep(self.poll)  # another worker's trial may still die and leave its share to us
                    continue
                return
            if idle >= limit:
                print(f"stopping: the last {idle} trials proposed genes that were invalid or already trained; the space "
                      "looks exhausted", file=self.log)
                return
            if idle and idle % STUCK == 0:
                self.unstick(idle)
            with stage("trial", summary=False):  # a row on a terminal; takes the progress of the work inside it
                trained = self.one(budget)
            idle = 0 if trained else idle + 1
            if trained:
                advance()

    def one(self, budget: int) -> bool:
        """Ask one trial and end it; True when it trained a model."""
        with warnings.catch_warnings():  # Optuna warns that heartbeats are meant for study.optimize: we record them
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = self.study.ask()
        for k, v in owner_attrs().items():
            trial.set_user_attr(k, v)
        t0 = time.perf_counter()
        try:
            with HeartbeatThread(self.store, self.study, trial.number):
                state, values, note = self.decide(trial, budget)
            trial.set_user_attr("seconds", round(time.perf_counter() - t0, 3))
        except optuna.exceptions.UpdateFinishedTrialError:  # failed as stale by another worker: its genes were queued
            print(f"trial {trial.number}: another worker saw no heartbeat for {self.space.search.grace_period}s and "
                  "failed it; its genes run again", file=self.log)
            return False
        except KeyboardInterrupt:
            trial.set_user_attr(OUTCOME, "lost")
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C)")
            self.study.tell(trial, state=TrialState.FAIL)
            if trial.params:
                self.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            raise
        self.study.tell(trial, values, state=state, skip_if_finished=True)
        predicted = trial.user_attrs.get(PREDICTED_ATTR) if state == TrialState.COMPLETE else None
        if predicted:
            note += "   (surrogate predicted " + ", ".join(f"{k} {v:.4g}" for k, v in predicted.items()) + ")"
        print(f"trial {trial.number}: {note}", file=self.log)
        self.report_surrogate()
        return trial.user_attrs.get(OUTCOME) in ("trained", "pruned", "failed")

    def report_surrogate(self, final: bool = False) -> None:
        """Print the surrogate's Kendall tau of each generation once all `population` of its trials are trained (at
        the end of the run, of every generation not yet printed)."""
        if getattr(self.study.sampler, "vaelab_children", None) is None:
            return
        labels, pop = self.space.labels(), self.space.search.population
        for q in generation_quality(self.trials(), labels, pop):
            if q["generation"] in self.printed or (q["n"] < pop and not final):
                continue
            self.printed.add(q["generation"])
            print(f"surrogate, generation {q['generation']} ({q['n']} pre-screened trials trained): Kendall tau predicted vs "
                  "trained " + ", ".join(f"{lab} {_tau(q['tau_' + lab])}" for lab in labels) + " (1 = same order; a "
                  "measured objective is exact)", file=self.log)

    def decide(self, trial: optuna.Trial, budget: int) -> tuple[TrialState, list[float] | None, str]:
        genes = suggest(trial, self.space)
        predicted = predicted_for(self.study.sampler, trial.params)
        if predicted is not None:
            trial.set_user_attr(PREDICTED_ATTR, predicted)
        try:
            raw, problem = self.space.trial_config(genes, tuple(self.bundle.shape)), None
        except VaelabError as e:
            raw, problem = None, e
        key = config_key(raw) if raw is not None else "invalid:" + genes_key(genes)
        trial.set_user_attr(KEY_ATTR, key)  # declared before any decision: see vaelab.search.trials.twin
        if used_before(self.trials(), trial.number) >= budget:
            return self.end(trial, "skipped", TrialState.PRUNED, reason="the budget was taken by lower-numbered trials")
        same = self.await_twin(trial.number, key)
        if same is not None:
            trial.set_user_attr("reused_from", same.number)
            if same.user_attrs.get("fail_reason"):
                trial.set_user_attr("fail_reason", same.user_attrs["fail_reason"])
            self.end(trial, "reused")
            return same.state, same.values, f"{genes} reused trial {same.number} ({same.state.name.lower()})"
        try:
            if problem is not None:
                raise problem
            cfg = self.config(trial, raw)
        except VaelabError as e:
            return self.end(trial, "invalid", TrialState.PRUNED, reason=f"{type(e).__name__}: {e}")
        return self.train(trial, genes, cfg)

    def unstick(self, idle: int) -> None:
        """The last `idle` proposals trained nothing (no model, or a config already trained). A sampler that learns only
        from trained trials (GPSampler) would propose the same region forever: the next trial gets genes drawn at
        random (seeded by the search and the trial count)."""
        number = len(self.trials())
        rng = np.random.RandomState((self.space.search.seed * 1_000_003 + number) % 2**32)
        genes = {name: draw(d, rng) for name, d in distributions(self.space).items()}
        self.study.enqueue_trial(genes, user_attrs={"drawn_after_idle": idle})
        print(f"the last {idle} proposals trained nothing (invalid or already trained); trial {number} draws its genes "
              "at random", file=self.log)

    def end(self, trial, outcome: str, state: TrialState | None = None, reason: str | None = None):
        trial.set_user_attr(OUTCOME, outcome)
        if reason is not None:
            trial.set_user_attr("fail_reason", reason[:2000])
        return state, None, f"{outcome}" + (f": {reason.splitlines()[0][:300]}" if reason else "")

    def await_twin(self, number: int, key: str) -> FrozenTrial | None:
        """A finished trial with this config (after waiting for a lower-numbered running one to finish), else None."""
        while True:
            trials = self.trials()
            if undeclared_below(trials, number):  # a lower trial still sampling: its config may be ours
                time.sleep(0.2)
                self.reap()
                continue
            same = twin(trials, number, key)
            if same is None or same.state != TrialState.RUNNING:
                return same
            time.sleep(self.poll)
            self.reap()

    def measure(self, genes: dict[str, Any]) -> tuple[str, dict[int, float]] | None:
        """(config key, {index: value} of the objectives that need no training, on the untrained model of `genes`);
        None when the genes give no model. The surrogate pre-screening uses these instead of predictions."""
        import torch

        from vaelab.model.build import build_model

        untrained = [(i, o) for i, o in enumerate(self.space.objectives) if not OBJECTIVES.entry(o.name).meta.get("trained", True)]
        with torch.random.fork_rng():  # building initialises weights from the global generator: leave it as it was
            try:
                raw = self.space.trial_config(genes, tuple(self.bundle.shape))
                cfg = load_config(raw)
                model = build_model(cfg.model, self.bundle.spec)
            except VaelabError:
                return None
            ctx = TrialContext(model.eval(), cfg, self.bundle, [], seed=cfg.seed, cache=self.cache)
            return config_key(raw), {i: float(OBJECTIVES.get(o.name)(ctx, **o.options())) for i, o in untrained}

    def config(self, trial: optuna.Trial, raw: dict[str, Any]) -> Config:
        """The trial's config, its model built once as `vaelab check` does: invalid genes never reach training."""
        from vaelab.model.build import build_model

        cfg = load_config(raw)
        trial.set_user_attr("layers", {"encoder": cfg.model.encoder, "heads": cfg.model.heads.model_dump() if cfg.model.heads else None,
                                       "decoder": cfg.model.decoder})
        build_model(cfg.model, self.bundle.spec)
        return cfg

    def train(self, trial: optuna.Trial, genes: dict[str, Any], cfg: Config):
        from vaelab.training.runs import load_run
        from vaelab.training.trainer import train

        run_dir = self.folder / "trials" / f"trial-{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir.relative_to(self.folder)))
        finished = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        checker = EpochPruner(self.pruner, finished) if self.pruner is not None else None
        curve: list[float] = []

        def on_epoch(row: dict[str, Any]) -> None:
            loss = row.get("val_loss", row["train_loss"])
            curve.append(float(loss))
            if checker is not None and checker.step(row["epoch"], loss):
                raise optuna.TrialPruned(f"pruned at epoch {row['epoch']}")

        try:
            train(cfg, run_dir, bundle=self.bundle, on_epoch=on_epoch)
            run = load_run(run_dir)
            ctx = TrialContext(run.model.eval(), cfg, self.bundle, run.history, seed=cfg.seed, cache=self.cache)
            values = evaluate_objectives(ctx, self.space.objectives)
            trial.set_user_attr(UNITS_ATTR, dict(zip(self.space.labels(), objective_units(ctx, self.space.objectives))))
            bad = [label for label, v in zip(self.space.labels(), values) if not math.isfinite(v)]
            if bad:
                raise TrainingError(f"objective(s) {', '.join(bad)} came out non-finite ({values}); the model diverged")
        except optuna.TrialPruned:
            trial.set_user_attr(CURVE_ATTR, curve)
            return self.end(trial, "pruned", TrialState.PRUNED)[:2] + (f"{genes} pruned after {len(curve)} epochs",)
        except Exception as e:  # noqa: BLE001 - any training error fails that trial only, with its reason
            if curve:
                trial.set_user_attr(CURVE_ATTR, curve)
            return self.end(trial, "failed", TrialState.FAIL, reason=f"{type(e).__name__}: {e}")
        trial.set_user_attr(CURVE_ATTR, curve)
        self.end(trial, "trained")
        shown = ", ".join(f"{k} {v:.4g}" for k, v in zip(self.space.labels(), values))
        return TrialState.COMPLETE, values, f"{genes} -> {shown}"


def _tau(t: float) -> str:
    return "n/a (equal values)" if math.isnan(t) else f"{t:+.2f}"
