"""A damaged checkpoint is never loaded: the trial restarts from the one before, with a warning."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
import tempfile
import textwrap

import pytest

import tunesmith as ts
from tunesmith.checkpoint import STATE_FILE

pytestmark = pytest.mark.timeout(120)


def damages_its_latest_checkpoint(config):
    ck = ts.get_checkpoint()
    start = ck.load() if ck else 0
    for i in range(start, 6):
        ts.report({"i": i + 1}, checkpoint=ts.Checkpoint.from_state(i + 1))
        if ck is None and i + 1 == 4:
            # the disk damages the checkpoint just written (bytes flipped), then the trial crashes
            folder = os.path.join(ts.get_trial_dir(), "checkpoints")
            latest = sorted(n for n in os.listdir(folder) if not n.startswith("."))[-1]
            with open(os.path.join(folder, latest, STATE_FILE), "r+b") as f:
                f.seek(-1, os.SEEK_END)
                last = f.read(1)
                f.seek(-1, os.SEEK_END)
                f.write(bytes([last[0] ^ 0xFF]))
            raise RuntimeError("crash after a damaged write")


def test_retry_skips_a_damaged_checkpoint_for_the_previous_good_one(results_dir, caplog):
    caplog.set_level(logging.WARNING, logger="tunesmith")
    result = ts.run(damages_its_latest_checkpoint, max_failures=1, verbose=0)
    trial = result.trials[0]
    assert trial.status is ts.TrialStatus.TERMINATED and trial.num_failures == 1
    # restarted from iteration 3 (4's checkpoint is damaged): 4..6 replaced, never duplicated
    assert [h["i"] for h in result.history(trial.id)] == [1, 2, 3, 4, 5, 6]
    assert [h["training_iteration"] for h in result.history(trial.id)] == [1, 2, 3, 4, 5, 6]
    assert any("damaged checkpoint" in r.getMessage() and "iteration 4" in r.getMessage() for r in caplog.records)



def links_a_folder_of_its_latest_checkpoint(config):
    ck = ts.get_checkpoint()
    start = 0
    if ck is not None:
        with open(os.path.join(ck.as_dir(), "sub", "step.txt")) as f:
            start = int(f.read())
    for i in range(start, 6):
        with tempfile.TemporaryDirectory() as tmp:  # report copies it
            os.mkdir(os.path.join(tmp, "sub"))
            with open(os.path.join(tmp, "sub", "step.txt"), "w") as f:
                f.write(str(i + 1))
            ts.report({"i": i + 1, "start": start}, checkpoint=ts.Checkpoint.from_dir(tmp))
        if ck is None and i + 1 == 4:
            # the checkpoint just written gets its folder sub/ moved out and linked back (the same files,
            # checksums matching, no longer in the checkpoint's folder), then the trial crashes
            folder = os.path.join(ts.get_trial_dir(), "checkpoints")
            latest = os.path.join(folder, sorted(n for n in os.listdir(folder) if not n.startswith("."))[-1])
            os.rename(os.path.join(latest, "sub"), config["outside"])
            os.symlink(config["outside"], os.path.join(latest, "sub"), target_is_directory=True)
            raise RuntimeError("crash after a checkpoint's folder was linked out")


def test_retry_skips_a_checkpoint_whose_folder_is_a_link_for_the_previous_good_one(results_dir, caplog, tmp_path):
    caplog.set_level(logging.WARNING, logger="tunesmith")
    outside = tmp_path / "outside"
    result = ts.run(links_a_folder_of_its_latest_checkpoint, {"outside": str(outside)}, max_failures=1, verbose=0)
    trial = result.trials[0]
    assert trial.status is ts.TrialStatus.TERMINATED and trial.num_failures == 1, trial.error
    history = result.history(trial.id)
    assert [h["i"] for h in history] == [1, 2, 3, 4, 5, 6]
    assert [h["start"] for h in history] == [0, 0, 0, 3, 3, 3]  # restored from iteration 3, not through the link
    assert any("damaged checkpoint" in r.getMessage() and "iteration 4" in r.getMessage()
               and "sub/step.txt" in r.getMessage() and "symbolic link (sub)" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert (outside / "step.txt").read_text() == "4"  # the linked folder is not the checkpoint's: left alone


STALE = textwrap.dedent("""
    import os, signal, sys
    from filelock import FileLock
    lock = FileLock(os.path.join(sys.argv[1], ".driver.lock"))
    lock.acquire()
    with open(os.path.join(sys.argv[1], ".driver.pid"), "w") as f:
        f.write(str(os.getpid()))
    print("locked", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # dies holding the lock, leaving the pid file behind
""")


def test_a_stale_lock_from_a_dead_driver_is_taken_over(results_dir):
    ts.run(lambda c: ts.report({"loss": 1.0}), name="stale", verbose=0)
    folder = results_dir / "stale"
    proc = subprocess.run([sys.executable, "-c", STALE, str(folder)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9 and "locked" in proc.stdout
    assert (folder / ".driver.pid").exists()
    result = ts.run(lambda c: ts.report({"loss": 1.0}), name="stale", resume=True, verbose=0)
    assert result.status == "finished" and len(result.trials) == 1


def big_checkpoints(config):
    ck = ts.get_checkpoint()
    start = ck.load()["i"] if ck else 0
    for i in range(start, 6):
        ts.report({"i": i + 1}, checkpoint=ts.Checkpoint.from_state({"i": i + 1, "blob": os.urandom(1 << 20)}))


def test_a_full_disk_is_a_clear_error_and_the_experiment_resumes(tiny_disk):
    result = ts.run(big_checkpoints, name="full", storage_path=str(tiny_disk), keep=None, verbose=0)
    trial = result.trials[0]
    assert trial.status is ts.TrialStatus.ERROR
    assert "no space left on the device writing the checkpoint of iteration" in trial.error
    assert "then resume the experiment" in trial.error
    done = [h["i"] for h in result.history(trial.id)]
    assert done and done == list(range(1, len(done) + 1))  # what was stored is intact
    # the user frees space (here: a larger disk), then resumes from the latest good checkpoint
    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_disk)], check=True)
    result = ts.run(big_checkpoints, name="full", storage_path=str(tiny_disk), resume=True,
                    restart_errored="resume", verbose=0)
    trial = result.trials[0]
    assert trial.status is ts.TrialStatus.TERMINATED
    assert [h["i"] for h in result.history(trial.id)] == [1, 2, 3, 4, 5, 6]
    assert trial.checkpoint.load()["i"] == 6


def big_metrics(config):
    for i in range(400):  # about 20 MB of results: more than the tiny disk holds
        ts.report({"i": i + 1, "notes": os.urandom(25_000).hex()})


def test_a_full_disk_under_the_store_names_the_folder_to_resume_wherever_the_storage_is(tiny_disk):
    """The store's own write fails (SQLite: database or disk is full): the error says how to resume, by the
    experiment folder's path (a name alone would be looked for under the default storage folder, not here)."""
    from click.testing import CliRunner

    from tunesmith.cli import cli

    with pytest.raises(ts.StoreError, match="could not write experiment full's store") as caught:
        ts.run(big_metrics, name="full", storage_path=str(tiny_disk), verbose=0, file_loggers=False)
    command = str(caught.value).rsplit("then resume: ", 1)[1]
    assert shlex.split(command) == ["tunesmith", "resume", str(tiny_disk / "full")]
    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_disk)], check=True)
    shown = CliRunner().invoke(cli, ["show", shlex.split(command)[2]])  # the path finds it from anywhere
    assert shown.exit_code == 0 and "full" in shown.output, shown.output


