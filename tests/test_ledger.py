"""Checkpoint lifetime: the ledger on its own (event sequences), then through real experiments (PBT with keep=1,
resume cleanup, deletion confined to the experiment's trials/ folder)."""

from __future__ import annotations

import os
import shutil
import sqlite3

import pytest

import tunesmith as ts
from tunesmith import checkpoint as ck
from tunesmith._ledger import Ledger, delete_checkpoint
from tunesmith._retention import Retention
from tunesmith.executors.simulated import SimulatedBackend
from tunesmith.schedulers._base import CONTINUE, Exploit
from tunesmith.store.sqlite import STORE_FILE, StoreError
from tunesmith.trial import TrialStatus


def keep(n: int | None) -> Ledger:
    return Ledger(Retention(n, None, None))


def paths(deletions):
    return [p for _owner, _it, p in deletions]


# ------------------------------------------------------------------------------------------ the ledger alone
def test_add_beyond_keep_lets_the_oldest_go_with_its_owner_and_iteration():
    led = keep(2)
    for it in (1, 2, 3):
        led.add(1, it, f"t1/c{it}", {})
    led.add(2, 1, "t2/c1", {})
    assert led.take() == [(1, 1, "t1/c1")]
    assert led.take() == []  # taken once


def test_keep_none_never_deletes():
    led = keep(None)
    for it in range(1, 20):
        led.add(1, it, f"t1/c{it}", {})
    led.forget_after(1, 3)
    assert led.take() == []


def test_a_pin_defers_the_deletion_until_unpinned():
    led = keep(1)
    led.add(1, 3, "t1/c3", {})
    led.pin(2, "t1/c3")  # trial 2's exploit decision names trial 1's checkpoint 3
    led.add(1, 4, "t1/c4", {})  # retention would let c3 go...
    led.add(1, 5, "t1/c5", {})
    assert led.take() == [(1, 4, "t1/c4")]  # ... but only the unpinned one goes
    assert led.holds("t1/c3")
    led.unpin(2)  # the decision was dropped (the trial failed before it applied)
    assert led.take() == [(1, 3, "t1/c3")]
    assert not led.holds("t1/c3")


def test_the_pinning_trials_old_run_does_not_release_its_pin():
    led = keep(1)
    led.add(1, 3, "t1/c3", {})
    led.pin(2, "t1/c3")
    led.add(2, 4, "t2/c4", {})  # the iteration in flight when the decision was sent, from the old run
    led.add(1, 4, "t1/c4", {})
    assert "t1/c3" not in paths(led.take())


def test_a_restored_checkpoint_is_kept_until_the_borrower_has_its_own():
    led = keep(1)
    led.add(1, 3, "t1/c3", {})
    led.pin(2, "t1/c3")
    led.restore(2, "t1/c3")  # the decision applied: trial 2 restarts from it
    led.add(1, 4, "t1/c4", {})
    assert led.take() == []
    led.add(2, 4, "t2/c4", {})  # the restarted trial's own checkpoint: the borrow ends
    assert led.take() == [(1, 3, "t1/c3")]


def test_a_start_as_ranks_keeps_its_restore_point_until_it_ends_whatever_it_reports():
    led = keep(1)
    led.add(1, 4, "t1/c4", {})
    led.started(1, "t1/c4")  # a retry of a trial run as ranks, from its own latest
    led.add(1, 5, "t1/c5", {})
    led.add(1, 6, "t1/c6", {})
    assert paths(led.take()) == ["t1/c5"]  # c4 stays for the ranks that have yet to read it
    led.ended(1)
    assert paths(led.take()) == ["t1/c4"]
    led.ended(1)  # a second end (nothing held) changes nothing
    assert led.take() == []


def test_two_borrowers_of_one_checkpoint_both_keep_it():
    led = keep(1)
    led.add(1, 3, "t1/c3", {})
    led.pin(2, "t1/c3")
    led.pin(3, "t1/c3")
    led.add(1, 4, "t1/c4", {})
    led.restore(2, "t1/c3")
    led.add(2, 5, "t2/c5", {})
    assert led.take() == []  # trial 3 still needs it
    led.restore(3, "t1/c3")
    led.add(3, 5, "t3/c5", {})
    assert led.take() == [(1, 3, "t1/c3")]


