"""A trial's start, prepared: its resources (``resources(config)``), its world size (``ranks``), its restore point
and where it resumes from after a pause, an exploit or a failure (with its stop rules' state as it was there), as
the ``Launch`` the executor starts.

The controller decides when a trial starts; these say what it starts as. They change only launch state: the
trial's iteration and checkpoint, the ledger's hold on its restore point, the restarts the next store
transaction records.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from tunesmith import _layout
from tunesmith._errors import ConfigError
from tunesmith._secrets import mask
from tunesmith.checkpoint import CheckpointError, verify
from tunesmith.executors._base import Launch
from tunesmith.store.sqlite import result_dict
from tunesmith.trial import TrialView

if TYPE_CHECKING:
    from tunesmith._ledger import Ledger
    from tunesmith._stop import StopRules
    from tunesmith.executors._base import Executor
    from tunesmith.store.sqlite import Store

log = logging.getLogger("tunesmith")


class LaunchHost(Protocol):
    """What preparing a launch reads and changes of the controller (``tunesmith._controller.Controller``)."""

    exp_dir: str
    # the trial's environment from the driver: what the experiment's key is made of (EXPERIMENT_ENV)
    launch_env: dict[str, str]
    executor: Executor
    store: Store
    ledger: Ledger
    stop_rules: StopRules
    # a restarted trial's own copy of the stop rules, their state rebuilt from its results (``restart_rules``)
    _trial_rules: dict[int, StopRules]
    resources: dict[str, float]
    resources_fn: Any
    ranks: int | None
    _rank_unit: dict[int, dict[str, float]]
    _ckpt_time: dict[int, float]
    _paused: set[int]
    _restarts: list[tuple[int, int]]
    _searcher_done: bool

    def _fail(self, error: BaseException) -> None: ...

    def _decision_iteration(self, trial: TrialView) -> int | None: ...

    def _decision_plan(self, trial: TrialView, first: int | None) -> tuple[Any, ...] | None: ...


# What a trial makes its experiment's key of (``callbacks._names.experiment_key``: the same for a resume of it, also
# after a move; another experiment's differs), for a tracking tool's run id from inside the trial
# (integrations.wandb): JSON ``[folder name, created]``, hashed in the trial (a plain run loads no hashlib)
EXPERIMENT_ENV = "TUNESMITH_EXPERIMENT"


def resources_for(ctl: LaunchHost, trial_id: int, config: dict[str, Any]) -> dict[str, float] | None:
    """The trial's resources: ``resources(config)`` checked against what the executor has (a request it can
    never meet ends the experiment with a ConfigError naming the config), or the experiment's."""
    if ctl.resources_fn is None:
        return dict(ctl.resources)
    from tunesmith.executors.resources import normalize

    where = f"resources(config) for trial {trial_id} (config {mask(config)!r})"
    try:
        asked = ctl.resources_fn(config)
        if asked is None:  # a function that forgot its return: not the default (one CPU, no GPU) in silence
            raise ConfigError(f"{where} returned None; expected a dict like {{'cpu': 1, 'gpu': 0.5}}")
        resources = normalize(asked, where=where)
        ctl.executor.check_resources(resources)
        if ctl.ranks is not None:  # a split the ranks cannot share (gpu=3 over 2 ranks): before the trial exists
            from tunesmith import _ranks

            _ranks.split_resources(resources, ctl.ranks, where=where)
    except ConfigError as e:
        message = str(e) if str(e).startswith(where) else f"{where}: {e}"
        ctl._fail(ConfigError(message))
    except Exception as e:  # noqa: BLE001 - the user's function: named in the error
        ctl._fail(ConfigError(f"{where}: the resources function raised {type(e).__name__}: {e}"))
    else:
        return resources
    ctl._searcher_done = True  # the experiment ends: nothing more is suggested
    return None


