"""A folder someone else made is untrusted input: paths its store names and links planted in its trial
folders never take a reader, a resume or a trial outside the experiment folder (README "Folders from someone
else"). Real runs, real stores, real worker processes."""

from __future__ import annotations

import logging
import os
import sqlite3

import pytest
from click.testing import CliRunner

import tunesmith as ts
from tests.test_resume import _snapshot
from tunesmith.checkpoint import CheckpointError
from tunesmith.cli import cli

pytestmark = pytest.mark.timeout(180)


def counts_to_six(config):
    """Checkpoints every iteration; fails at iteration 3 until the file ``go`` exists. Prints, and writes
    ``metrics.txt`` in its working folder (its trial folder) as a training script does."""
    ck = ts.get_checkpoint()
    start = ck.load() if ck else 0
    print(f"hello from iteration {start}")
    with open("metrics.txt", "w") as f:
        f.write(f"trial wrote this at {start}")
    for i in range(start, 6):
        ts.report({"i": i + 1}, checkpoint=ts.Checkpoint.from_state(i + 1))
        if i + 1 == 3 and not os.path.exists(config["go"]):
            raise RuntimeError("stopped at 3")


def _failed_at_three(results_dir, name):
    """An experiment whose one trial failed at iteration 3 with its checkpoints (resumable from the 3rd)."""
    space = {"go": str(results_dir.parent / "go")}
    rs = ts.run(counts_to_six, space=space, name=name, verbose=0)
    assert rs.trials[0].status is ts.TrialStatus.ERROR and rs.trials[0].iteration == 3
    return space