def test_a_new_exploit_replaces_the_old_borrow_only_when_it_applies():
    led = keep(1)
    led.add(1, 3, "t1/c3", {})
    led.add(4, 3, "t4/c3", {})
    led.pin(2, "t1/c3")
    led.restore(2, "t1/c3")
    led.pin(2, "t4/c3")  # exploits again before it has a checkpoint of its own: both still needed
    led.add(1, 4, "t1/c4", {})
    led.add(4, 4, "t4/c4", {})
    assert led.take() == []
    led.restore(2, "t4/c3")  # now it restarts from trial 4's: trial 1's goes
    assert led.take() == [(1, 3, "t1/c3")]


def test_a_restart_forgets_later_checkpoints_and_lets_them_go():
    led = keep(2)
    for it in (1, 2, 3, 4):
        led.add(1, it, f"t1/c{it}", {})
    assert led.take() == [(1, 1, "t1/c1"), (1, 2, "t1/c2")]
    led.forget_after(1, 3)  # restarted from iteration 3: 4 is superseded
    assert led.take() == [(1, 4, "t1/c4")]
    led.add(1, 4, "t1/c4", {})  # re-reached: 3 and 4 kept, nothing else to delete
    assert led.take() == []
    led.add(1, 5, "t1/c5", {})
    assert led.take() == [(1, 3, "t1/c3")]


def test_a_forgotten_checkpoint_someone_borrowed_waits_for_the_borrower():
    led = keep(1)
    led.add(1, 4, "t1/c4", {})
    led.pin(2, "t1/c4")
    led.restore(2, "t1/c4")
    led.forget_after(1, 2)  # trial 1 restarted from 2 (its own exploit): c4 is no longer its
    assert led.take() == []
    led.add(2, 5, "t2/c5", {})
    assert led.take() == [(1, 4, "t1/c4")]


def test_a_checkpoint_written_again_under_a_waiting_name_is_not_deleted():
    led = keep(1)
    led.add(1, 4, "t1/c4", {})
    led.pin(2, "t1/c4")
    led.forget_after(1, 2)
    led.add(1, 3, "t1/c3", {})
    led.add(1, 4, "t1/c4", {})  # re-reached: a new folder under the same name, trial 1's latest
    led.unpin(2)
    assert "t1/c4" not in paths(led.take())


def test_held_names_are_the_pinned_or_borrowed_folders_in_that_trials_checkpoints_folder():
    led = keep(1)
    led.add(1, 4, "/e/trials/trial_00001/checkpoints/checkpoint_000004", {})
    led.pin(2, "/e/trials/trial_00001/checkpoints/checkpoint_000004")
    led.restore(3, "file://b/e/trials/trial_00001/checkpoints/checkpoint_000002_1")
    led.restore(4, "/e/trials/trial_00011/checkpoints/checkpoint_000004")
    assert led.held_names("trial_00001") == ("checkpoint_000002_1", "checkpoint_000004")
    led.unpin(2)
    assert led.held_names("trial_00001") == ("checkpoint_000002_1",)


def test_replay_registers_every_borrow_before_retention_lets_anything_go():
    # After a crash: trial 1 has c3 (borrowed by trial 3's pointer) and c4 in the index; trial 2 has c4.
    led = keep(1)
    led.restore(3, "t1/c3")  # pointers first ...
    led.known(1, 3, "t1/c3", {})  # ... then the index, which must not end trial 3's borrow
    led.known(1, 4, "t1/c4", {})
    led.known(3, 2, "t3/c2", {})
    assert led.take() == []
    led.add(3, 4, "t3/c4", {})
    assert sorted(led.take()) == [(1, 3, "t1/c3"), (3, 2, "t3/c2")]


