"""What a trial on another Ray node prints is kept in its ``output.log`` in the experiment folder, however that
folder came (README "Folders from someone else"): the driver, which appends it there, never writes through a link
or into a FIFO in the log's place, and never drops the output for one; it puts a regular file there, as a local
worker does (``tunesmith.executors._worker._open_log``). A real Ray head and a worker node
(``ray.cluster_utils.Cluster``, the pattern of ``test_ray_cluster.py``), and the driver's own method alone."""

from __future__ import annotations

import os
import threading
import types

import pytest

import tunesmith as ts
from tunesmith.checkpoint import Checkpoint

ray = pytest.importorskip("ray")
from ray_helpers import start_cluster  # noqa: E402

from tunesmith.executors.ray import RayBackend  # noqa: E402

pytestmark = pytest.mark.timeout(180)


def _victim(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("precious")
    return victim


def _trial_folder(tmp_path):
    trial = tmp_path / "exp" / "trials" / "trial_00001"
    trial.mkdir(parents=True)
    return trial


def _append(trial, data: bytes) -> None:
    """The driver appending what a trial on another node printed (one long poll's OUTPUT message)."""
    RayBackend._output(None, types.SimpleNamespace(trial_dir=str(trial), trial_id=1, node="node-b"), data)


# -- the driver's method alone ---------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["precious.txt", "not_yet.txt"])
def test_the_driver_replaces_a_link_in_the_output_logs_place_by_a_file(tmp_path, target):
    victim, trial = _victim(tmp_path), _trial_folder(tmp_path)
    os.symlink(victim / target, trial / "output.log")
    _append(trial, b"printed on node b\n")
    _append(trial, b"and more\n")
    assert (victim / "precious.txt").read_text() == "precious" and not (victim / "not_yet.txt").exists()
    assert not (trial / "output.log").is_symlink()
    assert (trial / "output.log").read_text() == "printed on node b\nand more\n"


def test_the_driver_never_writes_into_a_fifo_in_the_output_logs_place(tmp_path):
    """A FIFO someone reads would take the output; the driver's own output.log is a file in its place."""
    trial = _trial_folder(tmp_path)
    os.mkfifo(trial / "output.log")
    reader = os.open(trial / "output.log", os.O_RDONLY | os.O_NONBLOCK)
    try:
        _append(trial, b"printed on node b\n")
        try:
            taken = os.read(reader, 100)
        except BlockingIOError:
            taken = b""
    finally:
        os.close(reader)
    assert taken == b""
    assert (trial / "output.log").is_file() and (trial / "output.log").read_text() == "printed on node b\n"


def test_a_fifo_nobody_reads_in_the_output_logs_place_does_not_stall_the_driver(tmp_path):
    """Opened to write without O_NONBLOCK, a FIFO nobody reads blocks the driver (every trial) for good."""
    trial = _trial_folder(tmp_path)
    os.mkfifo(trial / "output.log")
    appending = threading.Thread(target=_append, args=(trial, b"printed on node b\n"), daemon=True)
    appending.start()
    appending.join(10)
    assert not appending.is_alive(), "the driver is still blocked opening the FIFO in output.log's place"
    assert (trial / "output.log").is_file() and (trial / "output.log").read_text() == "printed on node b\n"


# -- a real cluster -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    # the head offers no CPU: every trial runs on the worker node, away from the driver's folder
    c = start_cluster({"num_cpus": 0, "object_store_memory": 80 * 2**20, "include_dashboard": False},
                      [{"num_cpus": 1, "object_store_memory": 80 * 2**20}])
    ray.init(address=c.address, log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()


def plants_a_link_at_the_drivers_log(config):
    """Puts a link where the driver's copy of its output.log goes (the folder is shared here), then prints."""
    from tunesmith._layout import trial_name

    driver_trial = os.path.join(config["exp"], "trials", trial_name(ts.get_trial_id()))
    os.makedirs(driver_trial, exist_ok=True)
    os.symlink(config["victim"], os.path.join(driver_trial, "output.log"))
    print("printed after the link was made", flush=True)
    ts.report({"dir": ts.get_trial_dir()})


def test_a_trial_on_another_node_keeps_its_output_when_a_link_is_in_the_logs_place(cluster, results_dir, tmp_path):
    victim = _victim(tmp_path)
    exp = results_dir / "ray_link"
    rs = ts.run(plants_a_link_at_the_drivers_log, space={"exp": str(exp), "victim": str(victim / "precious.txt")},
                name="ray_link", backend=RayBackend(), verbose=0)
    (t,) = rs.trials
    assert t.status is ts.TrialStatus.TERMINATED, t.error
    assert t.last_result["dir"] != t.path  # it ran on the worker node, in its staging folder
    assert (victim / "precious.txt").read_text() == "precious"
    log_file = exp / "trials" / "trial_00001" / "output.log"
    assert not log_file.is_symlink() and "printed after the link was made" in log_file.read_text()


def fails_at_three(config):
    ck = ts.get_checkpoint()
    start = ck.load() if ck else 0
    print(f"hello from iteration {start}", flush=True)
    for i in range(start, 6):
        ts.report({"i": i + 1, "dir": ts.get_trial_dir()}, checkpoint=Checkpoint.from_state(i + 1))
        if i + 1 == 3 and not os.path.exists(config["go"]):
            raise RuntimeError("stopped at 3")


@pytest.mark.timeout(120)
def test_a_resumed_folder_with_a_fifo_for_an_output_log_finishes_with_the_output_in_a_file(cluster, results_dir):
    """A FIFO is no link: the resume leaves it; the driver appending the resumed trial's output on its first poll
    blocked on it for good (the experiment never ended) before it put a file in its place."""
    space = {"go": str(results_dir.parent / "go")}
    rs = ts.run(fails_at_three, space=space, name="ray_fifo", backend=RayBackend(), verbose=0)
    assert rs.trials[0].status is ts.TrialStatus.ERROR and rs.trials[0].iteration == 3
    (results_dir.parent / "go").write_text("")
    log_file = results_dir / "ray_fifo" / "trials" / "trial_00001" / "output.log"
    log_file.unlink()
    os.mkfifo(log_file)
    rs = ts.run(fails_at_three, space=space, name="ray_fifo", resume=True, restart_errored="resume",
                backend=RayBackend(), verbose=0)
    (t,) = rs.trials
    assert t.status is ts.TrialStatus.TERMINATED and t.iteration == 6, t.error
    assert t.last_result["dir"] != t.path
    assert log_file.is_file() and "hello from iteration 3" in log_file.read_text()
