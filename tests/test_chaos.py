"""Chaos loops, bounded for CI. TUNESMITH_CHAOS_RUNS / TUNESMITH_CHAOS_CKPT_KILLS raise the counts."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest
from chaos_helpers import SPAWNING_DRIVER, describe, kill_and_resume, pbt_kill_and_resume, sleepers

import tunesmith as ts
from tunesmith import checkpoint as ck

RUNS = int(os.environ.get("TUNESMITH_CHAOS_RUNS", "20"))
PROC_RUNS = int(os.environ.get("TUNESMITH_CHAOS_PROC_RUNS", "4"))
CKPT_KILLS = int(os.environ.get("TUNESMITH_CHAOS_CKPT_KILLS", "50"))
PBT_RUNS = int(os.environ.get("TUNESMITH_CHAOS_PBT_RUNS", "2"))


@pytest.mark.timeout(900)
def test_sigkill_driver_at_random_moments_and_resume(tmp_path):
    """20 runs of 8 trials x 10 iterations, 2 concurrent, keep=2, 1-3 kills each: every run finishes, no
    stored result lost or duplicated, exactly 8 trials, and keep=2 still bounds the disk: no trial folder
    holds more than 2 checkpoints or any .tmp_* leftover of a write the kill cut short."""
    rng = random.Random(20261126)
    kills = leftover = 0
    for run in range(RUNS):
        n = rng.randint(1, 3)
        final, starts = kill_and_resume(tmp_path, f"chaos{run}", kills=n, rng=rng)
        kills += starts - 1
        assert sorted(final) == [(t, i) for t in range(1, 9) for i in range(1, 11)], f"run {run}"
        result = ts.load(str(tmp_path / "store" / f"chaos{run}"))
        assert result.status == "finished" and len(result.trials) == 8
        assert all(t.iteration == 10 for t in result.trials)
        for t in result.trials:
            names = os.listdir(os.path.join(t.path, "checkpoints"))
            leftover += max(0, len(names) - 2)
            assert len(names) <= 2 and not [n for n in names if n.startswith(".")], (run, t.id, names)
    print(f"random-moment chaos: {RUNS} runs, {kills} kills, 0 lost, 0 duplicated, {leftover} leftover folders")


@pytest.mark.timeout(600)
def test_sigkill_a_pbt_driver_with_keep_1_and_resume(tmp_path):
    """PBT (6 trials x 12 iterations, 3 concurrent, exploits every 2 iterations) with keep=1, 1-2 kills per run:
    no clone fails for a missing checkpoint, no stored result lost or changed (an exploit's superseded lineage
    stays, in the generation before, whichever driver logged the exploit), every trial finishes, and each
    trial's folder holds at most keep=1 checkpoint (beside those other trials restarted from) and no
    .tmp_checkpoint_* or unindexed leftovers."""
    rng = random.Random(20261204)
    totals = {"kills": 0, "leftover": 0}
    for run in range(PBT_RUNS):
        name = f"pbt{run}"
        counts = pbt_kill_and_resume(tmp_path, name, kills=rng.randint(1, 2), rng=rng)
        result = ts.load(str(tmp_path / "store" / name))
        events = result._store.events()
        assert [e[4]["traceback"][-300:] for e in events if e[2] == "error"] == [], f"run {run}"
        assert result.status == "finished" and len(result.trials) == 6
        # every trial trains to 12, but one exploited onto a source's final checkpoint (cloned ahead: nothing left to
        # train) has the exploit undone and ends at its own last result
        undone = {(e[3], e[4]["from_iteration"]) for e in events if e[2] == "exploit_undone"}
        assert all(t.iteration == 12 or (t.id, t.iteration) in undone for t in result.trials), (
            run, [(t.id, t.iteration) for t in result.trials], undone)
        # each exploit kept the lineage it superseded: the clone's rows after the copied checkpoint, up to where
        # it stood, stay in the generation before (whichever driver wrote them and whichever logged the exploit)
        rows = {(r.trial_id, r.generation, r.iteration) for r in result._store.results(all_generations=True)}
        for _seq, _time, kind, tid, data in events:
            if kind == "exploit":
                after = range(data["iteration"] + 1, data["from_iteration"] + 1)
                kept = {(tid, data["generation"] - 1, i) for i in after}
                assert kept <= rows, (run, tid, data, sorted(kept - rows))
        for t in result.trials:
            pointers = {o.checkpoint.path for o in result.trials if o.id != t.id and o.checkpoint is not None}
            folder = os.path.join(t.path, "checkpoints")
            names = sorted(os.listdir(folder))
            indexed = {p for _it, p in result._store.checkpoints(t.id)}
            extra = [n for n in names if n.startswith(".") or os.path.join(folder, n) not in indexed]
            totals["leftover"] += len(extra)
            assert not extra, (run, t.id, names)
            assert len({os.path.join(folder, n) for n in names} - pointers) <= 1, (run, t.id, names)
        totals["kills"] += counts["kills"]
    print(f"PBT chaos: {PBT_RUNS} runs, {totals['kills']} kills, 0 lost (each checked), "
          f"{totals['leftover']} leftover folders")


@pytest.mark.timeout(600)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="subreapers are Linux-only")
@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_sigkill_driver_whose_trials_start_processes_leaves_no_orphans(tmp_path, start_method):
    """Trials start a child and a double-forked daemon; the driver is SIGKILLed at random moments: after
    each kill, within 10 s, none of the processes any trial started is still running; every run finishes.
    Workers forked by the fork server, and started the plain way (``spawn``, also the fallback)."""
    import time

    rng = random.Random(20261204)
    pids = tmp_path / "pids"
    pids.mkdir()
    orphans: dict[int, str] = {}  # pid -> what it was when the 10 s were up, and whether it ended later
    kills = []  # per kill: the processes trials had running when it came
    where = {"run": 0}

    def count() -> None:
        kills.append(len(sleepers(str(pids))))

    def no_orphans() -> None:
        deadline = time.monotonic() + 10
        while sleepers(str(pids)) and time.monotonic() < deadline:
            time.sleep(0.05)  # waiting for a condition (the trials' processes gone), bounded
        left = {pid: describe(pid) for pid in sleepers(str(pids)) if pid not in orphans}
        if left:  # failed already; what follows only says how: slow to be killed, or never killed
            later = time.monotonic() + 30
            while set(left) & set(sleepers(str(pids))) and time.monotonic() < later:
                time.sleep(0.05)  # waiting for a condition (the survivors gone), bounded
            waited = 30 - max(0.0, later - time.monotonic())
            for pid, what in left.items():
                fate = (f"still running {waited:.1f} s later" if pid in sleepers(str(pids))
                        else f"ended within {waited:.1f} s more")
                orphans[pid] = f"run {where['run']}, {len(kills)} kills so far: {what}; {fate}"

    try:
        for run in range(PROC_RUNS):
            where["run"] = run
            final, _starts = kill_and_resume(tmp_path, f"procs{run}", kills=rng.randint(1, 3), rng=rng,
                                             driver=SPAWNING_DRIVER, args=(str(pids), start_method), before_kill=count,
                                             after_kill=no_orphans,
                                             window=(0.5, 2.0))
            assert sorted(final) == [(t, i) for t in range(1, 5) for i in range(1, 11)], f"run {run}"
            no_orphans()
        assert len(os.listdir(pids)) >= PROC_RUNS * 4  # the trials did start their processes
        print(f"{len(kills)} kills, {sum(1 for k in kills if k)} while trial processes ran ({sum(kills)} "
              f"processes), {len(orphans)} orphans")
        assert any(kills), "no kill came while trials had started their processes"
        assert not orphans, (f"{len(orphans)} processes started by trials outlived their driver by 10 s:\n"
                             + "\n".join(orphans.values()))
    finally:
        for pid in sleepers(str(pids)):
            os.kill(pid, signal.SIGKILL)


WRITER = """
    import os, sys
    from tunesmith import checkpoint as ck
    folder = sys.argv[1]
    payload = os.urandom(1 << 20)
    i = 0
    while True:
        i += 1
        ck.write(ck.Checkpoint.from_state({"i": i, "payload": payload}), folder, i)