def test_keep_by_metric_keeps_the_best_n_and_the_latest_besides():
    # keep=N, keep_by: the best N by the metric; the latest too (the trial restarts from it), beside them, not
    # in their place: keep=1 once deleted the best and kept only the latest
    led = Ledger(Retention(2, "loss", "min"))
    for it, loss in [(1, 5.0), (2, 1.0), (3, 3.0), (4, 4.0)]:
        led.add(1, it, f"t1/c{it}", {"loss": loss})
    assert sorted(led.take()) == [(1, 1, "t1/c1")]  # 2 and 3 are the best two, 4 the latest
    led.add(1, 5, "t1/c5", {"loss": 0.5})
    assert sorted(led.take()) == [(1, 3, "t1/c3"), (1, 4, "t1/c4")]  # 5 is the best and the latest
    one = Ledger(Retention(1, "acc", "max"))
    for it, acc in [(1, 0.2), (2, 0.9), (3, 0.1), (4, 0.3)]:
        one.add(1, it, f"t1/c{it}", {"acc": acc})
    assert sorted(one.take()) == [(1, 1, "t1/c1"), (1, 3, "t1/c3")]  # the best (2) and the latest (4) stay


# ---------------------------------------------------------------------------------------- confined deletion
def _ckpt(folder, it=1):
    return ck.write(ts.Checkpoint.from_state({"i": it}), str(folder), it)


def test_deletion_inside_the_trials_folder(tmp_path):
    exp = tmp_path / "exp"
    path = _ckpt(exp / "trials" / "trial_00001" / "checkpoints")
    assert delete_checkpoint(path, str(exp)) is True
    assert not os.path.exists(path)
    assert delete_checkpoint(path, str(exp)) is True  # already gone: no error


def test_deletion_outside_the_trials_folder_is_refused(tmp_path, caplog):
    exp = tmp_path / "exp"
    (exp / "trials").mkdir(parents=True)
    outside = _ckpt(tmp_path / "elsewhere")
    escaping = str(exp / "trials" / ".." / ".." / "elsewhere" / os.path.basename(outside))
    for path in (outside, escaping, str(exp / "trials"), str(exp), "relative/checkpoint_000001"):
        assert delete_checkpoint(path, str(exp)) is False
    assert os.path.isdir(outside)
    assert "refusing to delete" in caplog.text


def test_a_symlinked_checkpoint_is_unlinked_never_followed(tmp_path):
    exp = tmp_path / "exp"
    target = _ckpt(tmp_path / "precious")
    ckdir = exp / "trials" / "trial_00001" / "checkpoints"
    ckdir.mkdir(parents=True)
    link = ckdir / "checkpoint_000001"
    link.symlink_to(target, target_is_directory=True)
    assert delete_checkpoint(str(link), str(exp)) is True
    assert not os.path.lexists(link) and ck.Checkpoint(target).load() == {"i": 1}
    # a symlinked trial folder: the path resolves outside trials/, so nothing is deleted
    (exp / "trials" / "trial_00002").symlink_to(tmp_path / "precious", target_is_directory=True)
    inside_link = exp / "trials" / "trial_00002" / os.path.basename(target)
    assert delete_checkpoint(str(inside_link), str(exp)) is False
    assert os.path.isdir(target)


@pytest.mark.timeout(20)
def test_a_fifo_where_a_checkpoint_was_is_unlinked_never_opened(tmp_path):
    # opening a FIFO blocks until someone writes to it: a resume that cleaned one up hung forever
    exp = tmp_path / "exp"
    ckdir = exp / "trials" / "trial_00001" / "checkpoints"
    ckdir.mkdir(parents=True)
    fifo = ckdir / "checkpoint_000555"
    os.mkfifo(fifo)
    assert delete_checkpoint(str(fifo), str(exp)) is True
    assert not os.path.lexists(fifo)


