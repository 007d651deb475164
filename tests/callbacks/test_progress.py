from __future__ import annotations

import io

from rich.console import Console

import tunesmith as ts
from tunesmith.callbacks.progress import Progress


def train(config):
    for i in range(3):
        ts.report({"loss": config["x"] + 1.0 / (i + 1)})


def test_live_table_in_a_terminal_shows_trials_status_and_best(results_dir):
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=150)
    ts.run(train, space={"x": ts.grid([0.5, 0.25])}, metric="loss", mode="min", verbose=0,
           callbacks=[Progress(console=console, refresh_s=0.0)])
    out = buf.getvalue()
    assert "trial_00001" in out and "trial_00002" in out
    assert "TERMINATED" in out
    assert "best loss=0.5833 (trial_00002)" in out
    assert "\x1b[" in out  # a terminal gets colour and cursor control


def test_plain_lines_when_not_a_terminal(results_dir, capsys):
    ts.run(train, space={"x": ts.grid([0.5, 0.25])}, metric="loss", mode="min", verbose=1)
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert "\x1b[" not in out
    assert lines[0].startswith("tunesmith: experiment train_")
    assert "done" in out and "2 terminated" in out and "best loss=0.5833 (trial_00002)" in out
    assert len(lines) <= 4  # no flood: a start line and a summary for a short run


def test_verbose_zero_is_silent(results_dir, capsys):
    ts.run(train, space={"x": ts.grid([0.5])}, verbose=0)
    assert capsys.readouterr().out == ""
