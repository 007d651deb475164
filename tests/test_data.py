"""Shared data on the local backend: ``put`` once into shared memory, ``get`` from every trial without a
copy; ``download_once`` under a file lock. (The Ray object store side is in tests/executors/test_ray.py.)"""

from __future__ import annotations

import gc
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from shared_data_helpers import report_reading

import tunesmith as ts
from tunesmith.data import DataRef, download_once, get, put
from tunesmith.executors.local import LocalBackend

pytestmark = pytest.mark.timeout(120)


def test_put_and_get_round_trip_with_read_only_views():
    a = np.arange(1_000_000, dtype=np.float32)
    value = {"a": a, "b": [np.ones((3, 4)), "text", 7], "n": None}
    ref = put(value, backend="local")
    wire = pickle.dumps(ref)
    assert len(wire) < 1000  # the reference travels, not the data
    back = get(pickle.loads(wire))
    assert np.array_equal(back["a"], a) and back["b"][1:] == ["text", 7] and back["n"] is None
    assert np.array_equal(back["b"][0], np.ones((3, 4)))
    assert not back["a"].flags.writeable  # a view of the shared copy
    with pytest.raises(ValueError):
        back["a"][0] = 1.0
    assert os.path.dirname(ref.path).startswith(("/dev/shm", os.path.realpath("/tmp")))


def test_the_file_goes_with_the_drivers_reference():
    ref = put(np.zeros(1000), backend="local")
    path = ref.path
    assert os.path.exists(path) and oct(os.stat(path).st_mode & 0o777) == "0o600"
    del ref
    gc.collect()
    assert not os.path.exists(path)
    copy = DataRef("local", path, "0" * 64, 0)
    with pytest.raises(ts.ConfigError, match="local backend"):
        get(copy)


def test_a_changed_file_is_never_unpickled():
    ref = put({"x": 1, "pad": "y" * 100}, backend="local")
    with open(ref.path, "r+b") as f:  # change one byte of the pickle stream
        data = f.read()
        i = data.index(b"yyyy")
        f.seek(i)
        f.write(b"z")
    with pytest.raises(ts.ConfigError, match="checksum"):
        get(DataRef(ref.kind, ref.path, ref.digest, ref.nbytes))  # a fresh reference: no cached value


def test_bad_arguments():
    with pytest.raises(ts.ConfigError, match="backend"):
        put(1, backend="s3")
    with pytest.raises(ts.ConfigError, match="DataRef"):
        get("not a ref")