def test_urls_only_under_the_storage_prefix(tmp_path):
    bucket = tmp_path / "bucket"
    local = _ckpt(tmp_path / "staging")
    inside = f"file://{bucket}/exp/trials/trial_00001/checkpoints/checkpoint_000001"
    outside = f"file://{bucket}/other/trials/trial_00001/checkpoints/checkpoint_000001"
    ck.upload(local, inside)
    ck.upload(local, outside)
    prefix = f"file://{bucket}/exp/trials/"
    assert delete_checkpoint(outside, str(tmp_path / "exp"), url_prefix=prefix) is False
    assert delete_checkpoint(f"file://{bucket}/exp/trials/../../other/trials/trial_00001/checkpoints/"
                             f"checkpoint_000001", str(tmp_path / "exp"), url_prefix=prefix) is False
    assert delete_checkpoint(outside, str(tmp_path / "exp")) is False  # no storage URL configured
    assert os.path.isdir(bucket / "other" / "trials" / "trial_00001" / "checkpoints" / "checkpoint_000001")
    assert delete_checkpoint(inside, str(tmp_path / "exp"), url_prefix=prefix) is True
    assert not os.path.exists(bucket / "exp" / "trials" / "trial_00001" / "checkpoints" / "checkpoint_000001")


def test_load_of_a_missing_folder_says_it_is_missing(tmp_path):
    path = _ckpt(tmp_path)
    shutil.rmtree(path)
    with pytest.raises(ck.CheckpointError, match="does not exist") as err:
        ts.Checkpoint(path).load()
    assert "from_dir" not in str(err.value)


# ------------------------------------------------------------------------------------------- PBT with keep=1
def sim_train(config, ctx):
    state = ctx.checkpoint or {"step": 0}
    assert state["step"] == ctx.iteration
    while state["step"] < 12:
        state["step"] += 1
        yield ({"loss": config["q"] / state["step"]}, 1.0, dict(state))


def test_pbt_keep_1_source_checkpoint_is_pinned_from_the_decision(results_dir):
    # time_attr is not the iteration, so a bottom trial is not waiting at its perturbation point: the exploit
    # decision stops it cooperatively, its in-flight iteration ends one virtual second later, and meanwhile
    # the source checkpoints again (keep=1 lets the named checkpoint go). Deterministic on the simulator.
    pbt = ts.PBT(perturbation_interval=3, hyperparam_mutations={"q": [1, 2, 3, 4]}, time_attr="time_total_s",
                 quantile_fraction=0.25, seed=0)
    result = ts.run(sim_train, space={"q": ts.grid([1, 2, 3, 4])}, metric="loss", mode="min", scheduler=pbt,
                    keep=1, backend=SimulatedBackend({"cpu": 4}), verbose=0, name="pin")
    events = result._store.events()
    assert [e for e in events if e[2] == "exploit"], "no exploit happened: the test exercises nothing"
    assert [e[4]["traceback"][-300:] for e in events if e[2] == "error"] == []
    assert all(t.status is TrialStatus.TERMINATED and t.iteration == 12 for t in result.trials)
    _assert_bounded(result, keep=1)


PROFILES = {0: ("T", 0.5), 1: ("Q", 2.0), 2: ("S", 2.0), 3: ("T2", 0.5)}  # who: (name, seconds a step)


def lineage_train(config, ctx):
    """Each step adds the config's name to the state: a checkpoint tells which run wrote it."""
    name, dt = PROFILES[config["who"]]
    state = ctx.checkpoint or {"step": 0, "path": ""}
    while state["step"] < 12:
        state["step"] += 1
        state["path"] += name + " "
        yield ({"step": state["step"], "path": state["path"]}, dt, dict(state))


class BorrowThenRollBack(ts.FIFO):
    """Trial 2 (slow) clones trial 1's checkpoint 8 and stays PAUSED, holding it, until trial 1 has ended;
    trial 1 then clones trial 3 at iteration 2 (rolls back) and re-reaches iteration 8."""

    def __init__(self):
        super().__init__()
        self.done = set()

    def decision_iteration(self, trial):
        return trial.iteration + 1  # every result waits for its decision: the order is the simulator's

    def on_result(self, trial, result, view):
        if trial.id == 2 and result.iteration == 2:
            return Exploit(source_trial=1, config={"who": 1}, pause=True)
        if trial.id == 1 and result.iteration == 10 and trial.generation == 0:
            return Exploit(source_trial=3, config={"who": 3})
        return CONTINUE

    def on_complete(self, trial, result, view):
        self.done.add(trial.id)

    def choose_trial_to_run(self, view):
        paused = [t.id for t in view.trials.values() if t.status is TrialStatus.PAUSED]
        return 2 if 1 in self.done and 2 in paused else None


