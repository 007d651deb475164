"""A resume replays every stored result and every trial's end in the order they happened: on one clock.

On the simulated backend results are stamped on its virtual clock (its epoch + virtual seconds, running far ahead
of the wall clock), so a trial's end must be stamped on that clock too (``Executor.timestamp``): stamped with the
wall clock, every end was replayed right after its trial's own last result, before the results of other trials
that came in between, and HyperBand took each loser out of its rung before the rung was decided (the rung then
ranked fewer trials: a resumed run cut its best trial short). And a resumed simulated backend's clock goes on after
everything stored (``Executor.resumed_after``): from a new epoch and a virtual clock at 0, a second run's results
were stamped before the first run's late ones, and a second interruption's resume replayed them out of order.

An interrupted (Ctrl-C: SIGINT to the driver, after some trials ended) and resumed seeded simulated experiment must
end as the same experiment uninterrupted: every trial's history, status and the best trial.
"""

from __future__ import annotations

import os
import signal

import pytest
from algorithm_helpers import CtrlCAfter

import tunesmith as ts


def _train(config, ctx):
    state = ctx.checkpoint or {"w": 0.0}
    for _ in range(ctx.iteration, 27):
        state = {"w": state["w"] + config["lr"] * (1 - state["w"])}
        yield {"loss": 1 - state["w"] + config["noise"] * 0.01}, 10.0 + 50 * config["noise"], dict(state)


class _CtrlCAfterEnds(ts.Callback):
    """SIGINT to the driver once ``n`` trials ended (a user's Ctrl-C: the run stops at the top of its next pass)."""

    def __init__(self, n):
        self.n, self.ended = n, 0

    def on_trial_complete(self, trial):
        self.ended += 1
        if self.ended == self.n:
            os.kill(os.getpid(), signal.SIGINT)


def _run(folder, name, resume=False, callbacks=()):
    return ts.run(_train, {"lr": ts.loguniform(1e-3, 0.5), "noise": ts.uniform(0, 1)}, metric="loss", mode="min",
                  num_samples=30, scheduler=ts.HyperBand(max_t=27), keep=2, seed=7, name=name,
                  storage_path=str(folder), verbose=0,
                  backend=ts.SimulatedBackend({"cpu": 6}, seed=0), resume=resume, callbacks=list(callbacks))


