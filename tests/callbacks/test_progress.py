"""Progress: the live table's content, the plain lines off a terminal and their bounded number.

The content tests run on the simulated executor: virtual time makes throughput, resources and the time
left exact numbers; one test runs real worker processes into a terminal-like console.
"""

from __future__ import annotations

import io
import math
import re
from typing import Any

import pytest
from rich.console import Console

import tunesmith as ts
from tunesmith._secrets import MASK
from tunesmith.callbacks.progress import Progress, _allocate, format_duration
from tunesmith.executors.simulated import SimulatedBackend

pytestmark = pytest.mark.timeout(120)


def train(config):
    for i in range(3):
        ts.report({"loss": config["x"] + 1.0 / (i + 1)})


def sim_train(config):
    """Ten iterations of one virtual second; x=0.9 fails at its fourth iteration."""
    for i in range(10):
        if config["x"] == 0.9 and i == 3:
            raise ValueError("diverged")
        yield {"loss": config["x"] + 1.0 / (i + 1)}


class Snapshot(ts.Callback):
    """Renders the progress table (into a recording console) at the first tick at or after virtual time ``at``."""

    def __init__(self, progress: Progress, at: float) -> None:
        self.progress, self.at = progress, at
        self.text: str | None = None
        self.line = ""
        self.eta: float | None = None
        self.when = math.nan

    def on_tick(self, experiment: Any) -> None:
        if self.text is None and experiment.elapsed >= self.at:
            console = Console(record=True, width=160, file=io.StringIO())
            console.print(self.progress.render(experiment))
            self.text = console.export_text()
            self.line = self.progress.status_line(experiment)
            self.when = experiment.elapsed
            self.eta = self.progress.eta(experiment, experiment.counts)


def sim_run(snapshot_at: float, **kwargs: Any) -> tuple[Progress, Snapshot, Any]:
    progress = Progress(console=Console(file=io.StringIO(), force_terminal=True, width=160), refresh_s=0.0,
                        max_rows=kwargs.pop("max_rows", 20))
    snap = Snapshot(progress, snapshot_at)
    space = kwargs.pop("space", {"x": ts.grid([0.1, 0.2, 0.3, 0.4, 0.9, 0.6]), "api_key": "sk-SECRET"})
    rs = ts.run(sim_train, space=space, metric="loss", mode="min", backend=SimulatedBackend({"cpu": 4}),
                verbose=0, callbacks=[progress, snap], **kwargs)
    return progress, snap, rs


def test_table_groups_by_status_with_best_throughput_resources_and_eta() -> None:
    # 6 trials, 4 CPUs: at t=5.0 four run (x=0.1..0.4), the x=0.9 and x=0.6 ones wait.
    _progress, snap, _rs = sim_run(5.0, time_budget_s=100)
    text, line = snap.text or "", snap.line
    assert snap.when == 5.0
    assert "trials 4 running, 1 pending (of 6)" in line  # the searcher is asked one trial ahead
    assert "cpu 4/4 gpu 0/0" in line and "cpu 4/4 gpu 0/0" in text
    assert "4.0/s" in line  # four trials, one result per virtual second each
    assert "about 1m35s left" in line and snap.eta == 95.0  # the time budget bounds the run
    assert "best loss=0.3 (trial_00001, any result)" in text  # x=0.1 after 5 iterations: 0.1 + 1/5
    rows = [r for r in text.splitlines() if r.startswith(("trial_", "+"))]
    assert [r.split()[0] for r in rows] == ["trial_00001", "trial_00002", "trial_00003", "trial_00004",
                                            "trial_00005"]
    assert rows[0].startswith("trial_00001 *")  # the best is marked
    assert all("RUNNING" in r for r in rows[:4]) and all("PENDING" in r for r in rows[4:])
    assert "sk-SECRET" not in text and MASK in text  # secrets masked as everywhere else


def test_eta_from_the_pace_of_finished_trials() -> None:
    # No budget: the time left comes from the trials still to finish. At t=11 the first four have ended
    # (4 trials in 11 s) and two remain: 2 * 11 / 4 = 5.5 s.
    _progress, snap, _rs = sim_run(10.5)
    assert snap.when == 11.0
    assert snap.eta == pytest.approx(5.5) and "about 6s left" in snap.line
    assert "trials 2 running, 4 terminated (of 6)" in snap.line  # groups in a fixed order: running first
    assert "0.4 trials/s" in snap.line  # 4 trials over the last 10 s