def test_a_rolled_back_trial_never_writes_over_a_checkpoint_a_clone_still_holds(results_dir):
    # Trial 1's checkpoint_000008 is borrowed by paused trial 2 when trial 1 rolls back to iteration 2 and
    # re-reaches 8: written under the same name, the new folder replaced what trial 2 had chosen, and the
    # driver deleted it by that name when trial 2 let the old one go.
    result = ts.run(lineage_train, space={"who": ts.grid([0, 1, 2])}, scheduler=BorrowThenRollBack(),
                    backend=SimulatedBackend({"cpu": 3}), verbose=0, name="held", keep=12, max_concurrent=3)
    t1, t2 = result.trials[0], result.trials[1]
    exploits = [e for e in result._store.events() if e[2] == "exploit"]
    assert [(e[3], e[4]["source"], e[4]["iteration"]) for e in exploits] == [(2, 1, 8), (1, 3, 2)], exploits
    assert all(t.status is TrialStatus.TERMINATED and t.iteration == 12 for t in result.trials)
    # trial 2 resumed from trial 1's first run at 8, not from its second
    resumed = [r for r in result.history(t2.id) if r["step"] == 9]
    assert resumed[-1]["path"].split() == ["T"] * 8 + ["Q"]
    # trial 1's second run wrote iteration 8 beside the held folder, and nothing it indexed was deleted
    names = [os.path.basename(p) for _it, p in result._store.checkpoints(t1.id)]
    assert "checkpoint_000008_1" in names and "checkpoint_000008" not in names, names
    for t in result.trials:
        for _it, path in result._store.checkpoints(t.id):
            assert os.path.isdir(path), path
        assert t.checkpoint.load()["path"].split()[-1] == PROFILES[t.config["who"]][0]
    assert not os.path.exists(os.path.join(t1.path, "checkpoints", "checkpoint_000008"))  # let go once freed


def real_train(config):
    start = ts.get_checkpoint()
    step = start.load()["step"] if start else 0
    while step < 16:
        step += 1
        ts.report({"loss": config["q"] / step}, checkpoint=ts.Checkpoint.from_state({"step": step}))


@pytest.mark.timeout(120)
def test_pbt_keep_1_real_workers_no_clone_fails(results_dir):
    # Fast trials on real workers: a clone's worker takes a moment to stop after its exploit decision while
    # the sources train on. Before pinning, 1-3 clones of 5-6 exploits failed in every run.
    pbt = ts.PBT(perturbation_interval=2, hyperparam_mutations={"q": [1, 2, 3, 4, 5, 6]}, quantile_fraction=0.5,
                 seed=0)
    for run in range(3):
        result = ts.run(real_train, space={"q": ts.grid([1, 2, 3, 4, 5, 6])}, metric="loss", mode="min",
                        scheduler=pbt, keep=1, verbose=0, name=f"real{run}")
        events = result._store.events()
        assert [e for e in events if e[2] == "exploit"]
        assert [e[4]["traceback"][-300:] for e in events if e[2] == "error"] == [], f"run {run}"
        # each trial trains to 16, but one exploited onto a source's final checkpoint (nothing left to train) has the
        # exploit undone: it ends at its own last result
        undone = {e[3] for e in events if e[2] == "exploit_undone"}
        assert all(t.iteration == 16 or (t.id in undone and t.last_result["training_iteration"] == t.iteration)
                   for t in result.trials), [(t.id, t.iteration) for t in result.trials]
        _assert_bounded(result, keep=1)


