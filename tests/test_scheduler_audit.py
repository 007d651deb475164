"""Population and bracket schedulers off the happy path (an audit): each test is a bug found and fixed."""

from __future__ import annotations

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

