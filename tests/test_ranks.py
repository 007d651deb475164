"""Trials run as several ranks (``run(..., ranks=N)``) on the local backend: real worker processes, real rank
processes, torch DDP with the gloo backend on CPU (issue 20)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time

import pytest

import tunesmith as ts
from tests.proc_helpers import pid_alive, until
from tunesmith import _ranks
from tunesmith.executors.local import LocalBackend

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="rank supervision is tested on Linux")


def _none_alive(pids, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if pid_alive(p)]
        if not alive:
            return []
        time.sleep(0.05)
    return [p for p in pids if pid_alive(p)]


def _note(name, value):
    """A rank's record in the trial's folder (the working folder of every rank)."""
    with open(f"{name}.rank{ts.get_rank()}.json", "a") as f:
        f.write(json.dumps(value) + "\n")


def _records(trial_dir, name, rank):
    with open(os.path.join(trial_dir, f"{name}.rank{rank}.json")) as f:
        return [json.loads(line) for line in f]


def _trial_dir(result, trial_id=1):
    return os.path.join(result.path, "trials", f"trial_{trial_id:05d}")


def _restored(name, default):
    """The JSON ``name`` in the checkpoint the trial restores from, or ``default`` on a first start."""
    ckpt = ts.get_checkpoint()
    if ckpt is None:
        return default
    with open(os.path.join(ckpt.as_dir(), name)) as f:
        return json.load(f)


def _report_with(metrics, name, value):
    """ts.report with a checkpoint holding ``value`` as the JSON ``name`` (its folder copied by report, then
    deleted: the suite leaves nothing in the temporary folder)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, name), "w") as f:
            json.dump(value, f)
        ts.report(metrics, checkpoint=ts.Checkpoint.from_dir(folder))


def ddp_steps(config):
    """A DDP model trained a few steps; each rank records its parameters' hash after each step."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    _note("env", {k: os.environ[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
          | {"pid": os.getpid(), "rank": ts.get_rank(), "world": ts.get_world_size(), "cpu": ts.get_resources()["cpu"]})
    torch.manual_seed(100 + dist.get_rank())  # different data per rank: without the all-reduce they would differ
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(config["steps"]):
        loss = model(torch.randn(8, 4)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        _note("params", hashlib.sha1(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest())
        ts.report({"loss": loss.item(), "rank": ts.get_rank()})  # only rank 0's are the trial's
    dist.destroy_process_group()


def test_ddp_ranks_get_the_env_all_reduce_and_only_rank_0_results_are_stored():
    result = ts.run(ddp_steps, {"steps": 3}, metric="loss", mode="min", ranks=2, resources={"cpu": 2}, verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    folder = _trial_dir(result)
    env0, env1 = _records(folder, "env", 0)[0], _records(folder, "env", 1)[0]
    assert (env0["RANK"], env1["RANK"]) == ("0", "1")
    assert env0["WORLD_SIZE"] == env1["WORLD_SIZE"] == "2"
    assert env0["MASTER_PORT"] == env1["MASTER_PORT"] and env0["MASTER_ADDR"] == "127.0.0.1"
    assert (env0["world"], env1["world"]) == (2, 2) and env0["cpu"] == env1["cpu"] == 1.0  # each rank its share
    assert env0["pid"] != env1["pid"]
    # gradients all-reduced: after every step both ranks hold the same parameters
    assert _records(folder, "params", 0) == _records(folder, "params", 1)
    assert len(set(_records(folder, "params", 0))) == 3
    history = result.history(trial.id)
    assert [r["training_iteration"] for r in history] == [1, 2, 3]  # rank 1's three reports are not stored
    assert all(r["rank"] == 0 for r in history)
    assert not pid_alive(env1["pid"]), "rank 1 outlived its trial"


def fails_on_rank_1(config):
    import torch.distributed as dist

    dist.init_process_group("gloo")
    _note("pid", os.getpid())
    if ts.get_rank() == 1:
        raise ValueError("boom in rank 1")
    dist.barrier()  # rank 0 waits for a rank that is gone: gloo raises, the trial must not hang
    ts.report({"loss": 1.0})


def test_a_failing_rank_fails_the_trial_with_its_traceback_and_nothing_is_left():
    result = ts.run(fails_on_rank_1, metric="loss", mode="min", ranks=2, resources={"cpu": 2}, verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.ERROR
    assert "rank 1 of 2" in trial.error and "ValueError: boom in rank 1" in trial.error, trial.error
    pids = [_records(_trial_dir(result), "pid", r)[0] for r in (0, 1)]
    assert not pid_alive(pids[1])


def killed_then_resumed(config):
    """Checkpoints every step; in its first attempt rank 0 SIGKILLs rank 1 after the second step."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    start = _restored("step.json", {"step": 0})["step"]
    _note("start", {"start": start, "pid": os.getpid()})
    for step in range(start, config["steps"]):
        t = torch.tensor([float(step)])
        dist.all_reduce(t)
        if step == 2 and start == 0 and ts.get_rank() == 0:
            other = _records(".", "start", 1)[-1]["pid"]
            os.kill(other, signal.SIGKILL)  # rank 1 dies mid-run
            dist.all_reduce(t)  # gloo raises: the peer is gone
        _report_with({"loss": float(config["steps"] - step), "sum": t.item()}, "step.json", {"step": step + 1})