def test_a_full_disk_under_a_script_run_names_the_command_that_resumes_it(tiny_disk, tmp_path):
    """A run started as ``python train.py`` stores its function as ``__main__:train``, which ``tunesmith resume
    PATH`` cannot import: the full-disk error named that command, which then refused, asking for ``--fn``. Now
    the error's command carries ``--fn train.py:train`` (as the Ctrl-C message does), and it resumes the run."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(f"""
        import tunesmith as ts

        def train(config):
            ck = ts.get_checkpoint()
            for i in range(ck.load() if ck else 0, 400):  # about 20 MB of results: more than the tiny disk holds
                ts.report({{"i": i + 1, "notes": "ab" * 25_000}}, checkpoint=ts.Checkpoint.from_state(i + 1))

        if __name__ == "__main__":
            ts.run(train, name="full", storage_path={str(tiny_disk)!r}, verbose=0)
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    first = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=100, env=env,
                           cwd=tmp_path)
    assert first.returncode != 0 and "StoreError" in first.stderr, first.stderr[-2000:]
    command = first.stderr.rsplit("then resume: ", 1)[1].splitlines()[0]
    assert shlex.split(command) == ["tunesmith", "resume", str(tiny_disk / "full"), "--fn", f"{script}:train"]
    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_disk)], check=True)
    tunesmith = os.path.join(os.path.dirname(sys.executable), "tunesmith")
    resumed = subprocess.run([tunesmith, *shlex.split(command)[1:]], capture_output=True, text=True,
                             timeout=100, env=env, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    (trial,) = ts.load(str(tiny_disk / "full")).trials
    assert trial.status is ts.TrialStatus.TERMINATED and trial.last_result["i"] == 400