def _victim(tmp_path):
    """A folder of the user's, outside every experiment folder, with a file in it."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("precious")
    return victim


def _sql(folder, statement, *args):
    db = sqlite3.connect(os.path.join(folder, "experiment.db"))
    with db:
        db.execute(statement, args)
    db.close()


# -- 1. links planted in a trial folder ------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["precious.txt", "not_yet.txt"])
def test_a_resume_never_writes_the_trial_output_through_a_planted_link(results_dir, tmp_path, caplog, target):
    """``trials/trial_00001/output.log`` linked to a file of the user's (one there, one not made yet): the resumed
    trial's prints go into a real ``output.log`` in its folder; the link's target is neither written nor made."""
    space = _failed_at_three(results_dir, "linked_log")
    (results_dir.parent / "go").write_text("")
    victim = _victim(tmp_path)
    log_file = results_dir / "linked_log" / "trials" / "trial_00001" / "output.log"
    log_file.unlink()
    os.symlink(victim / target, log_file)
    before = _snapshot(victim)
    caplog.set_level(logging.WARNING, logger="tunesmith")
    rs = ts.run(counts_to_six, space=space, name="linked_log", resume=True, restart_errored="resume", verbose=0)
    assert rs.trials[0].status is ts.TrialStatus.TERMINATED and rs.trials[0].iteration == 6
    assert _snapshot(victim) == before and not (victim / "not_yet.txt").exists()
    assert not log_file.is_symlink() and "hello from iteration 3" in log_file.read_text()
    assert any(str(log_file) in r.getMessage() for r in caplog.records)  # the warning names the link it removed


def test_a_trial_working_in_its_folder_never_writes_through_a_planted_link(results_dir, tmp_path):
    """The trial's working folder is its trial folder: a ``metrics.txt`` (a file the user's own code writes
    there) and a ``logs`` folder planted as links to the user's files are removed on resume, so the trial's
    ``open("metrics.txt", "w")`` makes a file in the trial folder."""
    space = _failed_at_three(results_dir, "linked_cwd")
    (results_dir.parent / "go").write_text("")
    victim = _victim(tmp_path)
    trial = results_dir / "linked_cwd" / "trials" / "trial_00001"
    (trial / "metrics.txt").unlink()
    os.symlink(victim / "precious.txt", trial / "metrics.txt")
    os.symlink(victim, trial / "logs")
    before = _snapshot(victim)
    rs = ts.run(counts_to_six, space=space, name="linked_cwd", resume=True, restart_errored="resume", verbose=0)
    assert rs.trials[0].status is ts.TrialStatus.TERMINATED
    assert _snapshot(victim) == before
    assert not (trial / "metrics.txt").is_symlink() and (trial / "metrics.txt").read_text() == "trial wrote this at 3"
    assert not os.path.lexists(trial / "logs")  # the link went, never what it pointed to
    assert (victim / "precious.txt").read_text() == "precious"


@pytest.mark.parametrize("linked", ["tensorboard", "tensorboard/trial_00001"])
def test_a_resume_never_writes_tensorboard_events_through_a_planted_link(results_dir, tmp_path, caplog, linked):
    """``tensorboard`` (or a trial's run folder in it) linked to a folder of the user's: the resumed experiment's
    ``TensorBoardLogger`` wrote its event files there (``trial_00001/events.out.tfevents...``). The link is removed as
    the trial folders' are, and the events go into the experiment folder."""
    space = _failed_at_three(results_dir, "linked_tb")
    (results_dir.parent / "go").write_text("")
    victim = _victim(tmp_path)
    link = results_dir / "linked_tb" / linked
    link.parent.mkdir(exist_ok=True)
    os.symlink(victim, link)
    before = _snapshot(victim)
    caplog.set_level(logging.WARNING, logger="tunesmith")
    rs = ts.run(counts_to_six, space=space, name="linked_tb", resume=True, restart_errored="resume", verbose=0,
                callbacks=[ts.TensorBoardLogger()])
    assert rs.trials[0].status is ts.TrialStatus.TERMINATED
    assert _snapshot(victim) == before and os.listdir(victim) == ["precious.txt"]
    run_dir = results_dir / "linked_tb" / "tensorboard" / "trial_00001"
    assert not link.is_symlink() and any(name.startswith("events.out.tfevents") for name in os.listdir(run_dir))
    assert any(str(link) in r.getMessage() for r in caplog.records)  # the warning names the link it removed


def plants_its_own_log_link(config):
    """Puts a link where its ``output.log`` goes before it prints its first byte (what a folder someone else
    made, or anything else, may hold there when the worker opens the log)."""
    os.symlink(config["victim"], os.path.join(ts.get_trial_dir(), "output.log"))
    print("printed after the link was made")
    ts.report({"x": 1})


def test_the_worker_replaces_a_link_in_the_output_logs_place_by_a_file(results_dir, tmp_path):
    victim = _victim(tmp_path)
    rs = ts.run(plants_its_own_log_link, space={"victim": str(victim / "precious.txt")}, name="own_link", verbose=0)
    assert rs.trials[0].status is ts.TrialStatus.TERMINATED
    assert (victim / "precious.txt").read_text() == "precious"
    log_file = results_dir / "own_link" / "trials" / "trial_00001" / "output.log"
    assert not log_file.is_symlink() and "printed after the link was made" in log_file.read_text()


def writes_deeper(config):
    """``counts_to_six`` that also writes in folders of its working folder (its trial folder), as a training
    script writes ``artifacts/`` or ``runs/``."""
    ck = ts.get_checkpoint()
    start = ck.load() if ck else 0
    for sub in ("artifacts", "somedir"):
        os.makedirs(sub, exist_ok=True)
    with open(os.path.join("artifacts", "x"), "w") as f:
        f.write(f"trial wrote this at {start}")
    with open(os.path.join("somedir", "new.txt"), "w") as f:
        f.write(f"new at {start}")
    for i in range(start, 6):
        ts.report({"i": i + 1}, checkpoint=ts.Checkpoint.from_state(i + 1))
        if i + 1 == 3 and not os.path.exists(config["go"]):
            raise RuntimeError("stopped at 3")


def test_a_resume_removes_links_deeper_in_a_trial_folder_that_lead_out_of_it(results_dir, tmp_path, caplog):
    """Links below the top of a trial folder: ``artifacts/x`` to a file of the user's, ``somedir`` to a folder of
    the user's (which holds a link of its own, never looked at), one whose name holds a newline, and a chain that
    leaves the trial folder through a second link, are removed (never their targets), with a warning that names
    them escaped; a link the trial could have made itself and that stays in its folder (``latest -> y``, as W&B
    makes ``wandb/latest-run``), is kept. The resumed trial writes real files."""
    space = {"go": str(results_dir.parent / "go")}
    rs = ts.run(writes_deeper, space=space, name="deep", verbose=0)
    assert rs.trials[0].status is ts.TrialStatus.ERROR and rs.trials[0].iteration == 3
    (results_dir.parent / "go").write_text("")
    victim = _victim(tmp_path)
    os.symlink(victim / "precious.txt", victim / "own_link")  # the user's own link, outside the experiment
    trial = results_dir / "deep" / "trials" / "trial_00001"
    (trial / "artifacts" / "x").unlink()
    os.symlink(victim / "precious.txt", trial / "artifacts" / "x")
    for name in os.listdir(trial / "somedir"):
        (trial / "somedir" / name).unlink()
    (trial / "somedir").rmdir()
    os.symlink(victim, trial / "somedir")
    (trial / "artifacts" / "deeper").mkdir()
    os.symlink("/etc", trial / "artifacts" / "deeper" / "evil\nWARNING fake")
    os.symlink("hop", trial / "artifacts" / "deeper" / "chain")  # chain -> hop -> the user's folder
    os.symlink(victim, trial / "artifacts" / "deeper" / "hop")
    (trial / "artifacts" / "y").write_text("the trial's")
    os.symlink("y", trial / "artifacts" / "latest")  # stays in the trial folder: kept
    os.symlink(str(trial / "artifacts"), trial / "artifacts" / "deeper" / "up")  # absolute, still inside: kept
    before = _snapshot(victim)
    caplog.set_level(logging.WARNING, logger="tunesmith")
    rs = ts.run(writes_deeper, space=space, name="deep", resume=True, restart_errored="resume", verbose=0)
    assert rs.trials[0].status is ts.TrialStatus.TERMINATED and rs.trials[0].iteration == 6
    assert _snapshot(victim) == before and os.path.islink(victim / "own_link")
    assert sorted(os.listdir(victim)) == ["own_link", "precious.txt"]
    assert not (trial / "artifacts" / "x").is_symlink()
    assert (trial / "artifacts" / "x").read_text() == "trial wrote this at 3"
    assert not (trial / "somedir").is_symlink() and (trial / "somedir" / "new.txt").read_text() == "new at 3"
    assert sorted(os.listdir(trial / "artifacts" / "deeper")) == ["up"]
    assert os.readlink(trial / "artifacts" / "latest") == "y"
    message = "\n".join(r.getMessage() for r in caplog.records if "symbolic link" in r.getMessage())
    assert str(trial / "somedir") in message and "evil\\nWARNING fake" in message
    assert "\nWARNING fake" not in message  # a name cannot start a line of its own in the log
    assert "5 symbolic link(s)" in message


def test_a_resume_walks_no_link_and_deletes_nothing_outside_the_folder(results_dir, tmp_path):
    """A linked folder in a trial folder is removed as a link: nothing under its target is listed or removed,
    links there included. Every link in ``checkpoints/`` goes, even one to a checkpoint beside it; the inside of a
    checkpoint folder is not walked."""
    from tunesmith._layout import unlink_planted_links

    victim = _victim(tmp_path)
    (victim / "inner").mkdir()
    os.symlink("/etc/hostname", victim / "inner" / "a_link")
    exp = results_dir / "walk"
    trial = exp / "trials" / "trial_00001"
    (trial / "a" / "b").mkdir(parents=True)
    os.symlink(victim, trial / "a" / "b" / "linked")
    os.symlink(victim / "inner", trial / "a" / "inner")
    os.symlink("b", trial / "a" / "kept")  # a folder link inside: kept, and not walked into
    ckpts = trial / "checkpoints"
    (ckpts / "checkpoint_000001").mkdir(parents=True)
    os.symlink("checkpoint_000001", ckpts / "checkpoint_000002")  # where the driver renames one: removed
    os.symlink(victim, ckpts / "checkpoint_000001" / "sub")  # a checkpoint's inside is not walked (readers refuse it)
    removed = unlink_planted_links(str(exp))
    assert sorted(removed) == [str(trial / "a" / "b" / "linked"), str(trial / "a" / "inner"),
                               str(ckpts / "checkpoint_000002")]
    assert os.path.islink(victim / "inner" / "a_link") and (victim / "precious.txt").read_text() == "precious"
    assert os.path.islink(trial / "a" / "kept") and os.path.islink(ckpts / "checkpoint_000001" / "sub")


@pytest.mark.timeout(120)
def test_a_resume_removes_fifos_and_sockets_in_a_trial_folder(results_dir, tmp_path, caplog):
    """A FIFO planted where the trial writes (``artifacts/x``, which the resumed trial opens for writing: it would
    wait there for a reader forever) and a socket and a FIFO elsewhere in the trial folder are removed with a
    warning naming them; the trial writes a real file and finishes."""
    import socket

    space = {"go": str(results_dir.parent / "go")}
    rs = ts.run(writes_deeper, space=space, name="fifo", verbose=0)
    assert rs.trials[0].iteration == 3
    (results_dir.parent / "go").write_text("")
    trial = results_dir / "fifo" / "trials" / "trial_00001"
    (trial / "artifacts" / "x").unlink()
    os.mkfifo(trial / "artifacts" / "x")
    os.mkfifo(trial / "pipe")
    listener = socket.socket(socket.AF_UNIX)
    sock = trial / "somedir" / "s"
    here = os.getcwd()
    os.chdir(sock.parent)  # bound by a relative name: the full path may pass AF_UNIX's 108 bytes (pytest-xdist's)
    try:
        listener.bind(sock.name)
    finally:
        os.chdir(here)
        listener.close()
    caplog.set_level(logging.WARNING, logger="tunesmith")
    rs = ts.run(writes_deeper, space=space, name="fifo", resume=True, restart_errored="resume", verbose=0)
    assert rs.trials[0].status is ts.TrialStatus.TERMINATED and rs.trials[0].iteration == 6
    assert (trial / "artifacts" / "x").read_text() == "trial wrote this at 3"
    assert not (trial / "pipe").exists() and not os.path.lexists(sock)
    message = "\n".join(r.getMessage() for r in caplog.records if "FIFO" in r.getMessage())
    assert "removed 3 FIFO(s)" in message and str(trial / "pipe") in message, message


# -- 2. checkpoint paths in the store -----------------------------------------------------------------------------
def _two_experiments(results_dir):
    """The user's experiment ``secret`` (its checkpoints signed by the user's key) and a folder ``attacker`` beside
    it, both resumable."""
    _failed_at_three(results_dir, "secret")
    space = _failed_at_three(results_dir, "attacker")
    return space


_OUTSIDE = {
    "up_to_the_victim": "../../victim",
    "into_another_experiment": "../secret/trials/trial_00001/checkpoints/checkpoint_000003",
    "up_from_inside": "trials/trial_00001/checkpoints/../../../../secret/trials/trial_00001/checkpoints/"
                      "checkpoint_000003",
    "the_trials_folder": "trials/trial_00001/checkpoints/..",
    "absolute_elsewhere": "{victim}",
    "absolute_with_a_checkpoint_tail_then_up": "/x/trials/trial_00001/checkpoints/c/../../../../../secret",
    "not_a_url": "../../victim/a://b",
}


@pytest.mark.parametrize("column", ["trial", "index"])
@pytest.mark.parametrize("case", sorted(_OUTSIDE))
def test_a_stored_checkpoint_path_outside_the_folder_is_a_store_error(results_dir, tmp_path, case, column):
    """A checkpoint path (the trial's row or the checkpoint index) that leaves the experiment's
    ``trials/<trial>/checkpoints/``: readers and a resume refuse it naming the store, the trial and the path;
    nothing of the user's other experiment is read or written."""
    space = _two_experiments(results_dir)
    victim = _victim(tmp_path)
    stored = _OUTSIDE[case].format(victim=victim)
    folder = results_dir / "attacker"
    if column == "trial":
        _sql(folder, "UPDATE trials SET checkpoint = ? WHERE id = 1", stored)
    else:
        _sql(folder, "UPDATE checkpoints SET path = ? WHERE trial_id = 1 AND iteration = 3", stored)
    store = str(folder / "experiment.db")
    secret_before = _snapshot(results_dir / "secret")

    rs = ts.load(str(folder))
    with pytest.raises(ts.StoreError) as e:
        rs.trials if column == "trial" else rs.get_best(metric="i", mode="max", scope="all")
    message = str(e.value)
    assert store in message and "trial 1" in message and repr(stored) in message
    assert "trials/<trial>/checkpoints/" in message  # what was expected

    (results_dir.parent / "go").write_text("")
    with pytest.raises(ts.StoreError) as e:
        ts.run(counts_to_six, space=space, name="attacker", resume=True, restart_errored="resume", verbose=0)
    assert store in str(e.value) and repr(stored) in str(e.value)
    assert _snapshot(results_dir / "secret") == secret_before
    assert (victim / "precious.txt").read_text() == "precious"
    assert not (folder / "trials" / "trial_00001" / "checkpoints" / "checkpoint_000004").exists()


def test_checkpoint_paths_that_stay_inside_are_read_as_before(results_dir, tmp_path):
    """What the store legitimately holds: a path relative to the folder, an absolute one of a store written before
    paths were relative (re-rooted onto this folder), a URL (``RayBackend(storage=...)``): all read."""
    _failed_at_three(results_dir, "fine")
    folder = results_dir / "fine"
    own = str(folder / "trials" / "trial_00001" / "checkpoints" / "checkpoint_000003")
    _sql(folder, "UPDATE trials SET checkpoint = ? WHERE id = 1",
         "/old/place/fine/trials/trial_00001/checkpoints/checkpoint_000003")
    _sql(folder, "UPDATE checkpoints SET path = ? WHERE trial_id = 1 AND iteration = 2",
         "s3://bucket/fine-0123abcd/trials/trial_00001/checkpoints/checkpoint_000002")
    rs = ts.load(str(folder))
    assert rs.trials[0].checkpoint.path == own and rs.trials[0].checkpoint.load() == 3
    paths = [p for _it, p in rs._store.checkpoints(1)]
    assert paths == [str(folder / "trials" / "trial_00001" / "checkpoints" / "checkpoint_000001"),
                     "s3://bucket/fine-0123abcd/trials/trial_00001/checkpoints/checkpoint_000002", own]


# -- 3. and 4. values a store cannot hold --------------------------------------------------------------------------
_DEEP = '{"a":' * 5000 + "1" + "}" * 5000
_DEEP_LIST = "[" * 100000 + "]" * 100000


@pytest.mark.parametrize(("where", "statement", "value", "named"), [
    ("config", "UPDATE trials SET config = ? WHERE id = 1", _DEEP, "trial 1's config"),
    ("config_list", "UPDATE trials SET config = ? WHERE id = 1", _DEEP_LIST, "trial 1's config"),
    ("last_result", "UPDATE trials SET last_result = ? WHERE id = 1", _DEEP, "trial 1's last_result"),
    ("spec", "UPDATE experiment SET value = ? WHERE key = 'spec'", _DEEP, "'spec'"),
    ("results", "UPDATE results SET metrics = ? WHERE trial_id = 1 AND iteration = 2", _DEEP,
     "trial 1's result of iteration 2"),
    ("checkpoint_blob", "UPDATE trials SET checkpoint = ? WHERE id = 1", b"\x00\xff", "trial 1's checkpoint"),
    ("checkpoint_number", "UPDATE checkpoints SET path = ? WHERE trial_id = 1 AND iteration = 2", 5,
     "trial 1's checkpoint"),
])
def test_a_value_no_reader_can_decode_is_a_store_error_naming_it(results_dir, where, statement, value, named):
    """JSON nested deeper than Python decodes, a checkpoint path that is not text: a ``StoreError`` naming the
    store file and the value (from ``ts.load``, ``tunesmith show``/``export``, a warm start), never a
    RecursionError or a TypeError."""
    _failed_at_three(results_dir, "damaged")
    folder = results_dir / "damaged"
    _sql(folder, statement, value)
    store = str(folder / "experiment.db")

    def read():
        rs = ts.load(str(folder))
        assert rs.trials
        rs.dataframe(all_results=True)
        rs._store.checkpoints(1)

    with pytest.raises(ts.StoreError) as e:
        read()
    assert store in str(e.value) and named in str(e.value), str(e.value)

    for command in (["show", "damaged"], ["export", "damaged", "--to", str(results_dir.parent / "out")]):
        res = CliRunner().invoke(cli, command)
        if res.exit_code == 0:  # a command that reads no such value
            continue
        assert store in res.output and "RecursionError" not in res.output and "TypeError" not in res.output, \
            res.output

    if where in ("results", "checkpoint_number"):
        return  # a warm start reads the trials' rows and the spec, not these
    with pytest.raises(ts.StoreError) as e:  # a warm start from it
        ts.run(counts_to_six, space={"go": "x"}, name="warm", num_samples=1, verbose=0, warm_start=[str(folder)],
               metric="i", mode="max")
    assert store in str(e.value)



def test_a_checkpoint_read_through_a_linked_trial_folder_is_refused(results_dir):
    """The stored path was a plain trials/trial_00001/checkpoints/checkpoint_000003, but trials/trial_00001 was
    a link to the user's other experiment's trial: ts.load(folder).best.checkpoint.load() unpickled that
    experiment's state (signed by the user's own key). A resume removes such links first; a reader did not."""
    import shutil

    _two_experiments(results_dir)
    trial = results_dir / "attacker" / "trials" / "trial_00001"
    shutil.rmtree(trial)
    os.symlink(results_dir / "secret" / "trials" / "trial_00001", trial)
    checkpoint = ts.load(str(results_dir / "attacker")).trials[0].checkpoint
    with pytest.raises(CheckpointError, match="symbolic link"):
        checkpoint.load()
    assert ts.load(str(results_dir / "secret")).trials[0].checkpoint.load() == 3  # the user's own, as before
