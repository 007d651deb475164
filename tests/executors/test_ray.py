"""The Ray executor on one real local Ray with fake GPUs and a custom resource (``ray.init(num_gpus=2,
resources={"accel": 2})`` on a machine without GPUs): resource mapping, fractional GPUs, placement groups
for trials that start their own Ray tasks, pending trials for an autoscaler, shared data through the object
store, and ``backend="ray"`` in ``tunesmith.run``. The contract shared with the local executor is in
tests/conformance/.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import tempfile
import time
from collections import Counter

import numpy as np
import pytest
from shared_data_helpers import report_reading

import tunesmith as ts
from tunesmith.data import get, put
from tunesmith.executors._base import Launch, Results

ray = pytest.importorskip("ray")
from tunesmith.executors._ray_actor import _staging_dir  # noqa: E402
from tunesmith.executors.ray import RayBackend  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def ray_gpus():
    ray.init(address="local", num_cpus=4, num_gpus=2, resources={"accel": 2}, object_store_memory=200 * 2**20,
             include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def backend(ray_gpus, tmp_path):
    made = []

    def make(fn, **kw):
        ex = RayBackend(**kw)
        ex.setup(fn, str(tmp_path / "exp"))
        made.append(ex)
        return ex

    yield make
    for ex in made:
        ex.shutdown()


def launch(tid, tmp_path, resources, config=None):
    return Launch(trial_id=tid, config=config or {}, trial_dir=str(tmp_path / "exp" / "trials" / f"t{tid}"),
                  resources=resources, decision_iteration=1)


def collect(ex, cond, timeout=60.0):
    rows, done = {}, {}
    deadline = time.monotonic() + timeout
    while not cond(rows, done):
        assert time.monotonic() < deadline, (rows, done)
        for ev in ex.poll(0.05):
            if isinstance(ev, Results):
                rows.setdefault(ev.trial_id, []).extend(json.loads(r[3]) for r in ev.rows)
            else:
                done[ev.trial_id] = ev[1:]
    return rows, done


def where_am_i(config):
    import os

    import ray as _ray

    ctx = _ray.get_runtime_context()
    assigned = ctx.get_assigned_resources()
    ts.report({"cuda": os.environ.get("CUDA_VISIBLE_DEVICES", ""), "gpu_ids": ",".join(map(str, _ray.get_gpu_ids())),
               "gpu": assigned.get("GPU", 0.0), "accel": assigned.get("accel", 0.0), "cpu": assigned.get("CPU", 0.0)})


def _finish_all(ex, tids):
    for tid in tids:
        ex.decide(tid, False, None)
    collect(ex, lambda r, d: set(tids) <= set(d))


def test_fractional_gpus_are_packed_onto_ray_gpus(backend, tmp_path):
    ex = backend(where_am_i)
    assert ex.total_resources()["gpu"] == 2
    for tid in range(1, 5):
        assert ex.try_start(launch(tid, tmp_path, {"cpu": 0.5, "gpu": 0.5}))
    assert not ex.try_start(launch(5, tmp_path, {"cpu": 0.5, "gpu": 0.5}))  # 2 GPUs hold 4 halves
    rows, _ = collect(ex, lambda r, d: len(r) == 4)  # all four at their decision point at once
    seen = [rows[t][0] for t in range(1, 5)]
    assert all(m["gpu"] == 0.5 and m["cpu"] == 0.5 for m in seen)
    assert all(m["cuda"] == m["gpu_ids"] and m["cuda"] in ("0", "1") for m in seen)  # the trial sees its device
    assert Counter(m["cuda"] for m in seen) == {"0": 2, "1": 2}
    _finish_all(ex, range(1, 5))
    # whole GPUs: one trial takes both devices
    assert ex.try_start(launch(6, tmp_path, {"cpu": 1.0, "gpu": 2.0}))
    rows, _ = collect(ex, lambda r, d: 6 in r)
    assert sorted(rows[6][0]["cuda"].split(",")) == ["0", "1"] and rows[6][0]["gpu"] == 2.0
    _finish_all(ex, [6])


def test_custom_resources_map_to_ray_resources(backend, tmp_path):
    ex = backend(where_am_i)
    assert ex.total_resources()["accel"] == 2
    assert ex.try_start(launch(1, tmp_path, {"cpu": 0.5, "gpu": 0.0, "accel": 1.0}))
    assert ex.try_start(launch(2, tmp_path, {"cpu": 0.5, "gpu": 0.0, "accel": 1.0}))
    assert not ex.try_start(launch(3, tmp_path, {"cpu": 0.5, "gpu": 0.0, "accel": 1.0}))
    rows, _ = collect(ex, lambda r, d: len(r) == 2)
    assert [rows[t][0]["accel"] for t in (1, 2)] == [1.0, 1.0]
    assert rows[1][0]["cuda"] == ""  # no GPU asked for, none given
    with pytest.raises(ts.ConfigError, match=r"resources\['accel'\] = 3 is more than any node"):
        ex.check_resources({"cpu": 1.0, "gpu": 0.0, "accel": 3.0})
    _finish_all(ex, [1, 2])


def starts_workers(config):
    import ray as _ray
    from ray.util import get_current_placement_group

    @_ray.remote(num_cpus=1)
    def helper():
        pg = get_current_placement_group()
        return pg.id.hex() if pg is not None else ""

    mine = get_current_placement_group()
    got = _ray.get([helper.remote() for _ in range(2)])
    ts.report({"pg": mine.id.hex() if mine else "", "workers_pg": ",".join(sorted(set(got)))})


def test_bundles_give_each_trial_a_placement_group_for_its_own_workers(backend, tmp_path):
    ex = backend(starts_workers, bundles=[{"cpu": 1.0}])
    ex.check_resources({"cpu": 0.5, "gpu": 0.0})
    assert ex.try_start(launch(1, tmp_path, {"cpu": 0.5, "gpu": 0.0}))
    assert ex.try_start(launch(2, tmp_path, {"cpu": 0.5, "gpu": 0.0}))
    assert not ex.try_start(launch(3, tmp_path, {"cpu": 0.5, "gpu": 0.0}))  # 2 x (0.5 + 1) of 4 CPUs, 1 left
    rows, done = collect(ex, lambda r, d: {1, 2} <= set(r) or bool(d))
    assert not done, done
    _finish_all(ex, [1, 2])
    pgs = {rows[t][0]["pg"] for t in (1, 2)}
    assert len(pgs) == 2 and "" not in pgs  # one group per trial
    for t in (1, 2):
        assert rows[t][0]["workers_pg"] == rows[t][0]["pg"]  # the trial's own tasks ran inside its group
    with pytest.raises(ts.ConfigError, match="bundles"):
        RayBackend(bundles=[{"cpu": -1}]).connect()


def waits(config):
    ts.report({"v": 1})


def test_autoscaling_lets_trials_wait_in_rays_queue_showing_their_demand(backend, tmp_path):
    ex = backend(waits, autoscaling=True, max_pending_trials=1)
    ex.check_resources({"cpu": 64.0, "gpu": 0.0})  # a bigger node may come
    assert ex.try_start(launch(1, tmp_path, {"cpu": 4.0, "gpu": 0.0}))
    assert ex.try_start(launch(2, tmp_path, {"cpu": 4.0, "gpu": 0.0}))  # pending: no CPU free
    assert not ex.try_start(launch(3, tmp_path, {"cpu": 4.0, "gpu": 0.0}))  # max_pending_trials reached
    # one runs (Ray does not promise to place actors in the order they were made), the other waits
    rows, _ = collect(ex, lambda r, d: len(r) == 1)
    (running,) = rows
    waiting = 3 - running
    # what an autoscaler reads: the waiting trial's actor is a demand for 4 CPUs
    from ray.autoscaler.v2.sdk import get_cluster_status

    deadline = time.monotonic() + 30
    while True:
        status = get_cluster_status(ray.get_runtime_context().gcs_address)
        demand = [(d.bundle, d.count) for a in status.resource_demands.ray_task_actor_demand
                  for d in a.bundles_by_count]
        if ({"CPU": 4.0}, 1) in demand:
            break
        assert time.monotonic() < deadline, demand
        time.sleep(0.2)
    ex.decide(running, False, None)
    rows, done = collect(ex, lambda r, d: waiting in r)  # the other starts when the first gives its CPUs back
    assert done == {running: ("stopped", None)}
    ex.decide(waiting, False, None)
    collect(ex, lambda r, d: waiting in d)


def test_put_stores_a_large_array_once_for_all_trials(backend, tmp_path):
    arr = np.arange(40 * 2**20 // 8, dtype=np.float64)  # 40 MiB
    ref = put(arr)  # connected to Ray: the object store
    assert ref.kind == "ray"

    def trial(config):  # a closure: the reference travels with the function
        report_reading(lambda: get(ref))

    ex = backend(trial)
    for tid in range(1, 5):
        assert ex.try_start(launch(tid, tmp_path, {"cpu": 1.0, "gpu": 0.0}))
    rows, _ = collect(ex, lambda r, d: len(r) == 4)  # all four hold the array at once
    from ray._private.internal_api import memory_summary

    # this Ray's, by its address (with none, Ray looks for running ones, and another test's may be ending)
    summary = memory_summary(ray.get_runtime_context().gcs_address, stats_only=True)
    usage = re.search(r"Plasma memory usage (\d+) MiB, (\d+) objects", summary)
    mib, objects = int(usage.group(1)), int(usage.group(2))
    _finish_all(ex, range(1, 5))
    for t in range(1, 5):
        m = rows[t][0]
        assert m["sum"] == float(arr.sum())
        assert m["writeable"] is False  # a view onto the shared copy
        assert m["anon_growth_kb"] < arr.nbytes / 1024 / 4  # no private copy in the trial's process
    assert 40 <= mib < 60, (mib, objects)  # one copy of the 40 MiB in the object store, not four


def quadratic(config):
    for i in range(3):
        ts.report({"loss": (config["x"] - 0.3) ** 2 + 1 / (i + 1)})


def test_run_with_backend_ray(ray_gpus, results_dir):
    result = ts.run(quadratic, space={"x": ts.uniform(0, 1)}, metric="loss", mode="min", num_samples=6,
                    backend="ray", resources={"cpu": 1, "gpu": 0.5}, verbose=0, seed=1)
    assert len(result.trials) == 6 and all(t.status is ts.TrialStatus.TERMINATED for t in result.trials)
    assert all(t.iteration == 3 for t in result.trials)
    with pytest.raises(ts.ConfigError, match=r"resources\['gpu'\] = 3 is more than any node"):
        ts.run(quadratic, backend="ray", resources={"gpu": 3}, verbose=0)
    for bad, match in [({"address": "nowhere"}, "address"), ({"chunk_bytes": 0}, "chunk_bytes"),
                       ({"placement_strategy": "TIGHT"}, "placement_strategy"),
                       ({"max_pending_trials": -1}, "max_pending_trials"), ({"grace_period_s": "5"}, "grace_period_s")]:
        with pytest.raises(ts.ConfigError, match=match):  # before any trial starts
            ts.run(quadratic, backend=RayBackend(**bad), verbose=0, name=f"bad-{match}")
        assert not (results_dir / f"bad-{match}").exists()


def fails_once_after_a_checkpoint(config):
    ck = ts.get_checkpoint()
    start = ck.load() if ck else 0
    for i in range(start, 4):
        ts.report({"i": i + 1, "start": start, "dir": ts.get_trial_dir()}, checkpoint=ts.Checkpoint.from_state(i + 1))
        marker = os.path.join(config["marks"], f"failed-{ts.get_trial_id()}")
        if i + 1 == 2 and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("first attempt dies after its checkpoint of iteration 2")


def test_storage_url_takes_the_checkpoints_and_a_retry_downloads_its_own(ray_gpus, results_dir, tmp_path):
    from tunesmith._ledger import experiment_key

    (tmp_path / "marks").mkdir()
    bucket = tmp_path / "bucket"
    result = ts.run(fails_once_after_a_checkpoint, space={"marks": str(tmp_path / "marks"), "x": ts.grid([1, 2])},
                    max_failures=1, keep=2, backend=RayBackend(storage=f"file://{bucket}/"), verbose=0,
                    name="to-storage")
    for t in result.trials:
        assert t.status is ts.TrialStatus.TERMINATED, t.error
        assert t.num_failures == 1
        hist = result.history(t.id)
        assert [r["i"] for r in hist] == [1, 2, 3, 4]  # no gap, no duplicate
        assert [r["start"] for r in hist] == [0, 0, 2, 2]  # the retry restored iteration 2 from the URL
        assert {r["dir"] for r in hist} == {t.path}  # the driver's node: the trial's folder is the usual one
        assert not os.path.exists(os.path.join(t.path, "checkpoints"))  # no checkpoint in the experiment folder
        there = bucket / experiment_key(result.path) / "trials" / os.path.basename(t.path) / "checkpoints"
        assert sorted(os.listdir(there)) == ["checkpoint_000003", "checkpoint_000004"]  # keep=2, in storage
        assert t.checkpoint.path == f"file://{there}/checkpoint_000004"
        assert t.checkpoint.load() == 4
        # the node-local staging copies went when the trial ended (before its end reached the driver)
        stage = _staging_dir(ray.get_runtime_context().get_node_id(), t.path)
        assert not os.path.exists(stage), os.listdir(stage)  # and the folder, left empty
    # and the experiment's folder on the node (<tmp>/tunesmith-ray-<uid>/<node>/<experiment>-<hash>), left empty: one
    # was left in /tmp by every experiment on every Ray session
    experiment_stage = os.path.dirname(os.path.dirname(stage))
    assert not os.path.exists(experiment_stage), os.listdir(experiment_stage)
    assert ts.load(result.path).get_best("i", "max").checkpoint.load() == 4  # read back from the store
    for bad, match in [({"storage": "bucket/prefix"}, "must be a URL"),
                       ({"storage": f"file://{bucket}", "shared_storage": True}, "pass one of them"),
                       ({"storage": "nosuchfs://b"}, "nosuchfs://b")]:
        with pytest.raises(ts.ConfigError, match=match):
            ts.run(quadratic, backend=RayBackend(**bad), verbose=0, name="bad-storage")


def tagged(config):
    for i in range(1, 4):
        ts.report({"i": i}, checkpoint=ts.Checkpoint.from_state({"tag": config["tag"], "i": i}))


def test_two_experiments_of_one_name_keep_their_own_checkpoints_in_one_storage(ray_gpus, tmp_path):
    # storage= keys an experiment's checkpoints by its name and a hash of its folder's absolute path (as the
    # staging folders on the nodes are): another experiment of the same name, or a copy of the folder resumed
    # elsewhere, neither overwrites them nor deletes them with its keep=
    from tunesmith._ledger import delete_checkpoint, storage_prefix

    st = f"file://{tmp_path / 'st'}"
    runs = {}
    for tag, where, keep in (("A", "p1", None), ("B", "p2", 1)):
        runs[tag] = ts.run(tagged, {"tag": tag}, metric="i", mode="max", name="same", keep=keep, verbose=0,
                           storage_path=str(tmp_path / where), backend=RayBackend(storage=st))
    a = ts.load(str(tmp_path / "p1" / "same"))
    assert a.best.checkpoint.load() == {"tag": "A", "i": 3}
    assert ts.load(str(tmp_path / "p2" / "same")).best.checkpoint.load() == {"tag": "B", "i": 3}
    for tag, kept in (("A", [1, 2, 3]), ("B", [3])):
        prefix = storage_prefix(st, runs[tag].path)
        assert prefix is not None
        key = prefix.rstrip("/").split("/")[-2]
        assert re.fullmatch(r"same-[0-9a-f]{8}", key), prefix
        assert runs[tag].trials[0].checkpoint.path == f"{prefix}trial_00001/checkpoints/checkpoint_000003"
        there = tmp_path / "st" / key / "trials" / "trial_00001" / "checkpoints"
        assert sorted(os.listdir(there)) == [f"checkpoint_{i:06d}" for i in kept]  # B's keep=1 deleted B's only
    assert storage_prefix(st, runs["A"].path) != storage_prefix(st, runs["B"].path)
    # what an experiment may delete is under its own prefix only: B's URLs are not A's (nor a copy's)
    b_url = runs["B"].trials[0].checkpoint.path
    assert delete_checkpoint(b_url, runs["A"].path, storage_prefix(st, runs["A"].path)) is False
    assert ts.Checkpoint(b_url).load() == {"tag": "B", "i": 3}
    # nor is a URL of the layout before the hash (<storage>/<name>/trials/, shared by experiments of one name):
    # an older experiment resumed reads its stored URLs, but its keep= deletes none of them
    legacy = f"{st}/same/trials/trial_00001/checkpoints/checkpoint_000003"
    from tunesmith.checkpoint import download, upload

    (tmp_path / "dl").mkdir()
    upload(download(runs["A"].trials[0].checkpoint.path, str(tmp_path / "dl")), legacy)
    assert ts.Checkpoint(legacy).load() == {"tag": "A", "i": 3}
    assert delete_checkpoint(legacy, runs["A"].path, storage_prefix(st, runs["A"].path)) is False
    assert ts.Checkpoint(legacy).load() == {"tag": "A", "i": 3}


def test_a_relative_file_url_for_storage_is_refused_with_its_absolute_form(ray_gpus, results_dir):
    # fsspec reads file://rel_st relative to the working folder, which is each trial's own: the checkpoints
    # would land in the trials' folders and the store would name URLs nobody can read back
    with pytest.raises(ts.ConfigError, match=re.escape(f"file://{os.path.abspath('rel_st')}")) as err:
        ts.run(tagged, {"tag": "A"}, backend=RayBackend(storage="file://rel_st"), verbose=0, name="rel")
    assert "'file://rel_st'" in str(err.value)


def test_the_trial_function_of_a_module_beside_the_driver_ships_by_value_and_installed_ones_by_reference(
        tmp_path):
    import subprocess
    import sys

    import ray.cloudpickle as rcp

    from tunesmith.executors.ray import _pickled_by_value

    def load_elsewhere(data: bytes) -> subprocess.CompletedProcess[str]:
        """Unpickle in a process that cannot import shared_data_helpers (as Ray Client's server, or a
        remote node, cannot import a module beside the driver)."""
        (tmp_path / "fn.pkl").write_bytes(data)
        load = ("import ray.cloudpickle as c, sys; f = c.loads(open(sys.argv[1], 'rb').read()); "
                "print(f.__name__, f.__globals__['anon_kb']() > 0)")  # its helper came along
        return subprocess.run([sys.executable, "-c", load, str(tmp_path / "fn.pkl")], cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": ""}, capture_output=True, text=True)

    with _pickled_by_value(report_reading):  # shared_data_helpers: a file beside the tests, not installed
        assert "shared_data_helpers" in rcp.list_registry_pickle_by_value()
        by_value = rcp.dumps(report_reading)
    assert "shared_data_helpers" not in rcp.list_registry_pickle_by_value()  # the registry as it was
    out = load_elsewhere(by_value)
    assert out.returncode == 0 and out.stdout.split() == ["report_reading", "True"], out.stderr
    # what Ray did before: by reference, which needs the module
    assert "No module named 'shared_data_helpers'" in load_elsewhere(rcp.dumps(report_reading)).stderr
    with _pickled_by_value(json.dumps):  # the standard library stays by reference
        assert "json" not in rcp.list_registry_pickle_by_value()
    with _pickled_by_value(np.mean):  # so does an installed package
        assert not any(m.startswith("numpy") for m in rcp.list_registry_pickle_by_value())


def _stage(tmp_path, monkeypatch):
    """A trial's staging folder, made (in this user's private root) in a temporary folder of the test's own."""
    from tunesmith.executors._ray_transfer import make_staging, staging_dir

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    stage = staging_dir("n" * 32, str(tmp_path / "results" / "exp" / "trials" / "trial_00001"))
    make_staging(stage)
    return pathlib.Path(stage)


