"""Edges of the command line and of resume that a tester found: secrets in a refused resume's message and in a space
file's errors, the stored status of trials waiting for a worker when a resume is interrupted, the resume command
printed at Ctrl-C for another storage folder, renamed experiment folders, a resume refused on a damaged store, and
experiment folders on a read-only file system."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import textwrap
import uuid
from collections import Counter
from typing import Any

import pytest
from algorithm_helpers import CtrlCAfter
from click.testing import CliRunner

import tunesmith as ts
from tunesmith.cli import cli, load_target

pytestmark = pytest.mark.timeout(120)

SECRETS = ("sk-SECRET12345", "hunter2hunter2", "sk-OTHERSECRET9", "pw123456")
TRAIN = textwrap.dedent("""
    import os
    import time

    import tunesmith as ts

    def train(config):
        for i in range(1, 3):
            ts.report({"loss": config["lr"] / i})

    def steady(config):
        # runs until the test makes its "go" file (after the interruptions it needs); the sleep only paces it
        for i in range(1, 100_000):
            ts.report({"loss": 1.0 / i}, checkpoint=ts.Checkpoint.from_state({"i": i}) if i == 1 else None)
            if os.path.exists(config["go"]):
                return
            time.sleep(0.01)
""")


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def train_file(tmp_path: Any) -> Any:
    """A training file with a unique module name (its functions are stored as ``module:fn``)."""
    path = tmp_path / f"train_{uuid.uuid4().hex[:8]}.py"
    path.write_text(TRAIN)
    return path


class CtrlCOnceEach(ts.Callback):
    """SIGINT to the driver (a user's Ctrl-C) once each of ``n`` trials has reported."""

    def __init__(self, n: int) -> None:
        self.n, self.seen, self.sent = n, set(), False

    def on_trial_results(self, trial: Any, results: Any) -> None:
        self.seen.add(trial.id)
        if len(self.seen) >= self.n and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)


def _stored_statuses(exp_dir: Any) -> Counter[str]:
    return Counter(t.status.value for t in ts.load(str(exp_dir)).trials)


# -- 1. secrets ------------------------------------------------------------------------------------------------------
def test_resume_with_another_space_masks_secrets_of_both_spaces(train_file: Any, tmp_path: Any,
                                                               results_dir: Any) -> None:
    space = {"lr": ts.uniform(0.1, 1.0), "api_key": "sk-SECRET12345", "password": "hunter2hunter2"}
    ts.run(load_target(f"{train_file}:train"), space, metric="loss", mode="min", name="e1", verbose=0)
    other = tmp_path / "other.yaml"
    other.write_text("lr: {loguniform: [1e-3, 1e-1]}\napi_key: sk-OTHERSECRET9\npassword: hunter2hunter2\n")

    res = invoke("resume", "e1", f"{train_file}:train", "--space", str(other), "--verbose", "0")
    assert res.exit_code == 2, res.output
    assert "was run with another space" in res.output and "'api_key': '***'" in res.output
    assert "'__domain__': 'loguniform'" in res.output  # what differs is still shown
    assert not [s for s in SECRETS if s in res.output], res.output

    with pytest.raises(ts.ConfigError, match="another space") as info:  # the Python API's message too
        ts.run(load_target(f"{train_file}:train"), {**space, "lr": ts.uniform(0.2, 1.0)}, metric="loss",
               mode="min", name="e1", resume=True, verbose=0)
    assert not [s for s in SECRETS if s in str(info.value)], str(info.value)


@pytest.mark.parametrize(("text", "where"), [
    ("password: {choice: hunter2hunter2}\n", 'space["password"]: choice expected a list'),
    ('db: {url: {grid: "postgres://u:pw123456@h/db"}}\n', 'space["db"]["url"]: grid expected a list'),
    ('db: {url: {uniform: ["postgres://u:pw123456@h/db", 1]}}\n', 'space["db"]["url"]: uniform expected low'),
    ("password: {uniform: [1, 2, 3, hunter2hunter2]}\n", 'space["password"]: uniform takes [low, high]'),
    ("credentials: {choice: [a, {uniform: [hunter2hunter2, 1]}]}\n",
     'space["credentials"].options[1]: uniform expected low'),
])
def test_space_file_errors_mask_a_secret_value(train_file: Any, tmp_path: Any, text: str, where: str) -> None:
    space = tmp_path / "bad.yaml"
    space.write_text(text)
    res = invoke("run", f"{train_file}:train", "--space", str(space), "--metric", "loss", "--mode", "min",
                 "--verbose", "0")
    assert res.exit_code == 2, res.output
    assert where in res.output and "***" in res.output, res.output
    assert not [s for s in SECRETS if s in res.output], res.output


