"""Progress: a live rich table in a terminal; a few plain lines otherwise; nothing at ``verbose=0``.

The table shows the trials grouped by status (running, paused, terminated best first, failed, pending),
the best trial, throughput (results/s and trials/s over the last seconds), the resources in use, the
time elapsed and, when the run is bounded (a known number of trials or a time budget), an estimate of
the time left.

In a Jupyter notebook the same table is one output that updates in place (an IPython display handle,
redrawn at most every ``max(refresh_s, 1)`` seconds): rich's ``Live`` needs ipywidgets there, and plain
lines would pile up in the cell.

Off a terminal (a log file, CI) it prints one line at the start, a status line at most every
``plain_every_s`` seconds, and a summary at the end. The interval between status lines grows with the
run (at least ``elapsed / 60``), so a day-long run writes a few hundred lines, not thousands; failed
trials get a line each up to ``max_error_lines``, then only a count.

User strings (config keys and values, metric and experiment names, error messages) are shown as the
text they are: never read as rich markup, control characters written as escapes (``tunesmith._display``);
secret-looking config values and their copies in error messages are masked (``tunesmith._secrets``).

Time is the experiment's own clock (``ExperimentInfo.elapsed``), so under the simulated executor the
table follows virtual time (and the plain lines come per virtual interval); the live table and the notebook
display are redrawn on the wall clock (every ``refresh_s``, at least 1 s in a notebook), whatever the
experiment's clock does.
"""

from __future__ import annotations

import heapq
import math
import sys
import time
from collections import deque
from typing import Any

from tunesmith._display import ERROR_CHARS, cut, error_lines, printable, text
from tunesmith._flat import flatten
from tunesmith._secrets import shown
from tunesmith.callbacks._base import Callback, ExperimentInfo
from tunesmith.trial import AUTO_KEYS, TrialStatus, TrialView

# Display order of the groups; also the order in which spare rows are handed out.
_GROUPS = (TrialStatus.RUNNING, TrialStatus.PAUSED, TrialStatus.TERMINATED, TrialStatus.ERROR, TrialStatus.PENDING)
_STYLE = {TrialStatus.RUNNING: "green", TrialStatus.PAUSED: "yellow", TrialStatus.TERMINATED: "blue",
          TrialStatus.ERROR: "red", TrialStatus.PENDING: "white"}
_WORDS = {TrialStatus.RUNNING: "running", TrialStatus.PAUSED: "paused", TrialStatus.TERMINATED: "terminated",
          TrialStatus.ERROR: "error", TrialStatus.PENDING: "pending"}
_RATE_WINDOW_S = 10.0  # throughput is measured over this many recent seconds
_SAMPLE_S = 0.25  # ... from counts taken this often
_PLAIN_LINES_PER_RUN = 60  # off a terminal, the status-line interval is at least elapsed / this
_CONFIG_COLUMNS = 5


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4g}"
    return cut(str(value))


def _rate(per_s: float) -> str:
    """``12,345`` / ``42.0`` / ``0.067``: a rate with the digits that matter at its size."""
    if per_s >= 100:
        return f"{per_s:,.0f}"
    if per_s >= 1:
        return f"{per_s:.1f}"
    return f"{per_s:.2g}"


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``, ``3d04h``: short, and exact enough for a progress line."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