def test_rows_are_capped_but_every_status_keeps_a_row() -> None:
    space = {"x": ts.grid([0.1, 0.9, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0])}
    _progress, snap, _rs = sim_run(12.0, space=space, max_rows=4)
    text = snap.text or ""
    rows = [r for r in text.splitlines() if r.startswith(("trial_", "+"))]
    # at t=12: trial 2 (x=0.9) failed at t=3, trials 1, 3, 4 ended at t=10, trials 5-8 run, 9 waits
    assert "trials 4 running, 3 terminated, 1 error, 1 pending (of 10)" in snap.line
    assert [r.split()[0] for r in rows] == ["trial_00005", "+3", "trial_00001", "+2", "trial_00002",
                                            "trial_00009"]
    assert rows[2].startswith("trial_00001 *")  # the best trial is always among those shown
    assert "running" in rows[1] and "terminated" in rows[3]
    assert "ERROR" in rows[4] and "PENDING" in rows[5]


def test_final_summary_rates_are_over_the_whole_run() -> None:
    buf = io.StringIO()
    progress = Progress(console=Console(file=buf, width=200), plain_every_s=1.0)
    ts.run(sim_train, space={"x": ts.grid([0.1, 0.2, 0.3, 0.4])}, metric="loss", mode="min",
           backend=SimulatedBackend({"cpu": 4}), verbose=0, callbacks=[progress])
    last = buf.getvalue().strip().splitlines()[-2]
    # 4 trials x 10 results in 10 virtual seconds
    assert last.startswith("tunesmith ") and " done in 10s: trials 4 terminated (of 4)" in last
    assert "40 results (4.0/s), 0.4 trials/s" in last and "best loss=0.2 (trial_00001, any result)" in last


def long_train(config):
    """Twenty iterations of 60 virtual seconds; every tenth trial fails at its second."""
    for i in range(20):
        if config["i"] % 10 == 3 and i == 1:
            raise RuntimeError(f"trial {config['i']} failed")
        yield {"loss": 1.0 / (i + 1) + config["i"] * 1e-3}, 60.0


class EndTime(ts.Callback):
    elapsed = math.nan

    def on_experiment_end(self, experiment: Any) -> None:
        self.elapsed = experiment.elapsed


def test_plain_lines_off_a_terminal_are_bounded_over_a_long_run() -> None:
    buf = io.StringIO()
    every = 10.0
    progress = Progress(console=Console(file=buf, width=200), plain_every_s=every, max_error_lines=5)
    end = EndTime()
    rs = ts.run(long_train, space={"i": ts.grid(list(range(100)))}, metric="loss", mode="min",
                backend=SimulatedBackend({"cpu": 4}), verbose=0, callbacks=[progress, end])
    out = buf.getvalue()
    lines = out.strip().splitlines()
    assert len(rs.errors) == 10
    elapsed = end.elapsed
    assert elapsed > 7 * 3600  # nearly 8 virtual hours
    status_lines = [line for line in lines if " running " in line]
    error_lines = [line for line in lines if " ERROR: " in line]
    assert len(error_lines) == 5 and sum("only counted" in line for line in lines) == 1
    # One line per `every` seconds for the first 60 * every seconds, then the interval grows with the run
    # (elapsed / 60): about 60 * (1 + ln(elapsed / (60 * every))) lines, against elapsed / every = 3,000
    # at a fixed interval.
    bound = 60 * (1 + math.log(elapsed / (60 * every))) + 2
    assert len(status_lines) <= bound and len(status_lines) < elapsed / every / 8
    assert len(lines) == len(status_lines) + 5 + 1 + 1 + 2  # errors, "only counted", start, summary (2)
    assert progress.lines == len(lines)
    assert "\x1b[" not in out


def test_live_table_in_a_terminal_shows_trials_status_and_best(results_dir) -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=150)
    ts.run(train, space={"x": ts.grid([0.5, 0.25])}, metric="loss", mode="min", verbose=0,
           callbacks=[Progress(console=console, refresh_s=0.0)])
    out = buf.getvalue()
    assert "trial_00001" in out and "trial_00002" in out
    assert "TERMINATED" in out
    assert "best loss=0.5833 (trial_00002, any result)" in out
    assert re.search(r"cpu \d+(\.\d+)?/\d+(\.\d+)? gpu", out)
    assert "\x1b[" in out  # a terminal gets colour and cursor control


def test_plain_lines_when_not_a_terminal(results_dir, capsys) -> None:
    ts.run(train, space={"x": ts.grid([0.5, 0.25])}, metric="loss", mode="min", verbose=1)
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert "\x1b[" not in out
    assert lines[0].startswith("tunesmith: experiment train_")
    assert " done in " in out and "2 terminated" in out and "best loss=0.5833 (trial_00002, any result)" in out
    assert len(lines) <= 4  # no flood: a start line and a summary for a short run


