"""Experiment folders as users get them (copied, moved, shared) read by every reader: `ls`, `show`, `report -o`,
`export --to`, ``tunesmith.load`` and its ResultSet, the dashboard's pages. A reader of a folder whose experiment
no driver is running writes nothing in it: no file made, none touched (SQLite's ``-wal`` and ``-shm`` files
included)."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import urllib.request
from typing import Any

import pytest
from click.testing import CliRunner

import tunesmith as ts
import tunesmith.dashboard as dashboard
from tunesmith.cli import cli
from tunesmith.store.sqlite import Store

pytestmark = pytest.mark.timeout(120)

WAL, SHM = "experiment.db-wal", "experiment.db-shm"


def train(config: dict[str, Any]) -> None:
    for i in range(3):
        ts.report({"loss": config["x"] / (i + 1)}, checkpoint=ts.Checkpoint.from_state({"i": i}))


def snapshot(folder: Any) -> dict[str, Any]:
    """Every entry under ``folder`` (and the folder itself): its type, size, mtime and bytes; links not followed."""
    seen: dict[str, Any] = {}
    for path in [str(folder)] + [os.path.join(d, n) for d, dirs, files in os.walk(folder) for n in dirs + files]:
        st = os.lstat(path)
        digest = None
        if os.path.isfile(path) and not os.path.islink(path):
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        seen[os.path.relpath(path, folder)] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return seen


def read_everything(folder: Any, out: Any) -> list[int]:
    """Every reader of ``folder``, its outputs in ``out``; the number of trials each saw."""
    runner = CliRunner()
    counts = []
    for args in (["ls", "--storage-path", str(folder.parent), "--json"], ["show", str(folder)],
                 ["show", str(folder), "--json"], ["report", str(folder), "-o", str(out / "r.html")],
                 ["export", str(folder), "--to", str(out / "export")], ["show", str(folder), "--watch", "1"]):
        res = runner.invoke(cli, args)
        assert res.exit_code == 0, (args, res.output)
        if args[-1] == "--json" and args[0] == "show":
            counts.append(len(json.loads(res.output)["trials"]))
    rs = ts.load(str(folder))
    counts.append(len(rs.trials))
    rs.dataframe(all_results=True)
    rs.get_best(scope="all").checkpoint.load()
    rs.refresh()
    board = dashboard.start(str(folder.parent), folder.name)
    try:
        for page in ("api/experiments", f"api/e/{folder.name}/summary", f"api/e/{folder.name}/trials",
                     f"api/e/{folder.name}/t/1", f"api/e/{folder.name}/events"):
            with urllib.request.urlopen(board.url + page, timeout=30) as r:
                assert r.status == 200, page
    finally:
        board.stop()
    del rs
    return counts


@pytest.fixture
def finished(results_dir: Any) -> Any:
    ts.run(train, {"x": ts.grid([1.0, 2.0, 3.0])}, metric="loss", mode="min", name="theirs", verbose=0)
    return results_dir / "theirs"


@pytest.mark.parametrize("side_files", ["none", "both"])
def test_readers_of_a_copied_finished_experiment_write_nothing_in_it(finished: Any, tmp_path: Any,
                                                                   side_files: str) -> None:
    """A folder copied without SQLite's side files (an archive of the store alone, a copy that skipped them): every
    reader opened the store in a way that made ``experiment.db-wal`` and ``experiment.db-shm`` in it (`ls` of a
    folder of experiments did so in each), and left them; with them there, each read wrote into the -shm file."""
    copy = tmp_path / "shared" / "theirs"
    shutil.copytree(finished, copy)
    if side_files == "none":
        for side in (WAL, SHM):
            with contextlib.suppress(FileNotFoundError):
                os.remove(copy / side)
    else:  # as SQLite's usual reader leaves them (tunesmith's own did, the ResultSet a run returns included)
        with contextlib.closing(sqlite3.connect(f"file:{copy / 'experiment.db'}?mode=ro", uri=True)) as db:
            db.execute("SELECT COUNT(*) FROM trials").fetchall()
        assert os.path.getsize(copy / WAL) == 0 and (copy / SHM).is_file()
    before = snapshot(copy)
    out = tmp_path / "out"
    out.mkdir()
    assert read_everything(copy, out) == [3, 3]
    after = snapshot(copy)
    assert after == before, sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


def copied_mid_run(finished: Any, tmp_path: Any, *leave_out: str) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(a copy of ``finished`` made while a writer held a result in its log, the copy's snapshot before and after
    every reader read it (each saw the 3 trials and the log's value))."""
    writer = Store(str(finished / "experiment.db"))
    try:
        with writer.transaction() as db:
            writer.set_meta(db, "note", "only in the log")
        copy = tmp_path / "shared" / "theirs"
        shutil.copytree(finished, copy, ignore=shutil.ignore_patterns(*leave_out))
    finally:
        writer.close()
    assert os.path.getsize(copy / WAL) > 0 and (copy / SHM).exists() is not bool(leave_out)
    before = snapshot(copy)
    out = tmp_path / "out"
    out.mkdir()
    assert read_everything(copy, out) == [3, 3]
    assert ts.load(str(copy)).meta["note"] == "only in the log"
    return copy, before, snapshot(copy)


