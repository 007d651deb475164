"""Resume: rebuild a controller's state from its experiment's store.

The searcher and scheduler see every stored suggestion and result again, in order (their decisions are
past: only the state they rebuild counts), the checkpoint ledger learns what is on disk, checkpoints no row
names are removed, and every unfinished trial is queued to restart from its latest good checkpoint. The
controller then runs its loop as if it had never stopped.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from tunesmith._ledger import clean_leftovers
from tunesmith.checkpoint import CheckpointError, verify
from tunesmith.store.sqlite import ResultRow, result_dict
from tunesmith.trial import Result, TrialStatus, TrialView

if TYPE_CHECKING:
    from tunesmith._controller import Controller

log = logging.getLogger("tunesmith")


def replay(ctl: Controller, restart_errored: str | None = None) -> None:
    """Fill ``ctl`` (a new controller, before ``run``) from its store.

    Args:
        restart_errored: None keeps ERROR trials as they are; "restart" runs them again from scratch;
            "resume" continues them from their latest checkpoint.
    """
    records = ctl.store.trials()
    restarts: list[TrialView] = []
    indexed: list[tuple[int, list[tuple[int, str]], list[ResultRow]]] = []
    known: set[str] = set()  # every checkpoint the store names: the rest in trials/ is left over
    for rec in records:
        trial = TrialView(id=rec["id"], config=rec["config"], status=TrialStatus(rec["status"]),
                          resources=rec["resources"] or dict(ctl.resources), parent_id=rec["parent_id"],
                          parent_iteration=rec["parent_iteration"], num_failures=rec["num_failures"],
                          error=rec["error"], start_time=rec["start_time"], end_time=rec["end_time"])
        ctl.trials[trial.id] = trial
        ctl._next_id = max(ctl._next_id, trial.id + 1)
        ctl.searcher.restore_suggestion(trial.id, trial.config)
        ctl.scheduler.on_trial_add(trial, ctl.view)
        rows = ctl.store.results(trial.id)
        last = None
        for row in rows:
            metrics = result_dict(row)
            last = Result(trial.id, row.iteration, metrics)
            ctl.searcher.observe(trial.id, metrics, False)
            ctl.scheduler.on_result(trial, last, ctl.view)  # rebuilds rungs; the decision is past
            trial.iteration, trial.last_result = row.iteration, last
            ctl.num_results += 1
            value = metrics.get(ctl.metric) if isinstance(ctl.metric, str) else None
            if isinstance(value, (int, float)) and not math.isnan(value):
                ctl._metric_seen.add(trial.id)
                if ctl.best_so_far is None or ctl._sign * value < ctl._sign * ctl.best_so_far[1]:
                    ctl.best_so_far = (trial.id, value)
        own = ctl.store.checkpoints(trial.id)
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
        errored = trial.status is TrialStatus.ERROR
        if trial.status is TrialStatus.TERMINATED or (errored and restart_errored is None):
            ctl.scheduler.on_complete(trial, last, ctl.view)
            ctl.searcher.observe(trial.id, last.metrics if last else {}, True)
            continue
        if errored and restart_errored == "restart":
            trial.checkpoint_path, trial.checkpoint_iteration = None, 0
            ctl.ledger.restore(trial.id, None)
        restarts.append(trial)
    # every restart point is held above before retention sees the index: nothing a trial restarts
    # from is let go
    for tid, own, rows in indexed:
        by_iter = {row.iteration: row for row in rows}
        for it, path in own:
            ctl.ledger.known(tid, it, path, result_dict(by_iter[it]) if it in by_iter else {})
    clean_leftovers(ctl.exp_dir, known)  # keep=N bounds the disk after a crash too
    for trial in restarts:
        trial.status = TrialStatus.PENDING
        trial.error = None
        ctl._pending_launch.append(ctl._restart_launch(trial))
    log.info("resuming %s: %d trials stored, %d to restart", ctl.name, len(records), len(restarts))


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