def test_verbose_two_prints_a_line_per_finished_trial(results_dir, capsys) -> None:
    ts.run(train, space={"x": ts.grid([0.5, 0.25])}, metric="loss", mode="min", verbose=2)
    out = capsys.readouterr().out
    assert re.search(r"trial_00001 TERMINATED after 3 iterations: loss=0\.8333", out)
    assert re.search(r"trial_00002 TERMINATED after 3 iterations: loss=0\.5833", out)


def test_verbose_zero_is_silent(results_dir, capsys) -> None:
    ts.run(train, space={"x": ts.grid([0.5])}, verbose=0)
    assert capsys.readouterr().out == ""


def test_helpers() -> None:
    assert [format_duration(s) for s in (0, 42.4, 185, 7620, 3 * 86400 + 4 * 3600)] == [
        "0s", "42s", "3m05s", "2h07m", "3d04h"]
    assert _allocate([5, 0, 5, 2, 3], 4) == [1, 0, 1, 1, 1]  # every non-empty group first
    assert _allocate([5, 0, 5, 2, 3], 8) == [5, 0, 1, 1, 1]  # then running ones
    assert _allocate([1, 0, 5, 2, 3], 8) == [1, 0, 5, 1, 1]
    assert _allocate([1, 1], 0) == [0, 0]


# -- user strings are data: rich markup and terminal control sequences --------------------------------

HOSTILE = ["[INST] {prompt} [/INST]", "[bold]x[/bold]", "[/]", "\x1b]0;pwned\x07\x1b[2J", ":thumbs_up:"]


def hostile_train(config):
    ts.report({"loss": float(len(config["prompt"])), "[red]m": 1.0})
    if config["prompt"] == "[/]":
        raise ValueError("[/] closing tag \x1b[2J in the error")


def test_markup_and_control_sequences_in_configs_names_and_errors_are_shown_as_text(results_dir) -> None:
    """A Llama-2 prompt template as a config value used to kill the driver on a terminal (rich markup)."""
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=250)
    result = ts.run(hostile_train, space={"prompt": ts.grid(HOSTILE), "[b]name": "[i]v"}, metric="[red]m",
                    mode="max", verbose=0, callbacks=[Progress(verbose=2, console=console, refresh_s=0.0)])
    assert {t.status.value for t in result.trials} == {"TERMINATED", "ERROR"}
    assert len(result.trials) == len(HOSTILE)
    out = buf.getvalue()
    for literal in ("[INST] {prompt} [/INST]", "[bold]x[/bold]", "[/]", "]0;pwned", "[2J", ":thumbs_up:",
                    "[b]name", "[i]v", "[red]m", "[/] closing tag"):
        assert literal in out, literal
    # the control characters themselves never reach the terminal: the title and screen are untouched
    assert "\x1b]0;pwned" not in out and "\x07" not in out and "\x1b[2J" not in out
    assert "\U0001f44d" not in out  # no emoji codes either


def test_plain_lines_escape_control_sequences_too(results_dir) -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=250)
    ts.run(hostile_train, space={"prompt": ts.grid(HOSTILE)}, verbose=0,
           callbacks=[Progress(verbose=2, console=console, refresh_s=0.0)])
    out = buf.getvalue()
    assert "\x1b" not in out and "\x07" not in out
    assert "[/] closing tag" in out


def test_a_long_error_line_is_cut_with_its_length() -> None:
    from tunesmith.trial import TrialStatus, TrialView

    buf = io.StringIO()
    progress = Progress(verbose=1, console=Console(file=buf, width=10_000))
    trial = TrialView(id=3, config={}, status=TrialStatus.ERROR,
                      error="Traceback (most recent call last):\n  ...\nValueError: " + "x" * 5000)
    progress.on_trial_error(trial)
    line = buf.getvalue().strip()
    assert line.startswith("trial_00003 ERROR: ValueError: xxx")
    assert len(line) < 400 and "(5,012 characters)" in line


class _CountsRedraws(Progress):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.redraws = 0

    def render(self, experiment: Any) -> Any:
        self.redraws += 1
        return super().render(experiment)


def test_the_live_table_is_redrawn_on_the_wall_clock_when_the_experiment_runs_in_virtual_time() -> None:
    """Under the simulated executor each poll moves the experiment's clock by a second or more: the table (and a
    notebook's display, each redraw a message to the page) was redrawn at every tick, 751 times (3.8 MB) in a
    1,000-trial notebook cell. It shows virtual time, redrawn at most every refresh_s of real time."""
    import time

    progress = _CountsRedraws(console=Console(file=io.StringIO(), force_terminal=True, width=160), refresh_s=0.5)
    began = time.monotonic()
    ts.run(sim_train, space={"x": ts.uniform(0, 1)}, num_samples=300, metric="loss", mode="min",
           backend=SimulatedBackend({"cpu": 4}), verbose=0, callbacks=[progress])
    wall = time.monotonic() - began
    assert progress.redraws <= wall / 0.5 + 3, (progress.redraws, wall)  # start, end, and one per half second


