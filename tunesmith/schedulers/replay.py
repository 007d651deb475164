"""Replay a PBT trial's config schedule in one trial (``ts.PBTReplay``).

A PBT trial's effective history is a lineage: up to the iteration of its last exploit it *is* its source
(the checkpoint it restarted from), whose history is in turn its own source's up to the source's last
exploit before that moment, and so on back to a trial that was never exploited. The config schedule of
the lineage is the list of (iteration, config) at which the config changed: the root's config from 0,
then each exploit's new config from the iteration it restarted at.

The lineage is read from the experiment's store once, in the constructor (its ``exploit`` events: source,
iteration, config, and ``old_config`` where the store has it); afterwards the scheduler is pure. A trial
run under it (``ts.run(fn, space=replay.config, scheduler=replay, num_samples=1)``) starts with the root's
config; when it reports the iteration of a change it is answered ``Exploit`` from its *own* latest
checkpoint with the next config, so the function restarts there and sees the new config through
``ts.get_config()`` as the PBT trial did (the trainable must checkpoint at those iterations, as PBT
requires: a trial restarted from an older checkpoint runs the iterations since with the new config). It
is stopped at the original trial's last iteration.
"""

from __future__ import annotations

import copy
from typing import Any

from tunesmith._errors import ConfigError
from tunesmith.schedulers._base import CONTINUE, STOP, Decision, Exploit, Scheduler, SchedulerView
from tunesmith.trial import Result, TrialView, trial_name


def lineage_schedule(events: list[tuple[int, float, str, int | None, Any]], configs: dict[int, dict[str, Any]],
                     trial_id: int) -> list[tuple[int, dict[str, Any]]]:
    """The config schedule [(from_iteration, config), ...] of ``trial_id``'s lineage (first entry at 0).

    Args:
        events: the store's events as ``Store.events()`` returns them (seq, time, kind, trial, data).
        configs: every trial's latest config (the store's ``trials`` rows).

    Raises:
        ConfigError: a trial of the lineage is unknown, or a root's first config is not stored (a store
            written before exploit events kept the config they replaced).
    """
    exploits: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    for seq, _time, kind, tid, data in events:
        if kind == "exploit" and tid is not None and isinstance(data, dict):
            exploits.setdefault(tid, []).append((seq, data))

    def original(tid: int) -> dict[str, Any]:
        own = exploits.get(tid)
        if not own:
            if tid not in configs:
                raise ConfigError(f"trial_id={trial_id}: {trial_name(tid)} (of its lineage) is not in the experiment")
            return copy.deepcopy(configs[tid])
        first = own[0][1].get("old_config")
        if not isinstance(first, dict):
            raise ConfigError(f"trial_id={trial_id}: the config {trial_name(tid)} started with is not stored (its "
                              f"exploit events do not keep the config they replaced); its lineage cannot be replayed")
        return copy.deepcopy(first)

    def schedule(tid: int, before_seq: float) -> list[tuple[int, dict[str, Any]]]:
        own = [(seq, data) for seq, data in exploits.get(tid, []) if seq < before_seq]
        if not own:
            return [(0, original(tid))]
        seq, data = own[-1]  # the last exploit replaced everything before it with the source's history
        iteration, source = int(data.get("iteration") or 0), int(data["source"])
        base = [(it, cfg) for it, cfg in schedule(source, seq) if it < iteration]
        return [*base, (iteration, copy.deepcopy(data["config"]))]

    out: list[tuple[int, dict[str, Any]]] = []
    for it, cfg in schedule(trial_id, float("inf")):
        if out and cfg == out[-1][1]:
            continue  # no change
        out.append((it, cfg))
    return out


class PBTReplay(Scheduler):
    """Replay the config schedule of a PBT trial's lineage in one trial.

    Args:
        experiment: the PBT experiment (a folder path or a name under the results folder, as ``ts.load``).
        trial_id: the trial whose lineage to replay (an int id or a ``"trial_00003"`` name).

    Attributes:
        config: the config the replay starts with (pass it as ``space``).
        schedule: ``[(iteration, config), ...]``: from ``iteration`` on, the trial trains with ``config``.
        last_iteration: the original trial's last iteration; the replay is stopped there.

    Raises:
        ConfigError: no such experiment or trial, or a lineage the store cannot reconstruct.
    """

    def __init__(self, experiment: str, trial_id: int | str) -> None:
        from tunesmith.results import _trial_id, load

        self.experiment = experiment
        self.trial_id = trial_id
        result = load(experiment)
        try:
            tid = _trial_id(trial_id)
        except (KeyError, ConfigError):
            raise ConfigError(f"trial_id: expected a trial id or a name such as 'trial_00003'; got {trial_id!r}") \
                from None
        trials = {t.id: t for t in result.trials}
        if tid not in trials:
            raise ConfigError(f"trial_id: {trial_id!r} is not in the experiment {result.path} "
                              f"(ids {min(trials, default=0)}..{max(trials, default=-1)})")
        store = result._store
        self.schedule = lineage_schedule(store.events(), {t.id: t.config for t in result.trials}, tid)
        self.config: dict[str, Any] = copy.deepcopy(self.schedule[0][1])
        self.last_iteration: int = trials[tid].iteration

    def setup(self, metric: str | list[str] | None, mode: str | list[str] | None) -> None:
        """Replays need no metric: the decisions depend on the iteration only."""
        self.metric, self.mode = metric, mode
        # each trial's latest change applied (an index in ``schedule``; -1 before its first result). A change is
        # applied once: a trial it restarted from a checkpoint older than an earlier change trains on with the
        # new config, instead of being sent back to the config of those iterations, then forward again, for ever
        self._applied: dict[int, int] = {}

    def _change_at(self, iteration: int) -> int:
        """The index of the change the lineage trained with for the iteration after ``iteration``."""
        return max(index for index, (it, _cfg) in enumerate(self.schedule) if it <= iteration)  # the first is at 0

    def on_result(self, trial: TrialView, result: Result, view: SchedulerView) -> Decision:
        if result.iteration >= self.last_iteration:
            return STOP
        due = self._change_at(result.iteration)
        if due <= self._applied.get(trial.id, -1):
            return CONTINUE
        self._applied[trial.id] = due
        wanted = self.schedule[due][1]
        if wanted == trial.config:
            return CONTINUE
        return Exploit(source_trial=trial.id, config=copy.deepcopy(wanted), source_checkpoint=trial.checkpoint_path,
                       source_iteration=trial.checkpoint_iteration)

    def decision_iteration(self, trial: TrialView) -> int | None:
        """The iteration of the next change not applied yet (or the last one)."""
        if trial.iteration >= self.last_iteration:
            return None
        applied = self._applied.get(trial.id, 0)
        later = [it for it, _cfg in self.schedule[applied + 1:]]
        return max(min([*later, self.last_iteration]), trial.iteration + 1)
