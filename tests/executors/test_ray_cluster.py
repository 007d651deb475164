"""The Ray executor on a multi-node cluster: a real Ray head and two worker nodes of 1 CPU each, started by
``ray.cluster_utils.Cluster`` on this machine (separate raylets and object stores, one file system).

Trials spread over the nodes; checkpoints of trials on the worker nodes are written there in a node-local
folder and sent to the driver's experiment folder; a node removed while its trial runs costs that trial a
restart from its latest checkpoint on another node, and the experiment finishes.
"""

from __future__ import annotations

import os
import time

import pytest

import tunesmith as ts
from tunesmith.checkpoint import Checkpoint, verify
from tunesmith.executors._base import Results

ray = pytest.importorskip("ray")
from ray_helpers import start_cluster  # noqa: E402

from tunesmith.executors.ray import RayBackend  # noqa: E402

pytestmark = pytest.mark.timeout(180)

_NODE = {"num_cpus": 1, "object_store_memory": 80 * 2**20}


@pytest.fixture(scope="module")
def cluster():
    # the head offers no CPU: every trial runs on a worker node, away from the driver's folder.
    # Fast health checks, so that a removed node is declared dead in about a second.
    c = start_cluster({
        "num_cpus": 0, "object_store_memory": 80 * 2**20, "include_dashboard": False,
        "_system_config": {"health_check_initial_delay_ms": 0, "health_check_period_ms": 250,
                           "health_check_failure_threshold": 4, "health_check_timeout_ms": 250}}, [_NODE] * 2)
    ray.init(address=c.address, log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()


def _node_id() -> str:
    import ray as _ray

    return _ray.get_runtime_context().get_node_id()


def spread(config):
    ck = ts.get_checkpoint()
    start = ck.load()["i"] if ck else 0
    for i in range(start, 4):
        folder = os.path.join(ts.get_trial_dir(), "scratch")
        os.makedirs(os.path.join(folder, "sub"), exist_ok=True)
        with open(os.path.join(folder, "sub", "weights.bin"), "wb") as f:
            f.write(bytes([config["x"], i]) * 2500)  # 5 kB: several chunks of 1 kB
        with open(os.path.join(folder, "state.pkl"), "wb") as f:
            import pickle

            pickle.dump({"i": i + 1, "x": config["x"]}, f)
        time.sleep(0.1)  # long enough for both trials to be running at once
        ts.report({"i": i + 1, "node": _node_id(), "dir": ts.get_trial_dir()},
                  checkpoint=Checkpoint.from_dir(folder))


def test_trials_spread_over_nodes_and_send_their_checkpoints_to_the_driver(cluster, results_dir):
    head = cluster.head_node.node_id
    workers = {n.node_id for n in cluster.worker_nodes}
    result = ts.run(spread, space={"x": ts.grid([1, 2, 3, 4])}, backend=RayBackend(chunk_bytes=1000),
                    verbose=0, name="spread")
    assert all(t.status is ts.TrialStatus.TERMINATED for t in result.trials), [t.error for t in result.trials]
    nodes = {r["node"] for t in result.trials for r in result.history(t.id)}
    assert nodes == workers and head not in nodes  # both worker nodes ran trials
    for t in result.trials:
        hist = result.history(t.id)
        # the trial wrote in a folder of its node, not in the driver's experiment folder...
        assert {r["dir"] for r in hist} != {t.path}
        # ...and every checkpoint arrived in the driver's folder, complete
        ckpt = t.checkpoint
        assert os.path.dirname(ckpt.path) == os.path.join(t.path, "checkpoints")
        assert verify(ckpt.path)["iteration"] == 4
        with open(os.path.join(ckpt.path, "sub", "weights.bin"), "rb") as f:
            assert f.read() == bytes([t.config["x"], 3]) * 2500
        import pickle

        with open(os.path.join(ckpt.path, "state.pkl"), "rb") as f:
            assert pickle.load(f) == {"i": 4, "x": t.config["x"]}
        # every iteration's checkpoint is indexed in the driver's folder
        stored = sorted(os.listdir(os.path.join(t.path, "checkpoints")))
        assert stored == [f"checkpoint_{i:06d}" for i in range(1, 5)]


def from_state(config):
    ck = ts.get_checkpoint()
    start = ck.load() if ck else 0
    for i in range(start, config["n"]):
        ts.report({"i": i + 1, "start": start, "node": _node_id()}, checkpoint=Checkpoint.from_state(i + 1))
        time.sleep(config["sleep"])


def _run_launch(ex, launch):
    """Start ``launch`` on ``ex`` and poll until it ends: (its rows, its Done)."""
    assert ex.try_start(launch)
    rows, done = [], None
    deadline = time.monotonic() + 60
    while done is None:
        assert time.monotonic() < deadline
        for ev in ex.poll(0.05):
            if isinstance(ev, Results):
                rows.extend(ev.rows)
            else:
                done = ev
    return rows, done


def test_a_checkpoint_from_a_worker_node_restores_on_a_worker_node(cluster, results_dir):
    from tunesmith.executors._base import Launch

    ex = RayBackend()
    ex.setup(from_state, str(results_dir / "restore"))
    trial_dir = str(results_dir / "restore" / "trials" / "trial_00001")

    def run(launch):
        return _run_launch(ex, launch)

    try:
        rows, done = run(Launch(1, {"n": 2, "sleep": 0.0}, trial_dir, {"cpu": 1.0}))
        assert done.status == "ok"
        ckpt = rows[-1][4]
        assert ckpt == os.path.join(trial_dir, "checkpoints", "checkpoint_000002")
        assert Checkpoint(ckpt).load() == 2  # in the driver's folder, loadable here
        rows, done = run(Launch(1, {"n": 4, "sleep": 0.0}, trial_dir, {"cpu": 1.0}, restore=ckpt, iteration=2))
        assert done.status == "ok"
        assert [r[0] for r in rows] == [3, 4]
        import json

        assert {json.loads(r[3])["start"] for r in rows} == {2}
    finally:
        ex.shutdown()


def lists_its_restore(config):
    ck = ts.get_checkpoint()
    start = ck.load() if ck else 0
    names = ",".join(sorted(os.listdir(ck.path))) if ck else ""  # the restore folder on the trial's node
    for i in range(start, config["n"]):
        ts.report({"i": i + 1, "start": start, "names": names}, checkpoint=Checkpoint.from_state(i + 1))


def test_a_restore_sent_to_another_node_holds_only_what_its_manifest_lists(cluster, results_dir, tmp_path):
    # A checkpoint folder is data (a folder someone else made, a FIFO or a link planted after a crash): what goes
    # to the trial's node is the files its manifest lists and the manifest, each opened only if it is a regular
    # file, never through a link and never waiting (a FIFO's open would wait for a writer forever)
    import json
    import threading

    from tunesmith.executors._base import Launch

    ex = RayBackend()
    ex.setup(lists_its_restore, str(results_dir / "planted"))
    trial_dir = str(results_dir / "planted" / "trials" / "trial_00001")
    outside = tmp_path / "outside.txt"
    outside.write_text("not the checkpoint's")
    try:
        rows, done = _run_launch(ex, Launch(1, {"n": 1}, trial_dir, {"cpu": 1.0}))
        assert done.status == "ok", done.error
        ckpt = rows[-1][4]
        os.symlink(outside, os.path.join(ckpt, "linked.txt"))
        fifo = os.path.join(ckpt, "extra.fifo")
        os.mkfifo(fifo)
        opened = threading.Event()

        def writer():  # lets a reader of the FIFO go (the test then fails instead of hanging)
            with open(fifo, "wb"):
                opened.set()

        threading.Thread(target=writer, daemon=True).start()
        try:
            rows, done = _run_launch(ex, Launch(1, {"n": 2}, trial_dir, {"cpu": 1.0}, restore=ckpt, iteration=1))
        finally:
            was_opened = opened.wait(0.5)
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # lets the writer go
        assert not was_opened, "the FIFO in the checkpoint folder was opened"
        assert done.status == "ok", done.error
        # restored (as a local restore of the same folder is: the unlisted files are not the checkpoint's)...
        assert [(r[0], json.loads(r[3])["start"]) for r in rows] == [(2, 1)]
        # ...from a copy holding the checkpoint's files only: the link was not followed, nor the FIFO read
        assert json.loads(rows[0][3])["names"] == "manifest.json,state.pkl"
        # a file the manifest lists that is a link: refused, naming it; the trial fails (as loading the same
        # folder locally fails), and a retry would skip the damaged checkpoint
        os.remove(os.path.join(ckpt, "state.pkl"))
        os.symlink(outside, os.path.join(ckpt, "state.pkl"))
        rows, done = _run_launch(ex, Launch(1, {"n": 2}, trial_dir, {"cpu": 1.0}, restore=ckpt, iteration=1))
        assert done.status == "error" and rows == []
        assert "CheckpointError" in done.error and "state.pkl is not a regular file" in done.error, done.error
    finally:
        ex.shutdown()


class RemoveNodeOnce(ts.Callback):
    """When a trial has reported 3 results, kill the node it runs on (and start a fresh one, as an autoscaler
    would replace it)."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.removed: str | None = None
        self.victim: int | None = None

    def on_trial_results(self, trial, results):
        if self.removed is None and results[-1].metrics["i"] >= 3:
            node = next(n for n in self.cluster.worker_nodes if n.node_id == results[-1].metrics["node"])
            self.removed, self.victim = node.node_id, trial.id
            self.cluster.remove_node(node, allow_graceful=False)
            self.cluster.add_node(**_NODE)


def test_a_lost_node_costs_its_trial_a_restart_from_its_checkpoint(cluster, results_dir):
    killer = RemoveNodeOnce(cluster)
    result = ts.run(from_state, space={"n": 12, "sleep": 0.15, "x": ts.grid([0, 1])}, max_failures=2,
                    backend=RayBackend(), callbacks=[killer], verbose=0, name="node-loss")
    assert killer.removed is not None
    for t in result.trials:
        assert t.status is ts.TrialStatus.TERMINATED, t.error
        hist = result.history(t.id)
        assert [r["i"] for r in hist] == list(range(1, 13))  # no gap, no duplicate
    victim = next(t for t in result.trials if t.id == killer.victim)
    assert victim.num_failures == 1
    hist = result.history(victim.id)
    restarted = [r for r in hist if r["start"] > 0]
    assert restarted, "the trial started again from zero"
    assert restarted[0]["start"] >= 3  # from its latest checkpoint
    assert {r["node"] for r in restarted}.isdisjoint({killer.removed})  # on another node


def test_with_a_storage_url_checkpoints_skip_the_driver_and_a_lost_node_restores_from_there(
        cluster, results_dir, tmp_path):
    from tunesmith._ledger import experiment_key
    from tunesmith.executors._ray_transfer import staging_root

    bucket = tmp_path / "bucket"
    killer = RemoveNodeOnce(cluster)
    result = ts.run(from_state, space={"n": 8, "sleep": 0.15, "x": ts.grid([0, 1])}, max_failures=2, keep=2,
                    backend=RayBackend(storage=f"file://{bucket}"), callbacks=[killer], verbose=0,
                    name="node-storage")
    assert killer.removed is not None
    for t in result.trials:
        assert t.status is ts.TrialStatus.TERMINATED, t.error
        assert [r["i"] for r in result.history(t.id)] == list(range(1, 9))
        assert not os.path.exists(os.path.join(t.path, "checkpoints"))  # nothing went through the driver
        there = bucket / experiment_key(result.path) / "trials" / os.path.basename(t.path) / "checkpoints"
        assert sorted(os.listdir(there)) == ["checkpoint_000007", "checkpoint_000008"]  # keep=2 deleted there
        assert t.checkpoint.path == f"file://{there}/checkpoint_000008" and t.checkpoint.load() == 8
    restarted = [r for r in result.history(killer.victim) if r["start"] > 0]
    assert restarted and restarted[0]["start"] >= 3  # downloaded from the storage on another node
    assert {r["node"] for r in restarted}.isdisjoint({killer.removed})
    # the surviving nodes' staging copies were removed when their trials ended
    staging = staging_root()
    left = [os.path.join(root, d) for root, dirs, _ in os.walk(staging) for d in dirs
            if d == "checkpoints" and "node-storage" in root and os.listdir(os.path.join(root, d))]
    survivors = {n.node_id[:16] for n in cluster.worker_nodes}
    assert not [p for p in left if any(s in p for s in survivors)], left


def chatty(config):
    """Prints (Python and the file descriptor), waits until the driver's copy of its output.log shows the first
    line (sent while the trial runs), writes files of its own (trial 2), then prints one more line and ends."""
    from tunesmith._layout import trial_name

    first = f"trial {config['x']} says hello"
    print(first, flush=True)
    os.write(2, b"from the descriptor\n")
    driver_log = os.path.join(config["exp"], "trials", trial_name(ts.get_trial_id()), "output.log")
    deadline, seen = time.monotonic() + 30, False
    while not seen and time.monotonic() < deadline:
        try:
            with open(driver_log) as f:
                seen = first in f.read()
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    if config["x"] == 2:  # files of its own in its (node-local) folder, one of several pieces, and a link
        here = ts.get_trial_dir()
        with open(os.path.join(here, "mine.txt"), "w") as f:
            f.write("kept")
        os.makedirs(os.path.join(here, "plots", "run"))
        with open(os.path.join(here, "plots", "run", "curve.bin"), "wb") as f:
            f.write(bytes(range(256)) * 10)  # 2,560 bytes: three pieces of 1,000
        os.symlink("/etc/hostname", os.path.join(here, "link"))
        os.makedirs(os.path.join(here, "restore"))  # a name of the trial's own, as any other
        with open(os.path.join(here, "restore", "model.txt"), "w") as f:
            f.write("the trial's model")
        with open(os.path.join(here, "run.sh"), "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(os.path.join(here, "run.sh"), 0o755)  # its permission bits travel with it
    print("last words", flush=True)
    ts.report({"seen": seen, "node": _node_id(), "dir": ts.get_trial_dir()})


@pytest.mark.parametrize("sync", [True, False])
def test_a_trial_on_another_node_sends_its_output_log_as_it_runs_and_its_files_when_it_ends(cluster, results_dir,
                                                                                             sync):
    exp = str(results_dir / "chatty")
    result = ts.run(chatty, space={"x": ts.grid([1, 2]), "exp": exp}, verbose=0, name="chatty",
                    backend=RayBackend(chunk_bytes=1000, sync_trial_files=sync))
    for t in result.trials:
        assert t.status is ts.TrialStatus.TERMINATED, t.error
        assert t.last_result["dir"] != t.path  # it ran in its node's staging folder
        assert t.last_result["seen"]  # its first line reached the driver while it ran
        with open(os.path.join(t.path, "output.log")) as f:
            lines = f.read().splitlines()
        assert lines == [f"trial {t.config['x']} says hello", "from the descriptor", "last words"]
        stage = t.last_result["dir"]
        if t.config["x"] == 1:  # nothing of its own: the staging folder is gone
            assert not os.path.exists(stage)
            assert sorted(os.listdir(t.path)) == ["output.log"]
        elif sync:  # its files are in the experiment now, gone from the node; the link was not followed
            assert sorted(os.listdir(t.path)) == ["mine.txt", "output.log", "plots", "restore", "run.sh"]
            with open(os.path.join(t.path, "plots", "run", "curve.bin"), "rb") as f:
                assert f.read() == bytes(range(256)) * 10
            with open(os.path.join(t.path, "restore", "model.txt")) as f:
                assert f.read() == "the trial's model"
            assert os.stat(os.path.join(t.path, "run.sh")).st_mode & 0o777 == 0o755
            assert sorted(os.listdir(stage)) == ["link"]
        else:  # they stay where it wrote them
            assert sorted(os.listdir(t.path)) == ["output.log"]
            assert sorted(os.listdir(stage)) == ["link", "mine.txt", "plots", "restore", "run.sh"]


def fails_once(config):
    ck = ts.get_checkpoint()
    start = ck.load() if ck else 0
    print(f"run from {start}", flush=True)
    ts.report({"i": start + 1, "dir": ts.get_trial_dir()}, checkpoint=Checkpoint.from_state(start + 1))
    if start == 0:
        raise RuntimeError("first run fails")


def test_a_retried_trial_on_another_node_adds_its_output_after_the_run_before(cluster, results_dir):
    result = ts.run(fails_once, num_samples=1, max_failures=1, backend=RayBackend(), verbose=0, name="twice")
    (t,) = result.trials
    assert t.status is ts.TrialStatus.TERMINATED and t.num_failures == 1, t.error
    with open(os.path.join(t.path, "output.log")) as f:
        lines = f.read().splitlines()
    # the first run's print and its traceback, then the retry's print
    assert lines[0] == "run from 0" and lines[1] == "Traceback (most recent call last):", lines
    assert lines[-2:] == ["RuntimeError: first run fails", "run from 1"], lines
    assert not os.path.exists(t.last_result["dir"])  # nothing of its own left on the node


def quick(config):
    ts.report({"node": _node_id()})


def test_address_auto_joins_the_running_cluster(cluster, results_dir, monkeypatch):
    # last in this file: it disconnects the driver, as a script that only says address="auto" would start
    ray.shutdown()
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    result = ts.run(quick, num_samples=2, backend=RayBackend(address="auto"), verbose=0, name="auto")
    assert all(t.status is ts.TrialStatus.TERMINATED for t in result.trials)
    assert {t.last_result["node"] for t in result.trials} <= {n.node_id for n in cluster.worker_nodes}
    assert not ray.is_initialized()  # the backend connected, so it disconnected at the end
