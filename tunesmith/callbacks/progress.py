"""Progress: a live rich table in a terminal; a few plain lines otherwise; nothing at ``verbose=0``."""

from __future__ import annotations

import math
import time
from typing import Any

from tunesmith._secrets import mask
from tunesmith.callbacks._base import Callback, ExperimentInfo
from tunesmith.trial import TrialStatus, TrialView

_ORDER = {TrialStatus.RUNNING: 0, TrialStatus.PAUSED: 1, TrialStatus.PENDING: 2, TrialStatus.TERMINATED: 3,
          TrialStatus.ERROR: 4}
_STYLE = {TrialStatus.RUNNING: "green", TrialStatus.PAUSED: "yellow", TrialStatus.TERMINATED: "blue",
          TrialStatus.ERROR: "red", TrialStatus.PENDING: "white"}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


class Progress(Callback):
    """Shows the experiment's trials, their status, last metric and the best so far.

    Args:
        verbose: 0 silent, 1 table (or plain lines), 2 also a line per finished trial.
        refresh_s: seconds between redraws of the live table.
        plain_every_s: seconds between status lines when output is not a terminal.
        max_rows: trials shown in the table (running ones first, then the best).
        console: a ``rich.console.Console`` (default: standard output).
    """

    def __init__(self, verbose: int = 1, refresh_s: float = 0.5, plain_every_s: float = 10.0, max_rows: int = 20,
                 console: Any = None) -> None:
        self.verbose = verbose
        self.refresh_s = refresh_s
        self.plain_every_s = plain_every_s
        self.max_rows = max_rows
        self.console = console
        self._live: Any = None
        self._last = 0.0
        self._last_results = 0
        self._last_t = 0.0
        self._rate = 0.0
        self._finished = 0

    def on_experiment_start(self, experiment: ExperimentInfo) -> None:
        if self.verbose <= 0:
            return
        from rich.console import Console

        if self.console is None:
            self.console = Console()
        self._last = self._last_t = time.monotonic()
        if self.console.is_terminal:
            from rich.live import Live

            self._live = Live(self._render(experiment), console=self.console, auto_refresh=False,
                              transient=False)
            self._live.start()
        else:
            self.console.print(f"tunesmith: experiment {experiment.name} in {experiment.path}", highlight=False,
                               soft_wrap=True)

    def on_trial_complete(self, trial: TrialView) -> None:
        self._finished += 1

    def on_trial_error(self, trial: TrialView) -> None:
        self._finished += 1
        if self.verbose > 0 and self.console is not None:
            last = (trial.error or "").strip().splitlines()
            msg = f"{trial.name} ERROR: {last[-1] if last else 'failed'}"
            if self._live is not None:
                self._live.console.print(msg, style="red", highlight=False)
            else:
                self.console.print(msg, highlight=False)

    def on_tick(self, experiment: ExperimentInfo) -> None:
        if self.verbose <= 0 or self.console is None:
            return
        now = time.monotonic()
        every = self.refresh_s if self._live is not None else self.plain_every_s
        if now - self._last < every:
            return
        self._update_rate(experiment, now)
        self._last = now
        if self._live is not None:
            self._live.update(self._render(experiment), refresh=True)
        else:
            self.console.print(self._summary(experiment), highlight=False, soft_wrap=True)

    def on_experiment_end(self, experiment: ExperimentInfo) -> None:
        if self.verbose <= 0 or self.console is None:
            return
        self._update_rate(experiment, time.monotonic())
        if self._live is not None:
            self._live.update(self._render(experiment), refresh=True)
            self._live.stop()
            self._live = None
        self.console.print(self._summary(experiment, final=True), highlight=False, soft_wrap=True)

    # -- rendering ----------------------------------------------------------------------------------
    def _update_rate(self, experiment: ExperimentInfo, now: float) -> None:
        dt = now - self._last_t
        if dt > 0:
            self._rate = (experiment.num_results - self._last_results) / dt
            self._last_results = experiment.num_results
            self._last_t = now

    def _counts(self, experiment: ExperimentInfo) -> dict[TrialStatus, int]:
        counts: dict[TrialStatus, int] = {}
        for t in experiment.trials.values():
            counts[t.status] = counts.get(t.status, 0) + 1
        return counts

    def _summary(self, experiment: ExperimentInfo, final: bool = False) -> str:
        counts = self._counts(experiment)
        parts = [f"{n} {s.value.lower()}" for s, n in sorted(counts.items(), key=lambda kv: _ORDER[kv[0]])]
        total = experiment.num_samples if experiment.num_samples > 0 else "?"
        head = "done" if final else "running"
        line = (f"tunesmith {experiment.name} {head} {experiment.elapsed:.1f}s: trials {', '.join(parts) or 'none'}"
                f" (of {total}); {experiment.num_results} results")
        if not final:
            line += f" ({self._rate:.0f}/s)"
        best = experiment.best
        if best is not None:
            line += f"; best {experiment.metric}={_fmt(best[1])} (trial_{best[0]:05d})"
        if final:
            line += f"\nresults: {experiment.path}"
        return line

    def _render(self, experiment: ExperimentInfo) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        metric = experiment.metric if isinstance(experiment.metric, str) else None
        trials = list(experiment.trials.values())
        sign = -1.0 if experiment.mode == "max" else 1.0

        def key(t: TrialView) -> tuple[int, float, int]:
            v = t.last_result.get(metric) if (metric and t.last_result) else None
            score = sign * v if isinstance(v, (int, float)) and not math.isnan(v) else math.inf
            return (0 if t.status is TrialStatus.RUNNING else 1, score, t.id)

        shown = sorted(trials, key=key)[: self.max_rows]
        configs = {t.id: mask(t.config) for t in shown}  # never show a secret-looking value
        config_keys: list[str] = []
        for t in shown:
            for k, v in configs[t.id].items():
                if k not in config_keys and not isinstance(v, dict) and len(config_keys) < 5:
                    config_keys.append(k)
        table = Table(expand=False, show_edge=False, pad_edge=False)
        table.add_column("trial")
        table.add_column("status")
        for k in config_keys:
            table.add_column(k, justify="right")
        table.add_column("iter", justify="right")
        if metric:
            table.add_column(metric, justify="right")
        for t in shown:
            row: list[Any] = [t.name, Text(t.status.value, style=_STYLE[t.status])]
            row += [_fmt(configs[t.id].get(k, "")) for k in config_keys]
            row.append(str(t.iteration))
            if metric:
                row.append(_fmt(t.last_result.get(metric, "")) if t.last_result else "")
            table.add_row(*row)
        hidden = len(trials) - len(shown)
        footer = Text(f"... and {hidden} more trials" if hidden > 0 else "", style="dim")
        used = experiment.resources_in_use
        total = experiment.total_resources
        res = ", ".join(f"{k} {used.get(k, 0):g}/{total[k]:g}" for k in total if total[k] > 0)
        head = Text(self._summary(experiment) + (f"; resources {res}" if res else ""), style="bold")
        return Group(head, table, footer)
