"""The controller: the only place that mutates experiment state.

One loop: start trials while capacity allows, take a batch of events from the executor, write them to the
store in one transaction, then feed them to the scheduler and searcher and apply their decisions. Work per
event is O(1): nothing in the hot path scans all trials.

This file is that loop. Its side jobs live in modules named after them, called from here in order: what a
trial starts as (``_launches``), the resume (``_replay``), ``constraints(result)`` (``_constraints``), a PBT
exploit applied (``_exploit``), which finished trials it forgets (``_trial_memory``), the dashboard's commands
and the placements logged each tick (``dashboard._commands``, ``_placements``), the callbacks
(``callbacks._base.Notifier``), and the end's bookkeeping (``_experiment_end``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from tunesmith._constraints import Constraints
from tunesmith._errors import ConfigError, TrialError
from tunesmith._experiment_end import close_paused, set_status, undo_if_untrained
from tunesmith._launches import (
    EXPERIMENT_ENV,
    make_launch,
    resources_for,
    restart_launch,
    restart_rules,
    verify_before_retry,
)
from tunesmith._ledger import Ledger, clean_trial_leftovers, delete_checkpoint, storage_prefix
from tunesmith._objective import Objective
from tunesmith._placements import record_placements
from tunesmith._retention import Retention
from tunesmith._stop import StopRules
from tunesmith._trial_memory import forget
from tunesmith.callbacks._base import Callback, ExperimentInfo, Notifier
from tunesmith.dashboard._commands import CommandInbox, apply_commands
from tunesmith.executors._base import CONFIG_ERROR, Done, Event, Executor, Launch, Results
from tunesmith.schedulers._base import (
    CONTINUE,
    Continue,
    DecisionPlan,
    Exploit,
    Pause,
    Scheduler,
    SchedulerView,
    Stop,
    is_trial_id,
    misanswered,
)
from tunesmith.searchers._base import FINISHED, Searcher
from tunesmith.searchers._wrapped import trial_cap, unwrapped
from tunesmith.space import check_storable, plain
from tunesmith.store.sqlite import Store, StoreError, dumps
from tunesmith.trial import ITERATION, TIME_TOTAL, TIMESTAMP, Result, TrialStatus, TrialView

log = logging.getLogger("tunesmith")

_POLL_S = 0.05
BIG_CONFIG = 64 * 1024  # characters of a trial's config as JSON over which the run says so, once


class Controller:
    def __init__(self, *, name: str, exp_dir: str, fn: Any, searcher: Searcher, scheduler: Scheduler,
                 executor: Executor, store: Store, metric: str | list[str] | None, mode: str | list[str] | None,
                 num_samples: int, stop: StopRules, time_budget_s: float | None, max_concurrent: int | None,
                 resources: dict[str, float], callbacks: list[Callback], strict_metric: bool = True,
                 max_failures: int = 0, retention: Retention | None = None, fail_fast: bool | str = False,
                 resources_fn: Any = None, constraints: Any = None, ranks: int | None = None,
                 resume_command: Callable[[], str] | None = None) -> None:
        self.name = name
        self.exp_dir = exp_dir
        # how the store-write error says to resume: by the folder's path (it resumes wherever the storage folder is,
        # --storage-path or not), with --fn where a script's function needs it (run's _run.resume_command); made
        # only then (shlex is not imported by a run that never needs it)
        self._resume_command = resume_command
        created = store.meta().get("created")
        # when the store was created (ExperimentInfo.created: the loggers' experiment key is made of it)
        self.created = float(created) if isinstance(created, (int, float)) and not isinstance(created, bool) else None
        # what the trial makes the experiment's key of (_names.experiment_key: hashed there, when a tool asks)
        self.launch_env = {EXPERIMENT_ENV: json.dumps([os.path.basename(os.path.abspath(exp_dir)), self.created])}
        self.fn = fn
        self.searcher = searcher
        self.scheduler = scheduler
        self.executor = executor
        self.store = store
        self.objective = Objective.from_args(metric, mode)
        self.metric = self.objective.metric
        self.mode = self.objective.mode
        self.num_samples = num_samples
        self.stop_rules = stop
        if stop.fns:  # what every trial starts from, made before any result changes the driver's copy
            stop.for_trials()
        self._trial_rules: dict[int, StopRules] = {}  # restarted trials' own copies (_launches.restart_rules)
        self.time_budget_s = time_budget_s
        self.max_concurrent = max_concurrent
        self.resources = resources
        self.resources_fn = resources_fn  # resources=lambda config: {...}: each trial's own request
        self.ranks = ranks  # processes a trial starts as (run(ranks=N)); a resize changes it (_launches.ranks_of)
        self._rank_unit: dict[int, dict[str, float]] = {}  # a trial's per-rank share, from its first request
        # fn(result) -> floats, stored as constraint/<i> with each result
        self.constraints = Constraints(constraints) if constraints is not None else None
        self.callbacks = callbacks
        self._notify = Notifier(callbacks)  # self._notify(hook, *args): every callback's hook, failures logged
        self.strict_metric = strict_metric
        self.max_failures = max_failures
        self.fail_fast = fail_fast  # the first trial error ends the experiment ("raise": and run raises it)
        self._failed_fast: TrialError | None = None  # the error that fail_fast ended the experiment with
        self._end_reason: str | None = None  # why the experiment ended early (an experiment-level stop rule...)
        # what ended the experiment before its trials were done, for the user ("time_budget_s=600", "stop rule ...")
        self.ended_by: str | None = None
        # which checkpoints may be deleted: retention, and what decisions and restarted trials still need
        self.ledger = Ledger(retention or Retention(None, None, None))
        self._storage_prefix = storage_prefix(getattr(executor, "storage", None), exp_dir)

        # Unfinished trials; finished ones too only while the scheduler reads them (``needs_finished_trials``):
        # otherwise a trial leaves when it ends (the store has it), counted by status in _forgotten, so memory
        # follows the running trials rather than the trials so far (_trial_memory.forget).
        self.trials: dict[int, TrialView] = {}
        self._forgotten: dict[TrialStatus, int] = {}
        self.total_resources: dict[str, float] = {}
        self.best_so_far: tuple[int, float] | None = None
        # why a Stop was sent: "stop_rule", "experiment" or "dashboard" (else a scheduler)
        self._stop_reasons: dict[int, str] = {}
        # trials a pause of the whole run (Ctrl-C, fail_fast) is stopping: the iteration of their last decided result
        # (what they report after it is stored undecided, for a resume to decide: its ``pause`` event says where)
        self._decided_at: dict[int, int] = {}
        self._plans: dict[int, tuple[Any, ...]] = {}  # the decision plan a running trial was last sent
        self.num_results = 0
        self._next_id = 1
        self._start = executor.clock()
        self._searcher_done = False
        # what had happened when the scheduler was last told there are no more trials (``_no_more_trials``)
        self._told_no_more: tuple[int, int, int, int, bool] | None = None
        self._stopping = False  # time budget reached or interrupted: start nothing new
        self._running: set[int] = set()
        self._queued_first: set[int] = set()  # trials first started handed out ahead (Executor.ahead_ok)
        self._paused: set[int] = set()
        self._pending_launch: list[Launch] = []  # created (or to restart) but not yet started
        # a resume's trials with results stored but never decided (``_replay``), each with whether an experiment-level
        # stopper stopped the trial there: decided before anything else (``_decide_undecided``)
        self._undecided: list[tuple[TrialView, list[tuple[Result, bool]]]] = []
        # a resume's trials that end before anything starts (``_replay``: stopped from the dashboard, or stopping with
        # an experiment that stays stopped), PAUSED until then, with their ``stop`` event's reason
        self._stop_at_start: list[tuple[int, str]] = []
        self._actions: dict[int, Decision] = {}  # decision to apply when the trial's worker confirms
        # trials created since the last store transaction, with the time they were created
        self._new_rows: list[tuple[TrialView, float]] = []
        self._said_big_config = False  # a config over BIG_CONFIG is said once per run
        # trials whose row went in the store PENDING (made while no worker was free), and those of them started
        # since the last transaction: their row says RUNNING, and when, with the next one
        self._stored_pending: set[int] = set()
        self._started_rows: list[TrialView] = []
        self._restarts: list[tuple[int, int]] = []  # (trial, iteration) whose later results must go
        # a trial's failures before a resume's restart_errored ran it again: max_failures counts the retries after
        # (``_replay``); those restarted by this run, logged (``restart_errored`` events) with their restart's row
        self._failures_before: dict[int, int] = {}
        self._errored_restarts: list[tuple[int, str]] = []
        # (trial, iteration, generation): PBT exploits whose trial continues as a new generation from there
        self._generations: list[tuple[int, int, int]] = []
        # (trial, generation, exploit event): exploits undone, the trial having ended before its new config reported
        self._undone_generations: list[tuple[int, int, int]] = []
        self._metric_seen: set[int] = set()
        # the scheduler's own metrics beside the experiment's (ASHA(metric="acc")): checked in first results too
        self._scheduler_metrics = tuple(name for name in scheduler.compared_metrics()
                                        if name not in self.objective.names)
        self._ckpt_time: dict[int, float] = {}
        self._fatal: BaseException | None = None
        # how the run ended, once it has ("finished", "failed", "interrupted"): what callbacks read at its end
        self.ended: str | None = None
        self._spent_before = 0.0  # seconds earlier drivers of this experiment ran (a resume's: ``replay``)
        self._events_in_hand = False  # a batch taken from the executor and not yet stored (``_handle``)
        # Ctrl-C or SIGTERM came (``interrupt``): the loop raises it at the top of its next pass
        self._interrupt: BaseException | None = None
        self._chosen: int | None = None
        self.info = ExperimentInfo(self)
        self.view = SchedulerView(self.trials, 0.0, {}, time_budget_s)
        self._inbox = CommandInbox(exp_dir)  # the dashboard's control commands (opt-in there)
        self._placed: dict[int, Any] = {}  # trial -> where it was last seen running (executors that say: Ray)

    # -- public -------------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.executor.clock() - self._start

    def _now(self) -> float:
        """The schedulers' clock (``SchedulerView.now``): seconds since the experiment started, the time its earlier
        drivers ran included (a resume's ``_spent_before``), as ``time_budget_s`` counts them."""
        return self._spent_before + self.elapsed()

    def resources_in_use(self) -> dict[str, float]:
        used: dict[str, float] = {}
        waiting = self.executor.queued()  # handed to a busy worker ahead: they hold nothing yet
        for tid in self._running:
            if tid in waiting:
                continue
            for k, v in self.trials[tid].resources.items():
                used[k] = used.get(k, 0.0) + v
        return used

    def counts(self) -> dict[TrialStatus, int]:
        """Trials by status, the forgotten finished ones included."""
        counts = dict(self._forgotten)
        for t in self.trials.values():
            counts[t.status] = counts.get(t.status, 0) + 1
        return counts

    @property
    def num_trials(self) -> int:
        """Trials created so far (this run's and, on resume, the stored ones), the forgotten ones included."""
        return len(self.trials) + sum(self._forgotten.values())

    def run(self) -> None:
        self.total_resources = self.executor.total_resources()
        self.view.total_resources = self.total_resources
        for trial in [t for t in self.trials.values() if t.status.is_finished]:  # a resume's finished trials
            forget(self, trial)
        restore = self._defer_signals()
        # sys.exit() in on_experiment_end, or a Ctrl-C there (a logger's upload at the end the user will not wait
        # for; the signals are the default ones again by then): raised once the status is stored
        exit_at_end: SystemExit | KeyboardInterrupt | None = None
        loop_ended = False
        try:
            self._notify("on_experiment_start", self.info)
            self._run_loop()
            self.ended = "failed" if self._fatal is not None or self._failed_fast is not None else "finished"
            loop_ended = True
        except (KeyboardInterrupt, SystemExit) as e:
            # sys.exit() in a user's callback, searcher or scheduler hook: the user ends the run, as Ctrl-C does;
            # the SystemExit goes on with its code once the trials are paused and the store says "interrupted"
            self.ended = "interrupted"
            self._notify.exiting = isinstance(e, SystemExit)
            restore()  # a second Ctrl-C or SIGTERM ends the trials' grace: the executor's shutdown kills them
            try:
                try:  # the warning too: a second Ctrl-C may land as it is written
                    how = "interrupted" if isinstance(e, KeyboardInterrupt) else f"SystemExit({e.code!r})"
                    log.warning("%s: stopping %d running trials", how, len(self._running))
                    self._stop_all(grace_s=5.0)
                except (KeyboardInterrupt, SystemExit):  # a hook that exits at every result exits as they stop
                    log.warning("interrupted again: the running trials are killed")
            finally:
                with _sigint_ignored():  # either way: the store says so (a third Ctrl-C must not cut that write)
                    set_status(self, "interrupted")
            raise
        except sqlite3.OperationalError as e:
            # the transaction rolled back: the store holds everything committed before, so it resumes
            import shlex

            how = self._resume_command() if self._resume_command else f"tunesmith resume {shlex.quote(self.exp_dir)}"
            raise StoreError(f"could not write experiment {self.name}'s store ({e}); free space if the disk is "
                             f"full, then resume: {how}") from e
        finally:
            if self.ended is None:  # the store could not be written, or anything else escaped the loop
                self.ended = "failed"
            restore()
            self.executor.shutdown()
            try:
                self._notify("on_experiment_end", self.info)
            except (SystemExit, KeyboardInterrupt) as e:
                if not loop_ended:  # the run was interrupted (its status is stored) or could not store one
                    raise
                exit_at_end = e  # the run ended: its status is stored first, then the exit goes on
        failure = self._fatal or self._failed_fast
        if failure is not None:  # fail_fast=True: "failed" too (its paused trials resume), without raising
            self._record_error(failure)
            set_status(self, "failed")
            if exit_at_end is not None:
                raise exit_at_end  # the user's exit code wins over the fatal error, which the store holds
            if self._fatal is not None:
                raise self._fatal
            return
        set_status(self, "finished")
        if exit_at_end is not None:
            raise exit_at_end

    def _run_loop(self) -> None:
        """The loop, to its end. An error it does not expect (a searcher's or a scheduler's bug, a ``sample_from``
        function that raises, a ``resources`` function...) fails the experiment as a fatal error does (``_fail``):
        nothing new starts, the running trials are paused (``_FAILED``: the failure was not theirs) and their pauses
        stored, the trials waiting to start (or paused) are left so, and a resume continues them all from their
        checkpoints; then ``run`` records the experiment "failed" with the error and raises it. Were it left to reach
        the caller at once, the store kept "running" (``crashed`` once the lock went, as if the driver had died), its
        running trials RUNNING, and the rows of trials made since the last transaction not at all.

        The bug may strike again while the trials stop (a scheduler's ``on_complete`` at each end): each such
        error is logged and the stopping goes on as long as it gets anywhere (a trial ended, a result was stored
        since the error before). Where it does not, or where the error came before a batch of events was
        stored (those events are gone, so the loop would wait for ends it will never hear of), the trials still
        running are killed with the executor and stay RUNNING in the store: a resume restarts them from their
        checkpoints, as after a crash."""
        progress: tuple[int, int] | None = None
        while True:
            try:
                self._loop()
                return
            except sqlite3.OperationalError:
                raise  # the store could not be written (run() says so): no status can be recorded either
            except Exception as e:  # noqa: BLE001  (KeyboardInterrupt, SystemExit: not Exceptions; run() has them)
                lost = self._events_in_hand
                self._events_in_hand = False
                if self._fatal is None:
                    _name_origin(e)
                    self._fail(e)
                    if self._running:  # the error itself reaches the caller once they stopped
                        log.warning("experiment %s failed (%s): stopping its %d running trials", self.name,
                                    type(e).__name__, len(self._running))
                elif e is not self._fatal:
                    log.error("while the trials of experiment %s stop after %s: %s", self.name,
                              type(self._fatal).__name__, e, exc_info=e)
                state = (len(self._running), self.num_results)
                if lost or state == progress:
                    if self._running:
                        log.error("%d trials of experiment %s could not be stopped cleanly: they are killed and "
                                  "stay RUNNING in its store (a resume restarts them)", len(self._running), self.name)
                    return
                progress = state
                self._begin_stopping(_FAILED)

    def _record_error(self, error: BaseException) -> None:
        """Why the experiment failed, in the store's meta as ``error`` (before its status says "failed"), masked as
        every output shows it: the message may quote a config, so the secret values of the trials in hand are
        replaced, and URL passwords and bearer tokens (a ``sample_from`` function's error is masked with the config
        it was making where it is raised, ``SampleFrom.call``)."""
        try:
            from tunesmith._secrets import mask_text, secret_strings

            secrets = set().union(*(secret_strings(t.config) for t in self.trials.values()))
            notes = "".join(f" ({note})" for note in getattr(error, "__notes__", ()) if isinstance(note, str))
            message = mask_text(f"{type(error).__name__}: {error}{notes}", secrets)
            with self.store.transaction() as db:
                self.store.set_meta(db, "error", message)
        except Exception:  # noqa: BLE001
            log.exception("could not record why the experiment failed")

    def _defer_signals(self) -> Any:
        """Ctrl-C and SIGTERM during the loop end the run at the top of the loop's next pass (within a poll
        interval), not wherever they land: one landing between taking a batch of events from the executor and
        committing them lost the batch (a trial that had ended stayed RUNNING in the store). SIGTERM ends it as
        ``Terminated`` (a KeyboardInterrupt); a second Ctrl-C before then raises at once. Ctrl-C only where
        Python's own handler is in place; both only in the main thread. Returns what puts the previous handlers
        back (safe to call twice)."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def on_sigint(_signum: int, _frame: Any) -> None:
            if self._interrupt is not None:
                raise KeyboardInterrupt  # pressed again before the loop got to it (a callback hangs?): at once
            self.interrupt(KeyboardInterrupt())

        def on_sigterm(_signum: int, _frame: Any) -> None:
            self.interrupt(Terminated())

        mine = {signal.SIGTERM: on_sigterm}
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            mine[signal.SIGINT] = on_sigint
        previous = {signum: signal.signal(signum, handler) for signum, handler in mine.items()}

        def restore() -> None:
            for signum, handler in previous.items():
                if signal.getsignal(signum) is mine[signum]:
                    signal.signal(signum, handler)

        return restore

    def interrupt(self, error: BaseException) -> None:
        """Called from a signal handler: end the run with ``error`` (a KeyboardInterrupt) at the top of the
        loop's next pass, once the batch in hand is stored and acted on."""
        if self._interrupt is None:
            self._interrupt = error

    # -- resume -------------------------------------------------------------------------------------
    def replay(self, restart_errored: str | None = None) -> None:
        """Rebuild state from the store after a crash (``tunesmith._replay``); unfinished trials restart from
        their latest good checkpoint."""
        from tunesmith._replay import replay  # a resume only

        # the time budget is the experiment's: what earlier drivers ran counts, on the schedulers' clock too
        # (view.now goes on from there; view.deadline_s stays time_budget_s). The replay happens now, at that time:
        # the replayed results are shown at it (when each came is not known to a scheduler in the replay)
        self._spent_before = self.store.time_spent()
        self.view.now = self._spent_before
        replay(self, restart_errored)
        if self.store.meta().get("error") is not None:  # a failed experiment resumed: that error is history
            with self.store.transaction() as db:
                self.store.set_meta(db, "error", None)

    # -- loop ---------------------------------------------------------------------------------------
    def _loop(self) -> None:
        if self._stop_at_start:
            stops, self._stop_at_start = self._stop_at_start, []
            for reason in dict.fromkeys(reason for _tid, reason in stops):
                self._terminate_paused([tid for tid, why in stops if why == reason], reason=reason)
        if self._undecided:
            self._decide_undecided()
        while True:
            if self._interrupt is not None:
                raise self._interrupt
            if (self.time_budget_s is not None and not self._stopping
                    and self.elapsed() + self._spent_before >= self.time_budget_s):
                self.ended_by = self.ended_by or f"time_budget_s={self.time_budget_s:g}"
                self._begin_stopping()
            if not self._stopping:
                self._launch()
            if not self._running:
                if self._stopping or self._fatal is not None:
                    break
                if not self._pending_launch and self._resumable() is None and (
                        self._searcher_done or not self._accepting_new_trials()):
                    # nothing runs, nothing is left to resume, and no new trial may start: nothing could
                    # change that (a scheduler that refuses new trials, Deadline's after its deadline, while
                    # idle would refuse forever)
                    break
            # Nothing running but not done: waiting for time to pass (a time budget, a scheduler that takes
            # no new trials yet). Wait a poll interval rather than spin: the simulated executor's virtual
            # clock only moves when asked to wait.
            events = self.executor.poll(_POLL_S)
            if events:
                self._handle(events)
            else:
                self._flush_store()  # a quiet moment: trials started since the last batch go in the store
            if self._fatal is not None and not self._stopping:
                self._begin_stopping(_FAILED)
            self.view.now = self._now()
            apply_commands(self, self._inbox)
            record_placements(self.executor, self.store, self._placed)
            self._notify("on_tick", self.info)
        if self._interrupt is not None:  # it came in the last pass: the run ends interrupted, as it would have
            raise self._interrupt
        self._flush_store()
        # after fail_fast or a fatal error (a failed experiment resumes once its error is fixed), what did not end
        # stays for a resume, as after Ctrl-C: trials made but not started, or paused, run then
        if self._failed_fast is None and self._fatal is None:
            close_paused(self)

    def _resumable(self) -> int | None:
        """The paused trial the scheduler wants resumed next (asked once; kept until it is launched)."""
        if self._chosen is not None and self._chosen in self._paused:
            return self._chosen
        self._chosen = None
        if not self._paused:
            return None
        self.view.now = self._now()
        tid = self.scheduler.choose_trial_to_run(self.view)
        if tid is not None and not (is_trial_id(tid) and tid in self._paused):  # taken for None before: the paused
            raise misanswered(self.scheduler, "choose_trial_to_run", tid,  # trials never resumed, silently
                              f"None or the id of a paused trial (paused: {sorted(self._paused)})")
        self._chosen = None if tid is None else int(tid)
        return self._chosen

    def _accepting_new_trials(self) -> bool:
        """The scheduler's ``accepting_new_trials``, a bool (numpy's too): a forgotten ``return``'s None ended the
        experiment with no trial, a string was taken for True."""
        answer = self.scheduler.accepting_new_trials(self.view)
        kind = type(answer)
        if kind is not bool and (kind.__module__, kind.__name__) not in (("numpy", "bool_"), ("numpy", "bool")):
            raise misanswered(self.scheduler, "accepting_new_trials", answer, "True or False")
        return bool(answer)

    def _capacity_left(self) -> bool:
        limit = self.max_concurrent
        return limit is None or len(self._running) < limit

    def _launch(self) -> None:
        while self._capacity_left():
            launch = self._next_launch()
            if launch is None:
                return
            if self._restarts:
                # a restart's superseded checkpoints are deleted before its worker can write new ones under
                # the same names
                self._flush_store()
            # Its row is written with the next batch of events, in that transaction and before the batch's
            # rows (a trial is in the store before anything it reported), or at the next quiet poll: one
            # transaction fewer per trial than writing it here.
            if not self.executor.try_start(launch):
                self._pending_launch.insert(0, launch)
                return
            trial = self.trials[launch.trial_id]
            if launch.restore is not None and (launch.ranks or 1) > 1:
                self.ledger.started(trial.id, launch.restore)  # every rank may read it until this start ends
            trial.status = TrialStatus.RUNNING
            if trial.start_time is None:  # on the results' clock too (the simulated one's is virtual): the timeline
                trial.start_time = self.executor.timestamp()  # draws a trial from its start to its end on one clock
                if launch.trial_id in self.executor.queued():
                    self._queued_first.add(trial.id)  # its first start: the executor says when it really began
            self._running.add(trial.id)
            self._paused.discard(trial.id)
            if trial.id in self._stored_pending:
                self._stored_pending.discard(trial.id)
                self._started_rows.append(trial)
            self._notify("on_trial_start", trial)

    def _next_launch(self) -> Launch | None:
        if self._pending_launch:
            return self._pending_launch.pop(0)
        launch = self._resume_chosen()
        if launch is not None:
            return launch
        if self._searcher_done or not self._accepting_new_trials():
            return None
        trial_id = self._next_id
        cap = trial_cap(self.searcher, self.num_samples)  # read each time: the dashboard may add samples
        config = self._past_cap() if cap is not None and trial_id > cap else self.searcher.suggest(trial_id)
        if config is FINISHED:
            self._searcher_done = True
            self._no_more_trials(exhausted=True)
            return self._resume_chosen()
        if config is None:
            if not self._running and self._paused:
                # Stalled: the searcher waits for a trial to end (a ConcurrencyLimiter counts paused trials as
                # unfinished) and nothing runs that could end. The scheduler decides with the trials it has
                # (HyperBand closes a bracket that cannot fill, PBT stops waiting for newcomers).
                self._no_more_trials(exhausted=False)
                return self._resume_chosen()
            if not self._running and not self._paused:
                # it waits for results, and none can come (a searcher is pure: nothing else changes its answer)
                self._fail(ConfigError(f"{self._suggester(trial_id)} returned None (ask again later) while no trial "
                                       "runs or is paused: no result can come that would change its answer, and the "
                                       "experiment would wait for ever; return FINISHED once it has no more configs"))
                self._searcher_done = True
            return None
        try:  # run() drew sample_from values once; one drawn now may still be something the store cannot hold
            if not isinstance(config, dict):  # a searcher of the user's own: a list, a string, a forgotten return
                import reprlib

                raise ConfigError(f"{self._suggester(trial_id)} returned {type(config).__name__} "
                                  f"{reprlib.repr(config)}; expected a config dict, None (nothing yet: ask again "
                                  "later) or FINISHED (no more configs)")
            try:
                check_storable(config, "config")
            except ConfigError as e:
                raise ConfigError(f"{self._suggester(trial_id)} returned a config the store cannot hold: {e}") from None
        except ConfigError as e:
            self._fail(e)
            self._searcher_done = True  # the experiment ends: nothing more is suggested
            return None
        resources = resources_for(self, trial_id, config)
        if resources is None:
            return None
        self._next_id += 1
        trial = TrialView(id=trial_id, config=config, resources=resources)
        self.trials[trial_id] = trial
        self._new_rows.append((trial, time.time()))
        self.scheduler.on_trial_add(trial, self.view)
        return make_launch(self, trial)

    def _suggester(self, trial_id: int) -> str:
        """Who suggested ``trial_id``'s config, for an error: the searcher inside its wrappers, which pass its
        answers on."""
        inner = unwrapped(self.searcher)[0]
        if inner is self.searcher:
            return f"{type(inner).__name__}.suggest({trial_id})"
        return f"{type(inner).__name__}.suggest (inside {type(self.searcher).__name__}, for trial {trial_id})"

    def _past_cap(self) -> Any:
        """``FINISHED``: a searcher of the user's own made its ``num_samples`` trials (``trial_cap``). It is asked once
        more (inside its wrappers, which may hold it back), and the log says where it had another config: one
        that ignores ``num_samples`` would be asked for ever; one that counts its own configs (a list) gets
        ``num_samples`` trials, 1 by default."""
        inner = unwrapped(self.searcher)[0]
        try:
            more = inner.suggest(self.num_samples + 1)
        except Exception:  # noqa: BLE001 - only asked whether it had more; the experiment ends either way
            more = None
        if isinstance(more, dict):
            # a warning where num_samples is 1, run's default, likely left unset; else it bounds the run as asked
            log.log(logging.WARNING if self.num_samples == 1 else logging.INFO,
                    "%s suggested more configs than num_samples=%d: no more trials are made (%d in all; pass a "
                    "larger num_samples, which its FINISHED may end sooner, or num_samples=-1 with time_budget_s)",
                    type(inner).__name__, self.num_samples, self._next_id - 1)
        return FINISHED

    def _no_more_trials(self, exhausted: bool) -> None:
        """Tell the scheduler no trial will be added for now (``Scheduler.on_no_more_trials``) and store when, on the
        results' clock (a ``no_more_trials`` event): a resume replays it there among the results and ends (``_replay``),
        for what the scheduler decides after it depends on it (PBT stops pausing trials for newcomers, HyperBand closes
        its brackets). A stalled run asks again at every pass: it is stored again only once something happened since.
        A scheduler without the hook (``Scheduler``'s, which does nothing: FIFO, ASHA) has nothing to replay."""
        mark = (self.num_results, self._next_id, len(self._running), len(self._paused), exhausted)
        if mark != self._told_no_more and type(self.scheduler).on_no_more_trials is not Scheduler.on_no_more_trials:
            self._told_no_more = mark
            with self.store.transaction() as db:  # stored before the scheduler decides anything on it
                self.store.log_event(db, "no_more_trials", None,
                                     {"at": self.executor.timestamp(), "exhausted": exhausted})
        self.scheduler.on_no_more_trials(self.view)

    def _resume_chosen(self) -> Launch | None:
        tid = self._resumable()
        if tid is None:
            return None
        self._chosen = None
        return restart_launch(self, self.trials[tid])

    def _decision_iteration(self, trial: TrialView) -> int | None:
        a = self.scheduler.decision_iteration(trial)
        if a is not None and not (is_trial_id(a) and a > trial.iteration):
            raise misanswered(self.scheduler, "decision_iteration", a, f"None or an iteration after {trial.iteration}",
                              f" for {trial.name} at iteration {trial.iteration}")
        a = None if a is None else int(a)  # numpy's int goes on as Python's
        b = self.stop_rules.max_iteration
        # a stopper asked in the driver may stop the trial at any result: it waits for the answer at each one
        c = trial.iteration + 1 if self.stop_rules.stops_trials_from_driver else None
        points = [p for p in (a, b, c) if p is not None and p > trial.iteration]
        return min(points) if points else None

    def _decision_plan(self, trial: TrialView, first: int | None) -> tuple[Any, ...] | None:
        """The scheduler's decision plan from ``first`` on, for an executor that takes plans; cut at the stop rules'
        ``max_iteration`` (the trial's own rules stop it there first). None where the driver could still decide
        against a promised CONTINUE: with experiment-level stop rules, which stop trials from the driver alone."""
        if first is None or not self.executor.takes_plans or self.stop_rules.experiment:
            return None
        plan = self.scheduler.decision_plan(trial)
        if plan is not None and not isinstance(plan, DecisionPlan):
            raise misanswered(self.scheduler, "decision_plan", plan,
                              "None or a DecisionPlan (tunesmith.schedulers._base)", f" for {trial.name}")
        if plan is None or not plan.points or plan.points[0][0] != first:
            self._plans.pop(trial.id, None)
            return None
        points = plan.points
        cap = self.stop_rules.max_iteration
        if cap is not None and points[-1][0] >= cap:
            points = (*(point for point in points if point[0] < cap), (cap, None))
        sent = self._plans[trial.id] = (plan.metric, plan.mode, tuple(points))
        return sent

    # -- events -------------------------------------------------------------------------------------
    def _handle(self, events: list[Event]) -> None:
        self._events_in_hand = True  # until they are stored: an error before then loses them (``_run_loop``)
        rows: list[tuple[int, int, float, float, str, int, int]] = []
        ckpts: list[tuple[int, int, str, float]] = []
        parsed: list[tuple[TrialView, list[Result], bool]] = []
        done: list[tuple[TrialView, str, str | None]] = []
        for ev in events:
            trial = self.trials.get(ev.trial_id)
            if trial is None:
                continue
            if type(ev) is Results:
                results = []
                tid, generation = trial.id, trial.generation
                batch = ev.rows
                # one C-level decode for the whole batch instead of one json.loads per result
                decoded = json.loads("[" + ",".join([row[3] for row in batch]) + "]")
                for (iteration, time_total, timestamp, text, ckpt), metrics in zip(batch, decoded):
                    if self.constraints is not None:
                        text = self.constraints.add(self._fail, trial, iteration, time_total, timestamp, metrics)
                    # whether it came with a checkpoint stays with the row when keep= deletes the checkpoint: a
                    # resume replays it as the scheduler saw it. An int, not a bool: sqlite3 binds a bool (and None)
                    # through its adapter lookup, a third more a row (benchmarks/store.py, "flag as a bool")
                    rows.append((tid, iteration, time_total, timestamp, text, generation, 0 if ckpt is None else 1))
                    metrics[ITERATION] = iteration
                    metrics[TIME_TOTAL] = time_total
                    metrics[TIMESTAMP] = timestamp
                    if ckpt is not None:
                        ckpts.append((tid, iteration, ckpt, timestamp))
                        self.ledger.add(tid, iteration, ckpt, metrics)
                        trial.checkpoint_path = ckpt
                        trial.checkpoint_iteration = iteration
                        self._ckpt_time[tid] = time_total
                    results.append(Result(tid, iteration, metrics, ckpt, text))
                trial.last_result = results[-1]
                trial.iteration = results[-1].iteration
                parsed.append((trial, results, ev.waiting))
            else:
                assert isinstance(ev, Done)  # an Event is Results or Done
                done.append((trial, ev.status, ev.error))
        # Trials whose end is in this batch: _complete applies (and clears) their pending decision below, so
        # remember which had one: their rows here came after it (the iteration in flight when it was sent).
        ended = {trial.id for trial, _s, _tb in done}
        acted = {tid for tid in ended if tid in self._actions}
        drop = self.ledger.take()  # checkpoints nothing needs any more
        # 1. durable first: nothing is acted on before it is in the store
        with self.store.transaction() as db:
            self._write_pending(db)
            if rows:
                self.store.append_results(db, rows)
                self.num_results += len(rows)
            if ckpts:
                self.store.add_checkpoints(db, ckpts)
            if drop:
                self.store.remove_checkpoints(db, drop)
            # the batch's row changes, one UPDATE per trial: what its results moved, then what its end set
            changes: dict[int, dict[str, Any]] = {
                trial.id: {"iteration": trial.iteration,
                           "last_result": trial.last_result and dumps(trial.last_result.metrics),
                           "checkpoint": trial.checkpoint_path, "checkpoint_iteration": trial.checkpoint_iteration}
                for trial, _results, _w in parsed}
            self._store_ends(db, done, changes)
        self._events_in_hand = False
        self._delete(drop)
        # 2. then decide
        self.view.now = self._now()
        for trial, results, waiting in parsed:
            self._on_results(trial, results, waiting, trial.id in ended, trial.id in acted)
        for trial, _status, _tb in done:
            self._after_complete(trial)
        if self._end_reason is not None and not self._stopping:
            if self._failed_fast is not None:  # the others did nothing wrong: cut short, they resume
                log.info("%s: pausing every trial (a resume continues them)", self._end_reason)
                self._begin_stopping(_FAILED_FAST)
            else:
                log.info("%s: stopping every trial", self._end_reason)
                self._begin_stopping()
        if self._paused:
            self._terminate_paused(self._trials_to_stop())

    def _trials_to_stop(self) -> list[int]:
        """The scheduler's ``trials_to_stop``: ids of trials (those not paused are let be: a built-in may name one
        whose pause is on its way)."""
        answer = self.scheduler.trials_to_stop(self.view)
        if not isinstance(answer, (list, tuple, set, frozenset)) or not all(is_trial_id(tid) for tid in answer):
            raise misanswered(self.scheduler, "trials_to_stop", answer, "a list of trial ids (the paused trials that "
                              "will never resume)")
        return [int(tid) for tid in answer]

    def _terminate_paused(self, trial_ids: list[int], reason: str = "scheduler") -> None:
        """Paused trials that will never resume end TERMINATED (the scheduler's ``trials_to_stop``, or a stop from
        the dashboard: ``reason``)."""
        ended = [self.trials[tid] for tid in trial_ids if tid in self._paused]
        if not ended:
            return
        now = self.executor.timestamp()  # on the results' clock: a resume replays ends and results in order by it
        with self.store.transaction() as db:
            for trial in ended:
                self._paused.discard(trial.id)
                trial.status = TrialStatus.TERMINATED
                trial.end_time = now
                self.store.update_trial(db, trial.id, **undo_if_untrained(self, trial), status=trial.status.value,
                                        end_time=now, start_time=trial.start_time)
                self.store.log_event(db, "stop", trial.id, {"reason": reason, "iteration": trial.iteration})
            self._write_generations(db)
        for trial in ended:
            self._after_complete(trial)

    def _on_results(self, trial: TrialView, results: list[Result], waiting: bool, ended: bool = False,
                    acted: bool = False) -> None:
        """``ended``: the trial's end came in the same batch and was applied already; ``acted``: a decision
        was pending for it then (these rows are stored and observed, never shown to the scheduler)."""
        tid = trial.id
        already = self._actions.get(tid) or (_STOP if acted else None)
        decision: Decision = _CONTINUE
        objective = self.objective
        rules = self._trial_rules.get(tid, self.stop_rules)
        for result in results:
            metrics = result.metrics
            if tid not in self._metric_seen and (objective or self._scheduler_metrics):
                # every metric (the experiment's, the scheduler's own) must be in a trial's first result
                missing = objective.missing(metrics)
                unread = [name for name in self._scheduler_metrics if metrics.get(name) is None]
                if (missing or unread) and self.strict_metric:
                    reported = ", ".join(sorted(k for k in metrics if k not in (TIME_TOTAL, TIMESTAMP)))
                    self._fail(objective.missing_error(missing, trial.name, reported) if missing else
                               ConfigError(f"metric {unread[0]!r} ({type(self.scheduler).__name__}'s metric=) is "
                                           f"not in the results of {trial.name} (it reported: {reported}); report "
                                           "it, or pass the scheduler metric= one of those"))
                    return
                if not missing and not unread:
                    self._metric_seen.add(tid)
            value = objective.value(metrics)  # None with several metrics: no single best
            if value is not None:
                best = self.best_so_far
                if best is None or objective.better(value, best[1]):
                    self.best_so_far = (tid, value)
            if self.stop_rules.watching:  # stop keys and keep_by against the first results
                error = self.stop_rules.check_keys(trial.name, metrics, result.checkpoint_path is not None,
                                                   self.strict_metric)
                if error is not None:
                    self._fail(error)
                    return
            self.searcher.observe(tid, metrics, False)
            trial_stop = False
            if self.stop_rules.experiment:  # stateful rules over every trial's results, in order
                trial_stop, end = self.stop_rules.observe_experiment(tid, metrics, self._fail,
                                                                     f"{trial.name}'s result {result.iteration}")
                if end and self._end_reason is None:
                    self._end_reason = f"a stop rule ended the experiment at {trial.name}'s result {result.iteration}"
                    self.ended_by = self.ended_by or (f"stop rule {type(self.stop_rules.ended_by).__qualname__} at "
                                                      f"{trial.name}'s result {result.iteration}")
            if already is not None or not isinstance(decision, Continue):
                continue  # already stopped: stored and observed, but nothing more to decide
            decision = self._decide(trial, result, rules, trial_stop)
        self._notify("on_trial_results", trial, results)
        if ended:
            return  # nothing left to decide: a decision now would outlive the run it was meant for
        if already is not None:
            if waiting:
                self.executor.decide(tid, False, None)
            return
        if isinstance(decision, Continue):
            if waiting:
                first = self._decision_iteration(trial)
                plan = self._decision_plan(trial, first)
                if plan is None:
                    self.executor.decide(tid, True, first)
                else:
                    self.executor.decide(tid, True, first, plan)
            return
        self._hold(tid, decision)
        if waiting and not isinstance(decision, Stop):
            self.executor.decide(tid, False, None)  # a pause, an exploit: the trial ends as at any stop
        else:
            # a stop on this result, also where the trial waits for the answer: the executor tells it from a pause
            # (rank 0 of a trial run as several ranks ends at this result and leaves the others their time to return)
            self.executor.stop_on_result(tid)

    def _decide(self, trial: TrialView, result: Result, rules: StopRules, trial_stop: bool) -> Decision:
        """The decision on a result of a running trial: a stop by its stop ``rules`` (or, ``trial_stop``, by an
        experiment-level stopper), else the scheduler's."""
        if trial_stop or rules.should_stop(trial.id, result.iteration, result.metrics):
            self._stop_reasons[trial.id] = "stop_rule"
            return _STOP
        decision = self.scheduler.on_result(trial, result, self.view)
        if decision is CONTINUE:  # the usual answer, at every result: nothing to check
            return decision
        if not isinstance(decision, (Continue, Stop, Pause, Exploit)):  # a scheduler of the user's own: a forgotten
            # return (None), "STOP", the class Stop: taken for a stop before, silently
            self._fail(misanswered(self.scheduler, "on_result", decision, "CONTINUE, STOP, a Pause or an Exploit "
                                   "(self.CONTINUE, self.STOP, self.Pause(...), self.Exploit(...))",
                                   f" for {trial.name}'s result {result.iteration}"))
            decision = _FAILED
        elif isinstance(decision, Pause) and decision.resources is not None:
            decision = self._resize(trial, decision)
        elif isinstance(decision, Exploit):
            decision = self._check_exploit(trial, decision)
        if decision is _FAILED:  # the answer failed the experiment: the trial pauses, this result is the resume's
            self._decided_at[trial.id] = result.iteration - 1
        return decision

    def _check_exploit(self, trial: TrialView, exploit: Exploit) -> Decision:
        """An ``Exploit``'s config, checked as a suggested one is (``check_storable``): one the store cannot hold (a
        PBT mutation function's value) ends the experiment with a ConfigError naming the scheduler, the trial and the
        key, not a ``TypeError`` from the store; the trial pauses (``_FAILED``), for a resume to decide again. numpy
        and torch numbers in it (a mutation list built with ``np.arange``) become the Python ones, as a space's do."""
        exploit = exploit.__replace__(config=plain(exploit.config))
        try:
            check_storable(exploit.config, "config")
        except ConfigError as e:
            self._fail(ConfigError(f"{type(self.scheduler).__name__}'s Exploit of {trial.name} gives a config the "
                                   f"store cannot hold: {e}"))
            return _FAILED
        return exploit

    def _resize(self, trial: TrialView, pause: Pause) -> Decision:
        """A scheduler's ``Pause(resources=new)`` (ResourceChanging, Deadline), the request checked as ``run`` checks
        ``resources=`` (``normalize``) and, where it changes, against what the executor has (``check_resources``, as
        ``resources_for`` does): a request that could never run (paused, the trial would wait for ever) ends the
        experiment with a ConfigError naming who asked, the trial and the request; the trial pauses (``_FAILED``)."""
        from tunesmith._secrets import mask
        from tunesmith.executors.resources import normalize
        from tunesmith.schedulers.resource_changing import ResourceChanging, _normalized

        try:
            resources = normalize(pause.resources)
            if _normalized(resources) != _normalized(trial.resources):
                self.executor.check_resources(resources)
        except ConfigError as e:
            who = ("allocate_fn (ResourceChanging)" if isinstance(self.scheduler, ResourceChanging)
                   else f"{type(self.scheduler).__name__}'s Pause(resources=...)")
            self._fail(ConfigError(f"{who} asked for {pause.resources!r} for {trial.name} (config "
                                   f"{mask(trial.config)!r}), which it could never run with: {e}"))
            return _FAILED
        return Pause(resources=resources)

    def _hold(self, tid: int, decision: Decision) -> None:
        """Keep a decision other than Continue, applied when the trial's worker has stopped (``_complete``)."""
        self._actions[tid] = decision
        if isinstance(decision, Exploit):
            # held from now: the source trains on while this trial's worker stops, and retention must not
            # delete what it will restart from
            from tunesmith._exploit import exploit_source  # PBT's decisions only

            path = exploit_source(self.trials, decision)[1]
            if path is not None:
                self.ledger.pin(tid, path)

    def _decide_undecided(self) -> None:
        """A resume's first step: the results that came while a pause of the whole run (Ctrl-C, fail_fast) stopped
        their trials are stored but were never decided (``_replay`` kept them from the scheduler). Each trial's are
        decided now, as they would have been then (its stop rules as they were before them), and the decision is
        applied to the trial, which stopped meanwhile: it restarts on Continue, and ends, pauses or is exploited
        otherwise, as if its worker had just confirmed the stop."""
        undecided, self._undecided = self._undecided, []
        self.view.now = self._now()
        # the trials were all running when these came: each is decided with the others running, not waiting to
        # restart (PBT pauses a trial at a perturbation point while another is waiting behind it)
        for trial, _results in undecided:
            trial.status = TrialStatus.RUNNING
        going_on: list[TrialView] = []
        first: list[Launch] = []  # they held slots: they restart before the trials that were waiting to start
        for trial, results in undecided:
            restart_rules(self, trial, results[0][0].iteration - 1)
            rules = self._trial_rules.get(trial.id, self.stop_rules)
            decision: Decision = _CONTINUE
            for result, trial_stop in results:
                decision = self._decide(trial, result, rules, trial_stop)
                if not isinstance(decision, Continue):
                    break
            if isinstance(decision, Continue):
                going_on.append(trial)
                first.append(restart_launch(self, trial))
                continue
            self._hold(trial.id, decision)
            with self.store.transaction() as db:
                self._store_ends(db, [(trial, "stopped", None)], {})
            self._after_complete(trial)
        for trial in going_on:
            trial.status = TrialStatus.PENDING  # to restart from its checkpoint
        self._pending_launch[:0] = first

    def _complete(self, trial: TrialView, status: str, tb: str | None) -> tuple[dict[str, Any],
                                                                              tuple[str, dict[str, Any]] | None]:
        """Apply a trial's end (its worker confirmed it). Returns what the store must record, in the batch's
        transaction: the trial row's changed fields, and the event to log (kind, data) if any."""
        self._running.discard(trial.id)
        self.ledger.ended(trial.id)
        late = self.executor.late_start(trial.id)
        if late is not None and trial.id in self._queued_first:
            trial.start_time = late  # it was handed out ahead; it began when its worker's trial before ended
        self._queued_first.discard(trial.id)
        action = self._actions.pop(trial.id, None)
        plan = self._plans.pop(trial.id, None)
        now = self.executor.timestamp()  # on the results' clock: a resume replays ends and results in order by it
        if status in ("error", CONFIG_ERROR) and not isinstance(action, (Stop, Pause)):
            self.ledger.unpin(trial.id)  # a pending exploit is dropped with its decision
            trial.error = tb
            trial.num_failures += 1
            event = ("error", {"traceback": tb, "iteration": trial.iteration, "failure": trial.num_failures})
            failures = trial.num_failures - self._failures_before.get(trial.id, 0)  # since restart_errored ran it
            retry = (self.max_failures < 0 or failures <= self.max_failures) and not self._stopping
            if retry and status == CONFIG_ERROR:  # a misconfiguration: every retry would fail the same way
                retry = False
                log.warning("%s failed with a ConfigError: not retried (a retry would fail the same way; fix the "
                            "input its error names)", trial.name)
            if retry:
                # retry from its latest checkpoint (from scratch if it has none)
                trial.status = TrialStatus.PENDING
                clean_trial_leftovers(self.exp_dir, trial.id)  # its process ended: its cut-short writes go now
                verify_before_retry(self, trial)
                self._pending_launch.append(restart_launch(self, trial))
                log.warning("%s failed (%d of %s allowed failures); restarting from iteration %d", trial.name,
                            failures, "unlimited" if self.max_failures < 0 else self.max_failures,
                            trial.iteration)
                return {"status": trial.status.value, "error": tb, "num_failures": trial.num_failures}, event
            trial.status = TrialStatus.ERROR
            trial.end_time = now
            if self.fail_fast and self._end_reason is None:
                self._end_reason = f"fail_fast: {trial.name} failed"
                self._failed_fast = TrialError(f"fail_fast: {trial.name} failed:\n{tb}")
                if self.fail_fast == "raise":
                    self._fail(self._failed_fast)
            return {"status": trial.status.value, "error": tb, "num_failures": trial.num_failures, "end_time": now,
                    "start_time": trial.start_time}, event
        if isinstance(action, Pause):
            trial.status = TrialStatus.PAUSED
            if action.resources is not None:
                trial.resources = dict(action.resources)
            self._paused.add(trial.id)
            # who paused it: a resume leaves the scheduler's paused trials to it (``_replay``), and restarts the
            # ones an interruption or fail_fast paused mid-run, deciding first what they reported undecided
            by = _RUN_PAUSES.get(id(action), "scheduler")
            paused = {"iteration": trial.iteration, "resources": trial.resources, "by": by}
            if trial.id in self._decided_at:
                paused["decided"] = self._decided_at.pop(trial.id)
            return {"status": trial.status.value, "resources": dumps(trial.resources)}, ("pause", paused)
        if isinstance(action, Exploit):
            from tunesmith._exploit import apply_exploit

            return apply_exploit(self, trial, action)
        # it ended before an exploit's config reported anything (nothing left to train from the checkpoint it
        # cloned, or stopped first): the exploit is undone, and it ends with what its own config produced
        undone = undo_if_untrained(self, trial)
        if status == "ok" and trial.last_result is None and self.objective and action is None:
            if trial.parent_id is not None:  # a store that did not record the config it replaced (schema 1)
                log.info("%s ended without a result since its exploit (the checkpoint of iteration %s it cloned was "
                         "its function's last): its new config trained nothing, so it shows no result (its earlier "
                         "ones: history(%d, all_generations=True))", trial.name, trial.parent_iteration, trial.id)
            else:
                log.warning("%s ended without reporting a result, while the experiment optimises %r: call "
                            "tunesmith.report({...}) in the training function (or return a dict of metrics)%s",
                            trial.name, self.metric, "; only rank 0's reports count (ts.get_rank() == 0); the other "
                            "ranks' are ignored" if (self.ranks or 1) > 1 else "")
        trial.status = TrialStatus.TERMINATED
        trial.end_time = now
        # why it ended before returning, for the record (a plot greys only a scheduler's early stop); "stopped"
        # with no decision of ours: the worker met the stop rules itself
        reason = self._stop_reasons.pop(trial.id, "scheduler") if isinstance(action, Stop) else (
            ("scheduler" if _stopped_on_plan(plan, trial) else "stop_rule") if status == "stopped" else None)
        stop = ("stop", {"reason": reason, "iteration": trial.iteration}) if reason else None
        return {**undone, "status": trial.status.value, "end_time": now, "start_time": trial.start_time}, stop

    def _store_ends(self, db: Any, done: list[tuple[TrialView, str, str | None]],
                    changes: dict[int, dict[str, Any]]) -> None:
        """Apply trials' ends (``_complete``) and write them, in the transaction ``db``, with ``changes`` (the trial
        rows' other changed fields)."""
        logged: list[tuple[str, int, dict[str, Any]]] = []
        for trial, status, tb in done:
            fields, event = self._complete(trial, status, tb)
            changes[trial.id] = {**changes[trial.id], **fields} if trial.id in changes else fields
            if event is not None:
                logged.append((event[0], trial.id, event[1]))
        self.store.update_trials(db, changes, logged)
        self._write_generations(db)  # with the exploit's own rows: a crash never splits them

    def _delete(self, drop: list[tuple[int, int, str]]) -> None:
        """Delete checkpoint folders whose index rows are gone (committed): only inside this experiment."""
        for _owner, _it, path in drop:
            delete_checkpoint(path, self.exp_dir, self._storage_prefix)

    def _after_complete(self, trial: TrialView) -> None:
        if trial.status.is_finished:
            self.view.now = self._now()
            self.scheduler.on_complete(trial, trial.last_result, self.view)
            self.searcher.observe(trial.id, trial.last_result.metrics if trial.last_result else {}, True)
            self._notify("on_trial_error" if trial.status is TrialStatus.ERROR else "on_trial_complete", trial)
            self._trial_rules.pop(trial.id, None)
            forget(self, trial)

    # -- store --------------------------------------------------------------------------------------
    def _write_generations(self, db: Any) -> None:
        for tid, it, generation in self._generations:
            self.store.new_generation(db, tid, it, generation)
        self._generations.clear()
        for tid, generation, seq in self._undone_generations:
            self.store.undo_generation(db, tid, generation, seq)
        self._undone_generations.clear()

    def _write_pending(self, db: Any) -> None:
        self._write_generations(db)
        for trial, created in self._new_rows:
            # PENDING: made, but waiting for a free worker (``_pending_launch``); it says RUNNING when it starts
            size = self.store.insert_trial(db, trial.id, trial.config, trial.resources, trial.status.value,
                                           created=created, start_time=trial.start_time)
            if size > BIG_CONFIG and not self._said_big_config:
                self._said_big_config = True
                log.warning("%s", big_config_warning(trial.id, trial.config, size))
            if trial.status is TrialStatus.PENDING:
                self._stored_pending.add(trial.id)
        self._new_rows.clear()
        for trial in self._started_rows:
            self.store.update_trial(db, trial.id, status=TrialStatus.RUNNING.value, start_time=trial.start_time)
        self._started_rows.clear()
        for tid, how in self._errored_restarts:
            self.store.log_event(db, "restart_errored", tid, {"failures": self._failures_before[tid], "how": how})
        self._errored_restarts.clear()
        for tid, it in self._restarts:
            self.store.truncate_results(db, tid, it)
            # queued to restart (written before it starts: ``_launch``): PENDING until it starts, as a new trial
            # waiting for a free worker, so an interruption before then leaves it PENDING, not RUNNING
            started = self.trials[tid].status is TrialStatus.RUNNING
            self.store.update_trial(db, tid, status=(TrialStatus.RUNNING if started else TrialStatus.PENDING).value,
                                    iteration=it)
            if not started:
                self._stored_pending.add(tid)
        self._restarts.clear()

    def _flush_store(self) -> None:
        drop = self.ledger.take()
        if self._new_rows or self._restarts or self._started_rows or drop:
            with self.store.transaction() as db:
                self._write_pending(db)
                if drop:
                    self.store.remove_checkpoints(db, drop)
            self._delete(drop)

    # -- stopping -----------------------------------------------------------------------------------
    def _fail(self, error: BaseException) -> None:
        if self._fatal is None:
            self._fatal = error

    def _begin_stopping(self, pause: Pause | None = None) -> None:
        """Stop every running trial; ``pause`` (an interruption's, fail_fast's or a fatal error's, ``_RUN_PAUSES``)
        leaves them PAUSED, so a resume continues them from their checkpoints. Their results decided so far are
        noted (``_decided_at``, where the failed decision did not note it first): those that come while they stop
        are stored, and decided by the resume."""
        self._stopping = True
        for tid in list(self._running):
            action = self._actions.setdefault(tid, _STOP if pause is None else pause)
            if pause is None:
                self._stop_reasons.setdefault(tid, "experiment")
            elif action is pause:
                self._decided_at.setdefault(tid, self.trials[tid].iteration)
            self.executor.stop(tid)

    def _stop_all(self, grace_s: float) -> None:
        self._begin_stopping(_INTERRUPTED)
        deadline = time.monotonic() + grace_s
        while self._running and time.monotonic() < deadline:
            events = self.executor.poll(0.1)
            if events:
                self._handle(events)
        self._flush_store()


Decision = Continue | Stop | Pause | Exploit
_CONTINUE = Continue()
_STOP = Stop()
# pauses of the whole run, not the scheduler's (told apart by identity): a resume restarts their trials
_INTERRUPTED = Pause()  # Ctrl-C, SIGTERM
_FAILED_FAST = Pause()  # another trial failed, with fail_fast
_FAILED = Pause()  # an error failed the experiment (``_fail``: a searcher's, a scheduler's bug...)
_RUN_PAUSES = {id(_INTERRUPTED): "interrupt", id(_FAILED_FAST): "fail_fast", id(_FAILED): "failed"}


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _name_origin(error: BaseException) -> None:
    """Add a note to an error that escaped the loop naming the first function outside tunesmith that it came
    through (``raised in MySearcher.observe (file:line)``): a user's searcher, scheduler, ``resources`` or
    ``constraints`` function. Its message alone (``KeyError: 'x'``) does not say whose it is, in the store's
    ``error`` (``tunesmith show``) above all, which keeps no traceback."""
    tb = error.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if not os.path.abspath(code.co_filename).startswith(_PACKAGE):
            # Python 3.10: no co_qualname (the function's own name is given) and no add_note (the note is kept in
            # __notes__ as 3.11 does, which _record_error reads; 3.10's tracebacks do not show it)
            name = getattr(code, "co_qualname", code.co_name)
            note = f"raised in {name} ({code.co_filename}:{tb.tb_lineno}), which tunesmith's driver called"
            if sys.version_info >= (3, 11):
                error.add_note(note)
            else:
                error.__notes__ = [*getattr(error, "__notes__", []), note]
            return
        tb = tb.tb_next


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ctrl-C ignored for the block (in the main thread; elsewhere signals do not land anyway)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: trials are stopped and the store is closed cleanly."""


def _stopped_on_plan(plan: tuple[Any, ...] | None, trial: TrialView) -> bool:
    """Whether the trial, ending "stopped" with no decision of the driver's, ended on a STOP its decision ``plan``
    promised (the scheduler's stop, decided in the worker) rather than on the stop rules."""
    if plan is None or trial.last_result is None:
        return False
    from tunesmith.session import _Plan

    return _Plan(plan).decision(trial.iteration, trial.last_result.metrics)[0] is False


def big_config_warning(trial_id: int, config: dict[str, Any], size: int) -> str:
    """What the run says of a trial whose config is ``size`` characters of JSON (over ``BIG_CONFIG``): the key
    holding most of it (down nested dicts; its name escaped), and ``ts.put`` for large objects."""
    from tunesmith.space._validate import _key

    where, value = "config", config
    while isinstance(value, dict) and value:
        key, value = max(value.items(), key=lambda item: len(dumps(item[1])))
        where = _key(where, key)
    return (f"trial {trial_id}'s config is {size / 1024:,.0f} KiB as JSON (over {BIG_CONFIG // 1024} KiB), "
            f"{len(dumps(value)) / 1024:,.0f} KiB of it in {where}: every trial's config is stored in the experiment "
            f"and sent to its worker, so a large array or list in the space makes a large store and a slow run. "
            f"Store a large object once instead: ref = ts.put(obj) before ts.run, data = ts.get(ref) in the "
            f"training function (docs/ray.md, Shared data). Said once per run.")
