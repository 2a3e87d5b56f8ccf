"""What each trial of a shared study is, so that any number of workers keep an exact budget.

Every trial a worker ends carries the user attribute `outcome`:
- `trained`, `pruned` (stopped early by the pruner), `failed` (the model or its training failed): a training
  was spent on it; these count against the budget, and so does every RUNNING trial.
- `reused`: its genes equal a finished trial's, whose values it copies (`reused_from`); nothing trained.
- `invalid`: its genes give a model that does not build (`vaelab check` refuses it); pruned before training.
- `skipped`: asked after the budget was already taken by lower-numbered trials (workers race on the last one).
- `lost`: interrupted (Ctrl-C); its genes are queued again.
A FAIL trial without an outcome belongs to a worker that died (stale: no heartbeat, or its process is gone);
its genes are queued again (`retry_of`). Trial numbers are serial in every Optuna storage, so a trial trains
only when fewer than `budget` counting trials have lower numbers: the budget is exact under concurrency.
"""
from __future__ import annotations

import json
from typing import Any, Iterable

import optuna
from optuna.trial import FrozenTrial, TrialState

OUTCOME = "outcome"
COUNTED = ("trained", "pruned", "failed")


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


def twin(trials: Iterable[FrozenTrial], me: FrozenTrial | optuna.Trial) -> FrozenTrial | None:
    """A trial other than `me` with the same genes that trained (or is training) them: a finished `trained` one
    first, else the lowest-numbered running one below `me` (whose result `me` should wait for)."""
    key, running = genes_key(me.params), None
    for t in trials:
        if t.number == me.number or genes_key(t.params) != key:
            continue
        if t.state == TrialState.COMPLETE and t.user_attrs.get(OUTCOME) == "trained":
            return t
        if t.state == TrialState.RUNNING and t.number < me.number and (running is None or t.number < running.number):
            running = t
    return running


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