def _assert_bounded(result, keep):
    """Each trial's checkpoints folder: no leftovers, only indexed checkpoints, and at most ``keep`` of them
    beside those another trial's pointer names (restored from after an exploit)."""
    for t in result.trials:
        others = {o.checkpoint.path for o in result.trials if o.id != t.id and o.checkpoint is not None}
        folder = os.path.join(t.path, "checkpoints")
        names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        assert not [n for n in names if n.startswith(".")], names
        own = {os.path.join(folder, n) for n in names}
        assert own <= {p for _it, p in result._store.checkpoints(t.id)}, (t.id, names)
        assert len(own - others) <= keep, (t.id, names)


# ---------------------------------------------------------------------------------------------- on resume
def _steps(config):
    start = ts.get_checkpoint()
    step = start.load() if start else 0
    while step < 3:
        step += 1
        ts.report({"loss": step}, checkpoint=ts.Checkpoint.from_state(step))


def _crashed(results_dir, name, keep_n):
    """An experiment that looks killed mid-run: status running, trial 1 back to RUNNING."""
    ts.run(_steps, num_samples=2, keep=keep_n, verbose=0, name=name)
    exp = results_dir / name
    db = sqlite3.connect(str(exp / STORE_FILE))
    with db:
        db.execute("UPDATE trials SET status = 'RUNNING' WHERE id = 1")
        db.execute("UPDATE experiment SET value = '\"running\"' WHERE key = 'status'")
    db.close()
    return exp


def test_resume_removes_tmp_leftovers_and_unindexed_checkpoints(results_dir):
    exp = _crashed(results_dir, "leftovers", 1)
    ckdir = exp / "trials" / "trial_00001" / "checkpoints"
    assert sorted(os.listdir(ckdir)) == ["checkpoint_000003"]
    (ckdir / ".tmp_checkpoint_000004_abc").mkdir()  # a write killed before its rename
    (ckdir / ".tmp_checkpoint_000004_abc" / "state.pkl").write_bytes(b"x")
    _ckpt(ckdir, 2)  # written and renamed, but the driver died before indexing it
    stray_file = exp / "trials" / "trial_00002" / "checkpoints" / ".tmp_checkpoint_000009_x"
    stray_file.mkdir()
    notes = exp / "trials" / "trial_00001" / "notes.txt"  # not a checkpoint: not ours to judge
    notes.write_text("mine")
    result = ts.run(_steps, num_samples=2, keep=1, verbose=0, name="leftovers", resume=True)
    assert sorted(os.listdir(ckdir)) == ["checkpoint_000003"]
    assert sorted(os.listdir(stray_file.parent)) == ["checkpoint_000003"]
    assert notes.read_text() == "mine"
    assert result.trial(1).checkpoint.load() == 3


def test_resume_never_deletes_a_store_path_outside_the_experiment(results_dir, tmp_path):
    exp = _crashed(results_dir, "outside", 1)
    precious = _ckpt(tmp_path / "precious", 1)
    db = sqlite3.connect(str(exp / STORE_FILE))
    with db:  # a store (from someone else's folder) naming a path outside this experiment as trial 1's oldest
        db.execute("INSERT OR REPLACE INTO checkpoints VALUES (1, 1, ?, 0)", (precious,))
    db.close()
    with pytest.raises(StoreError, match="is not in the experiment folder's trials/<trial>/checkpoints/"):
        ts.run(_steps, num_samples=2, keep=1, verbose=0, name="outside", resume=True)  # refused: a damaged store
    assert ck.Checkpoint(precious).load() == {"i": 1}


def test_resume_does_not_follow_a_symlinked_checkpoints_folder(results_dir, tmp_path):
    exp = _crashed(results_dir, "symlinked", 1)
    elsewhere = tmp_path / "elsewhere"
    _ckpt(elsewhere, 7)
    (elsewhere / ".tmp_checkpoint_000008_x").mkdir()
    trial_dir = exp / "trials" / "trial_00003"
    trial_dir.mkdir()
    (trial_dir / "checkpoints").symlink_to(elsewhere, target_is_directory=True)
    ts.run(_steps, num_samples=2, keep=1, verbose=0, name="symlinked", resume=True)
    assert sorted(os.listdir(elsewhere)) == [".tmp_checkpoint_000008_x", "checkpoint_000007"]
