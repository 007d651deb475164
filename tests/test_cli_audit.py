"""What a demanding user of the command line met off the happy path: long LLM prompts, text metrics and errors
printed whole (`run`, the live progress, `show`), an error naming the plots' parameter instead of the option, paths
given where an experiment folder is expected (a file, the store file, a folder of experiments), the dashboard's
refusal of a renamed folder, an empty --storage-path taken as the current folder, `python -m tunesmith`, and
`trust` and `resume` on a read-only folder."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import uuid
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console
from test_cli_edges import read_only  # noqa: F401 - the fixture: a folder and its read-only bind mount

import tunesmith as ts
from tunesmith.cli import cli

pytestmark = pytest.mark.timeout(120)

PROMPT = "You are a helpful assistant. [bold]Answer[/bold] in French.\n" * 100  # 5,800 characters
ANSWER = "The answer is forty-two. " * 100  # a text metric as long


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def long_text_train(config: dict[str, Any]) -> None:
    ts.report({"loss": float(len(config["prompt"])) / 1e4, "answer": ANSWER})


@pytest.mark.parametrize("terminal", [True, False])
def test_the_progress_cuts_a_long_config_value_and_text_metric_to_their_start_and_length(results_dir: Any,
                                                                                          terminal: bool) -> None:
    """A 5,800-character prompt filled the live table's cell (rich folds it: 37 kB a draw) and the best line; a long
    text metric filled each trial's line. Each is cut to its start and its length, as `tunesmith show` cuts it."""
    buf = io.StringIO()
    ts.run(long_text_train, space={"prompt": PROMPT, "lr": 0.1}, metric="loss", mode="min", verbose=0,
           callbacks=[ts.Progress(verbose=2, console=Console(file=buf, force_terminal=terminal, width=200),
                                  refresh_s=0.0)])
    out = buf.getvalue()
    for line in out.splitlines():  # its start, not the whole text (folded over lines in a table's cell)
        assert line.count("helpful") <= 1 and line.count("forty-two") <= 1, out[-3000:]
    assert f"({len(ANSWER):,} characters)" in out, out[-3000:]
    if terminal:  # the table and the best line show the config
        assert f"({len(PROMPT):,} characters)" in out, out[-3000:]
        assert max(out.count("\n") // max(out.count("tunesmith "), 1), 1) < 30, out[-3000:]  # lines a draw


def test_run_prints_the_best_config_with_a_long_value_cut(tmp_path: Any, results_dir: Any) -> None:
    module = f"train_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent("""
        import tunesmith as ts

        def train(config):
            ts.report({"loss": config["lr"]})
    """))
    (tmp_path / "space.json").write_text(json.dumps({"lr": 0.5, "prompt": PROMPT}))
    res = invoke("run", f"{tmp_path / module}.py:train", "--space", str(tmp_path / "space.json"), "--metric", "loss",
                 "--mode", "min", "--name", "long", "--verbose", "0")
    assert res.exit_code == 0, res.output
    best = next(line for line in res.output.splitlines() if line.startswith("best "))
    assert '"lr": 0.5' in best and f"({len(PROMPT):,} characters)" in best, best
    assert len(best) < 300, best


def test_report_names_its_x_option_when_no_result_has_that_counter(results_dir: Any) -> None:
    ts.run(long_text_train, space={"prompt": "p"}, metric="loss", mode="min", name="xs", verbose=0)
    res = invoke("report", "xs", "--x", "answer", "-o", str(results_dir / "r.html"))
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: --x: no result reported a number for 'answer'"), res.output


@pytest.mark.parametrize("command", ["show", "report", "export", "trust", "resume"])
def test_a_path_that_is_no_experiment_folder_says_what_it_is_and_what_to_give(results_dir: Any, tmp_path: Any,
                                                                            command: str) -> None:
    ts.run(long_text_train, space={"prompt": "p"}, metric="loss", mode="min", name="e1", verbose=0)
    ts.run(long_text_train, space={"prompt": "p"}, metric="loss", mode="min", name="e2", verbose=0)
    store = results_dir / "e1" / "experiment.db"
    a_file = tmp_path / "notes.txt"
    a_file.write_text("")

    res = invoke(command, str(store))
    assert res.exit_code == 2, res.output
    assert f"{str(store)!r} is the experiment's store file; give its folder {str(results_dir / 'e1')!r}" \
        in res.output, res.output

    res = invoke(command, str(a_file))
    assert res.exit_code == 2, res.output
    assert f"{str(a_file)!r} is a file, not an experiment folder" in res.output, res.output

    res = invoke(command, str(results_dir))  # the storage folder itself: it holds experiments
    assert res.exit_code == 2, res.output
    assert (f"{str(results_dir)!r} is a folder of experiments (e1, e2), not one: give one of them, e.g. "
            f"{str(results_dir / 'e1')!r}") in res.output, res.output
    assert len(res.output.splitlines()) == 1, res.output


def test_dashboard_of_a_renamed_folder_serves_it(results_dir: Any) -> None:
    """`ls`, `show`, `resume` and `dashboard` take a folder renamed to any name (`my exp 日本`): the dashboard got as
    far as binding its port (here one in use, so it stops there instead of serving)."""
    import socket

    ts.run(long_text_train, space={"prompt": "p"}, metric="loss", mode="min", name="plain", verbose=0)
    (results_dir / "plain").rename(results_dir / "my exp 日本")
    assert invoke("show", "my exp 日本").exit_code == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = invoke("dashboard", "my exp 日本", "--port", str(port))
    assert res.exit_code == 2, res.output
    assert res.output == (f"error: dashboard: port {port} on 127.0.0.1 is in use; pass another port or port=0 (a "
                          f"free one)\n"), res.output


@pytest.mark.parametrize("command", [["ls"], ["show", "e1"], ["rm", "e1", "--yes"], ["report", "e1"],
                                     ["export", "e1"], ["resume", "e1"], ["trust", "e1", "--yes"],
                                     ["dashboard", "e1", "--token", "short"]])  # refused, not served, if it went on
def test_an_empty_storage_path_is_refused_not_taken_as_the_current_folder(results_dir: Any, tmp_path: Any,
                                                                         monkeypatch: Any, command: list[str]) -> None:
    """`--storage-path "$RESULTS"` with the variable unset: the command worked on the current folder (`rm e1 --yes`
    removed ./e1)."""
    ts.run(long_text_train, space={"prompt": "p"}, metric="loss", mode="min", name="e1", storage_path=str(tmp_path),
           verbose=0)
    monkeypatch.chdir(tmp_path)
    res = invoke(*command, "--storage-path", "")
    assert res.exit_code == 2, res.output
    assert "Invalid value for '--storage-path': expected a folder, got an empty value" in res.output, res.output
    assert (tmp_path / "e1" / "experiment.db").is_file()


def test_python_dash_m_tunesmith_is_the_command(tmp_path: Any) -> None:
    """`python -m tunesmith ls` said "No module named tunesmith.__main__; 'tunesmith' is a package and cannot be
    directly executed" (only `python -m tunesmith.cli` worked): the form to use where the console script is not
    on PATH (a virtual environment not activated)."""
    env = {**os.environ, "TUNESMITH_RESULTS": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "tunesmith", "ls"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"no experiments in {tmp_path}\n"
    done = subprocess.run([sys.executable, "-m", "tunesmith", "ls", "--nope"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 2 and "Usage: tunesmith ls" in done.stderr, done.stderr


def test_run_and_show_cut_a_long_error_to_its_start_and_length(tmp_path: Any, results_dir: Any) -> None:
    """A 5,000-character exception message (a model's output quoted in it) was one 5 kB line in `run`'s error
    and in `show`'s failed-trial lines; the live progress already cut it (its line, the whole in `show --json`)."""
    module = f"train_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent("""
        def boom(config):
            raise ValueError("x" * 5000)
    """))
    res = invoke("run", f"{tmp_path / module}.py:boom", "--name", "boom", "--verbose", "0")
    assert res.exit_code == 1, res.output
    line = next(line for line in res.output.splitlines() if line.startswith("error: 1 trial(s) failed"))
    assert "ValueError: xxx" in line and "(5,012 characters)" in line and len(line) < 450, line
    res = invoke("show", "boom")
    assert res.exit_code == 0, res.output
    line = next(line for line in res.output.splitlines() if line.startswith("trial_00001 failed: "))
    assert "ValueError: xxx" in line and "(5,012 characters)" in line and len(line) < 400, line
    assert json.loads(invoke("show", "boom", "--json").output)["trials"][0]["error"].count("x") >= 5000


def checkpointed_train(config: dict[str, Any]) -> None:
    for i in range(2):
        ts.report({"loss": 1.0 / (i + 1)}, checkpoint=ts.Checkpoint.from_state({"i": i}))


def test_trust_on_a_read_only_folder_says_it_cannot_write_not_that_the_checkpoints_are_damaged(
        read_only: Any, tmp_path: Any, monkeypatch: Any) -> None:  # noqa: F811 - the imported fixture
    """`trust` of a folder on a read-only mount listed every checkpoint as "damaged", each with the name of the
    temporary file it could not create, exit 1: they are intact, the folder cannot be written."""
    source, mount = read_only
    monkeypatch.setenv("TUNESMITH_KEY_FILE", str(tmp_path / "their-key"))  # written by someone else
    ts.run(checkpointed_train, space={"x": ts.grid([1, 2])}, metric="loss", mode="min", name="theirs",
           storage_path=str(source), verbose=0)
    monkeypatch.setenv("TUNESMITH_KEY_FILE", str(tmp_path / "my-key"))
    res = invoke("trust", str(mount / "theirs"), "--yes")
    assert res.exit_code == 2, res.output
    assert res.output == (f"error: cannot sign the checkpoints of {mount / 'theirs'}: cannot write in "
                          "trials/trial_00001/checkpoints/checkpoint_000001 (Read-only file system); none of the 4 "
                          "is signed\n"), res.output


def test_resume_on_a_read_only_folder_says_to_resume_a_writable_copy(read_only: Any) -> None:  # noqa: F811
    """It said "cannot open experiment 'theirs''s lock file ... (Read-only file system); expected a plain file (a
    link is not followed)": the lock file is a plain file, the folder cannot be written."""
    source, mount = read_only
    ts.run(checkpointed_train, space={"x": 1}, metric="loss", mode="min", name="theirs", storage_path=str(source),
           verbose=0)
    res = invoke("resume", str(mount / "theirs"), f"{__file__}:checkpointed_train", "--verbose", "0")
    assert res.exit_code == 2, res.output
    assert res.output == (f"error: cannot write in the folder of experiment 'theirs' ({mount / 'theirs'}: Read-only "
                          "file system); copy it somewhere writable and resume the copy\n"), res.output


def test_an_empty_output_path_and_an_empty_storage_path_in_python_are_refused(results_dir: Any, tmp_path: Any,
                                                                              monkeypatch: Any) -> None:
    """`report -o "$OUT"` with the variable unset wrote into the experiment folder as if -o were not given, and
    `run(storage_path="")` (or `load(..., storage_path="")`) meant the current folder, as the empty
    --storage-path did before it was refused."""
    ts.run(long_text_train, space={"prompt": "p"}, metric="loss", mode="min", name="e1", verbose=0)
    res = invoke("report", "e1", "-o", "")
    assert res.exit_code == 2, res.output
    assert "Invalid value for '-o' / '--output': expected a file, got an empty value" in res.output, res.output
    assert not (results_dir / "e1" / "report.html").exists()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ts.ConfigError, match=r"storage_path: expected a folder, got '' \(an unset variable\?\)"):
        ts.run(long_text_train, space={"prompt": "p"}, metric="loss", mode="min", name="e2", verbose=0,
               storage_path="")
    assert not (tmp_path / "e2").exists()
