"""A training function that saves checkpoints but never restores them, under PBT (docs/schedulers.md, "PBT: the
population and the slots"): every exploit and every time-sharing pause restarts it from its initial state while
its ``training_iteration`` goes on from the checkpoint's. Nothing can tell the scheduler (it sees only results),
so these tests pin down what such a run does: it never reaches the end of its own loop, and a stop rule on
``training_iteration`` is what ends it."""

from __future__ import annotations

import tunesmith as ts
from tunesmith.executors.simulated import SimulatedBackend


def forgetful(config, ctx):
    """Ten steps of its own, a checkpoint at each; ``ctx.checkpoint`` (what it should restore) ignored."""
    for step in range(1, 11):
        yield {"loss": config["lr"] + 1.0 / step, "step": step}, 1.0, {"step": step}


def test_a_function_that_ignores_its_checkpoint_starts_over_at_every_restart_and_a_stop_rule_ends_it(tmp_path):
    pbt = ts.PBT(perturbation_interval=2, hyperparam_mutations={"lr": ts.uniform(0.0, 1.0)}, seed=0)
    result = ts.run(forgetful, space={"lr": ts.grid([0.1, 0.5, 0.9, 0.3])}, metric="loss", mode="min",
                    scheduler=pbt, stop={"training_iteration": 40}, backend=SimulatedBackend({"cpu": 2}, seed=0),
                    storage_path=str(tmp_path), verbose=0, file_loggers=False)
    for t in result.trials:
        # the stop rule ended it: 40 iterations counted from the checkpoints, not by its own loop of ten
        assert t.iteration == 40 and t.status is ts.TrialStatus.TERMINATED
        steps = [h["step"] for h in result.history(t.id, all_generations=True)]
        # time-sharing (4 trials, 2 slots) restarted it at every perturbation point: its own count went
        # 1, 2, 1, 2... and never reached the end of its loop, which alone would never have ended the run
        assert max(steps) < 10 and steps.count(1) >= 10, steps