class _EndSeen(ts.Callback):
    """Keeps ``experiment.status`` as the callbacks see it, during the run and at its end."""

    def __init__(self) -> None:
        self.during: list[str] = []
        self.at_end: str | None = None

    def on_trial_results(self, trial, results) -> None:
        self.during.append(self._status)

    def on_experiment_start(self, experiment) -> None:
        self._experiment = experiment

    @property
    def _status(self) -> str:
        return self._experiment.status

    def on_experiment_end(self, experiment) -> None:
        self.at_end = experiment.status


class _CtrlCAtFirstResult(ts.Callback):
    def on_trial_results(self, trial, results) -> None:
        import os
        import signal

        os.kill(os.getpid(), signal.SIGINT)


def _fails(config):
    raise ValueError("diverged")


def _big_results(config):
    for i in range(400):  # about 20 MB of results: more than the tiny disk holds
        ts.report({"i": i + 1, "notes": "ab" * 25_000})


def _last_line(buf: io.StringIO) -> str:
    return buf.getvalue().strip().splitlines()[-2]  # the summary; the last line names the results folder


@pytest.mark.parametrize("ending", ["finished", "interrupted", "failed", "store full"])
def test_the_final_line_and_experiment_status_say_how_the_run_ended(results_dir, request, ending) -> None:
    """The summary line said "done in" whatever ended the run: a Ctrl-C, fail_fast, a store that could not be
    written (a full disk), each followed by the exception. Now it says how it ended, and callbacks read the same
    in ``experiment.status`` ("running" until then)."""
    buf = io.StringIO()
    seen = _EndSeen()
    callbacks: list[Any] = [Progress(console=Console(file=buf, width=300)), seen]
    kw: dict[str, Any] = {"space": {"x": ts.grid([0.5, 0.25])}, "metric": "loss", "mode": "min"}
    fn: Any = train
    if ending == "interrupted":
        callbacks.append(_CtrlCAtFirstResult())
        expect: type[BaseException] | None = KeyboardInterrupt
    elif ending == "failed":  # fail_fast: the first error ends the run, without raising
        fn, kw["fail_fast"] = _fails, True
        expect = None
    elif ending == "store full":
        fn, kw = _big_results, {"storage_path": str(request.getfixturevalue("tiny_disk"))}
        expect = ts.StoreError
    else:
        expect = None
    if expect is None:
        ts.run(fn, verbose=0, callbacks=callbacks, **kw)
    else:
        with pytest.raises(expect):
            ts.run(fn, verbose=0, callbacks=callbacks, **kw)
    word = {"finished": " done in ", "interrupted": " interrupted after ", "failed": " failed after ",
            "store full": " failed after "}[ending]
    last = _last_line(buf)
    assert last.startswith("tunesmith ") and word in last, last
    assert seen.at_end == ("finished" if ending == "finished" else "interrupted" if ending == "interrupted"
                           else "failed")
    if seen.during:  # (the failed runs never started a trial) "running" until the end was known: once a Ctrl-C
        assert seen.during[0] == "running", seen.during  # came, results of trials being stopped see "interrupted"


def _flat_forever(config):
    """One result a virtual second, the same loss, for ever."""
    while True:
        yield {"loss": 1.0}


@pytest.mark.parametrize("ending", ["time budget", "stop rule", "on its own"])
def test_the_final_line_says_what_ended_the_run_before_its_trials_were_done(results_dir, ending) -> None:
    """Before: "done in 5s: trials 2 terminated (of 4)", whether the trials were all done or a time budget or an
    experiment-level stop rule had cut them short and left two of four never started."""
    buf = io.StringIO()
    kw: dict[str, Any] = {"num_samples": 4, "metric": "loss", "mode": "min", "verbose": 0,
                          "backend": SimulatedBackend({"cpu": 2}),
                          "callbacks": [Progress(console=Console(file=buf, width=300))]}
    if ending == "time budget":
        ts.run(_flat_forever, time_budget_s=5.0, **kw)
        expect: str | None = r" done in \d+s, ended by time_budget_s=5: trials \d terminated \(of 4\)"
    elif ending == "stop rule":
        ts.run(_flat_forever, stop=ts.ExperimentPlateau("loss", top=3, std=1e-9), **kw)
        expect = r" done in \d+s, ended by stop rule ExperimentPlateau at trial_\d+'s result \d+: trials \d terminated"
    else:
        ts.run(_flat_forever, stop={"training_iteration": 2}, **kw)
        expect = None
    last = _last_line(buf)
    if expect is None:
        assert "ended by" not in last and " done in 4s: trials 4 terminated (of 4)" in last, last
    else:
        assert re.search(expect, last), last