def test_a_trial_removes_its_staging_copies_before_the_driver_hears_it_ended(tmp_path, monkeypatch):
    # A retry the driver starts as soon as it hears "done" may use the same node-local staging folder (same
    # node, same trial): the ended attempt must not delete it under the retry (it once did, in a thread,
    # after "done" was queued, and a retry's download failed with FileNotFoundError).
    from tunesmith.executors._ray_actor import _ActorChannel, _remove_staging

    stage = _stage(tmp_path, monkeypatch)
    for sub in ("checkpoints/checkpoint_000001", ".tunesmith-restore/checkpoint_000000", "restore/mine"):
        (stage / sub).mkdir(parents=True)
    ch = _ActorChannel()
    seen = []

    def cleanup():
        seen.append([m[0] for m in ch.take(0)])  # what the driver could have read by now
        _remove_staging(str(stage))

    ch.reset(7, None, None, on_finish=cleanup)
    ch.send_result((1, 0.0, 0.0, "{}", None), wait=False)
    ch.finish("error", "tb")
    assert seen == [["r"]]  # the result, not yet the end
    assert sorted(os.listdir(stage)) == ["restore"]  # the copies went; a restore/ of the trial's own stays
    assert os.listdir(stage / "restore") == ["mine"]
    (stage / "restore" / "mine").rmdir()
    (stage / "restore").rmdir()
    assert ch.take(0) == [("done", 7, "error", "tb")]
    ch.reset(8, None, None)
    ch.finish("ok", None)  # the next trial on this actor does not run the last one's cleanup again
    assert seen == [["r"]]


