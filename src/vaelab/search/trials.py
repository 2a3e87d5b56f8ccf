"""What each trial of a shared study is, so that any number of workers keep an exact budget.

Every trial a worker ends carries the user attribute `outcome`:
- `trained`, `pruned` (stopped early by the pruner), `failed` (the model or its training failed): a training
  was spent on it; these count against the budget, and so does every RUNNING trial.
- `reused`: its config (`config_key`: the model, loss and training its genes give) equals a finished trial's,
  whose values it copies (`reused_from`); nothing trained.
- `invalid`: its genes give a model that does not build (`vaelab check` refuses it); pruned before training.
- `skipped`: asked after the budget was already taken by lower-numbered trials (workers race on the last one).
- `lost`: interrupted (Ctrl-C); its genes are queued again.
A FAIL trial without an outcome belongs to a worker that died (stale: no heartbeat, or its process is gone);
its genes are queued again (`retry_of`). Trial numbers are serial in every Optuna storage, so a trial trains
only when fewer than `budget` counting trials have lower numbers: the budget is exact under concurrency.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

import optuna
from optuna.trial import FrozenTrial, TrialState

OUTCOME = "outcome"
COUNTED = ("trained", "pruned", "failed")
KEY_ATTR = "config_key"


def counts(t: FrozenTrial) -> bool:
    """Does `t` take one unit of the budget (a training spent or under way)?"""
    return t.state == TrialState.RUNNING or t.user_attrs.get(OUTCOME) in COUNTED


def outcome(t: FrozenTrial) -> str:
    """The outcome attribute, or `running`, `waiting`, `stale` (FAIL without one: its worker died)."""
    if t.state == TrialState.RUNNING:
        return "running"
    if t.state == TrialState.WAITING:
        return "waiting"
    return t.user_attrs.get(OUTCOME) or ("stale" if t.state == TrialState.FAIL else t.state.name.lower())


def used_before(trials: Iterable[FrozenTrial], number: int) -> int:
    """Budget taken by trials numbered below `number`."""
    return sum(1 for t in trials if t.number < number and counts(t))


def genes_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def config_key(raw: dict[str, Any]) -> str:
    """Identity of what a trial trains: its whole config, so genes a family ignores do not make a new model."""
    return hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:24]


def undeclared_below(trials: Iterable[FrozenTrial], number: int) -> list[int]:
    """Running trials numbered below `number` that have not yet declared their `config_key`."""
    return [t.number for t in trials if t.number < number and t.state == TrialState.RUNNING and KEY_ATTR not in t.user_attrs]


def twin(trials: Iterable[FrozenTrial], number: int, key: str) -> FrozenTrial | None:
    """Another trial with config `key` that spent (or spends) a training on it: a finished one (trained first, then
    pruned or failed), else the lowest-numbered running one below `number`, whose result trial `number` waits for.
    The lower number always trains and the higher waits: since every trial declares its key right after it is
    asked and waits for lower ones to declare theirs, two workers never both train one config."""
    done, running = None, None
    for t in trials:
        if t.number == number or t.user_attrs.get(KEY_ATTR) != key:
            continue
        if t.state == TrialState.RUNNING:
            if t.number < number and (running is None or t.number < running.number):
                running = t
        elif t.user_attrs.get(OUTCOME) in COUNTED:
            rank = (t.user_attrs.get(OUTCOME) != "trained", t.number)
            if done is None or rank < (done.user_attrs.get(OUTCOME) != "trained", done.number):
                done = t
    return done or running


def tally(trials: Iterable[FrozenTrial]) -> dict[str, int]:
    """Trials by outcome (trained, reused, pruned, failed, invalid, skipped, lost, stale, running, waiting)."""
    out: dict[str, int] = {}
    for t in trials:
        k = outcome(t)
        out[k] = out.get(k, 0) + 1
    return out


class Requeue:
    """Stale-trial callback: queue a dead worker's genes again (once per trial), remembering which were failed."""

    def __init__(self) -> None:
        self.failed: list[int] = []

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.failed.append(trial.number)
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False)