class Progress(Callback):
    """Shows the experiment's trials by status, the best trial, throughput, resources and time left.

    ``tunesmith.run`` adds one itself (``verbose=``); pass your own in ``callbacks=`` with
    ``verbose=0`` on ``run`` to change its settings.

    Args:
        verbose: 0 silent, 1 table (or plain lines), 2 also a line per finished trial.
        refresh_s: seconds between redraws of the live table.
        plain_every_s: least seconds between status lines when output is not a terminal.
        max_rows: trials shown in the table (every status group gets a row, running ones first, then
            the best finished ones).
        console: a ``rich.console.Console`` (default: standard output).
        max_error_lines: failed trials printed one line each; later failures are only counted.
    """

    def __init__(self, verbose: int = 1, refresh_s: float = 0.5, plain_every_s: float = 10.0, max_rows: int = 20,
                 console: Any = None, max_error_lines: int = 10) -> None:
        self.verbose = verbose
        self.refresh_s = refresh_s
        self.plain_every_s = plain_every_s
        self.max_rows = max_rows
        self.console = console
        self.max_error_lines = max_error_lines
        self._live: Any = None
        self._display: Any = None  # the notebook's display handle, updated in place
        self._notebook = False  # in a notebook, lines are printed as text under the display, not as displays
        self._last = -math.inf
        self._drawn = -math.inf  # wall clock (time.monotonic) of the last redraw of a live table or notebook display
        self._t0 = 0.0
        self._samples: deque[tuple[float, int, int]] = deque()  # (time, results, finished) for the rates
        self._results0 = 0
        self._finished = 0  # trials finished by this driver (a resumed run counts from its restart)
        self._errors = 0
        self._error_lines = 0
        self.lines = 0  # plain lines printed (for tests and for the curious)
        # Finished trials the table may show: the controller forgets a trial when it ends (its memory follows
        # the running trials), so the best max_rows of each finished status are kept here, and the best trial.
        self._done: dict[int, TrialView] = {}
        self._experiment: ExperimentInfo | None = None

    # -- hooks --------------------------------------------------------------------------------------
    def on_experiment_start(self, experiment: ExperimentInfo) -> None:
        if self.verbose <= 0:
            return
        from rich.console import Console

        if self.console is None:
            self.console = Console()
        self._experiment = experiment
        self._t0 = self._last = experiment.elapsed  # the first status line comes one interval in
        self._drawn = time.monotonic()  # the live table's or the notebook display's last redraw (wall clock)
        self._results0 = experiment.num_results
        self._samples.append((self._t0, self._results0, 0))
        if getattr(self.console, "is_jupyter", False) and self.console.file is sys.stdout:  # not a console to a file
            from IPython.display import HTML, display

            self._display = display(HTML(self.html(experiment)), display_id=True)
            self._notebook = True
        elif self.console.is_terminal:
            from rich.live import Live

            self._live = Live(self.render(experiment), console=self.console, auto_refresh=False, transient=False)
            self._live.start()
        else:
            self._print(f"tunesmith: experiment {printable(experiment.name, one_line=True)} in "
                        f"{printable(experiment.path, one_line=True)}")

    def on_trial_complete(self, trial: TrialView) -> None:
        self._finished += 1
        self._keep(trial)
        if self.verbose >= 2 and self.console is not None:
            self._print(self._trial_line(trial))

    def on_trial_error(self, trial: TrialView) -> None:
        self._finished += 1
        self._errors += 1
        self._keep(trial)
        if self.verbose <= 0 or self.console is None:
            return
        if self._error_lines < self.max_error_lines:
            self._error_lines += 1
            last = error_lines(shown(trial).error)
            line = last[-1] if last else "failed"
            self._print(f"{trial.name} ERROR: {cut(printable(line, one_line=True), ERROR_CHARS)}", style="red")
        elif self._error_lines == self.max_error_lines:
            self._error_lines += 1
            self._print("more trials failed: only counted from now on (their errors: tunesmith show <experiment>)",
                        style="red")

    def on_tick(self, experiment: ExperimentInfo) -> None:
        if self.verbose <= 0 or self.console is None:
            return
        now = experiment.elapsed
        if not self._samples or now - self._samples[-1][0] >= _SAMPLE_S:
            self._sample(experiment, now)
        if self._live is not None or self._display is not None:
            # a screen's redraws on the wall clock: the experiment's may be virtual (the simulated executor moves it
            # a second or more a tick), and each notebook redraw is a message to the page
            wall = time.monotonic()
            if wall - self._drawn < (self.refresh_s if self._live is not None else max(self.refresh_s, 1.0)):
                return
            self._drawn = wall
        else:  # lines in a log: as many per run of the experiment's own time
            if now - self._last < max(self.plain_every_s, (now - self._t0) / _PLAIN_LINES_PER_RUN):
                return
            self._last = now
        if self._live is not None:
            self._live.update(self.render(experiment), refresh=True)
        elif self._display is not None:
            self._update_display(experiment)
        else:
            self._print(self.status_line(experiment))

    def on_experiment_end(self, experiment: ExperimentInfo) -> None:
        if self.verbose <= 0 or self.console is None:
            return
        self._sample(experiment, experiment.elapsed)
        if self._live is not None:
            self._live.update(self.render(experiment), refresh=True)
            self._live.stop()
            self._live = None
        if self._display is not None:
            self._update_display(experiment)
            self._display = None
        self._print(self.status_line(experiment, final=True))

    def _keep(self, trial: TrialView) -> None:
        """Keep ``trial`` for the table if it is among the best ``max_rows`` of its status (or the best trial):
        the table never shows more of a group, and this stays as small as the table."""
        experiment = self._experiment
        if self.verbose <= 0 or experiment is None:
            return
        self._done[trial.id] = trial
        group = [t for t in self._done.values() if t.status is trial.status]
        if len(group) > self.max_rows:
            score = self._score(experiment)
            del self._done[max(group, key=score).id]  # the best trial scores first: never the one let go

    # -- notebook -----------------------------------------------------------------------------------
    def html(self, experiment: ExperimentInfo) -> str:
        """The live table as HTML (rich's own export: every string escaped), for a notebook's display."""
        import io

        from rich.console import Console

        recorder = Console(record=True, file=io.StringIO(), width=140, force_terminal=True, force_jupyter=False,
                           color_system="truecolor")
        recorder.print(self.render(experiment))
        return recorder.export_html(inline_styles=True, code_format=(
            '<pre class="tunesmith-progress" style="font-family:monospace;line-height:1.25;font-size:12px">'
            "{code}</pre>"))

    def _update_display(self, experiment: ExperimentInfo) -> None:
        from IPython.display import HTML

        self._display.update(HTML(self.html(experiment)))

    # -- numbers ------------------------------------------------------------------------------------
    def _sample(self, experiment: ExperimentInfo, now: float) -> None:
        self._samples.append((now, experiment.num_results, self._finished))
        while len(self._samples) > 2 and now - self._samples[1][0] >= _RATE_WINDOW_S:
            self._samples.popleft()

    def rates(self, final: bool = False) -> tuple[float, float]:
        """(results/s, trials/s): over the last ~10 s while running, over the whole run at the end."""
        if len(self._samples) < 2:
            return 0.0, 0.0
        t1, r1, f1 = self._samples[-1]
        t0, r0, f0 = (self._t0, self._results0, 0) if final else self._samples[0]
        dt = t1 - t0
        return ((r1 - r0) / dt, (f1 - f0) / dt) if dt > 0 else (0.0, 0.0)

    def eta(self, experiment: ExperimentInfo, counts: dict[TrialStatus, int]) -> float | None:
        """Seconds left, when the run is bounded: by the time budget, and by the trials still to finish at
        the pace of this run so far (the smaller of the two); None when neither is known yet."""
        now = experiment.elapsed
        estimates = []
        budget = experiment.time_budget_s
        if budget is not None:
            estimates.append(max(0.0, budget - now))
        total = experiment.total_trials
        done = counts.get(TrialStatus.TERMINATED, 0) + counts.get(TrialStatus.ERROR, 0)
        ran = now - self._t0
        if total is not None and self._finished > 0 and ran > 0:
            estimates.append(max(0, total - done) * ran / self._finished)
        elif total is not None and done >= total:
            estimates.append(0.0)
        return min(estimates) if estimates else None

    # -- text ---------------------------------------------------------------------------------------
    @staticmethod
    def _counts(experiment: ExperimentInfo) -> dict[TrialStatus, int]:
        return experiment.counts

    @staticmethod
    def _score(experiment: ExperimentInfo) -> Any:
        """The table's order within a status group: the best trial first, then by the first metric's last
        value (NaN and missing last), then by id."""
        metrics = [experiment.metric] if isinstance(experiment.metric, str) else list(experiment.metric or [])
        first = metrics[0] if metrics else None
        modes = [experiment.mode] if isinstance(experiment.mode, str) else list(experiment.mode or [None])
        sign = -1.0 if modes[0] == "max" else 1.0  # rows sorted by the first metric
        best = experiment.best
        best_id = best[0] if best is not None else None

        def score(t: TrialView) -> tuple[int, float, int]:
            if t.id == best_id:
                return (0, -math.inf, t.id)
            v = t.last_result.get(first) if (first and t.last_result) else None
            if not isinstance(v, (int, float)) or isinstance(v, bool) or math.isnan(v):
                return (1, math.inf, t.id)
            return (1, sign * v, t.id)

        return score

    @staticmethod
    def resources_text(experiment: ExperimentInfo) -> str:
        """``cpu 2/2 gpu 0.5/1``: in use by running trials / the executor's total (cpu and gpu always, other
        resources when the executor has some)."""
        used, total = experiment.resources_in_use, experiment.total_resources
        keys = ["cpu", "gpu"] + [k for k in total if k not in ("cpu", "gpu") and total[k] > 0]
        return " ".join(f"{k} {used.get(k, 0.0):g}/{total.get(k, 0.0):g}" for k in keys)

    def _best_text(self, experiment: ExperimentInfo) -> str:
        best = experiment.best
        if best is None or not isinstance(experiment.metric, str):
            return ""
        # the driver's best is the best single result any trial reported (not a trial's last result)
        return f"best {printable(experiment.metric, one_line=True)}={_fmt(best[1])} (trial_{best[0]:05d}, any result)"

    def status_line(self, experiment: ExperimentInfo, final: bool = False) -> str:
        """One line: trials by status, results and rates, resources, best, elapsed and ETA."""
        counts = self._counts(experiment)
        groups = ", ".join(f"{counts[s]} {_WORDS[s]}" for s in _GROUPS if counts.get(s))
        total = experiment.total_trials
        of = f" (of {total})" if total is not None else ""
        results_s, trials_s = self.rates(final)
        elapsed = format_duration(experiment.elapsed)
        if final:  # how it ended: a run that failed or was interrupted is not "done"
            ended = {"interrupted": "interrupted after", "failed": "failed after"}.get(experiment.status, "done in")
            head = f"tunesmith {printable(experiment.name, one_line=True)} {ended} {elapsed}"
            if experiment.ended_by and experiment.status == "finished":  # why not every trial ran to its end
                head += f", ended by {printable(experiment.ended_by, one_line=True)}"
        else:
            eta = self.eta(experiment, counts)
            head = f"tunesmith {printable(experiment.name, one_line=True)} running {elapsed}" + (
                f", about {format_duration(eta)} left" if eta is not None else "")
        parts = [f"{head}: trials {groups or 'none'}{of}",
                 f"{experiment.num_results} results ({_rate(results_s)}/s), {_rate(trials_s)} trials/s"]
        if not final:
            parts.append(self.resources_text(experiment))
        best = self._best_text(experiment)
        if best:
            parts.append(best)
        line = "; ".join(parts)
        if final:
            line += f"\nresults: {printable(experiment.path, one_line=True)}"
        return line

    def _trial_line(self, trial: TrialView) -> str:
        shown_trial = shown(trial)  # text it reported masked as its config is
        last = shown_trial.last_result.metrics if shown_trial.last_result else {}
        values = ", ".join([f"{k}={_fmt(v)}" for k, v in last.items() if k not in AUTO_KEYS][:4])
        return printable(f"{trial.name} {trial.status.value} after {trial.iteration} iterations"
                         + (f": {values}" if values else ""), one_line=True)

    def _print(self, line: str, style: str | None = None) -> None:
        console = self._live.console if self._live is not None else self.console
        line = printable(line)  # every caller's text is already one line each; this is the last door
        if self._notebook:
            print(line, flush=True)  # rich would make each line a display of its own
            self.lines += line.count("\n") + 1
            return
        console.print(line, style=style, highlight=False, soft_wrap=True, markup=False, emoji=False)
        if self._live is None:
            self.lines += line.count("\n") + 1

    # -- the table ----------------------------------------------------------------------------------
    def render(self, experiment: ExperimentInfo) -> Any:
        """The live view: a status header, the best trial, and the trials grouped by status."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        # Every string a user chose goes in as a Text (rich reads a str as markup): keys, values, names.
        metrics = [experiment.metric] if isinstance(experiment.metric, str) else list(experiment.metric or [])
        best = experiment.best
        best_id = best[0] if best is not None else None
        score = self._score(experiment)

        by_status: dict[TrialStatus, list[TrialView]] = {s: [] for s in _GROUPS}
        held = experiment.trials
        for t in held.values():
            by_status[t.status].append(t)
        for t in self._done.values():  # finished trials the controller no longer holds
            if t.id not in held:
                by_status[t.status].append(t)
        counts = experiment.counts
        quotas = _allocate([len(by_status[s]) for s in _GROUPS], self.max_rows)
        visible: dict[TrialStatus, list[TrialView]] = {}
        for status, quota in zip(_GROUPS, quotas):
            group = by_status[status]
            if status is TrialStatus.PENDING:
                visible[status] = sorted(group, key=lambda t: t.id)[:quota]
            else:
                visible[status] = heapq.nsmallest(quota, group, key=score)

        rows = [t for status in _GROUPS for t in visible[status]]
        configs = {t.id: _flat(shown(t).config) for t in rows}  # never show a secret-looking value
        config_keys = _config_columns([configs[t.id] for t in rows])

        table = Table(expand=False, show_edge=False, pad_edge=False)
        table.add_column("trial")
        table.add_column("status")
        for k in config_keys:
            table.add_column(text(k), justify="right")
        table.add_column("iter", justify="right")
        for m in metrics:
            table.add_column(text(m), justify="right")
        blank = [""] * (len(config_keys) + 1 + len(metrics))
        first_group = True
        for status in _GROUPS:
            group = visible[status]
            hidden = max(len(by_status[status]), counts.get(status, 0)) - len(group)
            if not group and not hidden:
                continue
            if not first_group:
                table.add_section()
            first_group = False
            for t in group:
                name = Text(t.name + (" *" if t.id == best_id else ""), style="bold" if t.id == best_id else "")
                row: list[Any] = [name, Text(t.status.value, style=_STYLE[t.status])]
                row += [text(_fmt(configs[t.id].get(k, ""))) for k in config_keys]
                row.append(str(t.iteration))
                row += [text(_fmt(t.last_result.get(m, "")) if t.last_result else "") for m in metrics]
                table.add_row(*row)
            if hidden:
                table.add_row(Text(f"+{hidden} more", style="dim"), Text(_WORDS[status], style="dim"), *blank)

        head = Text(self.status_line(experiment).split("; ")[0], style="bold")
        results_s, trials_s = self.rates()
        stats = Text(f"{experiment.num_results} results ({_rate(results_s)}/s), {_rate(trials_s)} trials/s · "
                     f"resources {self.resources_text(experiment)}")
        parts: list[Any] = [head, stats]
        best_text = self._best_text(experiment)
        if best_text and best_id is not None:
            trial = held.get(best_id) or self._done.get(best_id)
            config = ""
            if trial is not None:
                flat = _flat(shown(trial).config)
                config = " " + ", ".join(f"{k}={_fmt(v)}" for k, v in list(flat.items())[:8])
            parts.append(text(f"{best_text}{config}   (* in the table)", style="bold"))
        if self._errors > self._error_lines:
            parts.append(Text(f"{self._errors} trials failed", style="red"))
        parts.append(table)
        return Group(*parts)


def _allocate(sizes: list[int], budget: int) -> list[int]:
    """Rows per group: one for every non-empty group first (every status stays visible), then the rest in
    group order (running trials before finished ones before pending ones)."""
    quotas = [0] * len(sizes)
    for i, n in enumerate(sizes):
        if n and budget > 0:
            quotas[i], budget = 1, budget - 1
    for i, n in enumerate(sizes):
        extra = min(n - quotas[i], budget)
        quotas[i] += extra
        budget -= extra
    return quotas


def _flat(config: Any) -> dict[str, Any]:
    return flatten(config) if isinstance(config, dict) else {}


def _config_columns(configs: list[dict[str, Any]]) -> list[str]:
    """Up to five config keys: those whose values differ between the shown trials first."""
    keys = list(dict.fromkeys(k for c in configs for k in c))

    def varies(k: str) -> bool:
        return len({repr(c.get(k)) for c in configs}) > 1

    ordered = [k for k in keys if varies(k)] + [k for k in keys if not varies(k)]
    return ordered[:_CONFIG_COLUMNS]