def test_readers_of_a_folder_copied_while_its_driver_wrote_read_its_log_and_change_no_file_but_the_shm(
        finished: Any, tmp_path: Any) -> None:
    """Copied mid-run (``cp -r`` while a driver wrote): results still in the write-ahead log, a -shm file beside it,
    no driver. They are read, no file is made and none changed but the -shm, where SQLite's reader of a log keeps
    its read marks (one opened read-only, ``readonly_shm``, would be the read-only one of a driver opened later in
    the same process: `tunesmith resume` loads the experiment first)."""
    _, before, after = copied_mid_run(finished, tmp_path)
    assert after.keys() == before.keys()
    assert [k for k in before if before[k] != after[k]] in ([], [SHM])
    assert after[SHM][1] == before[SHM][1]


def test_readers_of_a_log_copied_without_its_shm_read_it_and_write_nothing(finished: Any, tmp_path: Any,
                                                                          monkeypatch: Any) -> None:
    """Copied mid-run without the -shm file (copied file by file, or by a tool that skips it): SQLite reads the log
    only by making a -shm beside it, which every reader did (and left) in the folder. They read a private copy of
    the store and its log instead, and leave no copy behind."""
    # the readers' temporary folder, this test's alone (every reader here runs in this process; the machine's /tmp
    # has the copies other tests' readers hold at the moment, under pytest-xdist)
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    _, before, after = copied_mid_run(finished, tmp_path, SHM)
    assert after == before, sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    gc.collect()
    assert not [n for n in os.listdir(private_tmp) if n.startswith("tunesmith_store_")]


@pytest.mark.parametrize("writer_closed", [False, True])
def test_a_result_set_loaded_before_a_writer_came_reads_what_it_wrote(finished: Any, writer_closed: bool) -> None:
    """A ResultSet of a folder nobody was running, kept while a driver writes in it (a resume, running or done): its
    reads and its refresh() see what was written, as they did when every reader went through SQLite's -shm file.
    (Done: the log folded into the store file and gone, as before the load; the store file is not.)"""
    for side in (WAL, SHM):
        with contextlib.suppress(FileNotFoundError):
            os.remove(finished / side)
    rs = ts.load(str(finished))
    assert "note" not in rs.meta and len(rs.trials) == 3
    writer = Store(str(finished / "experiment.db"))
    try:
        with writer.transaction() as db:
            writer.set_meta(db, "note", "written after the load")
            db.execute("UPDATE trials SET status = 'ERROR', error = 'late' WHERE id = 2")
        if writer_closed:
            writer.close()
            assert not (finished / WAL).exists()
        assert rs.refresh().meta["note"] == "written after the load"
        assert rs.trial(2).error == "late"
    finally:
        writer.close()


def test_checkpoint_folders_are_made_under_the_umask_as_the_rest_of_the_folder(finished: Any) -> None:
    """Every checkpoint folder was 0700 (made as a temporary folder, then renamed into place) while everything else
    follows the umask: a colleague given the experiment folder read its store, but no checkpoint (and was told that
    each 'holds no state.pkl: it was made with from_dir')."""
    checkpoints = finished / "trials" / "trial_00001" / "checkpoints"
    made = sorted(p.name for p in checkpoints.iterdir())
    assert made == ["checkpoint_000001", "checkpoint_000002", "checkpoint_000003"]
    expected = {oct(os.stat(checkpoints).st_mode & 0o777)}
    assert {oct(os.stat(checkpoints / name).st_mode & 0o777) for name in made} == expected


def test_a_checkpoint_folder_this_user_cannot_read_is_named_so(finished: Any, tmp_path: Any) -> None:
    """A checkpoint folder another user made 0700 (every one was, before they followed the umask) could not be
    listed, and Checkpoint.load() said it 'holds no state.pkl: it was made with from_dir (...); use as_dir()'.
    Root reads any folder: as root the load runs as user 65534 (nobody), through setpriv(1)."""
    shared = tempfile.mkdtemp(dir="/tmp" if os.path.isdir("/tmp") else None)
    try:
        os.chmod(shared, 0o755)
        copy = os.path.join(shared, "theirs")
        shutil.copytree(finished, copy)
        folder = os.path.join(copy, "trials", "trial_00001", "checkpoints", "checkpoint_000003")
        os.chmod(folder, 0o700 if os.geteuid() == 0 else 0o000)
        code = ("import sys, tunesmith as ts\n"
                "try:\n    ts.load(sys.argv[1]).trial(1).checkpoint.load(trust_foreign_pickle=True)\n"
                "except ts.CheckpointError as e:\n    print(e)\n")
        command = [sys.executable, "-c", code, copy]
        if os.geteuid() == 0:
            if shutil.which("setpriv") is None:
                pytest.skip("no setpriv here: root reads any folder, and no other user can run the load")
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "HOME": shared})
        # (an interpreter under a folder that user may not enter, /root/.pyenv: its libpython is not found)
        cannot_run = ("Permission denied: '/", "error while loading shared libraries")
        if "No module named" in done.stderr or any(text in done.stderr for text in cannot_run) and not done.stdout:
            pytest.skip(f"user 65534 cannot run this tunesmith here: {done.stderr.strip()[-200:]}")
        assert done.stdout.strip() == (f"cannot read the checkpoint {folder}: this user may not list its folder "
                                       "(Permission denied); ask its owner to make it readable (chmod -R a+rX), "
                                       "or copy it"), (done.stdout, done.stderr)
    finally:
        shutil.rmtree(shared)