"""


@pytest.mark.timeout(300)
def test_kill_9_while_writing_checkpoints_never_leaves_a_loadable_corrupt_one(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(WRITER))
    rng = random.Random(7)
    loaded = 0
    for k in range(CKPT_KILLS):
        folder = tmp_path / f"c{k}"
        proc = subprocess.Popen([sys.executable, str(script), str(folder)])
        try:
            proc.wait(timeout=rng.uniform(0.1, 0.6))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        if not folder.exists():
            continue
        for name in sorted(os.listdir(folder)):
            path = folder / name
            if name.startswith(".tmp"):
                continue  # an interrupted write: never under a checkpoint's name
            state = ck.Checkpoint(path).load()  # raises CheckpointError if damaged
            assert state["i"] == int(name.split("_")[1])
            loaded += 1
    assert loaded > 0


def test_driver_memory_stays_flat_over_2000_trivial_trials(results_dir):
    me = psutil.Process()
    samples: dict[int, int] = {}

    class Sample(ts.Callback):
        def on_trial_complete(self, trial):
            if trial.id in (200, 2000):
                samples[trial.id] = me.memory_info().rss

    ts.run(lambda c: ts.report({"x": 1}), num_samples=2000, verbose=0, callbacks=[Sample()])
    growth_mb = (samples[2000] - samples[200]) / 2**20
    assert growth_mb < 50, f"driver grew {growth_mb:.1f} MB from trial 200 to 2000"


CREATE_KILLS = int(os.environ.get("TUNESMITH_CHAOS_CREATE_KILLS", "8"))
CREATOR = """
    import os, sys
    import tunesmith as ts

    def train(config):
        for i in range(3):
            ts.report({"v": config["x"] + i})

    name, storage = sys.argv[1], sys.argv[2]
    resume = os.path.exists(os.path.join(storage, name, "experiment.db"))
    ts.run(train, space={"x": ts.uniform(0, 1)}, num_samples=2, metric="v", mode="max", name=name, seed=0,
           verbose=0, storage_path=storage, resume=resume)
"""


@pytest.mark.timeout(300)
def test_sigkill_while_creating_an_experiment_leaves_it_creatable_or_resumable(tmp_path):
    """Kill the driver the moment its store starts to exist (schema being written, spec not yet): the name is
    then either free (no experiment.db: created again) or a whole experiment (resumed); never stuck."""
    import time

    script = tmp_path / "creator.py"
    script.write_text(textwrap.dedent(CREATOR))
    storage = tmp_path / "store"
    rng = random.Random(5)
    for run in range(CREATE_KILLS):
        name = f"new{run}"
        folder = storage / name
        proc = subprocess.Popen([sys.executable, str(script), name, str(storage)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:  # until a store file starts to exist
            if folder.is_dir() and any("experiment.db" in f for f in os.listdir(folder)):
                break
            time.sleep(0.0005)
        try:
            proc.wait(timeout=rng.uniform(0, 0.005))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        again = subprocess.run([sys.executable, str(script), name, str(storage)], capture_output=True, text=True,
                               timeout=120)
        assert again.returncode == 0, f"run {run}: {again.stderr[-2000:]}"
        result = ts.load(str(folder))
        assert result.status == "finished" and len(result.trials) == 2, f"run {run}"
        assert all(t.iteration == 3 for t in result.trials)