def _histories(results):
    return {t.id: (t.status, t.config, [(r["training_iteration"], r["loss"]) for r in results.history(t.id)])
            for t in results.trials}


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The uninterrupted run (once for the module: it is the same for every cut)."""
    results = _run(tmp_path_factory.mktemp("whole"), "whole")
    assert all(t.status is ts.TrialStatus.TERMINATED for t in results.trials)
    return _histories(results), results.best.id


@pytest.mark.parametrize("cuts", [(6,), (12,), (20,), (6, 8), (12, 5)])
def test_an_interrupted_hyperband_run_resumed_ends_as_the_uninterrupted_one(cuts, whole, tmp_path):
    histories, best = whole
    for index, ends in enumerate(cuts):  # each cut after that many trials ended in that run
        with pytest.raises(KeyboardInterrupt):
            _run(tmp_path, "cut", resume=index > 0, callbacks=[_CtrlCAfterEnds(ends)])
        assert any(t.status is ts.TrialStatus.PAUSED for t in ts.load(str(tmp_path / "cut")).trials)
    resumed = _run(tmp_path, "cut", resume=True)
    got = _histories(resumed)
    assert [tid for tid in histories if got.get(tid) != histories[tid]] == []
    assert got == histories
    assert resumed.best.id == best


def test_a_simulated_trials_end_is_stamped_on_its_results_clock(tmp_path):
    results = _run(tmp_path, "ends")
    store = results._store
    last = max(row.timestamp for t in results.trials for row in store.results(t.id))
    for rec in store.trials():
        rows = store.results(rec["id"])
        # at or after its own last result, and among the others' (a wall-clock end came long before them)
        assert rows[-1].timestamp <= rec["end_time"] <= last, rec["id"]


def test_a_resumed_simulated_backend_stamps_after_what_was_stored(tmp_path):
    from tunesmith.executors._base import Launch, Results
    from tunesmith.executors.simulated import SimulatedBackend

    def one(config, ctx):
        yield {"loss": 1.0}, 5.0

    first = SimulatedBackend()
    later = first.timestamp() + 1000.0  # an earlier run's virtual time ran far ahead of the wall clock
    backend = SimulatedBackend()
    backend.resumed_after(later)
    backend.setup(one, str(tmp_path))
    assert backend.timestamp() > later
    assert backend.try_start(Launch(trial_id=1, config={}, trial_dir=str(tmp_path / "t1"), resources={"cpu": 1.0}))
    stamps = []
    while backend.running():
        stamps += [row[2] for event in backend.poll(0.05) if isinstance(event, Results) for row in event.rows]
    assert stamps == [backend.timestamp()] and stamps[0] > later
    backend.resumed_after(0.0)  # never back
    assert backend.timestamp() == stamps[0]


# -- PBT ---------------------------------------------------------------------------------------------------------------
# A seeded simulated PBT with one slot: its trials take turns (time-sharing: each pauses at a perturbation point while
# another is behind it), so the order of everything is the scheduler's alone and a resume must rebuild all it decided
# on. Three things it did not: (1) the scheduler was told there would be no more trials (``on_no_more_trials``: PBT
# stops pausing trials for newcomers) only when the resumed run asked the searcher again, after the replay and the
# results left undecided by the interruption: now the controller stores when it told it (a ``no_more_trials`` event)
# and the replay tells it there, among the results; the replay's view then shows the trials the scheduler had paused
# as PAUSED (they are what PBT pauses others behind); (2) a trial interrupted while it ran restarted behind the trials
# that were waiting for a slot (its restart was queued in id order, or after them when the resume decided its last
# results first): it took its own slot back in the uninterrupted run; (3) the results left undecided were each decided
# with the trials decided before them waiting to restart, not running as they were when those results came.
# With several slots a resume still differs: see docs/architecture.md (what a resume of PBT cannot repeat).
def _pbt_train(config, ctx):
    state = ctx.checkpoint or {"w": 0.0}
    for _ in range(ctx.iteration, 12):
        state = {"w": state["w"] + config["lr"] * (1 - state["w"])}
        yield {"loss": 1 - state["w"] + config["noise"] * 0.01}, 10.0 + 50 * config["noise"], dict(state)


def _pbt_run(folder, name, resume=False, callbacks=(), keep=None):
    pbt = ts.PBT(perturbation_interval=4, hyperparam_mutations={"lr": ts.loguniform(1e-3, 0.5)}, seed=3)
    return ts.run(_pbt_train, {"lr": ts.loguniform(1e-3, 0.5), "noise": ts.uniform(0, 1)}, metric="loss", mode="min",
                  num_samples=10, scheduler=pbt, keep=keep, seed=7, name=name, storage_path=str(folder), verbose=0,
                  backend=ts.SimulatedBackend({"cpu": 1}, seed=0), resume=resume, callbacks=list(callbacks))


def _lineage(results):
    return [(e["trial_id"], e["iteration"], e["source"], e["source_iteration"]) for e in results.lineage()]


@pytest.fixture(scope="module")
def whole_pbt(tmp_path_factory):
    results = _pbt_run(tmp_path_factory.mktemp("whole_pbt"), "whole")
    assert len(_lineage(results)) >= 4  # it exploits (and undoes one exploit, onto a final checkpoint)
    return _histories(results), _lineage(results)


# each cut after that many results in that run: 2, 14 (a trial interrupted while another waited to start), 38 and 77
# (after the searcher said it had no more trials), and a double interruption. With keep=1 the uninterrupted run is the
# same (the latest checkpoint is always kept), but the older checkpoints are deleted: the replay knows a result came
# with one from its row (``results.checkpointed``), not from the index (PBT clones and pauses only where there is
# one; replayed as absent, the fifth exploit cloned another source)
@pytest.mark.parametrize("keep", [None, 1])
@pytest.mark.parametrize("cuts", [(2,), (14,), (38,), (77,), (38, 20)])
def test_an_interrupted_pbt_run_on_one_slot_resumed_ends_as_the_uninterrupted_one(cuts, keep, whole_pbt, tmp_path):
    histories, lineage = whole_pbt
    for index, results in enumerate(cuts):
        with pytest.raises(KeyboardInterrupt):
            _pbt_run(tmp_path, "cut", resume=index > 0, callbacks=[CtrlCAfter(results)], keep=keep)
    resumed = _pbt_run(tmp_path, "cut", resume=True, keep=keep)
    got = _histories(resumed)
    assert [tid for tid in histories if got.get(tid) != histories[tid]] == []
    assert _lineage(resumed) == lineage


# A store written before results said whether they came with a checkpoint (schema 2): a reader opens it as it is,
# a resume migrates it (its rows say nothing: NULL, replayed by the index as before) and goes on; the rows it writes
# from there say it.
def test_a_schema_2_store_without_checkpointed_results_opens_and_resumes(whole_pbt, tmp_path):
    import sqlite3

    from tunesmith.store.sqlite import SCHEMA_VERSION, STORE_FILE, Store

    with pytest.raises(KeyboardInterrupt):
        _pbt_run(tmp_path, "old", callbacks=[CtrlCAfter(77)], keep=1)
    path = os.path.join(str(tmp_path), "old", STORE_FILE)
    new = Store(path, readonly=True)
    stored, checkpointed = new.results(all_generations=True), new.checkpointed(1)
    new.close()
    assert checkpointed
    db = sqlite3.connect(path)
    db.executescript("ALTER TABLE results DROP COLUMN checkpointed; PRAGMA user_version = 2;")
    db.close()
    before = Store(path, readonly=True)
    assert before.results(all_generations=True) == stored and before.checkpointed(1) == set()
    before.close()
    resumed = _pbt_run(tmp_path, "old", resume=True, keep=1)
    assert _lineage(resumed)[:4] == whole_pbt[1][:4]  # the exploits stored before the interruption
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    old = db.execute("SELECT checkpointed FROM results WHERE timestamp <= ?", (max(r.timestamp for r in stored),))
    assert {row[0] for row in old} == {None}
    new = db.execute("SELECT checkpointed FROM results WHERE timestamp > ?", (max(r.timestamp for r in stored),))
    assert {row[0] for row in new} == {1}  # _pbt_train checkpoints every iteration
    db.close()