def _until_done(ch):
    """What the driver's long polls take from ``ch`` until the trial's end (the actor's end runs in its thread)."""
    msgs = []
    while not msgs or msgs[-1][0] != "done":
        msgs += ch.take(5)
    return msgs


@pytest.mark.timeout(60)
def test_what_a_trial_on_another_node_printed_goes_to_the_driver_before_its_end(tmp_path, monkeypatch):
    # The staging folder's output.log is read for the driver as it grows (each long poll) and to its end before
    # "done"; only what was written after the trial started is sent (a file an earlier, killed run left was
    # sent then); then it is removed, and the folder with it unless the trial left files of its own there.
    import threading

    from tunesmith.executors._ray_actor import LOG_BYTES, _ActorChannel, _remove_staging

    stage = _stage(tmp_path, monkeypatch)
    log = stage / "output.log"
    log.write_bytes(b"an earlier run\n")
    ch = _ActorChannel()
    ch.reset(3, None, None, on_finish=lambda: _remove_staging(str(stage)), log=str(log))
    assert ch.take(0) == []  # nothing new yet
    with open(log, "ab") as f:
        f.write(b"hello\n")
    ch.send_result((1, 0.0, 0.0, "{}", None), wait=False)
    msgs = ch.take(0)
    assert [m[0] for m in msgs] == ["r", "o"] and msgs[1][2] == b"hello\n"  # the result, then what it printed
    big = bytes(range(256)) * (LOG_BYTES // 256) + b"tail\n"  # more than one poll reads
    with open(log, "ab") as f:
        f.write(big)
    (stage / "mine.txt").write_text("the trial's own")
    end = threading.Thread(target=ch.finish, args=("ok", None))
    end.start()
    msgs = _until_done(ch)
    end.join(10)
    assert [m[0] for m in msgs] == ["o", "o", "done"]
    assert b"".join(m[2] for m in msgs[:2]) == big
    assert sorted(os.listdir(stage)) == ["mine.txt"]  # the log went, the trial's own file stays


@pytest.mark.timeout(60)
def test_a_trials_files_leave_its_node_only_once_the_driver_took_them(tmp_path, monkeypatch):
    # sync_trial_files: an actor killed while its files are on their way (past a stop's grace period) must leave
    # them on the node, so they go only once every piece was taken
    import threading

    from tunesmith.executors._ray_actor import _ActorChannel, _remove_staging

    stage = _stage(tmp_path, monkeypatch)
    (stage / "plots").mkdir(parents=True)
    (stage / "plots" / "a.bin").write_bytes(b"01")  # one piece
    (stage / "plots" / "b.bin").write_bytes(b"0123456789")  # three: the second waits for the driver
    ch = _ActorChannel()
    ch.reset(4, None, None, chunk_bytes=4, on_finish=lambda: _remove_staging(str(stage)), files_from=str(stage))
    end = threading.Thread(target=ch.finish, args=("ok", None))
    end.start()
    with ch.cv:  # a.bin is queued whole, and b.bin's first piece: nothing was taken yet
        assert ch.cv.wait_for(lambda: any(m[0] == "f" and m[2] == "plots/b.bin" for m in ch.out), timeout=10)
    assert (stage / "plots" / "a.bin").read_bytes() == b"01"  # still here: the driver has not taken it
    msgs = _until_done(ch)
    end.join(10)
    pieces = [m for m in msgs if m[0] == "f"]
    assert [(m[2], m[3], m[4], m[5]) for m in pieces] == [
        ("plots/a.bin", 0, b"01", True), ("plots/b.bin", 0, b"0123", False), ("plots/b.bin", 4, b"4567", False),
        ("plots/b.bin", 8, b"89", True)]
    assert not stage.exists()  # sent, then removed, its folders with it


def test_two_experiments_of_one_name_get_their_own_staging_folders():
    # Staging folders are keyed by the experiment's folder on the driver, not only its name: a trial of one
    # "exp" must never send (sync_trial_files) what a trial of another "exp" left on the same node.
    from tunesmith.executors._ray_transfer import staging_dir

    a = staging_dir("n" * 32, "/home/me/results/exp/trials/trial_00001")
    b = staging_dir("n" * 32, "/home/you/results/exp/trials/trial_00001")
    assert a != b
    assert a == staging_dir("n" * 32, "/home/me/results/exp/trials/trial_00001")  # a retry finds its own
    assert os.path.basename(a) == "trial_00001" and "exp" in a


def test_a_trials_files_are_sent_without_links_or_staged_copies_and_land_only_inside_its_folder(tmp_path):
    from tunesmith.executors._ray_transfer import IncomingFiles, trial_files

    stage = tmp_path / "stage"
    for rel in ("checkpoints/checkpoint_000001/w.bin", ".tunesmith-restore/checkpoint_000001/x", "output.log",
                "restore/x", "a.txt", "sub/b.txt", "sub/checkpoints/c.txt"):
        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        (stage / rel).write_text(rel)
    (tmp_path / "secret").write_text("not the trial's")
    (stage / "link.txt").symlink_to(tmp_path / "secret")
    (stage / "linked_dir").symlink_to(tmp_path)
    # a restore/ of the trial's own is sent as any other folder; the staged restore copy is not
    assert sorted(trial_files(str(stage))) == ["a.txt", "restore/x", "sub/b.txt", "sub/checkpoints/c.txt"]

    trial = tmp_path / "driver" / "trial_00001"
    trial.mkdir(parents=True)
    (trial / "a.txt").write_text("an earlier run's")
    files = IncomingFiles()
    files.piece(str(trial), "a.txt", 0, b"new ", False)
    assert (trial / "a.txt").read_text() == "an earlier run's"  # replaced only with its last piece
    files.piece(str(trial), "a.txt", 4, b"one", True)
    assert (trial / "a.txt").read_text() == "new one"
    files.piece(str(trial), "sub/deep/b.txt", 0, b"", True)
    assert (trial / "sub" / "deep" / "b.txt").read_bytes() == b""
    files.piece(str(trial), "run.sh", 0, b"#!/bin/sh\n", True, 0o755)  # its permission bits, applied
    assert (trial / "run.sh").stat().st_mode & 0o777 == 0o755
    for bad in ("../escape.txt", "/etc/passwd", "checkpoints/checkpoint_000009/x", "output.log", "a/../../x",
                ".tunesmith-restore/checkpoint_000001/x"):
        with pytest.raises(ValueError, match="refusing the trial file"):
            files.piece(str(trial), bad, 0, b"x", False)
        files.piece(str(trial), bad, 1, b"y", True)  # its later pieces are dropped quietly
    assert not (tmp_path / "driver" / "escape.txt").exists()
    files.piece(str(trial), "half.txt", 0, b"x", False)
    files.discard()  # the trial's actor died: the half-sent file leaves nothing behind
    assert sorted(p.name for p in trial.iterdir()) == ["a.txt", "run.sh", "sub"]


def test_a_trial_function_whose_module_globals_do_not_pickle_still_runs(ray_gpus, results_dir, tmp_path,
                                                                        monkeypatch):
    # By value, a function takes the module globals it uses along; a lock does not pickle. Then it goes by
    # reference, which works where the module can be imported (here: the same machine, sys.path shipped).
    (tmp_path / "locked_train.py").write_text(
        "import threading\n"
        "import tunesmith as ts\n"
        "LOCK = threading.Lock()\n"
        "def train(config):\n"
        "    with LOCK:\n"
        "        ts.report({'loss': config['x'] ** 2})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import locked_train

    result = ts.run(locked_train.train, space={"x": ts.grid([1.0, 3.0])}, backend=RayBackend(), verbose=0,
                    name="locked")
    assert [t.status for t in result.trials] == [ts.TrialStatus.TERMINATED] * 2, [t.error for t in result.trials]
    assert sorted(t.last_result["loss"] for t in result.trials) == [1.0, 9.0]


def test_trials_on_ray_sign_their_checkpoints_with_the_drivers_key(ray_gpus, results_dir, tmp_path, monkeypatch):
    # Ray's worker processes took the environment of ray.init (or another machine's): the key they sign with
    # comes from the driver, in the trial's spec, so the driver's user can load what the trials wrote.
    monkeypatch.setenv("TUNESMITH_KEY", "a-key-only-this-driver-process-has")
    (tmp_path / "marks").mkdir()
    result = ts.run(fails_once_after_a_checkpoint, space={"marks": str(tmp_path / "marks")}, max_failures=1,
                    backend=RayBackend(), verbose=0, name="signed")
    trial = result.trials[0]
    assert trial.status is ts.TrialStatus.TERMINATED, trial.error
    assert [r["start"] for r in result.history(trial.id)] == [0, 0, 2, 2]  # the retry loaded its checkpoint
    assert trial.checkpoint.load() == 4  # signed with the driver's key


def counts_where_it_runs(config):
    i = 0
    while True:
        i += 1
        ts.report({"m": i, "cwd": os.getcwd(), "orig": os.environ["TUNESMITH_ORIG_WORKING_DIR"]})


def hangs_alive(config):
    while True:
        time.sleep(0.05)


def test_ray_trials_stop_exactly_at_their_rule_run_in_their_folder_and_obey_their_time_limit(
        ray_gpus, results_dir):
    """The spec carries the stop rules, the working folder and the driver's cwd; the time limit is the
    backend's: the same contract as the local executor (tests/test_run.py)."""
    result = ts.run(counts_where_it_runs, stop={"m": 30}, num_samples=2, backend="ray", verbose=0)
    for t in result.trials:
        assert t.status is ts.TrialStatus.TERMINATED
        assert [h["m"] for h in result.history(t.id)] == list(range(1, 31))
        assert t.last_result["cwd"] == t.path and t.last_result["orig"] == os.getcwd()
    start = time.monotonic()
    result = ts.run(hangs_alive, trial_time_limit_s=1, backend=RayBackend(grace_period_s=0.5), verbose=0)
    assert time.monotonic() - start < 60
    (t,) = result.trials
    assert t.status is ts.TrialStatus.ERROR and "trial_time_limit_s=1" in t.error and "killed" in t.error


def shuts_ray_down(config):
    import ray as _ray

    _ray.shutdown()  # the user's code ends Ray in its actor's process
    ts.report({"loss": config["x"]})


@pytest.mark.timeout(60)
def test_a_trial_that_calls_ray_shutdown_runs_as_on_the_local_backend(ray_gpus, results_dir):
    """A trial that called ray.shutdown() left its actor's process without Ray: Ray killed the actor at its next call
    ("'Worker' object has no attribute 'core_worker'"), and the trial failed with its results unsent, or the next
    trial sent to that actor (reused) did. As on the local backend, the call does nothing."""
    result = ts.run(shuts_ray_down, space={"x": ts.grid([1.0, 2.0, 3.0])}, max_concurrent=1, verbose=0,
                    backend=RayBackend(), name="shuts-ray-down")
    assert [(t.status, (t.last_result or {}).get("loss")) for t in result.trials] == [
        (ts.TrialStatus.TERMINATED, x) for x in (1.0, 2.0, 3.0)], [t.error for t in result.trials]
    for t in result.trials:  # ray.shutdown() in a trial does nothing, and says so where the trial prints
        with open(os.path.join(t.path, "output.log")) as f:
            assert "ray.shutdown() in a trial is ignored" in f.read()


def test_sizes_the_ray_this_process_joined_does_not_offer_are_refused_naming_them(ray_gpus):
    """The module's Ray (ray.init(num_cpus=4, num_gpus=2, resources={"accel": 2})) is used as it is: sizes asked of a
    RayBackend that it does not offer were ignored silently (a trial asking for the 8 CPUs was then refused as more
    than any node has, naming no RayBackend argument)."""
    for bad, match in [({"num_cpus": 8}, r"num_cpus=8 \(it offers 4\)"),
                       ({"num_gpus": 1}, r"num_gpus=1 \(it offers 2\)"),
                       ({"object_store_memory": 2**20}, r"object_store_memory=1048576 \(it offers 209715200\)"),
                       ({"resources": {"accel": 4, "tpu": 1}},
                        r"resources=\{'accel': 4, 'tpu': 1\} \(it offers \{'accel': 2.0, 'tpu': 0.0\}\)")]:
        with pytest.raises(ts.ConfigError, match=match) as e:
            RayBackend(**bad).connect()
        assert "ray.init" in str(e.value)
        assert ray.is_initialized()  # the user's Ray is left as it was
    ok = RayBackend(num_cpus=4, num_gpus=2, resources={"accel": 2}, object_store_memory=200 * 2**20)
    assert ok.connect() is ray  # what it offers: used
    ok.shutdown()
    assert ray.is_initialized()  # not ours to stop


def killed_after_its_checkpoint(config):
    ck = ts.get_checkpoint()
    if ck is None:
        ts.report({"restored": 0}, checkpoint=ts.Checkpoint.from_state(1))
        os.kill(os.getpid(), 9)  # the actor dies at once, its trial's last result sent or not
    ts.report({"restored": ck.load()})


@pytest.mark.timeout(60)
def test_a_result_with_a_checkpoint_outlives_its_actor_killed_right_after(ray_gpus, results_dir):
    """The result (and the checkpoint it names) waited in the actor for the driver's next poll, and died with it: the
    retry started from scratch and was killed again (ERROR), where the local backend's retry restores it."""
    result = ts.run(killed_after_its_checkpoint, space={"x": 1}, max_failures=1, verbose=0, backend=RayBackend(),
                    name="killed-after-checkpoint")
    (t,) = result.trials
    assert (t.status, t.num_failures) == (ts.TrialStatus.TERMINATED, 1), t.error
    assert [r["restored"] for r in result.history(t.id)] == [0, 1]


def checkpoints_then_hangs(config):
    ts.report({"i": 1}, checkpoint=ts.Checkpoint.from_state(1))
    time.sleep(120)  # past its trial_time_limit_s: its actor is killed


@pytest.mark.timeout(60)
def test_a_trial_killed_with_storage_leaves_no_staged_copies_on_the_node(ray_gpus, results_dir, tmp_path):
    """With storage=, a trial stages its checkpoints on its node before uploading them; one whose actor was killed
    (past its time limit, no retry) left those copies in <tmp>/tunesmith-ray-<uid> for good."""
    result = ts.run(checkpoints_then_hangs, space={"x": 1}, trial_time_limit_s=2, verbose=0, name="killed-staged",
                    backend=RayBackend(storage=f"file://{tmp_path}/bucket", grace_period_s=0.5))
    (t,) = result.trials
    assert t.status is ts.TrialStatus.ERROR and "trial_time_limit_s=2" in t.error
    assert t.checkpoint.load() == 1  # uploaded: the staged copy was only a copy
    stage = _staging_dir(ray.get_runtime_context().get_node_id(), t.path)
    assert not os.path.exists(stage), [os.path.join(r, n) for r, d, f in os.walk(stage) for n in d + f]


def waits_for_its_stop(config):
    """Reports nothing: waits (bounded) for the driver's stop, and marks in its folder that it came."""
    deadline = time.monotonic() + 90
    while not ts.should_stop():
        assert time.monotonic() < deadline, "no stop came"
        time.sleep(0.01)
    with open("saw its stop", "w"):
        pass


@pytest.mark.timeout(200)
def test_a_stop_sent_as_the_trial_starts_is_not_lost(backend, tmp_path):
    """A stop sent right after the trial's run (the experiment ending as it starts it) reached the actor before its
    run() had reset the channel for that trial (ignored: another trial's id), or between that reset and the trial
    thread clearing the channel's stop again (_run_trial): either way lost, and the trial ran on until the driver killed
    its actor after the grace period (here 60 s, so that only a lost stop ends in that kill)."""
    ex = backend(waits_for_its_stop, grace_period_s=60)
    start = launch(1, tmp_path, {"cpu": 0.5, "gpu": 0.0})
    assert ex.try_start(start)
    ex.stop(1)
    _rows, done = collect(ex, lambda r, d: 1 in d, timeout=120)
    assert done[1] == ("stopped", None), done
    assert os.path.exists(os.path.join(start.trial_dir, "saw its stop")), "the stop was lost: its actor was killed"


def test_an_address_other_than_the_ray_this_process_joined_is_refused_naming_both(ray_gpus):
    """A RayBackend(address=...) on a process that already joined a Ray (ray.init) used that Ray whatever the
    address said: trials ran on the joined cluster, not on the one asked for."""
    from proc_helpers import free_port

    joined = ray.get_runtime_context().gcs_address
    port = joined.rpartition(":")[2]
    other = f"127.0.0.1:{free_port()}"
    with pytest.raises(ts.ConfigError, match=re.escape(f"RayBackend(address='{other}')")) as e:
        RayBackend(address=other).connect()
    assert joined in str(e.value)
    assert ray.is_initialized()  # the user's Ray is left as it was
    for same in ("auto", joined, f"localhost:{port}"):  # the Ray it joined, however named
        ok = RayBackend(address=same)
        assert ok.connect() is ray, same
        ok.shutdown()
    assert ray.is_initialized()  # not ours to stop