# -- 2. trials waiting for a worker when a resume is interrupted ----------------------------------------------------
def test_interrupted_resume_stores_the_trials_waiting_for_a_worker_pending(train_file: Any, tmp_path: Any,
                                                                           results_dir: Any) -> None:
    fn = load_target(f"{train_file}:steady")
    space = {"x": ts.grid([1, 2, 3]), "go": str(tmp_path / "go")}
    args = {"metric": "loss", "mode": "min", "name": "q", "verbose": 0}
    with pytest.raises(KeyboardInterrupt):  # the three run at once, and Ctrl-C pauses them
        ts.run(fn, space, resources={"cpu": 0.5}, callbacks=[CtrlCOnceEach(3)], **args)
    assert _stored_statuses(results_dir / "q") == {"PAUSED": 3}

    # resumed one at a time: one restarts, two wait for the free worker; Ctrl-C once the one runs
    with pytest.raises(KeyboardInterrupt):
        ts.run(fn, space, resources={"cpu": 0.5}, max_concurrent=1, callbacks=[CtrlCAfter(1)], resume=True,
               **args)
    rs = ts.load(str(results_dir / "q"))
    assert rs.status == "interrupted"
    assert _stored_statuses(results_dir / "q") == {"PAUSED": 1, "PENDING": 2}  # none RUNNING

    (tmp_path / "go").write_text("")
    rs = ts.run(fn, space, resources={"cpu": 0.5}, resume=True, **args)
    assert rs.status == "finished" and _stored_statuses(results_dir / "q") == {"TERMINATED": 3}


# -- 3. the resume command printed at Ctrl-C -------------------------------------------------------------------------
def test_the_resume_command_printed_at_ctrl_c_names_the_storage_path(train_file: Any, tmp_path: Any,
                                                                      caplog: Any) -> None:
    storage = tmp_path / "my store #1"
    fn = load_target(f"{train_file}:steady")
    space = {"go": str(tmp_path / "go")}
    with caplog.at_level(logging.WARNING, logger="tunesmith"), pytest.raises(KeyboardInterrupt):
        ts.run(fn, space, metric="loss", mode="min", name="t143", storage_path=str(storage), verbose=0,
               callbacks=[CtrlCAfter(1)])
    message = next(r.getMessage() for r in caplog.records if "interrupted; its results are stored" in r.getMessage())
    command = message.split("Resume with: ", 1)[1].split("  (or ", 1)[0]
    assert command == f"tunesmith resume t143 --storage-path {shlex.quote(str(storage))}", message
    assert f"storage_path={str(storage)!r}" in message

    (tmp_path / "go").write_text("")
    res = invoke(*shlex.split(command)[1:], "--fn", f"{train_file}:steady", "--verbose", "0")  # it works as printed
    assert res.exit_code == 0, res.output
    assert ts.load(str(storage / "t143")).status == "finished"


def test_the_resume_command_leaves_the_default_storage_path_out() -> None:
    from tunesmith._layout import storage_root
    from tunesmith._run import python_resume_hint, resume_command

    assert resume_command("t143", root=storage_root(None)) == "tunesmith resume t143"
    assert python_resume_hint("t143", storage_root(None)) == "tunesmith.run(..., name='t143', resume=True)"
    assert resume_command("-v2", root="/r s") == "tunesmith resume --storage-path '/r s' -- -v2"


# -- 4. a renamed experiment folder resumes, whatever its name -------------------------------------------------------
@pytest.mark.parametrize("new_name", ["my exp 日本", ".hidden", "-dash"])
@pytest.mark.parametrize("by", ["name", "path"])
def test_a_renamed_folder_resumes_whatever_its_name(train_file: Any, tmp_path: Any, results_dir: Any,
                                                   new_name: str, by: str) -> None:
    space = {"go": str(tmp_path / "go")}
    with pytest.raises(KeyboardInterrupt):
        ts.run(load_target(f"{train_file}:steady"), space, metric="loss", mode="min", name="orig", verbose=0,
               callbacks=[CtrlCAfter(1)])
    os.rename(results_dir / "orig", results_dir / new_name)
    (tmp_path / "go").write_text("")

    where = [new_name] if by == "name" else [str(results_dir / new_name)]
    res = invoke("resume", "--fn", f"{train_file}:steady", "--verbose", "0", "--", *where)
    assert res.exit_code == 0, res.output
    rs = ts.load(str(results_dir / new_name))
    assert rs.status == "finished" and rs.name == new_name
    assert sorted(os.listdir(results_dir)) == [new_name]  # nothing made beside it


