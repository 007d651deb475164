"""The experiment report: every plot that applies, in one self-contained HTML file."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from tunesmith._display import trial_counts
from tunesmith._errors import ConfigError
from tunesmith._objective import Objective
from tunesmith._secrets import shown as masked
from tunesmith.plots import data as plot_data
from tunesmith.plots.lineage import lineage_graph_for
from tunesmith.plots.render import Panel, write_html
from tunesmith.results import ResultSet, feasible_result, load
from tunesmith.trial import ITERATION

log = logging.getLogger("tunesmith")


def build_panels(rs: ResultSet, metric: str | None = None, mode: str | None = None,
                 pareto: Sequence[tuple[str, str]] | None = None, x: str = ITERATION,
                 final: str = "last") -> tuple[list[Panel], list[str]]:
    """The report's plots, and a note for each plot left out (and why).

    Args:
        rs: the experiment.
        metric, mode: what to plot; default: the experiment's.
        pareto: two ``(metric, mode)`` pairs for a Pareto-front plot; default: the experiment's metrics
            when it has two.
        x: the learning curves' x axis (any counter the trials report).
        final: which value of a trial the sensitivity plot takes: ``last``, ``best`` or ``mean_last``.

    Raises:
        ConfigError: no result reported ``x``, an unknown ``final``, or a bad ``pareto``.
    """
    panels: list[Panel] = []
    notes: list[str] = []
    if not rs.trials:
        return panels, ["the experiment has no trials yet"]
    try:
        metric = plot_data.resolve_metric(rs, metric)
    except ConfigError as exc:
        return panels, [str(exc)]
    mode = plot_data.mode_or_none(rs, mode, metric)
    with plot_data.shared_read(rs, [metric, x]):  # one pass over the results, shared by every plot
        _add_panels(rs, metric, mode, pareto, x, final, panels, notes)
    return panels, notes


def _add_panels(rs: ResultSet, metric: str, mode: str | None, pareto: Sequence[tuple[str, str]] | None, x: str,
                final: str, panels: list[Panel], notes: list[str]) -> None:
    def add(title: str, description: str, absent: str, make: Any, *args: Any) -> None:
        try:
            figure = make(*args)
        except ConfigError as exc:
            notes.append(f"{title}: left out ({exc})")
            return
        if figure is None:
            notes.append(f"{title}: left out ({absent})")
        else:
            panels.append(Panel(title, figure, description))

    curves = plot_data.learning_curves(rs, metric, x)  # a bad x is the user's error, not a plot left out
    many = len(rs.trials) > plot_data.MAX_TRIAL_LINES
    reported = plot_data.reported(rs, metric)  # else empty axes (every trial failed at once): a note instead
    unreported = "no trial reported the metric"
    if reported:
        panels.append(Panel("Learning curves", curves, (
            f"{len(rs.trials)} trials: the median and the 25–75% and 10–90% bands over trials, and the best "
            f"{plot_data.TOP_TRIALS} trials as lines. " if many else "One line per trial. ")
            + "Grey: stopped early by the scheduler; red dashed: failed; dotted: PBT exploit."))
    else:
        notes.append(f"Learning curves: left out ({unreported})")
    add("Learning curves by value", "Mean over the seeds of each swept value, band: ±1 std; the figure RL "
        "papers show.", "no seed key (seed, *_seed) repeated for a value", plot_data.seed_curves, rs, metric, x)
    if mode is not None and not reported:
        notes.append(f"Best so far: left out ({unreported})")
    elif mode is not None:
        add("Best so far", "The best result found so far over wall-clock time; grey points: every result.",
            "", plot_data.best_so_far, rs, metric, mode)
    else:
        notes.append("Best so far: left out (no mode: pass mode 'min' or 'max')")
    if final not in plot_data.FINALS:
        raise ConfigError(f"final: expected one of {list(plot_data.FINALS)}, got {final!r}")
    which = {"last": "last result", "best": "best result", "mean_last": "mean of the last 5 results"}[final]
    add("Parameter sensitivity", f"Each trial's {which} per grid value: mean line, band from min to max over "
        "repeats, a point per trial.",
        "no grid dimension besides seeds in the search space, or no trial reported the metric",
        plot_data.sensitivity, rs, metric, None, final, 5, mode)
    add("Parallel coordinates", "One line per trial, coloured by the final metric.",
        "no trial reported the metric", plot_data.parallel_coordinates, rs, metric, mode)
    add("Metric against each parameter", "Final metric of each trial against each parameter that varies.",
        "no parameter varies between trials", plot_data.scatter, rs, metric)
    add("Trial timeline", "When each trial ran, coloured by its status.", "", plot_data.timeline, rs)
    if mode is not None:
        add("Parameter importance", "How differently each parameter is spread among the best 10% of the trials "
            "than among all (PED-ANOVA); sums to 1.", "fewer than 4 trials reported the metric, or nothing varies",
            plot_data.importance, rs, metric, mode)
    add("PBT lineage", "A line per trial and generation, an arrow per exploit (from the trial copied, at the "
        "iteration copied) labelled with the config it changed.", "no PBT exploit", lineage_graph_for, rs)
    pairs = list(pareto) if pareto else _spec_objectives(rs)
    if pairs:
        if len(pairs) != 2:
            raise ConfigError(f"pareto: expected two (metric, mode) pairs, got {pairs!r}")
        add("Pareto front", "Each trial's last values of two metrics; the non-dominated trials are joined (as "
            "result.pareto_front(): with constraints, among the feasible ones; crosses: infeasible trials).", "",
            plot_data.pareto_front, rs, [p[0] for p in pairs], [p[1] for p in pairs])


def _spec_objectives(rs: ResultSet) -> list[tuple[str, str]]:
    objective = Objective.from_spec(rs.meta.get("spec", {}))
    if objective.is_multi and len(objective.names) == 2:
        return list(zip(objective.names, objective.modes))
    return []


def summary(rs: ResultSet, metric: str | None = None, mode: str | None = None) -> list[tuple[str, str]]:
    """The facts shown at the top of a report: experiment, status, trials, best."""
    facts = [("experiment", rs.name), ("folder", rs.path), ("status", rs.status), ("trials", trial_counts(rs.trials))]
    constrained = [feasible_result(t.last_result) for t in rs.trials]
    if any(ok is not None for ok in constrained):  # run(constraints=...): best is among the feasible ones
        facts.append(("feasible trials", f"{sum(ok is True for ok in constrained)} of {len(rs.trials)} "
                                         f"(every constraint/<i> <= 0 in the last result)"))
    try:
        objective = Objective.from_args(metric or rs.metric, mode or rs.mode)
    except ConfigError:
        objective = Objective()
    if objective and not objective.is_multi:  # several metrics: no single best to show
        metric, mode = objective.primary, objective.primary_mode
        name = plot_data.shown_name(rs, metric)  # a name may quote a config's secret
        facts.append(("metric", f"{name} ({mode})"))
        try:
            best = rs.get_best(metric, mode)
        except ConfigError:
            best = None
        if best is not None:
            facts.append(("best trial (by last result)", f"{best.name}: {name}={_shown(best.metrics.get(metric))}"))
            facts.append(("best config", json.dumps(masked(best).config, sort_keys=True, default=str,
                                                      ensure_ascii=False)))
            try:  # get_best's own answer (infinities rank, as there; a finished store answers from its index)
                ever = rs.get_best(metric, mode, scope="all")
            except ConfigError:  # no trial reported the metric
                ever = None
            if ever is not None:
                facts.append(("best result (any iteration)", f"{ever.name} at iteration {ever.metrics[ITERATION]}: "
                                                             f"{name}={_shown(ever.metrics[metric])}"))
    created = rs.meta.get("created")
    if isinstance(created, (int, float)):
        facts.append(("started", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))))
    return facts


def _shown(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else repr(value)


def write_report(result_set: ResultSet | str, path: str, *, metric: str | None = None,
                 mode: str | None = None, pareto: Sequence[tuple[str, str]] | None = None,
                 title: str | None = None, x: str = ITERATION, final: str = "last") -> list[str]:
    """Write every plot that applies to the experiment into one HTML file that works offline.

    Args:
        result_set: the experiment: a ``ResultSet``, or a name or folder as for ``tunesmith.load``.
        path: the HTML file to write.
        metric, mode: what to plot; default: the experiment's.
        pareto: two ``(metric, mode)`` pairs for a Pareto-front plot, e.g.
            ``[("loss", "min"), ("latency", "min")]``.
        title: the page title; default: ``tunesmith report: <experiment>``.
        x: the learning curves' x axis: ``training_iteration`` or any counter the trials report
            (``timesteps``, ``episodes``).
        final: a trial's value in the sensitivity plot: ``last`` result, ``best``, or ``mean_last`` (of 5).

    The experiment is read as one state of its store (``ResultSet.snapshot``: a ``ResultSet`` given is
    refreshed), so a report of a run still writing names the trials, the best results and the plots of one moment;
    the snapshot ends before the plots are computed.

    Returns:
        The titles of the plots written, in page order (plots that do not apply are listed as notes on
        the page instead).

    Raises:
        ConfigError: no such experiment, a bad ``pareto`` or ``final``, or no result reported ``x``.
    """
    rs = load(result_set) if isinstance(result_set, str) else result_set
    with contextlib.ExitStack() as read:
        # one state of a store a run may still be writing: the trials read anew, the results and events the plots
        # use, and the summary's best, all read in it; then it is let go before the plots are computed (seconds
        # at 10,000 trials), as the writer's log cannot be checkpointed past it and grows meanwhile
        with rs.snapshot():
            try:
                shared = plot_data.resolve_metric(rs, metric)
            except ConfigError:
                shared = None
            read.enter_context(plot_data.shared_read(rs, [k for k in (shared, x) if k]))
            facts = summary(rs, metric, mode)
        panels, notes = build_panels(rs, metric, mode, pareto, x, final)
    write_html(path, title or f"tunesmith report: {rs.name}", panels, facts, notes)
    log.info("report of %s written to %s (%d plots)", rs.name, path, len(panels))
    return [p.title for p in panels]