def test_trials_read_one_shared_copy(results_dir):
    arr = np.arange(40 * 2**20 // 8, dtype=np.float64)  # 40 MiB
    ref = put(arr, backend="local")
    files = os.listdir(os.path.dirname(ref.path))

    def train(config):
        report_reading(lambda: get(ref))

    result = ts.run(train, num_samples=4, backend=LocalBackend(total_resources={"cpu": 4}), verbose=0)
    assert os.listdir(os.path.dirname(ref.path)) == files  # no copy written per trial
    for t in result.trials:
        m = t.last_result
        assert t.status is ts.TrialStatus.TERMINATED, t.error
        assert m["sum"] == float(arr.sum()) and m["writeable"] is False
        assert m["anon_growth_kb"] < arr.nbytes / 1024 / 4  # mapped, not copied into the trial's memory


# -- download_once -------------------------------------------------------------------------------------------
def test_a_failed_fetch_leaves_nothing_and_the_next_call_fetches_again(tmp_path):
    target = tmp_path / "ds"

    def broken(tmp):
        os.makedirs(os.path.join(tmp, "part"))
        with open(os.path.join(tmp, "part", "a.bin"), "wb") as f:
            f.write(b"half")
        raise ConnectionError("network down")

    with pytest.raises(ConnectionError):
        download_once(target, broken)
    assert sorted(os.listdir(tmp_path)) == ["ds.lock"]  # no half-written data, under any name

    def good(tmp):
        os.makedirs(tmp)
        with open(os.path.join(tmp, "a.bin"), "wb") as f:
            f.write(b"whole")

    assert download_once(target, good) == str(target)
    assert (target / "a.bin").read_bytes() == b"whole"
    assert download_once(target, broken) == str(target)  # there already: fetch_fn is not called
    with pytest.raises(RuntimeError, match="without creating"):
        download_once(tmp_path / "other", lambda tmp: None)


CRASH = textwrap.dedent("""
    import os, sys
    from tunesmith.data import download_once

    def fetch(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half of it")
            f.flush()
        os._exit(9)  # killed mid-download: no exception handler runs

    download_once(sys.argv[1], fetch)
""")


def test_a_download_killed_midway_leaves_no_data_behind(tmp_path):
    target = tmp_path / "weights.bin"
    proc = subprocess.run([sys.executable, "-c", CRASH, str(target)], capture_output=True, timeout=60)
    assert proc.returncode == 9
    assert not target.exists()
    assert any(n.startswith(".weights.bin.tmp-") for n in os.listdir(tmp_path))  # the crash's leftover

    def fetch(tmp):
        with open(tmp, "wb") as f:
            f.write(b"all of it")

    download_once(target, fetch)  # the lock died with its holder; the leftover is cleaned up
    assert target.read_bytes() == b"all of it"
    assert sorted(os.listdir(tmp_path)) == ["weights.bin", "weights.bin.lock"]


def test_download_once_at_a_dangling_link_says_so_before_fetching(tmp_path):
    # the data would have been fetched, then thrown away by a raw NotADirectoryError renaming it over the link
    link = tmp_path / "data"
    link.symlink_to(tmp_path / "gone")
    fetched = []
    with pytest.raises(ts.ConfigError, match="link") as caught:
        ts.download_once(str(link), lambda tmp: fetched.append(tmp))
    assert str(link) in str(caught.value) and fetched == [] and os.path.islink(link)


def test_a_value_read_in_the_driver_lets_its_memory_go_with_the_reference():
    # get() in the driver (a notebook checking its data) kept the mapping in a per-process cache for good: the
    # file was unlinked when the reference went, but its shared-memory pages stayed held until the driver exited
    ref = put(np.ones(1000), backend="local")
    path = ref.path
    assert get(ref).sum() == 1000 and get(ref) is get(ref)  # read twice: mapped once
    del ref
    gc.collect()
    with open(f"/proc/{os.getpid()}/maps") as f:
        assert path not in f.read()  # nothing maps the removed file: its memory is free


@pytest.mark.parametrize("space", [lambda r: {"ref": r}, lambda r: {"ref": ts.choice([r])},
                                   lambda r: {"d": {"data": r}, "x": ts.uniform(0, 1)}])
def test_a_dataref_in_the_space_says_to_capture_it_instead(results_dir, space):
    # the docs said "pass ref in the config"; it failed with "DataRef cannot be stored as JSON", no way out named
    ref = put(np.zeros(10), backend="local")
    with pytest.raises(ts.ConfigError, match=r"DataRef.*not a config value.*ts\.get\(ref\)") as caught:
        ts.run(lambda config: None, space(ref), num_samples=1, verbose=0, name="refs")
    assert "space[" in str(caught.value)  # names where in the space it is
    assert not os.path.exists(os.path.join(results_dir, "refs"))


def test_put_takes_what_a_trial_function_can_hold_and_names_what_it_cannot(results_dir):
    # the local backend pickled with the standard pickle: a lambda or a class defined in the script failed to
    # put (they go to Ray's object store, and trial functions travel, with cloudpickle)
    class Scaler:
        def __init__(self, k):
            self.k = k

    ref = put({"f": lambda x: x * 2, "s": Scaler(3), "a": np.arange(5.0)}, backend="local")

    def train(config):
        got = get(ref)
        ts.report({"v": got["f"](got["s"].k) + float(got["a"].sum())})

    result = ts.run(train, num_samples=1, verbose=0)
    assert result.trials[0].last_result["v"] == 16.0, result.trials[0].error
    import threading

    with pytest.raises(ts.ConfigError, match=r"put\(obj\): dict cannot be pickled \(cannot pickle '_thread.lock'") \
            as caught:
        put({"model": threading.Lock()}, backend="local")
    assert isinstance(caught.value.__cause__, TypeError)


KILLED_DRIVER = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    import tunesmith as ts
    import tunesmith.data

    tunesmith.data._shm_root = lambda: sys.argv[1]  # the test's own (no other put on the machine sweeps it)
    ref = ts.put(np.zeros(1000), backend="local")
    print(ref.path, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no exit handler runs
""")


def test_the_file_of_a_sigkilled_driver_is_removed_by_the_next_put(tmp_path, monkeypatch):
    import tunesmith.data

    # a shared-memory folder of this test's own: any put() on the machine sweeps the folders of dead drivers, and
    # another test's (pytest-xdist) would remove the dead driver's before this test sees it left
    monkeypatch.setattr(tunesmith.data, "_shm_root", lambda: str(tmp_path))
    mine = put(0, backend="local")  # this process has its folder already: a notebook that put before
    proc = subprocess.run([sys.executable, "-c", KILLED_DRIVER, str(tmp_path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == -9, proc.stderr
    left = os.path.dirname(proc.stdout.strip())
    assert os.path.isfile(proc.stdout.strip())  # left behind in shared memory...
    put(1, backend="local")  # ...until the next put() on the machine, not only a process's first (it was)
    assert not os.path.exists(left) and os.path.isfile(mine.path)


RESUMED_READER = textwrap.dedent("""
    import pickle, sys
    import tunesmith as ts

    ref = pickle.loads(bytes.fromhex(sys.argv[1]))  # a DataRef kept from an earlier driver (a checkpoint, a file)
    try:
        ts.get(ref)
    except ts.ConfigError as e:
        print(e)
""")


def test_a_dataref_outliving_its_driver_says_so():
    # the message spoke only of another machine and Ray; the common cause is a driver that has exited (a DataRef
    # kept in a checkpoint and read after a resume) or a reference that was garbage-collected
    ref = put(np.zeros(10), backend="local")
    wire = pickle.dumps(DataRef(ref.kind, ref.path, ref.digest, ref.nbytes)).hex()
    del ref
    gc.collect()
    out = subprocess.run([sys.executable, "-c", RESUMED_READER, wire], capture_output=True, text=True, timeout=60)
    assert "lasts only while the driver that put it holds it" in out.stdout, out.stdout + out.stderr
    assert "put it again" in out.stdout