@pytest.mark.parametrize("name", ["../orig", "a/b", "..", ""])
def test_a_resume_name_is_never_a_path(train_file: Any, results_dir: Any, name: str) -> None:
    ts.run(load_target(f"{train_file}:train"), {"lr": 0.5}, metric="loss", mode="min", name="orig", verbose=0)
    with pytest.raises(ts.ConfigError, match="name must be"):
        ts.run(load_target(f"{train_file}:train"), {"lr": 0.5}, metric="loss", mode="min", name=name, resume=True,
               storage_path=str(results_dir / "sub"), verbose=0)


# -- 5. a resume refused on a damaged store leaves the experiment as it was -----------------------------------------
def test_a_resume_that_fails_on_a_damaged_store_leaves_the_status(train_file: Any, results_dir: Any) -> None:
    # trial 1 is the best: `ls` reads its row, not the damaged one
    ts.run(load_target(f"{train_file}:train"), {"lr": ts.grid([0.1, 0.5, 0.9])}, metric="loss", mode="min",
           name="d1", verbose=0)
    db_path = results_dir / "d1" / "experiment.db"
    with contextlib.closing(sqlite3.connect(db_path)) as db, db:
        db.execute("UPDATE trials SET config = '[1' WHERE id = 2")
        events = db.execute("SELECT kind FROM events").fetchall()

    res = invoke("resume", "d1", f"{train_file}:train", "--verbose", "0")
    assert res.exit_code == 1 and "trial 2's config is not valid JSON" in res.output, res.output
    assert ts.load(str(results_dir / "d1")).status == "finished"
    listing = invoke("ls")
    assert "finished" in listing.output and "crashed" not in listing.output, listing.output
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        assert db.execute("SELECT kind FROM events").fetchall() == events  # no resume logged: nothing ran


