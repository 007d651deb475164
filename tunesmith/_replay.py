"""Resume: rebuild a controller's state from its experiment's store.

The searcher and scheduler see every stored suggestion and result again, in order (their decisions are
past: only the state they rebuild counts), the checkpoint ledger learns what is on disk, checkpoints no row
names are removed, and every unfinished trial is queued to restart from its latest good checkpoint, except the
trials the scheduler had paused and not chosen to resume since: they stay PAUSED (``Controller._paused``) until
its ``choose_trial_to_run`` names them, as they would have (a trial an interruption or ``fail_fast`` paused mid-run
restarts: its ``pause`` event says who paused it). The results such a trial reported while the run stopped it
were stored but never decided (its ``pause`` event says up to which iteration they were): they are kept from the
scheduler here and left to the controller (``Controller._undecided``), which decides them first, as it would have,
before the trial restarts or not. So is the last result of a trial a crash (SIGKILL) left RUNNING: a decision
on it other than Continue (a PBT exploit) was held until its worker stopped, and stored nowhere. The controller
then runs its loop as if it had never stopped.
Experiment-level stoppers (``Stopper.stop_all``) see the stored results too: one that had ended the experiment
ends the resumed one before anything starts, as a ``stop_experiment`` from the dashboard does (its ``command``
event); nothing runs again then, failed trials included (``restart_errored``), and the trials that were stopping
when the driver died end with a ``stop`` event. A trial a ``stop_trial`` from the dashboard was applied to (its
``command`` event, stored before the trial was told) whose end is not in the store ends where it is, not restarted.

What the scheduler saw live is what it sees again: the results a PBT exploit superseded (an older generation)
are replayed too, and each result comes with the config the trial had when it reported it (the original
suggestion, then each exploit's new config, from the store's exploit events): PB2 learns from (config,
progress) pairs, so a replay with the latest config only would rebuild another model.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from tunesmith._epochs import Epoch as _Epoch
from tunesmith._epochs import epoch_of as _epoch_of
from tunesmith._epochs import epochs as _epochs
from tunesmith._epochs import exploits as _exploits
from tunesmith._launches import LaunchHost, first_good_checkpoint, restart_launch
from tunesmith._ledger import clean_leftovers
from tunesmith.schedulers._base import Exploit, Pause
from tunesmith.store.sqlite import ResultRow, result_dict
from tunesmith.trial import Result, TrialStatus, TrialView

if TYPE_CHECKING:
    from tunesmith._objective import Objective
    from tunesmith._stop import StopRules
    from tunesmith.executors._base import Launch
    from tunesmith.schedulers._base import Scheduler, SchedulerView
    from tunesmith.searchers._base import Searcher

log = logging.getLogger("tunesmith")


class Replayable(LaunchHost, Protocol):
    """What the replay reads and fills of a new controller (``tunesmith._controller.Controller``, before its
    ``run``), besides what a launch needs: named here so this module needs no import of the controller, which
    calls it."""

    name: str
    searcher: Searcher
    scheduler: Scheduler
    stop_rules: StopRules
    objective: Objective
    view: SchedulerView
    trials: dict[int, TrialView]
    num_results: int
    best_so_far: tuple[int, float] | None
    _next_id: int
    _metric_seen: set[int]
    _pending_launch: list[Launch]
    _undecided: list[tuple[TrialView, list[tuple[Result, bool]]]]
    _paused: set[int]
    _end_reason: str | None
    ended_by: str | None
    _stopping: bool
    _stop_at_start: list[tuple[int, str]]
    _failures_before: dict[int, int]
    _errored_restarts: list[tuple[int, str]]


def replay(ctl: Replayable, restart_errored: str | None = None) -> None:
    """Fill ``ctl`` (a new controller, before ``run``) from its store.

    Args:
        restart_errored: None keeps ERROR trials as they are; "restart" runs them again from scratch;
            "resume" continues them from their latest checkpoint.
    """
    records = ctl.store.trials()
    restarts: list[TrialView] = []
    indexed: list[tuple[int, list[tuple[int, str]], list[ResultRow]]] = []
    known: set[str] = set()  # every checkpoint the store names: the rest in trials/ is left over
    # every stored result and every end, replayed in the order they happened, not trial by trial: a scheduler's
    # state (PBT's random draws, a rung's ranking) depends on the order it saw results from different trials in
    history: list[_Step] = []
    events = ctl.store.events()
    exploits = _exploits(events)
    by_scheduler, decided_at = _pauses(events)
    dashboard_stops, dashboard_ended = _dashboard_stops(events)
    ctl._failures_before.update(_errored_restarts(events))  # a trial's retries count from its latest restart_errored
    # each time the scheduler was told that no trial would be added (the searcher exhausted, or stalled): where it came
    # among the results and ends (after those of its instant), as what the scheduler decided next depended on it
    history.extend(_Step(at, 2, 0, 0, 0, None, None, {}, None, None) for at in _no_more_trials(events))
    # the results of a trial a pause of the whole run stopped that came after its last decided one (it has not run
    # since: still PAUSED), with whether an experiment-level stopper stopped the trial at each
    undecided: dict[int, list[tuple[Result, bool]]] = {}
    crashed: set[int] = set()  # trials a crash left running: their last result is undecided
    # trials the replayed scheduler paused (a Pause, or an Exploit that waits), not resumed since
    held: set[int] = set()
    # what each trial is when the replay is over (its record); during the replay it is what it was then
    final: dict[int, tuple[dict[str, Any], TrialStatus, str | None, int]] = {}
    for rec in records:
        trial = TrialView(id=rec["id"], config=rec["config"], status=TrialStatus(rec["status"]),
                          resources=rec["resources"] or dict(ctl.resources), parent_id=rec["parent_id"],
                          parent_iteration=rec["parent_iteration"], generation=rec["generation"],
                          num_failures=rec["num_failures"],
                          error=rec["error"], start_time=rec["start_time"], end_time=rec["end_time"])
        ctl.trials[trial.id] = trial
        ctl._next_id = max(ctl._next_id, trial.id + 1)
        epochs = _epochs(trial.config, exploits.get(trial.id, []))
        final_config = trial.config
        trial.config = epochs[0].config  # as suggested: what the searcher gave and the scheduler was first shown
        ctl.searcher.restore_suggestion(trial.id, trial.config)
        ctl.scheduler.on_trial_add(trial, ctl.view)
        every = ctl.store.results(trial.id, all_generations=True)
        rows = [row for row in every if row.generation == trial.generation]  # its current history
        own = ctl.store.checkpoints(trial.id)
        steps = _steps(trial, every, epochs, dict(own), ctl.store.checkpointed(trial.id))
        history.extend(steps)
        indexed.append((trial.id, own, rows))
        known.update([path for _it, path in own] + ([rec["checkpoint"]] if rec["checkpoint"] else []))
        # the latest checkpoint that passes its checksum (the trial's pointer first: after a PBT
        # exploit it is the source's); a damaged one is skipped for the one before, with a warning
        candidates = list(reversed(own))
        if rec["checkpoint"] and (rec["checkpoint_iteration"], rec["checkpoint"]) not in own:
            candidates.insert(0, (rec["checkpoint_iteration"], rec["checkpoint"]))
        good = first_good_checkpoint(trial, candidates)
        if good is not None:
            it, path = good
            trial.checkpoint_path, trial.checkpoint_iteration = path, it
            ctl._ckpt_time[trial.id] = next((r.time_total for r in rows if r.iteration == it), 0.0)
            if not own or path != own[-1][1]:  # another trial's (a PBT exploit), or an older own one
                ctl.ledger.restore(trial.id, path)
        final[trial.id] = (final_config, trial.status, trial.checkpoint_path, trial.checkpoint_iteration)
        if trial.status is not TrialStatus.PAUSED:
            decided_at.pop(trial.id, None)
        if trial.status is TrialStatus.RUNNING and rows and trial.id not in dashboard_stops and not dashboard_ended:
            # the driver died (a crash, SIGKILL) while it ran: a decision on its last result other than Continue (an
            # exploit, a pause, a stop) was held until its worker stopped, and is nowhere: it is decided again (unless
            # a stop from the dashboard, applied, or the experiment's end ends the trial anyway)
            decided_at[trial.id] = rows[-1].iteration - 1
            crashed.add(trial.id)
        errored = trial.status is TrialStatus.ERROR
        if trial.status is TrialStatus.TERMINATED or (errored and restart_errored is None):
            end = trial.end_time if trial.end_time is not None else 0.0
            # stamped on the results' clock (``Executor.timestamp``), so it falls among the other trials' results where
            # it came; never before its own last result (a store written before stamped ends on the wall clock, behind
            # the simulated executor's virtual timestamps)
            end = max(end, steps[-1].time) if steps else end
            history.append(_Step(end, 1, trial.id, len(epochs), 0, trial, None, epochs[-1].config, None, None))
            continue
        if errored and restart_errored == "restart":
            trial.checkpoint_path, trial.checkpoint_iteration = None, 0
            ctl.ledger.restore(trial.id, None)
            final[trial.id] = (final_config, trial.status, None, 0)
        restarts.append(trial)
    # what this run stamps (results, ends) comes after everything stored, on the executor's clock (the simulated
    # one's is its own: it would start again from its epoch, before an earlier run's late results)
    stamped = [step.time for step in history] + [rec["end_time"] for rec in records if rec["end_time"] is not None]
    if stamped:
        ctl.executor.resumed_after(max(stamped))
    # as they were at the start: running, without a checkpoint
    for trial in ctl.trials.values():
        trial.status, trial.checkpoint_path, trial.checkpoint_iteration = TrialStatus.RUNNING, None, 0
    history.sort(key=lambda step: step[:5])
    for step in history:
        if step.trial is None:  # no trial would be added from here (``Controller._no_more_trials``)
            ctl.scheduler.on_no_more_trials(ctl.view)
            continue
        trial, row = step.trial, step.row
        trial.config = step.config
        if row is None:  # the trial ended here
            trial.status = final[trial.id][1]
            ctl.scheduler.on_complete(trial, trial.last_result, ctl.view)
            ctl.searcher.observe(trial.id, trial.last_result.metrics if trial.last_result else {}, True)
            continue
        if step.checkpoint is not None:
            trial.checkpoint_iteration, trial.checkpoint_path = step.checkpoint
        metrics = result_dict(row)
        result = Result(trial.id, row.iteration, metrics)
        ctl.searcher.observe(trial.id, metrics, False)
        if trial.id in held:  # it reports again: the scheduler had chosen it to resume
            _chosen(ctl, trial, held)
        later = trial.id in decided_at and row.generation == trial.generation and row.iteration > decided_at[trial.id]
        if not later:
            # rebuilds rungs; the decision is past, but whether it paused the trial is kept
            decision = ctl.scheduler.on_result(trial, result, ctl.view)
            if isinstance(decision, Pause) or (isinstance(decision, Exploit) and decision.pause):
                held.add(trial.id)
                trial.status = TrialStatus.PAUSED  # as the scheduler saw it from here (PBT: a trial paused behind)
        stopped = False
        if ctl.stop_rules.experiment:  # experiment-level stoppers (ExperimentPlateau...) rebuild their state
            stopped = ctl.stop_rules.observe_experiment(trial.id, metrics)[0]
        if later:  # never decided: the controller decides it (the stoppers saw it then, and said this)
            undecided.setdefault(trial.id, []).append((result, stopped))
        if row.generation == trial.generation:  # an older generation's row is history, not where it is
            trial.iteration, trial.last_result = row.iteration, result
        ctl.num_results += 1
        value = ctl.objective.value(metrics)  # None with several metrics: no single best
        if value is not None:
            ctl._metric_seen.add(trial.id)
            if ctl.best_so_far is None or ctl.objective.better(value, ctl.best_so_far[1]):
                ctl.best_so_far = (trial.id, value)
        if step.then is not None:  # exploited at this result: the clone's config and checkpoint from here
            trial.config = step.then.config
            trial.checkpoint_iteration, trial.checkpoint_path = step.then.cloned, _REPLAYED
            trial.last_result = None  # as live (``apply_exploit``): the new config has reported nothing yet
    # A trial the scheduler had paused, and that was still paused when the run stopped, waits paused for the
    # scheduler to choose it, as it would have; one it had chosen since (running when the run stopped: the
    # interruption paused it, or a crash left it running) leaves the scheduler's queue as it did then, and restarts.
    waiting = {trial.id for trial in restarts if trial.id in held and trial.id in by_scheduler
               and final[trial.id][1] is TrialStatus.PAUSED}
    for trial in restarts:
        if trial.id in held and trial.id not in waiting:
            _chosen(ctl, trial, held)
    for tid, trial in ctl.trials.items():
        trial.config, trial.status, trial.checkpoint_path, trial.checkpoint_iteration = final[tid]
    if ctl.stop_rules.experiment and ctl.stop_rules.ended(where="the end of the stored results"):
        # it ended the experiment before (the interruption came before every trial had stopped): it still does
        ctl._end_reason = "a stop rule ended the experiment before it was resumed"
        ctl.ended_by = f"stop rule {type(ctl.stop_rules.ended_by).__qualname__}, before the resume"
        ctl._stopping = True
    elif dashboard_ended:  # stop_experiment, applied: kept as a stop rule's end is
        ctl._end_reason = "the experiment was stopped from the dashboard before it was resumed"
        ctl.ended_by = "a stop from the dashboard, before the resume"
        ctl._stopping = True
    if ctl._stopping:
        for tid in crashed:  # it ends with the experiment, as it would have: nothing left to decide
            undecided.pop(tid, None)
        # nothing runs again, the failed trials included (restart_errored): they stay ERROR; the trials that were
        # stopping with the experiment when its driver died end now, as they would have (a ``stop`` event)
        kept = [trial for trial in restarts if final[trial.id][1] is TrialStatus.ERROR]
        if kept:
            log.warning("resuming %s: %s; its %d failed trials are not run again (restart_errored)", ctl.name,
                        ctl._end_reason, len(kept))
        restarts = [trial for trial in restarts if final[trial.id][1] is not TrialStatus.ERROR]
    # every restart point is held above before retention sees the index: nothing a trial restarts
    # from is let go
    for tid, own, rows in indexed:
        by_iter = {row.iteration: row for row in rows}
        for it, path in own:
            ctl.ledger.known(tid, it, path, result_dict(by_iter[it]) if it in by_iter else {})
    clean_leftovers(ctl.exp_dir, known)  # keep=N bounds the disk after a crash too
    ctl._undecided = [(ctl.trials[tid], results) for tid, results in undecided.items()]
    # the trials that were running when the run stopped (RUNNING after a crash, PAUSED by the interruption) held their
    # slots, and those waiting to start (PENDING) waited behind them: they restart in that order, as they would have run
    restarts.sort(key=lambda trial: final[trial.id][1] not in (TrialStatus.RUNNING, TrialStatus.PAUSED))
    for trial in restarts:
        stopped = (trial.id in dashboard_stops and final[trial.id][1] is not TrialStatus.ERROR
                   and trial.id not in undecided and trial.id not in waiting)
        if stopped or (ctl._stopping and trial.id not in waiting and trial.id not in undecided):
            # stopped from the dashboard (its command applied, its end not stored: the driver died before), or
            # stopping with the experiment: it ends where it is, before anything starts (``Controller._loop``)
            ctl._paused.add(trial.id)
            ctl._stop_at_start.append((trial.id, "dashboard" if stopped else "experiment"))
            continue
        if trial.id in waiting:
            ctl._paused.add(trial.id)  # PAUSED: restarted from its checkpoint when the scheduler chooses it
            continue
        if trial.id in undecided:
            continue  # restarted, or not, once its results are decided
        if final[trial.id][1] is TrialStatus.ERROR:  # restart_errored: max_failures retries again from here
            ctl._failures_before[trial.id] = trial.num_failures
            ctl._errored_restarts.append((trial.id, restart_errored or ""))  # stored with its restart
        trial.status = TrialStatus.PENDING
        trial.error = None
        ctl._pending_launch.append(restart_launch(ctl, trial))
    log.info("resuming %s: %d trials stored, %d to restart (%d with results to decide first), %d paused by the "
             "scheduler", ctl.name, len(records), len(restarts) - len(waiting), len(undecided), len(waiting))


# During the replay a checkpoint that was there then but is not any more (superseded by an exploit, or deleted by
# ``keep=``) stands for itself by this path: schedulers only compare it with None, and decisions made during the
# replay are dropped.
_REPLAYED = "<replayed checkpoint>"


class _Step(NamedTuple):
    time: float
    # 0 a result, 1 the trial's end (after its results of the same instant), 2 the scheduler told that no trial would
    # be added (after the results and ends of its instant: the controller asks the searcher when a slot frees)
    order: int
    trial_id: int
    epoch: int
    iteration: int
    trial: TrialView | None  # None: the scheduler was told no trial would be added
    row: ResultRow | None
    config: dict[str, Any]  # the trial's config when it reported this
    checkpoint: tuple[int, str] | None  # the checkpoint this result came with
    then: _Epoch | None  # the exploit decided at this result (the last of its epoch), if any


def _pauses(events: list[tuple[int, float, str, int | None, Any]]) -> tuple[set[int], dict[int, int]]:
    """(the trials whose latest pause was the scheduler's, the iteration of the last decided result of those whose
    latest was the whole run's). The scheduler's: a ``pause`` event that says so (an interruption's says ``"by":
    "interrupt"``, fail_fast's ``"fail_fast"``, a fatal error's ``"failed"``; a store written before they said who
    paused has neither: its paused trials restart), or an exploit (PBT's: it may leave the clone paused). The run's says
    up to which iteration the trial's results were decided (``"decided"``; none in a store written before: all of them
    were taken as decided). Whether the trial is still paused is the store's status."""
    by_scheduler: set[int] = set()
    decided: dict[int, int] = {}
    for _seq, _when, kind, tid, data in events:
        if tid is None or kind not in ("pause", "exploit"):
            continue
        decided.pop(tid, None)
        if kind == "exploit" or (isinstance(data, dict) and data.get("by") == "scheduler"):
            by_scheduler.add(tid)
            continue
        by_scheduler.discard(tid)
        if isinstance(data, dict) and type(data.get("decided")) is int:
            decided[tid] = data["decided"]
    return by_scheduler, decided


def _errored_restarts(events: list[tuple[int, float, str, int | None, Any]]) -> dict[int, int]:
    """Each trial's failures when a resume's ``restart_errored`` last ran it again (its ``restart_errored`` events):
    ``max_failures`` counts its retries from there. A store without them (written before) has none: all count."""
    return {tid: data["failures"] for _seq, _when, kind, tid, data in events
            if kind == "restart_errored" and tid is not None and isinstance(data, dict)
            and type(data.get("failures")) is int}


def _no_more_trials(events: list[tuple[int, float, str, int | None, Any]]) -> list[float]:
    """When the scheduler was told that no trial would be added (``no_more_trials`` events, stamped on the results'
    clock: ``Controller._no_more_trials``). A store written before they were recorded has none: its scheduler is told
    again when the resumed run asks the searcher."""
    return [data["at"] for _seq, _when, kind, _tid, data in events
            if kind == "no_more_trials" and isinstance(data, dict) and isinstance(data.get("at"), (int, float))
            and not isinstance(data.get("at"), bool)]


def _dashboard_stops(events: list[tuple[int, float, str, int | None, Any]]) -> tuple[set[int], bool]:
    """(the trials a ``stop_trial`` from the dashboard was applied to, whether a ``stop_experiment`` was applied), from
    the ``command`` events (``dashboard._commands``: stored before the executor was told). A trial among them that is
    not finished in the store was still stopping when its driver died."""
    stopped: set[int] = set()
    ended = False
    for _seq, _when, kind, tid, data in events:
        if kind != "command" or not isinstance(data, dict) or data.get("applied") is not True:
            continue
        if data.get("action") == "stop_trial" and tid is not None:
            stopped.add(tid)
        elif data.get("action") == "stop_experiment":
            ended = True
    return stopped, ended


def _chosen(ctl: Replayable, trial: TrialView, held: set[int]) -> None:
    """The live run resumed ``trial``, paused by the scheduler, when ``choose_trial_to_run`` named it: ask again now,
    the view showing it alone PAUSED, so that the scheduler's queue of trials to resume forgets it as it did then
    (a HyperBand rung winner is queued until chosen: left there, it would be resumed early at its next rung)."""
    held.discard(trial.id)
    others = {tid: other.status for tid, other in ctl.trials.items() if other is not trial}
    for other in ctl.trials.values():
        if other is not trial and other.status is TrialStatus.PAUSED:
            other.status = TrialStatus.RUNNING
    trial.status = TrialStatus.PAUSED
    try:
        ctl.scheduler.choose_trial_to_run(ctl.view)
    finally:
        trial.status = TrialStatus.RUNNING  # resumed
        for tid, was in others.items():
            ctl.trials[tid].status = was


def _steps(trial: TrialView, rows: list[ResultRow], epochs: list[_Epoch], own: dict[int, str],
           checkpointed: set[tuple[int, int]]) -> list[_Step]:
    """A trial's results (every generation) as replay steps, with what the trial was when it reported each.
    A result came with a checkpoint when the store says so (``checkpointed``: (generation, iteration), whether
    ``keep=`` deleted it since or not), else (a store written before it said so) when its checkpoint is still
    indexed or an exploit dropped it from the index."""
    # the exploit that started generation g + 1 dropped these checkpoint iterations of generation g's rows
    dropped = {e.generation - 1: prev.dropped for prev, e in zip(epochs, epochs[1:])}
    steps = []
    for row in rows:
        epoch = _epoch_of(row.generation, row.iteration, epochs)
        checkpoint = None
        if row.generation == trial.generation and row.iteration in own:  # indexed: its own, still there
            checkpoint = (row.iteration, own[row.iteration])
        elif (row.generation, row.iteration) in checkpointed or row.iteration in dropped.get(row.generation, ()):
            checkpoint = (row.iteration, _REPLAYED)
        steps.append(_Step(row.timestamp, 0, trial.id, epoch, row.iteration, trial, row, epochs[epoch].config,
                           checkpoint, None))
    steps.sort(key=lambda step: step[:5])
    # the exploit that ended an epoch was decided at the epoch's last result
    last = {step.epoch: index for index, step in enumerate(steps)}
    for epoch, index in last.items():
        if epoch + 1 < len(epochs):
            steps[index] = steps[index]._replace(then=epochs[epoch + 1])
    return steps