def test_a_killed_rank_fails_the_trial_and_the_retry_resumes_every_rank_from_the_checkpoint():
    result = ts.run(killed_then_resumed, {"steps": 4}, metric="loss", mode="min", ranks=2, resources={"cpu": 2},
                    max_failures=1, verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    folder = _trial_dir(result)
    starts0 = [r["start"] for r in _records(folder, "start", 0)]
    starts1 = [r["start"] for r in _records(folder, "start", 1)]
    assert starts0 == starts1 == [0, 2]  # both ranks restarted from the same checkpoint (step 2)
    history = result.history(trial.id)
    assert [r["training_iteration"] for r in history] == [1, 2, 3, 4]
    assert [r["sum"] for r in history] == [0.0, 2.0, 4.0, 6.0]  # all-reduced over both ranks each time
    pids = [r["pid"] for rank in (0, 1) for r in _records(folder, "start", rank) if r["pid"] != os.getpid()]
    assert not _none_alive(pids[1:], timeout=2)


def asha_trial(config):
    import torch.distributed as dist

    dist.init_process_group("gloo")
    _note("pid", os.getpid())
    for step in range(config["steps"]):
        t = torch.tensor([1.0])
        dist.all_reduce(t)  # a stopped rank 0 leaves rank 1 waiting here: it must be ended with it
        ts.report({"loss": config["bad"] + 1.0 / (step + 1), "world": t.item()})


def test_asha_sees_a_two_rank_trial_as_one_and_its_stop_ends_every_rank():
    result = ts.run(asha_trial, {"steps": 8, "bad": ts.grid([0.0, 10.0])}, metric="loss", mode="min", ranks=2,
                    resources={"cpu": 2}, scheduler=ts.ASHA(max_t=8, grace_period=1, reduction_factor=2),
                    backend=LocalBackend(total_resources={"cpu": 2}), verbose=0)
    by_bad = {t.config["bad"]: t for t in result.trials}
    good, bad = by_bad[0.0], by_bad[10.0]
    assert good.status == ts.TrialStatus.TERMINATED and good.last_result["training_iteration"] == 8
    assert bad.last_result["training_iteration"] < 8  # stopped at a rung, as one trial
    assert all(r["world"] == 2.0 for r in result.history(bad.id))
    pids = [_records(_trial_dir(result, t.id), "pid", 1)[0] for t in (good, bad)]
    assert not _none_alive(pids, timeout=2), "a rank of a stopped trial outlived it"


def resized(config):
    import torch.distributed as dist

    dist.init_process_group("gloo")
    ckpt = ts.get_checkpoint()
    start = ckpt.iteration if ckpt is not None else 0
    _note("start", {"start": start, "world": dist.get_world_size(), "cpu": ts.get_resources()["cpu"]})
    for step in range(start, config["steps"]):
        t = torch.tensor([1.0])
        dist.all_reduce(t)
        import tempfile

        with tempfile.TemporaryDirectory() as empty:
            ts.report({"loss": 1.0 / (step + 1), "world": t.item()}, checkpoint=ts.Checkpoint.from_dir(empty))
        if step + 1 == config.get("resize_at") and dist.get_world_size() == config.get("resize_from", 2) \
                and ts.get_rank() == 0:
            # the resize is decided on this result, asynchronously: rank 0 waits until the driver's pause reaches
            # it (a condition, bounded), so the trial cannot run past the checkpoint it is to restart from
            deadline = time.monotonic() + 60
            while not ts.should_stop() and time.monotonic() < deadline:
                time.sleep(0.005)


def test_resource_changing_restarts_a_two_rank_trial_from_its_checkpoint_with_the_new_world_size():
    def shrink(trial, view):
        return {"cpu": 1.0} if trial.iteration >= 2 else None

    result = ts.run(resized, {"steps": 4, "resize_at": 2}, metric="loss", mode="min", ranks=2, resources={"cpu": 2},
                    scheduler=ts.ResourceChanging(ts.FIFO(), shrink), verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    first, second = _records(_trial_dir(result), "start", 0)
    assert first == {"start": 0, "world": 2, "cpu": 1.0}
    assert second == {"start": 2, "world": 1, "cpu": 1.0}  # from its checkpoint at the result the resize was decided on
    worlds = [r["world"] for r in result.history(trial.id)]
    assert worlds == [2.0] * second["start"] + [1.0] * (4 - second["start"])


def test_resource_changing_grows_a_one_rank_trial_to_two_ranks_from_its_checkpoint():
    def grow(trial, view):
        return {"cpu": 2.0} if trial.iteration >= 2 else None

    result = ts.run(resized, {"steps": 4, "resize_at": 2, "resize_from": 1}, metric="loss", mode="min", ranks=1,
                    resources={"cpu": 1}, scheduler=ts.ResourceChanging(ts.FIFO(), grow),
                    backend=LocalBackend(total_resources={"cpu": 2}), verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    first, second = _records(_trial_dir(result), "start", 0)
    assert first == {"start": 0, "world": 1, "cpu": 1.0}
    assert second == {"start": 2, "world": 2, "cpu": 1.0}  # a new rank joined, each rank keeping its share
    assert _records(_trial_dir(result), "start", 1) == [second]  # rank 1 exists only after the resize
    assert [r["world"] for r in result.history(trial.id)] == [1.0, 1.0, 2.0, 2.0]


def pbt_ranks(config):
    """Each rank records the checkpoint it starts from; the model's 'origin' travels in the checkpoint."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    state = _restored("state.json", {"step": 0, "origin": config["lr"]})
    _note("start", {"step": state["step"], "origin": state["origin"], "world": dist.get_world_size(),
                    "pid": os.getpid()})
    while state["step"] < config["steps"]:
        t = torch.tensor([1.0])
        dist.all_reduce(t)
        state["step"] += 1
        _report_with({"loss": state["origin"] + 1.0 / state["step"], "lr": ts.get_config()["lr"], "world": t.item()},
                     "state.json", state)


def test_pbt_exploits_a_two_rank_trial_every_rank_restarting_from_the_copied_checkpoint():
    pbt = ts.PBT(perturbation_interval=2, hyperparam_mutations={"lr": ts.uniform(0.0, 1.0)}, quantile_fraction=0.5,
                 resample_probability=0.0, seed=0)
    result = ts.run(pbt_ranks, {"steps": 4, "lr": ts.grid([0.0, 10.0])}, metric="loss", mode="min", ranks=2,
                    resources={"cpu": 2}, scheduler=pbt, backend=LocalBackend(total_resources={"cpu": 2}), verbose=0)
    # one trial at a time (each takes both CPUs): PBT time-shares them, so trial 1 pauses at step 2 until trial 2
    # gets there, and trial 2, the worse, is exploited from trial 1's checkpoint at step 2, whatever the timing
    assert all(t.status == ts.TrialStatus.TERMINATED for t in result.trials), [t.error for t in result.trials]
    exploited = [t for t in result.trials if t.parent_id is not None]
    assert exploited, "the bad trial (lr=10) was never exploited"
    for t in exploited:
        folder = _trial_dir(result, t.id)
        starts = [_records(folder, "start", rank) for rank in (0, 1)]
        # both ranks start each generation together, from the same step of the same model
        assert [(s["step"], s["origin"], s["world"]) for s in starts[0]] == \
            [(s["step"], s["origin"], s["world"]) for s in starts[1]]
        # its first generation from scratch, then one per exploit: the copied step of trial 1's model, two ranks
        # (an exploit at its last step, onto trial 1's final checkpoint, started the ranks too, then was undone: the
        # clone had nothing left to train)
        exploits = [data for _s, _t, kind, tid, data in result._store.events()
                    if tid == t.id and kind in ("exploit", "exploit_undone")]
        assert exploits[0]["iteration"] == 2
        assert [(s["step"], s["origin"], s["world"]) for s in starts[0]] == \
            [(0, 10.0, 2)] + [(e["iteration"], 0.0, 2) for e in exploits]
        tail = [h for h in result.history(t.id) if h["training_iteration"] > 2]
        assert tail and {h["lr"] for h in tail} == {0.0} and {h["world"] for h in tail} == {2.0}
        pids = [s["pid"] for s in starts[1]]
        assert not _none_alive(pids, timeout=2), "a rank of an exploited generation outlived it"


def deadline_ranks(config):
    """Trains until stopped, a checkpoint each step; each rank records the step and world it starts with."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    step = _restored("step.json", {"step": 0})["step"]
    _note("start", {"step": step, "world": dist.get_world_size()})
    while True:
        t = torch.tensor([1.0])
        dist.all_reduce(t)
        time.sleep(0.05)  # a step's work
        step += 1
        _report_with({"loss": config["q"] + 1.0 / step, "world": t.item(), "step": step}, "step.json", {"step": step})


def test_deadline_gives_the_best_trial_more_ranks_from_its_checkpoint():
    # the exploit phase from 6 s on; the run ends once the grown trial reported as two ranks, not at a time (a
    # loaded machine may take seconds to start a rank: a fixed end once left it no result in world 2)
    result = ts.run(deadline_ranks, {"q": ts.grid([0.1, 0.4])}, metric="loss", mode="min", ranks=1,
                    resources={"cpu": 1}, scheduler=ts.Deadline(deadline_s=60.0, exploit_fraction=0.9),
                    time_budget_s=60.0, stop=lambda _tid, r: r["world"] == 2.0,
                    backend=LocalBackend(total_resources={"cpu": 2}), verbose=0)
    best = min(result.trials, key=lambda t: t.config["q"])
    history = result.history(best.id)
    assert [h["step"] for h in history] == list(range(1, best.iteration + 1))  # resumed, never restarted from 0
    worlds = [h["world"] for h in history]
    assert worlds[0] == 1.0 and worlds[-1] == 2.0 and worlds == sorted(worlds)  # its CPUs became a second rank
    starts = _records(_trial_dir(result, best.id), "start", 0)
    grown = next(s for s in starts if s["world"] == 2)
    assert grown["step"] > 0 and _records(_trial_dir(result, best.id), "start", 1)[0] == grown


# -- the pure parts ------------------------------------------------------------------------------------
def test_ranks_must_be_a_positive_integer():
    with pytest.raises(ts.ConfigError, match="ranks must be an integer >= 1"):
        ts.run(ddp_steps, ranks=0, verbose=0)
    with pytest.raises(ts.ConfigError, match="ranks"):
        ts.run(ddp_steps, ranks=True, verbose=0)


def test_a_gpu_split_that_gives_a_rank_parts_of_two_devices_is_refused():
    with pytest.raises(ts.ConfigError, match=r"resources\['gpu'\] = 3 over ranks=2"):
        _ranks.split_resources({"cpu": 2, "gpu": 3}, 2)
    assert _ranks.split_resources({"cpu": 1, "gpu": 1}, 2) == {"cpu": 0.5, "gpu": 0.5}
    assert _ranks.split_resources({"gpu": 2}, 4) == {"gpu": 0.5}
    assert _ranks.rank_devices(["3", "5"], 4) == [["3"], ["3"], ["5"], ["5"]]
    assert _ranks.rank_devices(["3", "5", "6", "7"], 2) == [["3", "5"], ["6", "7"]]
    assert _ranks.rank_devices(["4"], 2) == [["4"], ["4"]]


def test_the_world_size_follows_the_resources_in_whole_per_rank_shares():
    unit = {"cpu": 1.0, "gpu": 0.0}
    assert _ranks.world_size({"cpu": 4}, unit) == 4
    assert _ranks.world_size({"cpu": 3}, unit) == 3
    assert _ranks.world_size({"cpu": 1.5}, unit) == 1
    assert _ranks.world_size({"cpu": 0.5}, unit) == 1
    # GPUs: lowered until they split evenly (3 devices cannot go to 2 ranks)
    assert _ranks.world_size({"cpu": 2, "gpu": 3}, {"cpu": 1.0, "gpu": 1.0}) == 1


def lightning_ddp(config):
    import lightning.pytorch as pl

    from tunesmith.integrations.lightning import ReportCallback

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch, _):
            return self.layer(batch[0]).pow(2).mean()

        def validation_step(self, batch, _):
            self.log("val_loss", self.layer(batch[0]).pow(2).mean(), sync_dist=True)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(32, 4, generator=g))
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    trainer = pl.Trainer(strategy="ddp", accelerator="cpu", devices=2, max_epochs=2, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[ReportCallback(["val_loss"], checkpoint=False)])
    trainer.fit(Tiny(), loader, loader)
    _note("lightning", {"pid": os.getpid(), "global_rank": trainer.global_rank, "world": trainer.world_size})


def test_lightning_ddp_joins_the_trial_ranks_instead_of_launching_its_own():
    pytest.importorskip("lightning")
    result = ts.run(lightning_ddp, metric="val_loss", mode="min", ranks=2, resources={"cpu": 2}, verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    folder = _trial_dir(result)
    ranks = [_records(folder, "lightning", r)[0] for r in (0, 1)]
    assert [(r["global_rank"], r["world"]) for r in ranks] == [(0, 2), (1, 2)]  # our two processes, no third
    assert [r["training_iteration"] for r in result.history(trial.id)] == [1, 2]  # rank 0's validations only


def _reports_once(config):
    ts.report({"loss": 1.0})


@pytest.mark.parametrize("gpu, ranks", [(3, 2), (2, 3)])
def test_a_resources_function_whose_gpus_cannot_split_over_the_ranks_names_the_trial_and_its_config(
        results_dir, gpu, ranks):
    """resources(config) asking for GPUs the ranks cannot share evenly: the error names the trial and its config,
    as the function's other refusals do (it said only "resources['gpu'] = 3 over ranks=2: ..."), and it comes
    before the trial is created (the store held a PENDING trial nothing would ever start)."""
    with pytest.raises(ts.ConfigError, match=rf"^resources\(config\) for trial 1 \(config \{{'x': 7\}}\)\['gpu'\] = "
                                             rf"{gpu} over ranks={ranks}: "):
        ts.run(_reports_once, {"x": 7}, ranks=ranks, resources=lambda c: {"cpu": 1, "gpu": gpu}, name="split",
               backend=LocalBackend(gpu_ids=["0", "1", "2", "3"]), verbose=0)
    assert ts.load("split").trials == []


def _indexed(iteration):
    """Wait until the driver has indexed this trial's checkpoint at ``iteration``: the batch that brought it is
    handled, and what it let go is deleted."""
    import sqlite3

    db = os.path.join(os.path.dirname(os.path.dirname(os.getcwd())), "experiment.db")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        until(lambda: con.execute("SELECT 1 FROM checkpoints WHERE trial_id = ? AND iteration = ?",
                                  (ts.get_trial_id(), iteration)).fetchone() is not None, f"checkpoint {iteration}")
    finally:
        con.close()


def rank_1_loads_late(config):
    """Rank 0 fails once at iteration 4; on the retry rank 1 reads the restore point only after rank 0 has reported
    two newer checkpoints (keep=1 lets the restore point go at the first of them)."""
    restored = ts.get_checkpoint()
    if ts.get_rank() == 1:
        if restored is None:
            return
        until(lambda: os.path.exists("go"), "rank 0")
        _note("loaded", _restored("state.json", None))
        open("loaded", "w").close()
        return
    start = _restored("state.json", 0)
    for i in range(start + 1, start + 3 if start else 5):
        _report_with({"loss": 1.0 / i}, "state.json", i)
        _indexed(i)
    if not start:
        raise RuntimeError("fails once, at iteration 4")
    open("go", "w").close()
    until(lambda: os.path.exists("loaded"), "rank 1's load")


def test_every_rank_can_load_the_restore_point_until_the_attempt_ends_with_keep_1(results_dir):
    """keep=1 deleted the checkpoint a retry started from as soon as rank 0 reported a newer one, while rank 1 had
    yet to read it: CheckpointError '... checkpoint_000004 does not exist (deleted or moved)', the trial ERROR. A
    trial run as several ranks holds its restore point until the attempt ends."""
    result = ts.run(rank_1_loads_late, {}, metric="loss", mode="min", ranks=2, resources={"cpu": 2}, keep=1,
                    max_failures=1, verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    assert _records(_trial_dir(result), "loaded", 1) == [4]
    assert [r["training_iteration"] for r in result.history(trial.id)] == [1, 2, 3, 4, 5, 6]
    kept = os.listdir(os.path.join(_trial_dir(result), "checkpoints"))
    assert kept == ["checkpoint_000006"]  # the restore point went once the attempt ended: keep=1 still holds


RANKED_FILE = '''
import json
import os
import time

import tunesmith as ts


def ranked(config):
    with open(f"world.rank{ts.get_rank()}.json", "a") as f:
        f.write(json.dumps({"world": ts.get_world_size(), "env": os.environ.get("WORLD_SIZE")}) + "\\n")
    ckpt = ts.get_checkpoint()
    start = ckpt.load()["i"] if ckpt else 0
    for i in range(start + 1, 4):
        while i > 1 and not os.path.exists(config["go"]):  # the test makes it once the run was interrupted
            if ts.should_stop():
                return
            time.sleep(0.01)
        ts.report({"loss": 1.0 / i}, checkpoint=ts.Checkpoint.from_state({"i": i}))
'''


def _interrupted_ranked(tmp_path, results_dir):
    """A trial run as 2 ranks, interrupted (Ctrl-C) after its first result; its function in a file, as the
    command line imports it."""
    import uuid

    from algorithm_helpers import CtrlCAfter

    from tunesmith.cli import load_target

    path = tmp_path / f"ranked_{uuid.uuid4().hex[:8]}.py"
    path.write_text(RANKED_FILE)
    ranked = load_target(f"{path}:ranked")  # as the command line loads it (the workers import it by name)
    go = tmp_path / "go"
    with pytest.raises(KeyboardInterrupt):
        ts.run(ranked, {"go": str(go)}, metric="loss", mode="min", ranks=2, resources={"cpu": 2},
               name="ranked", callbacks=[CtrlCAfter(1)], verbose=0)
    go.touch()
    return path, ranked


@pytest.mark.parametrize("ranks", [None, 1, 3])
def test_a_resume_with_other_ranks_is_refused_naming_ranks(tmp_path, results_dir, ranks):
    """A resume given another ranks= (None, the default, included) went on as one process from a checkpoint two
    ranks wrote, with no warning."""
    _path, ranked = _interrupted_ranked(tmp_path, results_dir)
    with pytest.raises(ts.ConfigError, match=rf"resume: experiment 'ranked' was run with ranks=2, not {ranks}; "
                                             r"pass the same ranks"):
        ts.run(ranked, {"go": str(tmp_path / "go")}, metric="loss", mode="min", ranks=ranks,
               resources={"cpu": 2}, name="ranked", resume=True, verbose=0)


def test_tunesmith_resume_runs_the_trial_as_its_ranks_again(tmp_path, results_dir):
    """`tunesmith resume` (the command printed at Ctrl-C) dropped ranks=: the trial went on as one process
    (world 1, no WORLD_SIZE), and real DDP then failed ('environment variable RANK expected')."""
    from click.testing import CliRunner

    from tunesmith.cli import cli

    path, _ranked = _interrupted_ranked(tmp_path, results_dir)
    out = CliRunner().invoke(cli, ["resume", "ranked", "--fn", f"{path}:ranked", "--storage-path",
                                   str(results_dir)], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    result = ts.load("ranked")
    assert [t.status for t in result.trials] == [ts.TrialStatus.TERMINATED]
    folder = _trial_dir(result)
    assert _records(folder, "world", 0)[-1] == {"world": 2, "env": "2"}
    assert _records(folder, "world", 1)[-1] == {"world": 2, "env": "2"}


def reports_on_rank_1_only(config):
    if ts.get_rank() == 1:
        ts.report({"loss": 1.0})


def test_a_trial_whose_reports_come_from_rank_1_only_is_told_rank_0_reports(results_dir, caplog):
    """Only rank 0's reports are the trial's: the warning said "call tunesmith.report({...}) in the training
    function" to a user who did, on rank 1."""
    import logging

    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        ts.run(reports_on_rank_1_only, {}, metric="loss", mode="min", ranks=2, resources={"cpu": 2}, verbose=0)
    assert "trial_00001 ended without reporting a result" in caplog.text
    assert "only rank 0's reports count (ts.get_rank() == 0); the other ranks' are ignored" in caplog.text


def rank_1_returns_early(config):
    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=__import__("datetime").timedelta(seconds=30))
    if dist.get_rank() == 1:
        return  # leaves rank 0 alone in its next collective
    t = torch.ones(1)
    dist.all_reduce(t)
    ts.report({"loss": t.item()})


def test_a_rank_that_returned_while_rank_0_ran_is_named_when_rank_0_then_fails(results_dir):
    """Rank 1 returning (exit code 0) mid-training made rank 0's collective fail, and the trial's error was only
    rank 0's gloo message ("Connection closed by peer"), naming nothing that had ended."""
    result = ts.run(rank_1_returns_early, {}, metric="loss", mode="min", ranks=2, resources={"cpu": 2}, verbose=0,
                    raise_on_failed_trial=False)
    error = result.trials[0].error
    assert result.trials[0].status is ts.TrialStatus.ERROR
    assert error.startswith("rank 0 failed after rank 1 of 2 (pid "), error
    assert "had returned (exit code 0) while rank 0 still ran" in error
    assert "\n\nrank 0 then failed:\nTraceback" in error