# -- 6. an experiment folder on a read-only file system -------------------------------------------------------------
@pytest.fixture
def read_only(tmp_path: Any) -> Any:
    """(a folder, the same folder mounted read-only): a bind mount, torn down after the test. Root only (chmod does
    not stop root); skipped where it cannot be made."""
    source, mount = tmp_path / "rw", tmp_path / "ro"
    source.mkdir()
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a read-only bind mount needs root and mount(8)")
    made = subprocess.run(["mount", "--bind", str(source), str(mount)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {made.stderr.strip()}")
    try:
        ro = subprocess.run(["mount", "-o", "remount,bind,ro", str(mount)], capture_output=True, text=True)
        if ro.returncode != 0 or os.access(mount, os.W_OK) and _writable(mount):
            pytest.skip(f"cannot make the bind mount read-only: {ro.stderr.strip()}")
        yield source, mount
    finally:
        gc.collect()  # the readers' store connections the commands left to the collector
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=True)  # still busy: detached now, gone once closed


def _writable(folder: Any) -> bool:
    try:
        (folder / ".probe").write_text("")
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


def test_report_export_and_rm_on_a_read_only_folder_exit_2_naming_it(train_file: Any, read_only: Any) -> None:
    source, mount = read_only
    ts.run(load_target(f"{train_file}:train"), {"lr": 0.5}, metric="loss", mode="min", name="r1",
           storage_path=str(source), verbose=0)
    folder = mount / "r1"

    res = invoke("report", str(folder))
    assert res.exit_code == 2, res.output
    assert res.output == (f"error: cannot write {str(folder / 'report.html')!r}: Read-only file system; pass -o FILE "
                          "to write elsewhere\n")
    res = invoke("export", str(folder))
    assert res.exit_code == 2, res.output
    assert res.output == (f"error: cannot write {str(folder / 'trials')!r}: Read-only file system; pass --to DIR "
                          "to write elsewhere\n")
    res = invoke("rm", "r1", "--storage-path", str(mount), "--yes")
    assert res.exit_code == 2, res.output
    assert res.output.startswith(f"error: cannot remove experiment folder {folder}: Read-only file system"), res.output
    assert len(res.output.splitlines()) == 1 and (source / "r1" / "experiment.db").is_file()


@pytest.mark.parametrize("option, named", [
    (["--time-budget", "-5"], "--time-budget must be a positive number"),
    (["--max-concurrent", "0"], "--max-concurrent must be a positive integer"),
    (["--num-samples", "0"], "--num-samples must be a positive integer or -1"),
    (["--num-samples", "-1"], "--num-samples=-1 runs trials without limit: give --time-budget too"),
    (["--resources", "cpu=-1"], "--resources cpu must be a non-negative number"),
    (["--stop", "training_iteration=0"], "--stop training_iteration must be >= 1"),
])
def test_run_errors_name_the_command_line_option_not_the_python_parameter(train_file: Any, tmp_path: Any,
                                                                        option: list[str], named: str) -> None:
    result = CliRunner().invoke(cli, ["run", f"{train_file}:train", "--storage-path", str(tmp_path / "res"),
                                      "--verbose", "0", *option])
    assert result.exit_code == 2, result.output
    assert named in result.output, result.output
    assert not (tmp_path / "res").exists() or not any((tmp_path / "res").iterdir())


def test_resume_of_a_searcher_given_an_object_says_to_resume_from_python(train_file: Any, results_dir: Any) -> None:
    """An OptunaSearch given a sampler instance is stored with the sampler's repr: `tunesmith resume` rebuilt the
    searcher with that text and then blamed the user's argument ("sampler: expected one of ['tpe', ...] or an
    optuna.samplers.BaseSampler instance; got '<optuna.samplers._qmc.QMCSampler object at 0x...>'")."""
    optuna = pytest.importorskip("optuna")
    train = load_target(f"{train_file}:train")
    ts.run(train, {"lr": ts.uniform(0.1, 1.0)}, metric="loss", mode="min", num_samples=2, name="qmc", verbose=0,
           searcher=ts.OptunaSearch(sampler=optuna.samplers.QMCSampler(seed=0)))
    result = invoke("resume", "qmc", "--fn", f"{train_file}:train", "--storage-path", str(results_dir))
    assert result.exit_code == 2, result.output
    assert ("the experiment's searcher OptunaSearch was given sampler=<optuna.samplers._qmc.QMCSampler object at "
            in result.output), result.output
    assert "cannot be rebuilt from the command line; resume it from Python: tunesmith.run(" in result.output
    assert "expected one of" not in result.output


@pytest.mark.parametrize("name", ["my exp; rm -rf ~", "-dash"])
def test_the_resume_hint_for_a_store_without_a_function_is_quoted_for_the_shell(results_dir: Any, name: str) -> None:
    """The hint printed for an experiment whose store names no training function put the name in the command
    as it was: a name with spaces or ';' broke the command, and '-dash' read as an option."""
    from tunesmith.cli import _stored_fn

    with pytest.raises(ts.ConfigError) as info:
        _stored_fn(name, {"fn": None})
    command = str(info.value).split("give it: ", 1)[1]
    args = shlex.split(command)
    assert args[:2] == ["tunesmith", "resume"] and name in args and "--fn" in args
    assert args.index(name) > args.index("--fn") if name.startswith("-") else args[2] == name


def test_resume_on_a_ray_cluster_the_store_names_needs_the_users_confirmation(train_file: Any,
                                                                              results_dir: Any) -> None:
    """A store's backend record is data anyone could have written: `tunesmith resume` would send the trials (their
    configs, the signing key) to the cluster it names. Refused without --trust-stored-fn (no terminal here), before
    anything runs."""
    pytest.importorskip("ray")
    from tunesmith.store.sqlite import Store

    ts.run(load_target(f"{train_file}:train"), {"lr": 0.5}, name="elsewhere", verbose=0)
    folder = results_dir / "elsewhere"
    store = Store(str(folder / "experiment.db"))
    spec = store.meta()["spec"]
    spec["backend"] = {"kind": "ray", "address": "ray://203.0.113.7:10001"}
    with store.transaction() as db:
        store.set_meta(db, "spec", spec)
    store.close()
    result = invoke("resume", "elsewhere", "--fn", f"{train_file}:train", "--storage-path", str(results_dir))
    assert result.exit_code == 2, result.output
    assert "ran on a RayBackend with address='ray://203.0.113.7:10001' (named in its store)" in result.output
    assert ts.load(str(folder)).status == "finished"
