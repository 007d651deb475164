"""Population and bracket schedulers off the happy path (an audit): each test is a bug found and fixed."""

from __future__ import annotations

import pytest
from algorithm_helpers import climb_to_4, exploited_at_its_last_result

import tunesmith as ts
from tunesmith.executors.simulated import SimulatedBackend


def _lr_steps(config, ctx, every):
    """5 iterations adding ``lr`` to ``w``, a checkpoint every ``every`` iterations."""
    state = ctx.checkpoint or {"w": 0.0}
    for it in range(ctx.iteration + 1, 6):
        state = {"w": state["w"] + config["lr"]}
        yield ({"w": state["w"]}, 1.0, state) if it % every == 0 else ({"w": state["w"]}, 1.0)


def _checkpoint_every_iteration(config, ctx):
    yield from _lr_steps(config, ctx, 1)


def _checkpoint_every_4(config, ctx):
    yield from _lr_steps(config, ctx, 4)


def test_pbt_replay_restarted_before_an_earlier_change_keeps_the_new_config(tmp_path):
    # trial 1 cloned trial 2 (lr 0.9) at iteration 3 with lr 0.5. The replayed function checkpoints only every 4
    # iterations, so the change restarts it from scratch with lr 0.5 ("a trial restarted from an older checkpoint
    # runs the iterations since with the new config"). It used to be sent back to lr 0.9 at its next result
    # (iteration 1 is before the change), then to 0.5 at 3, and so on for ever (here until the virtual time budget)
    pbt = ts.PBT(perturbation_interval=3, hyperparam_mutations={"lr": lambda: 0.5}, resample_probability=1.0, seed=0)
    ts.run(_checkpoint_every_iteration, space={"lr": ts.grid([0.1, 0.9])}, metric="w", mode="max", scheduler=pbt,
           backend=SimulatedBackend({"cpu": 2}), verbose=0, storage_path=str(tmp_path), name="pbt")
    replay = ts.PBTReplay(str(tmp_path / "pbt"), 1)
    assert replay.schedule == [(0, {"lr": 0.9}), (3, {"lr": 0.5})]
    again = ts.run(_checkpoint_every_4, space=replay.config, scheduler=replay, num_samples=1, time_budget_s=100,
                   verbose=0, backend=SimulatedBackend({"cpu": 1}), storage_path=str(tmp_path), name="replay")
    (trial,) = again.trials
    assert [(e["iteration"], e["config"]) for e in again.lineage()] == [(3, {"lr": 0.5})]  # one exploit per change
    assert trial.status is ts.TrialStatus.TERMINATED and trial.iteration == replay.last_iteration == 5
    assert [r["w"] for r in again.history(trial.id)] == [0.5, 1.0, 1.5, 2.0, 2.5]


def test_a_trial_exploited_at_its_last_result_ends_with_its_own_config_and_result(results_dir):
    """Real workers, one slot: trial 1 (a=1) pauses at its perturbation point 4 (its last) for trial 2 (a=0), which
    is then the bottom and is exploited at its own last result: it restarts from trial 1's checkpoint of iteration
    4 with a new ``a``, has nothing left to train and reports nothing. It first showed its new config beside the
    score its old one produced, then (a trial shows only what its config produced) no result at all; the exploit
    is now undone: it ends with its own config, score and checkpoint, as if never exploited."""
    result = exploited_at_its_last_result(name="pbt-last")
    (undone,) = [(tid, data) for _s, _t, kind, tid, data in result._store.events() if kind == "exploit_undone"]
    assert (undone[0], undone[1]["source"], undone[1]["from_iteration"], undone[1]["old_config"]) == (2, 1, 4,
                                                                                                    {"a": 0})
    assert result.lineage() == []  # an undone exploit is not part of any lineage
    trials = {t.id: t for t in result.trials}
    assert (trials[2].config, trials[2].parent_id, trials[2].generation, trials[2].iteration) == ({"a": 0}, None, 0, 4)
    for t in result.trials:  # what each trial shows was produced by the config it shows
        assert t.last_result["a_used"] == t.config["a"], (t.id, t.config, t.last_result)
    assert trials[1].last_result["score"] == 4.0 and trials[2].last_result["score"] == 0.0
    assert trials[2].checkpoint.iteration == 4 and trials[2].checkpoint.path.startswith(trials[2].path)  # its own
    assert [t.id for t in result.top(2, scope="all")] == [1, 2]
    assert result.best.id == result.get_best(scope="all").id == 1
    assert result.get_best(scope="all", mode="min").id == 2
    frame = result.dataframe()
    assert list(frame.loc[frame.trial_id == 2, "score"]) == [0.0]
    assert [h["a_used"] for h in result.history(2, all_generations=True)] == [0, 0, 0, 0]
    assert [h["generation"] for h in result.history(2, all_generations=True)] == [0, 0, 0, 0]


def test_a_result_that_meets_a_stop_rule_is_not_exploited(results_dir):
    """The same run with ``stop={"training_iteration": 4}``: the result at 4 ends each trial before PBT is asked, so
    no exploit comes of it and every trial keeps the config that produced its result."""
    pbt = ts.PBT(perturbation_interval=4, hyperparam_mutations={"a": [2, 3]}, resample_probability=1.0, seed=0)
    result = ts.run(climb_to_4, space={"a": ts.grid([1, 0])}, metric="score", mode="max", max_concurrent=1,
                    verbose=0, name="pbt-stop", scheduler=pbt, stop={"training_iteration": 4})
    assert result.lineage() == []
    assert [(t.config["a"], t.last_result["a_used"], t.iteration) for t in result.trials] == [(1, 1, 4), (0, 0, 4)]


def _climb_to_4_keys_vary(config):
    """``climb_to_4`` whose first result holds one more key (the frame's rows are not all alike)."""
    checkpoint = ts.get_checkpoint()
    start = checkpoint.load()["i"] if checkpoint else 0
    for i in range(start, 4):
        extra = {"first": True} if i == 0 else {}
        ts.report({"score": float(config["a"] * (i + 1)), "a_used": config["a"], **extra},
                  checkpoint=ts.Checkpoint.from_state({"i": i + 1}))


@pytest.mark.parametrize("fn", [climb_to_4, _climb_to_4_keys_vary])
def test_dataframe_of_all_results_gives_each_row_the_config_that_produced_it(results_dir, fn):
    """Real workers, one slot: trial 2 (a=0) is exploited at iteration 2 onto trial 1's checkpoint of 2 and goes on
    with a new ``a``; its rows 1 and 2 (a=0) move into its new generation. ``dataframe(all_results=True)`` showed
    them beside the new ``a``, as if it had produced them; each row now has the config that produced it (from the
    exploit events, as ``lineage`` reads them)."""
    pbt = ts.PBT(perturbation_interval=2, hyperparam_mutations={"a": [2, 3]}, resample_probability=1.0, seed=0)
    result = ts.run(fn, space={"a": ts.grid([1, 0])}, metric="score", mode="max", max_concurrent=1,
                    verbose=0, name="pbt-rows", scheduler=pbt)
    exploits = result.lineage()
    assert exploits and exploits[0]["source_iteration"] == 2, exploits
    moved = exploits[0]["trial_id"]  # its old config's rows 1 and 2 are in its current generation
    assert [h["a_used"] for h in result.history(moved)][:2] == [exploits[0]["old_config"]["a"]] * 2
    frame = result.dataframe(all_results=True)
    assert list(frame["config/a"]) == list(frame["a_used"]), frame[["trial_id", "training_iteration", "a_used",
                                                                   "config/a"]]
    assert len(frame) == sum(len(result.history(t.id)) for t in result.trials)
