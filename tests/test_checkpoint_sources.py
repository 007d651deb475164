"""What ``Checkpoint.from_dir`` and ``Checkpoint.from_state`` are given: a folder that holds what cannot be
copied, a folder gone by ``report()`` time, the trial's own folder, a state that cannot be pickled. Each is
copied faithfully or refused with a ``CheckpointError`` that names what and why, never a raw ``OSError`` deep
in a walk and never an empty checkpoint reported as a success."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading

import pytest

import tunesmith as ts
from tunesmith import checkpoint as ck


def _written(tmp_path):
    """The checkpoints (and temporary folders) left in ``tmp_path / "ckpts"``."""
    folder = tmp_path / "ckpts"
    return sorted(os.listdir(folder)) if folder.exists() else []


def _source(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "w.bin").write_bytes(b"weights")
    return src


# -- the trial's own folder: the copy never descends into where it is written -------------------------------------
def checkpoint_the_trial_folder(config):
    where = "." if config["where"] == "cwd" else ts.get_trial_dir()
    for i in range(3):
        with open("model.bin", "wb") as f:
            f.write(b"x" * (i + 1))
        ts.report({"loss": 1.0 / (i + 1)}, checkpoint=ts.Checkpoint.from_dir(where))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("where", ["cwd", "get_trial_dir"])
def test_from_dir_of_the_trial_folder_leaves_its_checkpoints_folder_out(results_dir, where):
    # the copy walked into checkpoints/.tmp_checkpoint_..., its own destination, copying itself into itself
    # until: OSError: [Errno 36] File name too long
    result = ts.run(checkpoint_the_trial_folder, {"where": where}, num_samples=1, verbose=0)
    t = result.trials[0]
    assert t.error is None and t.status == ts.TrialStatus.TERMINATED, t.error
    folders = [path for _, path in result._store.checkpoints(t.id)]
    assert len(folders) == 3
    for i, path in enumerate(folders):
        files = ck.verify(path)["files"]
        assert "model.bin" in files and not [f for f in files if f.split(os.sep)[0] == "checkpoints"], files
        assert open(os.path.join(path, "model.bin"), "rb").read() == b"x" * (i + 1)
    assert not [n for n in os.listdir(os.path.join(t.path, "checkpoints")) if n.startswith(".tmp")]


def test_from_dir_of_a_folder_holding_the_checkpoints_folder_copies_the_rest(tmp_path):
    src = _source(tmp_path)
    (src / "sub").mkdir()
    (src / "sub" / "cfg.txt").write_text("c")
    first = ck.write(ts.Checkpoint.from_dir(str(src)), str(src / "ckpts"), 1)
    (src / "later").symlink_to(src / "ckpts", target_is_directory=True)  # reached through a link: still out
    second = ck.write(ts.Checkpoint.from_dir(str(src)), str(src / "ckpts"), 2)
    assert sorted(ck.verify(first)["files"]) == ["sub/cfg.txt", "w.bin"]
    assert sorted(ck.verify(second)["files"]) == ["sub/cfg.txt", "w.bin"]
    assert sorted(os.listdir(src / "ckpts")) == ["checkpoint_000001", "checkpoint_000002"]


# -- a folder gone by report() time ------------------------------------------------------------------------------
def test_from_dir_of_a_folder_deleted_before_it_is_written_is_an_error_naming_it(tmp_path):
    src = _source(tmp_path)
    c = ts.Checkpoint.from_dir(str(src))
    shutil.rmtree(src)
    with pytest.raises(ck.CheckpointError) as caught:
        ck.write(c, str(tmp_path / "ckpts"), 1)
    assert str(src) in str(caught.value) and "no longer exists" in str(caught.value), caught.value
    assert _written(tmp_path) == []  # no empty checkpoint, no temporary folder


def report_a_temporary_folder_after_it_closed(config):
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "model.pt"), "wb") as f:
            f.write(b"weights")
        checkpoint = ts.Checkpoint.from_dir(d)
    ts.report({"loss": 1.0}, checkpoint=checkpoint)


@pytest.mark.timeout(120)
def test_a_trial_reporting_a_folder_gone_by_then_fails_and_stores_no_checkpoint(results_dir):
    # it wrote a checkpoint holding only manifest.json, and the trial ended TERMINATED
    result = ts.run(report_a_temporary_folder_after_it_closed, num_samples=1, verbose=0)
    t = result.trials[0]
    assert t.status == ts.TrialStatus.ERROR, t.status
    assert "CheckpointError" in t.error and "no longer exists" in t.error, t.error
    assert t.checkpoint is None and list(result._store.checkpoints(t.id)) == []


# -- what cannot be copied: named, with the rule -----------------------------------------------------------------
@pytest.mark.timeout(20)
@pytest.mark.parametrize("odd, rule", [
    ("socket", "is a socket, not a regular file"),
    ("dangling_link", "is a link to nothing"),
    ("link_loop", "is a link that never reaches a file"),
    ("fifo", "is a FIFO, not a regular file"),
])
def test_from_dir_refuses_an_entry_it_cannot_copy_naming_it_and_the_rule(tmp_path, monkeypatch, odd, rule):
    # a socket was a raw OSError (ENXIO), a dangling link a raw FileNotFoundError
    src = _source(tmp_path)
    (src / "sub").mkdir()
    monkeypatch.chdir(src / "sub")  # a socket's path must be short: bound by its relative name
    held = []
    if odd == "socket":
        s = socket.socket(socket.AF_UNIX)
        held.append(s)
        s.bind("odd")
    elif odd == "dangling_link":
        os.symlink(tmp_path / "nothing_here", "odd")
    elif odd == "link_loop":
        os.symlink("odd2", "odd")
        os.symlink("odd", "odd2")
    else:
        os.mkfifo("odd")
    try:
        with pytest.raises(ck.CheckpointError) as caught:
            ck.write(ts.Checkpoint.from_dir(str(src)), str(tmp_path / "ckpts"), 1)
    finally:
        for s in held:
            s.close()
    message = str(caught.value)
    assert f"{os.path.join('sub', 'odd')} {rule}" in message and "from_dir" in message, message
    assert _written(tmp_path) == []


@pytest.mark.timeout(20)
def test_from_dir_refuses_a_link_cycle_through_folders_outside_the_source(tmp_path):
    # src/x -> o1, o1/y -> o2, o2/z -> o1: no link points at the source or its ancestors, and the walk went on
    # to x/y/z/y/z/... until ELOOP (a raw OSError)
    src = _source(tmp_path)
    for name in ("o1", "o2"):
        (tmp_path / name).mkdir()
    (tmp_path / "o1" / "f.txt").write_text("o1")
    (src / "x").symlink_to(tmp_path / "o1", target_is_directory=True)
    (tmp_path / "o1" / "y").symlink_to(tmp_path / "o2", target_is_directory=True)
    (tmp_path / "o2" / "z").symlink_to(tmp_path / "o1", target_is_directory=True)
    with pytest.raises(ck.CheckpointError) as caught:
        ck.write(ts.Checkpoint.from_dir(str(src)), str(tmp_path / "ckpts"), 1)
    message = str(caught.value)
    assert f"{os.path.join('x', 'y', 'z')} links to a folder it is inside" in message, message
    assert str(tmp_path / "o1") in message, message
    assert _written(tmp_path) == []


def test_from_dir_copies_the_same_outside_folder_linked_twice(tmp_path):
    # two links to one folder are no loop: each is copied by content
    src = _source(tmp_path)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "vocab.txt").write_text("a b")
    (src / "a").symlink_to(tmp_path / "shared", target_is_directory=True)
    (src / "b").symlink_to(tmp_path / "shared", target_is_directory=True)
    path = ck.write(ts.Checkpoint.from_dir(str(src)), str(tmp_path / "ckpts"), 1)
    assert sorted(ck.verify(path)["files"]) == ["a/vocab.txt", "b/vocab.txt", "w.bin"]


# -- a state that cannot be pickled ------------------------------------------------------------------------------
class _Trainer:
    def __init__(self):
        self.step = 3
        self.optimiser = {"lr": 0.1, "guard": threading.Lock()}


@pytest.mark.parametrize("state, part", [
    ({"model": [1], "lock": threading.Lock()}, "state['lock']"),
    ({"trainer": _Trainer()}, "state['trainer'].optimiser['guard']"),
    ([1, (2, (i for i in range(3)))], "state[1][1]"),
])
def test_from_state_of_an_object_that_cannot_be_pickled_names_the_part(tmp_path, state, part):
    # a raw TypeError: cannot pickle '_thread.lock' object, naming neither from_state nor the part
    with pytest.raises(ck.CheckpointError) as caught:
        ck.write(ts.Checkpoint.from_state(state), str(tmp_path / "ckpts"), 1)
    message = str(caught.value)
    assert "Checkpoint.from_state" in message and "cannot be pickled" in message, message
    assert f"{part} (" in message and "cannot pickle" in message, message
    assert _written(tmp_path) == []


def report_a_lock(config):
    ts.report({"loss": 1.0}, checkpoint=ts.Checkpoint.from_state({"lock": threading.Lock()}))


@pytest.mark.timeout(120)
def test_a_trial_reporting_a_state_that_cannot_be_pickled_fails_naming_it(results_dir):
    result = ts.run(report_a_lock, num_samples=1, verbose=0)
    t = result.trials[0]
    assert t.status == ts.TrialStatus.ERROR and "CheckpointError" in t.error, t.error
    assert "state['lock']" in t.error and "_thread.lock" in t.error, t.error
    assert json.dumps(t.last_result) == "{}"  # the result was not stored without its checkpoint
