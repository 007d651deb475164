"""Resume: rebuild a controller's state from its experiment's store.

The searcher and scheduler see every stored suggestion and result again, in order (their decisions are
past: only the state they rebuild counts), the checkpoint ledger learns what is on disk, checkpoints no row
names are removed, and every unfinished trial is queued to restart from its latest good checkpoint. The
controller then runs its loop as if it had never stopped.
"""

from __future__ import annotations

import logging
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
    # (time, order, trial, result row): every stored result and every end, replayed in the order they
    # happened, not trial by trial: a scheduler's state (PBT's random draws, a rung's ranking) depends on the
    # order it saw results from different trials in
    history: list[tuple[float, int, TrialView, ResultRow | None]] = []
    for rec in records:
        trial = TrialView(id=rec["id"], config=rec["config"], status=TrialStatus(rec["status"]),
                          resources=rec["resources"] or dict(ctl.resources), parent_id=rec["parent_id"],
                          parent_iteration=rec["parent_iteration"], generation=rec["generation"],
                          num_failures=rec["num_failures"],
                          error=rec["error"], start_time=rec["start_time"], end_time=rec["end_time"])
        ctl.trials[trial.id] = trial
        ctl._next_id = max(ctl._next_id, trial.id + 1)
        ctl.searcher.restore_suggestion(trial.id, trial.config)
        ctl.scheduler.on_trial_add(trial, ctl.view)
        rows = ctl.store.results(trial.id)
        history.extend((row.timestamp, 0, trial, row) for row in rows)
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
            end = trial.end_time if trial.end_time is not None else (rows[-1].timestamp if rows else 0.0)
            history.append((end, 1, trial, None))
            continue
        if errored and restart_errored == "restart":
            trial.checkpoint_path, trial.checkpoint_iteration = None, 0
            ctl.ledger.restore(trial.id, None)
        restarts.append(trial)
    history.sort(key=lambda h: (h[0], h[1], h[2].id, h[3].iteration if h[3] is not None else 0))
    for _time, _order, trial, row in history:
        if row is None:  # the trial ended here
            ctl.scheduler.on_complete(trial, trial.last_result, ctl.view)
            ctl.searcher.observe(trial.id, trial.last_result.metrics if trial.last_result else {}, True)
            continue
        metrics = result_dict(row)
        result = Result(trial.id, row.iteration, metrics)
        ctl.searcher.observe(trial.id, metrics, False)
        ctl.scheduler.on_result(trial, result, ctl.view)  # rebuilds rungs; the decision is past
        trial.iteration, trial.last_result = row.iteration, result
        ctl.num_results += 1
        value = ctl.objective.value(metrics)  # None with several metrics: no single best
        if value is not None:
            ctl._metric_seen.add(trial.id)
            if ctl.best_so_far is None or ctl.objective.better(value, ctl.best_so_far[1]):
                ctl.best_so_far = (trial.id, value)
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