def make_launch(ctl: LaunchHost, trial: TrialView, restart: bool = False) -> Launch:
    """``trial``'s start from its iteration and checkpoint; ``restart``: it ran before (its stop rules go on from
    its stored results: ``restart_rules``)."""
    restore = trial.checkpoint_path if trial.iteration > 0 else None
    first = ctl._decision_iteration(trial)
    return Launch(trial_id=trial.id, config=trial.config, trial_dir=_layout.trial_dir(ctl.exp_dir, trial.id),
                  resources=trial.resources, restore=restore, iteration=trial.iteration, env=ctl.launch_env,
                  time_offset=ctl._ckpt_time.get(trial.id, 0.0),
                  decision_iteration=first,
                  decision_plan=ctl._decision_plan(trial, first), ranks=ranks_of(ctl, trial),
                  held_checkpoints=ctl.ledger.held_names(_layout.trial_name(trial.id)),
                  stop_rules=restart_rules(ctl, trial, trial.iteration) if restart else None)


def restart_rules(ctl: LaunchHost, trial: TrialView, upto: int) -> bytes | None:
    """The stop rules of a trial that starts again, their state rebuilt from its stored results up to iteration
    ``upto`` (where it restarts), as they were when it reported that one. The driver judges the trial's results with
    this copy from now on (``_trial_rules``: its shared rules hold all the trial reported before, also after
    ``upto``, or after a resume nothing of it), and the trial's process gets it pickled. None: the experiment's
    rules, as every trial starts with them (no rule keeps state, or they cannot be pickled)."""
    ctl._trial_rules.pop(trial.id, None)
    if not ctl.stop_rules.fns:
        return None
    history = [result_dict(row) for row in ctl.store.results(trial.id) if row.iteration <= upto] if upto else []
    made = ctl.stop_rules.for_restart(trial.id, history)
    if made is None:
        return None
    ctl._trial_rules[trial.id], shipped = made
    return shipped


def ranks_of(ctl: LaunchHost, trial: TrialView) -> int | None:
    """The trial's world size for this start: as many ranks as its resources now hold of the per-rank share
    it first asked for (``_ranks.world_size``), so a resize restarts it with more or fewer ranks."""
    if ctl.ranks is None:
        return None
    from tunesmith import _ranks

    unit = ctl._rank_unit.get(trial.id)
    if unit is None:  # first start, or after a resume: the first request, again (resources(config) is pure)
        first = dict(ctl.resources) if ctl.resources_fn is None else resources_for(ctl, trial.id, trial.config)
        unit = ctl._rank_unit[trial.id] = _ranks.split_resources(first or trial.resources, ctl.ranks)
    return _ranks.world_size(trial.resources, unit)


def verify_before_retry(ctl: LaunchHost, trial: TrialView) -> None:
    """A failed trial may have left its latest checkpoint damaged (a dying disk, a killed copy): retry
    from the latest good one. Only on failures: pauses and exploits restart from checkpoints that were
    complete when reported, and checking every byte of a large one would stall the loop."""
    if not trial.checkpoint_path:
        return
    own = [(it, path) for it, path in ctl.store.checkpoints(trial.id) if it < trial.checkpoint_iteration]
    good = first_good_checkpoint(trial, [(trial.checkpoint_iteration, trial.checkpoint_path),
                                               *reversed(own)])
    if good is None:
        trial.checkpoint_path, trial.checkpoint_iteration = None, 0
        ctl.ledger.restore(trial.id, None)
    elif good[1] != trial.checkpoint_path:
        trial.checkpoint_iteration, trial.checkpoint_path = good
        ctl.ledger.restore(trial.id, good[1])
        ctl._ckpt_time[trial.id] = next((r.time_total for r in ctl.store.results(trial.id)
                                          if r.iteration == good[0]), 0.0)


def restart_launch(ctl: LaunchHost, trial: TrialView) -> Launch:
    """Restart a paused/exploited trial from its latest checkpoint (from scratch if it has none)."""
    ctl._paused.discard(trial.id)
    keep = trial.checkpoint_iteration if trial.checkpoint_path else 0
    ctl._restarts.append((trial.id, keep))
    ctl.ledger.forget_after(trial.id, keep)
    trial.iteration = keep
    if keep == 0:
        trial.checkpoint_path = None
    return make_launch(ctl, trial, restart=True)


def first_good_checkpoint(trial: TrialView, candidates: list[tuple[int, str]]) -> tuple[int, str] | None:
    """The first of ``candidates`` (iteration, path) that passes its checksum; a damaged one is skipped
    for the next, with a warning."""
    for it, path in candidates:
        try:
            verify(path)
        except CheckpointError as e:
            log.warning("%s: skipping damaged checkpoint at iteration %d: %s", trial.name, it, e)
            continue
        return it, path
    return None
