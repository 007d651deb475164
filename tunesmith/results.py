"""Results read back from the store: the object ``run`` returns and ``load`` rebuilds."""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import itertools
import json
import math
import numbers
import os
import reprlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

from tunesmith import _layout
from tunesmith._display import error_lines
from tunesmith._epochs import Epoch, epoch_of, epochs, exploits
from tunesmith._errors import ConfigError
from tunesmith._layout import STORE_FILE
from tunesmith._objective import Objective, unwrap_single
from tunesmith.checkpoint import Checkpoint
from tunesmith.store.sqlite import (
    CONSTRAINT_PREFIX,
    Store,
    StoreError,
    feasible_result,
    holds_huge_int,
    result_dict,
    too_deep,
    within_floats,
)
from tunesmith.trial import ITERATION, TrialStatus, trial_name


@dataclass(frozen=True)
class TrialResult:
    """One trial as stored.

    Attributes:
        id: integer id within the experiment; ``name`` is ``trial_00001`` style.
        config: the configuration it ran with (after a PBT exploit, its latest).
        status: ``TrialStatus`` (TERMINATED, ERROR, PAUSED, RUNNING, PENDING).
        metrics: for ``result.best``, the result that made it best; otherwise its last result ({} if none).
        last_result: its last result ({} if none). A trial shows only results its ``config`` produced: after a PBT
            exploit it has none until the new config reports one (one that ends before it did has the exploit
            undone: it ends with its own config and result).
        checkpoint: its latest checkpoint, or None; from ``get_best(scope="all")``/``top(scope="all")``, the
            checkpoint saved with the result that made it best when that one is still kept. ``.load()``
            gives the state back. Paths are under the folder the experiment is read from (moved or copied
            folders find their own checkpoints).
        error: the traceback of its last failure, or None.
        parent_id: PBT: the trial whose checkpoint its *latest* exploit cloned (None if never exploited);
            ``parent_iteration`` is that checkpoint's iteration. Every exploit, with the configs before and
            after, is in ``ResultSet.lineage(id)``.
        generation: PBT: how many times it was exploited; ``history(id)`` is its current generation.
    """

    id: int
    config: dict[str, Any]
    status: TrialStatus
    metrics: dict[str, Any]
    last_result: dict[str, Any]
    checkpoint: Checkpoint | None
    error: str | None
    num_failures: int
    iteration: int
    path: str
    parent_id: int | None = None
    parent_iteration: int | None = None
    resources: dict[str, float] = field(default_factory=dict)
    generation: int = 0

    @property
    def name(self) -> str:
        return trial_name(self.id)

    def __repr__(self) -> str:
        """As the dataclass writes it, but its config's secret-looking values, and their text in its error, as
        ``***`` (printing a trial is an output too; the attributes keep the values as given)."""
        from tunesmith._secrets import shown

        masked = shown(self)
        return f"TrialResult({', '.join(f'{f.name}={getattr(masked, f.name)!r}' for f in dataclasses.fields(self))})"

    def _repr_html_(self) -> str:
        """In a notebook: a table of its config (secrets masked), last result and error."""
        from tunesmith._notebook import trial_html

        return trial_html(self)


class ResultSet:
    """An experiment's trials and results, read from its store (read-only; safe while a driver writes).

    ``metric``/``mode`` are the experiment's (a name and ``"min"``/``"max"``; lists of them for a
    multi-objective experiment, where ``best`` needs a metric and ``pareto_front()`` gives the trade-offs).

    ``name`` is the folder's name: a renamed folder is the experiment of its new name (the name it was
    created with is ``meta["spec"]["name"]``).

    Args:
        path: the experiment folder.
        metric, mode: what "best" means; default: the experiment's own. Given, they are checked as ``run()``
            checks them: one name and ``"min"``/``"max"``, or a list of names and a list of as many modes. A
            metric of the experiment given without ``mode`` keeps its mode from the experiment
            (``metric="loss"``, ``metric=["latency", "loss"]``); ``mode`` alone re-ranks the experiment's own
            metric(s) (``mode="max"`` for a single metric, a list of modes for several).

    Raises:
        ConfigError: no experiment store in the folder; ``metric``/``mode`` that ``run()`` would refuse (a single
            mode for a list of metrics, a mode for the experiment's several metrics that is not a list of as
            many, a metric not of the experiment's several whose mode is not given...), naming the argument.
        StoreError: the store is damaged, from a newer tunesmith, or missing a table (the message names it).
    """

    def __init__(self, path: str, metric: str | list[str] | None = None,
                 mode: str | list[str] | None = None) -> None:
        self.path = os.path.abspath(path)
        db_path = _layout.store_path(self.path)
        if not os.path.exists(db_path):
            raise ConfigError(f"no tunesmith experiment at {self.path} (no {STORE_FILE})")
        self._store = Store(db_path, readonly=True)
        self.meta = self._store.meta()
        spec = self.meta.get("spec", {})
        if not isinstance(spec, dict):
            raise StoreError(f"the experiment store {db_path} is damaged: its spec is not a JSON object")
        self.name: str = os.path.basename(self.path)
        chosen = _chosen_objective(Objective.from_spec(spec), metric, mode)
        self.metric: str | list[str] | None = chosen.metric
        self.mode: str | list[str] | None = chosen.mode
        self._trials: list[TrialResult] | None = None
        self._by_id: dict[int, TrialResult] = {}

    @property
    def metrics(self) -> list[str]:
        """The experiment's metrics as a list (one for a single objective, none without a metric)."""
        if isinstance(self.metric, list):
            return list(self.metric)
        return [self.metric] if self.metric else []

    @property
    def modes(self) -> list[str]:
        """``"min"``/``"max"`` per metric of ``metrics``."""
        if isinstance(self.mode, list):
            return list(self.mode)
        return [self.mode] if self.mode else []

    @property
    def status(self) -> str:
        """"running", "finished", "failed", "interrupted" (as the driver last recorded it), or "crashed": recorded
        as running, but no driver holds the experiment's lock (it was killed), as `tunesmith ls` and `show` say.
        Its trials stored RUNNING are shown PAUSED then (the store keeps RUNNING), as a Ctrl-C leaves them and as a
        resume continues them.
        Read anew at each access (a poll: ``while rs.status == "running"``)."""
        return _layout.live_status(self.path, str(self._store.meta().get("status", "running")))

    @property
    def trials(self) -> list[TrialResult]:
        """Every trial, by id."""
        if self._trials is None:
            records = self._store.trials()
            try:
                self._trials = [self._trial(rec) for rec in records]
                self._by_id = {t.id: t for t in self._trials}
            except (ValueError, TypeError, KeyError) as e:
                raise StoreError(f"the experiment store {self._store.path} is damaged: a trial's row cannot be "
                                 f"read ({type(e).__name__}: {e})") from e
        return self._trials

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[ResultSet]:
        """Read the experiment as one state of its store (a run still writing it goes on meanwhile): within
        the block the trials (read anew on entry), ``get_best``/``top`` and the plots of this result set all see
        the store as at the block's start. ``tunesmith report`` reads through one."""
        if self._store.in_snapshot:
            yield self
            return
        with self._store.snapshot():
            self.refresh()
            yield self

    def refresh(self) -> ResultSet:
        """Re-read the store (for an experiment still running)."""
        self._trials = None
        self._by_id = {}
        self.meta = self._store.meta()
        return self

    def _trial(self, rec: dict[str, Any], metrics: dict[str, Any] | None = None) -> TrialResult:
        last = rec["last_result"] or {}
        ckpt = None
        if rec["checkpoint"]:
            ckpt = Checkpoint(rec["checkpoint"], iteration=rec["checkpoint_iteration"])
        return TrialResult(
            id=rec["id"], config=rec["config"], status=TrialStatus(rec["status"]),
            metrics=last if metrics is None else metrics, last_result=last, checkpoint=ckpt,
            error=rec["error"], num_failures=rec["num_failures"], iteration=rec["iteration"],
            path=_layout.trial_dir(self.path, rec["id"]), parent_id=rec["parent_id"],
            parent_iteration=rec["parent_iteration"], resources=rec["resources"], generation=rec["generation"])

    def filter(self, status: TrialStatus | str | Iterable[TrialStatus | str] | None = None,
               config: dict[str, Any] | None = None,
               where: Callable[[TrialResult], bool] | None = None) -> list[TrialResult]:
        """The trials that match every condition given, by id.

        Examples::

            rs.filter(status="TERMINATED")                          # or ts.TrialStatus.TERMINATED
            rs.filter(status=["ERROR", "PAUSED"])
            rs.filter(config={"optim": {"name": "adam"}})           # nested: the keys given must match
            rs.filter(config={"lr": lambda lr: lr < 1e-2}, status="TERMINATED")
            rs.filter(where=lambda t: t.last_result.get("loss", math.inf) < 0.1)

        Args:
            status: one status or several (a trial matches any of them); names are case-insensitive.
            config: values a trial's config must have. A nested dict matches the keys it gives (the
                trial's dict may have more); a callable is a test of the value; lists and tuples compare
                alike (stored configs hold lists); numpy values compare as the Python ones
                (``np.True_`` as ``True``); anything else compares with ``==``. A trial whose
                config lacks a key given does not match.
            where: any test of the ``TrialResult``.

        Raises:
            ConfigError: an unknown status, ``config`` not a dict, a top-level ``config`` key that is not in
                the experiment's space, or ``where`` not callable.
        """
        statuses = None if status is None else _statuses(status)
        if config is not None:
            if not isinstance(config, dict):
                raise ConfigError(f"config: expected a dict of config values to match, got {config!r}")
            space = self.meta.get("spec", {}).get("space")
            if isinstance(space, dict):
                for key in config:
                    if key not in space:
                        raise ConfigError(f"config[{key!r}]: not a key of the experiment's space; expected one "
                                          f"of {sorted(map(str, space))}")
        if where is not None and not callable(where):
            raise ConfigError(f"where: expected a function of a TrialResult returning bool, got {where!r}")
        return [t for t in self.trials
                if (statuses is None or t.status in statuses)
                and (config is None or _matches(config, t.config))
                and (where is None or where(t))]

    def pareto_front(self, metrics: list[str] | None = None, modes: list[str] | None = None) -> list[TrialResult]:
        """The non-dominated trials: those no other trial beats in every metric at once, by id.

        A trial dominates another when its last result is at least as good in every metric and better in
        one (as ``best`` compares last results). Trials whose last result lacks a metric, or holds NaN
        or a non-number for it, are left out; trials with equal values are all kept. With ``run(constraints=...)``
        only the trials whose last result is feasible rank, when there is one (:func:`feasible_first`).

        Args:
            metrics: the metrics to trade off; default the experiment's (``run(metric=[...])``).
            modes: ``"min"``/``"max"`` per metric; default each metric's mode in the experiment.

        Raises:
            ConfigError: no metrics known, a mode missing for a metric, or malformed lists.
        """
        from tunesmith.searchers._pareto import pareto_front

        objective = self._objectives(metrics, modes)
        scored: list[tuple[TrialResult, list[float]]] = []
        for t in self._feasible_first():
            values = objective.values(t.last_result)
            if values is not None:
                scored.append((t, values))
        front = pareto_front([values for _, values in scored], objective.modes)
        return [scored[i][0] for i in front]

    def _objectives(self, metrics: Any, modes: Any) -> Objective:
        """The metrics and modes ``pareto_front`` trades off (``modes`` default: the experiment's)."""
        if metrics is None:
            if modes is not None and not self.metrics:
                raise ConfigError("modes: given without metrics; pass metrics=[...] too")
            metrics = self.metrics
            if not metrics:
                raise ConfigError(f"pareto_front: experiment {self.name} has no metric; pass "
                                  f"metrics=[...] and modes=[...]")
        if isinstance(metrics, str) or not isinstance(metrics, (list, tuple)) or not metrics:
            raise ConfigError(f"metrics: expected a non-empty list of metric names, got {metrics!r}")
        for i, m in enumerate(metrics):
            if not isinstance(m, str) or not m or m in metrics[:i]:
                raise ConfigError(f"metrics[{i}]: expected a metric name listed once, got {m!r}")
        if modes is None:
            known = dict(zip(self.metrics, self.modes))
            missing = [m for m in metrics if m not in known]
            if missing:
                raise ConfigError(f"modes: {missing[0]!r} is not one of the experiment's metrics "
                                  f"{self.metrics!r}, so its mode is unknown; pass modes=[...]")
            modes = [known[m] for m in metrics]
        if isinstance(modes, str) or not isinstance(modes, (list, tuple)) or len(modes) != len(metrics):
            raise ConfigError(f"modes: expected a list of {len(metrics)} 'min'/'max' values, one per metric in "
                              f"{list(metrics)!r}, got {modes!r}")
        for i, m in enumerate(modes):
            if m not in ("min", "max"):
                raise ConfigError(f"modes[{i}] (for {metrics[i]!r}) must be 'min' or 'max', got {m!r}")
        return Objective(tuple(metrics), tuple(modes), multi=True)

    @property
    def errors(self) -> list[TrialResult]:
        """Trials that ended in ERROR (``.error`` holds the traceback)."""
        return [t for t in self.trials if t.status is TrialStatus.ERROR]

    def trial(self, trial: int | str | TrialResult) -> TrialResult:
        """One trial by id or name (``3``, ``"3"``, ``"trial_00003"``; an id from ``dataframe()["trial_id"]``, a
        numpy int, too) or a ``TrialResult`` (its ``id``): from the trials already read (a dict by id), else one row
        read from the store by its key.

        Raises:
            KeyError: no such trial, or a string that is no trial's name.
            ConfigError: ``trial`` is neither a whole number (a bool is not), a string nor a ``TrialResult``.
        """
        tid = _trial_id(trial)
        if self._trials is not None:
            found = self._by_id.get(tid)
        elif not _storable_id(tid):
            found = None
        else:
            rec = self._store.trial(tid)
            try:
                found = None if rec is None else self._trial(rec)
            except (ValueError, TypeError, KeyError) as e:
                raise StoreError(f"the experiment store {self._store.path} is damaged: a trial's row cannot be "
                                 f"read ({type(e).__name__}: {e})") from e
        if found is None:
            raise KeyError(f"no trial {tid if isinstance(trial, TrialResult) else repr(trial)} in experiment "
                           f"{self.name}")  # a TrialResult by its id, not its whole record
        return found

    def importance(self, metric: str | None = None, mode: str | None = None) -> dict[str, float]:
        """How much each parameter matters to the metric: {parameter: importance}, summing to 1, largest first.

        PED-ANOVA (tunesmith/_importance.py): how differently a parameter's values are spread among the best
        10% of the trials (at least 5) than among all of them, from each trial's last result. Nested parameters
        are ``"a/b"``; trials without the metric are left out.

        Raises:
            ConfigError: no single metric and mode, or fewer than 4 trials reported the metric.
        """
        from tunesmith._importance import ped_anova

        objective = self._objective(metric, mode)
        done = [t for t in self.trials if isinstance(t.last_result.get(objective.primary), (int, float))]
        scores = [objective.score(t.last_result) for t in done]
        ranked = ped_anova([t.config for t in done], scores)
        return dict(sorted(ranked.items(), key=lambda item: (-item[1], item[0])))

    def history(self, trial: int | str | TrialResult, all_generations: bool = False) -> list[dict[str, Any]]:
        """The stored results of one trial's current generation, in iteration order: after PBT exploits, the
        results it reported before its latest exploit up to the cloned checkpoint's iteration, then the ones
        since (a restart from its own checkpoint replaced what came after it).

        ``all_generations=True``: every result the trial reported, the ones its exploits superseded included,
        ordered by ``generation`` (a key of each dict) then iteration; the current generation comes last.

        Raises:
            KeyError, ConfigError: as ``trial()``.
        """
        tid = _trial_id(trial)
        rows = self._store.results(tid, all_generations=all_generations) if _storable_id(tid) else []
        if not rows:
            self.trial(trial)  # KeyError for a trial that is not there; one without results has none
        if not all_generations:
            return [result_dict(row) for row in rows]
        return [{**result_dict(row), "generation": row.generation} for row in rows]

    def _results_of(self, trial_id: int) -> list[dict[str, Any]]:
        """``history`` of a trial known to be there."""
        return [result_dict(row) for row in self._store.results(trial_id)]

    def lineage(self, trial: int | str | TrialResult | None = None) -> list[dict[str, Any]]:
        """Every PBT exploit (of one trial, or of all), in the order they happened, from the store's events.

        Each is a dict: ``trial_id``; ``source`` (the trial whose checkpoint was cloned) and
        ``source_iteration`` (that checkpoint's iteration: the exploited trial went on from there);
        ``iteration`` (where the trial itself was when it was exploited); ``old_config`` and ``config`` (before
        and after); ``generation`` (the generation it started); ``time`` (a Unix time). ``iteration``,
        ``old_config`` and ``generation`` are None in stores written before they were recorded (schema 1).

        Raises:
            KeyError, ConfigError: as ``trial()``.
        """
        wanted = None
        if trial is not None:
            wanted = self.trial(trial).id  # KeyError for a trial that is not there
        out = []
        for _seq, when, kind, tid, data in self._store.events():
            if kind != "exploit" or not isinstance(data, dict) or (wanted is not None and tid != wanted):
                continue
            out.append({"trial_id": tid, "source": data.get("source"), "source_iteration": data.get("iteration"),
                        "iteration": data.get("from_iteration"), "old_config": data.get("old_config"),
                        "config": data.get("config"), "generation": data.get("generation"), "time": when})
        return out

    @property
    def best(self) -> TrialResult:
        """The best trial by its last result (``get_best`` for other scopes).

        ``.checkpoint`` is its latest checkpoint (``.checkpoint.load()``). With several metrics there is no
        single best: this raises ``ConfigError``; use ``pareto_front()`` or ``get_best(metric=...)``.
        """
        return self.get_best()

    def get_best(self, metric: str | None = None, mode: str | None = None, scope: str = "last") -> TrialResult:
        """The best trial.

        Args:
            metric, mode: default the experiment's; for a multi-objective experiment ``metric`` is needed
                (one of its metrics takes its mode from the experiment).
            scope: "last" compares each trial's last result; "all" its best result at any iteration
                (``.metrics`` is then that result, ``.checkpoint`` the one saved with it if still kept, else
                the trial's latest: ``.checkpoint.iteration`` tells which). After a PBT exploit a trial's best
                result is one its current config produced (after ``parent_iteration``), as its last one is.

        With ``run(constraints=...)``, "last" ranks the trials whose last result is feasible (every
        ``constraint/<i>`` <= 0) and "all" the feasible results (a trial's best feasible result at any iteration;
        trials that never had one are left out), when there is one; else everything ranks, as without
        constraints.

        Raises:
            ConfigError: no metric/mode known (or several metrics and none chosen), a bad scope, or no
                trial reported the metric.
        """
        if scope == "last" and self._trials is None:
            found = self._best_last(self._objective(metric, mode))
            if found is not None:
                return found
        with self._store.snapshot():  # its several reads (the index, each trial's rows) of one state
            if scope == "all":
                found = self._best_overall(self._objective(metric, mode))
                if found is not None:
                    return found
            ranked = self.top(1, metric=metric, mode=mode, scope=scope)
        if not ranked:
            raise ConfigError(f"no trial of {self.name} reported a numeric {self._objective(metric, mode).primary!r}")
        return ranked[0]

    def _best_last(self, objective: Objective) -> TrialResult | None:
        """``get_best(scope="last")`` before the trials are read: SQLite ranks the last results and one trial's
        row is read. None when that cannot answer (``top`` then reads every trial): a constrained experiment
        (feasibility comes first), or no trial with the metric (``get_best`` then raises as before)."""
        if self._store.any_last_result_has(_CONSTRAINT + "0"):
            return None
        found = self._store.best_last(objective.primary, objective.primary_mode)
        return None if found is None else self.trial(found[0])

    def _best_overall(self, objective: Objective) -> TrialResult | None:
        """``get_best(scope="all")`` by SQLite (``Store.best_overall``: the finished experiment's value-ordered
        index, or one pass over a running one's results): the best current result and one trial's row read. None
        when that cannot answer (``top`` then ranks the trials): a constrained experiment (feasibility comes
        first), a schema-1 store, or no trial with the metric."""
        if self._constrained():
            return None
        row = self._store.best_overall(objective.primary, objective.primary_mode)
        if row is None:
            return None
        t, result = self.trial(row.trial_id), result_dict(row)
        return TrialResult(**{**t.__dict__, "metrics": result, "checkpoint": self._checkpoint_at(t, result)})

    def _objective(self, metric: str | None, mode: str | None) -> Objective:
        """The one metric and mode that ``best``/``top`` rank by."""
        if metric is None:
            if isinstance(self.metric, list):
                raise ConfigError(f"best: experiment {self.name} has several metrics {self.metric!r}, so no single "
                                  f"best trial; use pareto_front(), or get_best(metric=...) for one of them")
            metric = self.metric
        if not metric or not isinstance(metric, str):
            raise ConfigError(f"best needs one metric (a name) and a mode ('min' or 'max'): pass them to run() or "
                              f"get_best(); got metric={metric!r}")
        if mode is None:
            known = dict(zip(self.metrics, self.modes))
            mode = known[metric] if metric in known else (self.mode if isinstance(self.mode, str) else None)
        if mode not in ("min", "max"):
            raise ConfigError(f"best needs a metric and mode ('min' or 'max') for {metric!r}: pass them to run() "
                              f"or get_best(); got mode={mode!r}")
        return Objective.single(metric, str(mode))

    def top(self, k: int, metric: str | None = None, mode: str | None = None, scope: str = "last") -> list[TrialResult]:
        """The ``k`` best trials, best first (trials that never reported the metric are left out).

        Arguments and errors as for ``get_best``; ``k`` is a positive int (else a ``ConfigError``).
        """
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ConfigError(f"k: expected a positive int (how many trials), got {k!r}")
        k = int(k)
        objective = self._objective(metric, mode)
        if scope not in ("last", "all"):
            raise ConfigError(f"scope must be 'last' or 'all', got {scope!r}")
        if scope == "all":
            with self._store.snapshot():  # each trial's best value, then the k best trials' rows: one state
                if self._constrained():
                    return self._top_all(k, objective, feasible=True) or self._top_all(k, objective, feasible=False)
                return self._top_all(k, objective, feasible=False)
        return best_first(objective, self.trials, _last_result)[0][:k]

    def _top_all(self, k: int, objective: Objective, feasible: bool) -> list[TrialResult]:
        """``top(k, scope="all")``: the trials by their best result (``feasible``: their best result that meets the
        constraints; [] when no trial has one)."""
        best = self._store.best_by_trial(objective.primary, objective.primary_mode, feasible=feasible)
        if best is not None:
            # SQLite found each trial's best value: only the k best trials are read and their results decoded
            sign = 1 if objective.primary_mode == "min" else -1
            order = sorted((sign * v, tid) for tid, v in best.items())
            candidates = [self.trial(tid) for _, tid in order[:k]]
        else:
            candidates = self.trials
        scored: list[tuple[float, int, TrialResult]] = []
        for t in candidates:
            value, result = None, None
            row = (self._store.best_result(t.id, objective.primary, objective.primary_mode, feasible=feasible)
                   if best else None)
            # else: a scan of its rows (no index, rows SQLite cannot read, or a name its JSON path cannot spell)
            rows = [result_dict(row)] if row is not None else [
                res for res in self._results_of(t.id)  # those its config produced: after its latest exploit's clone
                if t.parent_iteration is None or res[ITERATION] > t.parent_iteration]
            for res in rows:
                v = objective.value(res)
                if (v is not None and (value is None or objective.better(v, value))
                        and (not feasible or feasible_result(res))):
                    value, result = v, res
            if value is None or result is None:
                continue
            scored.append((-objective.score(result), t.id, TrialResult(**{
                **t.__dict__, "metrics": result, "checkpoint": self._checkpoint_at(t, result)})))
        scored.sort(key=lambda x: (x[0], x[1]))
        return [t for _, _, t in scored[:k]]

    def _constrained(self) -> bool:
        """Whether the experiment ran with ``constraints=``: some last result holds ``constraint/0`` (from the
        trials when read, else one text search by SQLite)."""
        if self._trials is not None:
            return any(_CONSTRAINT + "0" in t.last_result for t in self._trials)
        return self._store.any_last_result_has(_CONSTRAINT + "0")

    def _feasible_first(self) -> list[TrialResult]:
        """With ``run(constraints=...)``: the trials whose last result is feasible (every ``constraint/<i>`` <= 0),
        when there is one; else (or without constraints) every trial."""
        return feasible_first(self.trials, _last_result)

    def _checkpoint_at(self, t: TrialResult, result: dict[str, Any]) -> Checkpoint | None:
        """The checkpoint saved with ``result`` if it is still kept, else the trial's latest."""
        iteration = result.get(ITERATION)
        for it, path in self._store.checkpoints(t.id):
            if it == iteration:
                return Checkpoint(path, iteration=it)
        return t.checkpoint

    def dataframe(self, all_results: bool = False, show_secrets: bool = False) -> Any:
        """A pandas DataFrame: one row per trial (config as ``config/<key>``, last result's metrics), or one
        row per stored result with ``all_results=True``; a failed trial's row has its error's last line in
        ``error``, unless the trial reported a metric of that name (``errors`` has every traceback). Config
        values that look like secrets (keys with key/token/secret/password, passwords in URLs) and the config's
        secrets quoted in text results show as ``***`` unless ``show_secrets=True``. The
        ``pandas`` extra also installs orjson, which ``all_results=True`` decodes the results with (the same
        values as Python's ``json``, faster); without it Python's ``json`` is used.

        Text pandas' string columns cannot hold (a lone surrogate: a file name that is not UTF-8, as
        ``os.listdir`` gives it) is kept as it is, in a column of Python objects.

        Raises:
            ImportError: pandas is not installed (``pip install tunesmith[pandas]``).
        """
        try:
            import pandas as pd
        except ImportError as e:
            raise ImportError("dataframe() needs pandas: pip install 'tunesmith[pandas]'") from e
        try:
            return self._dataframe(pd, all_results, show_secrets)
        except UnicodeEncodeError as e:
            # pandas' str columns (pyarrow) refuse lone surrogates: build the frame again with text as objects
            with _text_as_objects(pd, e):
                return self._dataframe(pd, all_results, show_secrets)

    def _dataframe(self, pd: Any, all_results: bool, show_secrets: bool) -> Any:
        from tunesmith._secrets import mask
        from tunesmith._secrets import shown as masked
        from tunesmith.space import flatten

        def shown(config: dict[str, Any]) -> dict[str, Any]:
            return {f"config/{k}": v for k, v in flatten(config).items()}

        rows = []
        by_id = {t.id: t if show_secrets else masked(t) for t in self.trials}  # configs and errors masked
        if all_results:
            configs = {tid: shown(t.config) for tid, t in by_id.items()}
            frame = self._results_frame(pd, _ProducedBy(configs, self._store.events("exploit"), shown,
                                                         (lambda c: c) if show_secrets else mask))
            if not show_secrets:
                _mask_text_results(frame, {t.id: t.config for t in self.trials}, self._store.past_configs())
            return frame
        else:
            for t in by_id.values():
                rec = {"trial_id": t.id, "status": t.status.value, **t.last_result}
                rec.update(shown(t.config))
                if t.error and "error" not in rec:  # a metric of that name stays (status says it failed)
                    rec["error"] = error_lines(t.error)[-1]
                rows.append(rec)
        return pd.DataFrame(rows)

    def _results_frame(self, pd: Any, configs: _ProducedBy) -> Any:
        """``dataframe(all_results=True)``, built as columns, ``_FRAME_CHUNK`` rows at a time: the chunk's
        metrics decoded in one ``json.loads`` and made a frame by pandas, the automatic keys and the trial id
        straight from the rows, and each trial's config (masked and flattened once, in ``configs``) repeated
        over its rows. Each chunk's frame (the Python objects of one chunk at most are alive) is poured into
        the columns of the whole frame (:class:`_FrameColumns`): a number column is one array, allocated once
        at the store's count and filled in place, that becomes the frame without a copy. Columns, their order,
        types and values are those of the chunk frames concatenated, as it was built before, which are those
        of one dict per result (``{"trial_id", **result, **config}``) given to pandas but where a chunk holds
        only None in a column (object, not float64). A result whose metric names clash with those keys is
        still built one dict per result. A chunk whose results all report the same keys (the usual) is not
        looked at row by row: its trials' stretches come from ``itertools.groupby`` of the ids; pandas is told
        the chunk's keys (it would look through every dict for them), or, when the results share their keys,
        given one list per key; the ids and automatic keys go to it as numpy arrays where they are what pandas
        would infer (``_typed``)."""
        order: dict[str, None] = {}  # every column by first appearance, as pandas orders a list of dicts
        whole = _FrameColumns(pd, self._store.count_results())
        loads = _json_array_loads()
        for rows in self._store.result_chunks(_FRAME_CHUNK):
            text = "[" + ",".join([r[4] for r in rows]) + "]"
            try:
                metrics, exact = loads(text), loads is json.loads
            except RecursionError:  # nested too deeply for Python's decoder (a damaged store): named one by one
                return self._results_frame_by_row(pd, configs)
            except ValueError:  # NaN or Infinity (Python's JSON writes them), which orjson refuses
                try:
                    metrics, exact = json.loads(text), True
                except (ValueError, RecursionError):  # a result that is not JSON (a damaged store, or one nested
                    return self._results_frame_by_row(pd, configs)  # too deeply): one by one, it is named
            if set(map(type, metrics)) != {dict} or too_deep(text, metrics, len(rows) + 1):
                return self._results_frame_by_row(pd, configs)  # a result that is no flat object (damaged): named
            if exact and holds_huge_int(text):  # orjson refuses one: json.loads read it
                for m in metrics:
                    within_floats(m)
            tids = [r[0] for r in rows]
            config_cols: dict[str, list[Any]] = {}
            seg_start, seg_cfg = 0, cast("dict[str, Any]", {})
            shapes = set(map(tuple, metrics))  # each result's keys in their order
            if len(shapes) == 1:  # the usual: every result of the chunk reports the same keys
                keys = dict.fromkeys(next(iter(shapes)))
                if _AUTO_KEYS.intersection(keys) or any(k.startswith("config/") for k in keys):
                    return self._results_frame_by_row(pd, configs)
                order["trial_id"] = None
                order.update(keys)
                order.update(_AUTO_ORDER)
                end = 0
                for tid, same in itertools.groupby(tids):  # one stretch of rows per trial
                    start, end = end, end + len(list(same))
                    for at, config in configs.stretches(tid, rows, start, end):  # one per config (PBT)
                        _fill_config(config_cols, seg_cfg, seg_start, at)
                        seg_start, seg_cfg = at, config
                        order.update(dict.fromkeys(seg_cfg))
                def build(metrics: list[dict[str, Any]], keys: Any = keys) -> Any:
                    # a column per key, typed by pandas as it types them from the dicts
                    return pd.DataFrame({key: [m[key] for m in metrics] for key in keys})
            else:
                keys = {}  # the chunk's keys by first appearance, as pandas would find them
                prev_tid, prev_keys = None, None
                for i, (tid, m) in enumerate(zip(tids, metrics)):
                    if tid != prev_tid or m.keys() != prev_keys:  # only then can a column appear
                        if _AUTO_KEYS.intersection(m) or any(k.startswith("config/") for k in m):
                            return self._results_frame_by_row(pd, configs)
                        order["trial_id"] = None
                        order.update(dict.fromkeys(m))
                        order.update(_AUTO_ORDER)
                        keys.update(dict.fromkeys(m))
                        prev_keys = m.keys()
                    config = configs.at(tid, rows[i][1]) if tid != prev_tid or tid in configs.exploited else seg_cfg
                    if tid != prev_tid or config is not seg_cfg:
                        _fill_config(config_cols, seg_cfg, seg_start, i)
                        seg_start, seg_cfg, prev_tid = i, config, tid
                        order.update(dict.fromkeys(seg_cfg))
                def build(metrics: list[dict[str, Any]], keys: Any = keys) -> Any:
                    return pd.DataFrame(metrics, columns=list(keys))  # named: pandas need not look through every row
            frame = build(metrics)
            if not exact and _widened(frame, whole.np):  # an int past 64 bits that orjson made a float
                frame = build(json.loads(text))
            _fill_config(config_cols, seg_cfg, seg_start, len(rows))
            del metrics, text
            columns: dict[str, Any] = {"trial_id": _typed(whole.np, tids, "int64")}
            columns.update({name: frame[name] for name in frame.columns})
            for name, pos, dtype in _AUTO_COLUMNS:
                columns[name] = _typed(whole.np, [r[pos] for r in rows], dtype)
            for name, col in config_cols.items():
                if len(col) < len(rows):
                    col.extend([math.nan] * (len(rows) - len(col)))
                columns[name] = col
            whole.add(pd.DataFrame({name: columns[name] for name in order if name in columns}))
            del rows, columns, frame, config_cols
        return whole.frame(order)

    def _results_frame_by_row(self, pd: Any, configs: _ProducedBy) -> Any:
        """``dataframe(all_results=True)`` one dict per result: for results whose metric names clash with the
        trial id, the automatic keys or the config columns (the later key wins, as it always did)."""
        rows = []
        for row in self._store.results():
            rows.append({"trial_id": row[0], **result_dict(row), **configs.at(row[0], row[1])})
        return pd.DataFrame(rows)

    @property
    def plot(self) -> Any:
        """The report's plots for a notebook: ``result.plot.learning_curves(x="timesteps")``,
        ``.seed_curves()``, ``.sensitivity(final="best")``, ``.parallel_coordinates()``, ``.scatter()``,
        ``.best_so_far()``, ``.timeline()``, ``.pareto_front(metrics, modes)``. Each returns a figure that
        draws itself inline (``.figure``: the plotly dict; ``.to_plotly()``: a plotly ``Figure``)."""
        from tunesmith._notebook import PlotAccessor

        return PlotAccessor(self)

    def _repr_html_(self) -> str:
        """In a notebook: the first trials as a table (secrets masked) and a count of the rest."""
        from tunesmith._notebook import result_set_html

        return result_set_html(self)

    def __len__(self) -> int:
        return len(self.trials)

    def __repr__(self) -> str:
        return f"ResultSet({self.name!r}, trials={len(self.trials)}, status={self.status!r})"


# rows per part of dataframe(all_results=True): its Python objects (the SQL rows, their decoded metrics, pandas'
# inference) are alive at once: larger parts raise the peak, smaller ones cost no time (benchmarks/readers.py
# measures the peak)
_FRAME_CHUNK = 1 << 14
_AUTO_ORDER = dict.fromkeys(("training_iteration", "time_total_s", "timestamp"))
_AUTO_KEYS = frozenset(("trial_id", *_AUTO_ORDER))
# the automatic keys' columns: where in a stored row, and their type (the store's INTEGER and REAL columns)
_AUTO_COLUMNS = (("training_iteration", 1, "int64"), ("time_total_s", 2, "float64"), ("timestamp", 3, "float64"))


@contextlib.contextmanager
def _text_as_objects(pd: Any, error: UnicodeEncodeError) -> Iterator[None]:
    """Frames built within infer no str columns (text stays Python objects): pandas 3's
    ``future.infer_string`` off, its deprecation warning silenced. Where pandas has no such option any more,
    ``error`` (what building the frame raised) becomes a ValueError that says why."""
    import warnings

    with warnings.catch_warnings(), contextlib.ExitStack() as stack:
        warnings.simplefilter("ignore")
        try:
            stack.enter_context(pd.option_context("future.infer_string", False))
        except (KeyError, ValueError) as e:  # pandas.errors.OptionError is a KeyError
            raise ValueError(f"dataframe(): a config value or a result holds text pandas cannot store in a "
                             f"column ({error}: a lone surrogate, as a file name that is not UTF-8 gives)") from e
        yield


def _json_array_loads() -> Callable[[str], Any]:
    """The JSON decoder of the results' chunks: orjson's where installed (the `pandas` extra; several times
    faster than Python's, the one cost of ``dataframe(all_results=True)`` that grows with the size of each
    result), else Python's. A chunk orjson refuses (NaN, Infinity) or may read differently (an int past 64
    bits, which it makes a float: :func:`_widened`) is decoded by Python's."""
    try:
        import orjson
    except ImportError:
        return json.loads
    return cast("Callable[[str], Any]", orjson.loads)


def _widened(frame: Any, np: Any) -> bool:
    """Whether a chunk's frame holds a float at least 2**63 in size, anywhere (a number column, or a list or
    dict in an object column): what orjson makes of an int past 64 bits, which Python's JSON keeps an int."""
    for name in frame.columns:
        col = frame[name]
        if col.dtype == np.float64:
            if (np.abs(col.to_numpy()) >= _WIDE).any():
                return True
        elif col.dtype == object and any(map(_holds_wide, col)):
            return True
    return False


_WIDE = 2.0**63


def _holds_wide(value: Any) -> bool:
    if type(value) is float:
        return abs(value) >= _WIDE
    if type(value) is list:
        return any(map(_holds_wide, value))
    if type(value) is dict:
        return any(map(_holds_wide, value.values()))
    return False


def _typed(np: Any, values: list[Any], dtype: str) -> Any:
    """``values`` as numpy makes them an array, where that is ``dtype`` (as pandas would infer it, with less
    work per value); else the list itself, for pandas to type (a store someone else wrote may hold anything
    in a column: text, a number past int64)."""
    try:
        array = np.array(values)
    except (TypeError, ValueError, OverflowError):
        return values
    return array if array.dtype == dtype else values


class _FrameColumns:
    """The columns of ``dataframe(all_results=True)``, filled one chunk frame after another, each exactly as
    ``pd.concat`` of the chunk frames (``ignore_index=True``) would make it, without holding the chunks and
    the concatenation at once (issue 19 row 7: the peak was the frame twice plus the last chunk).

    A column that is int64 or float64 in every chunk holding it is one 8-byte array: each chunk's values are
    written into it in their own type (its bits), and at the end it is int64 where every row holds an int,
    else float64 (the int stretches converted in place, NaN where a chunk lacks it), as concat makes it. Any
    other column (strings, bools, objects) keeps its chunk pieces and is concatenated by pandas itself, from
    frames of those columns only; a number column that later turns out to be one of those goes back to its
    pieces (its stretches read back in their own type, so nothing is lost)."""

    def __init__(self, pd: Any, expected: int) -> None:
        import numpy as np

        self.pd, self.np = pd, np
        self.capacity = max(expected, 0)  # the store's count; a writer may add rows while we read (grown then)
        self.rows = 0
        self.chunks: list[tuple[int, int]] = []  # (start, length) of each chunk
        self.numbers: dict[str, Any] = {}  # name -> an 8-byte array of capacity rows
        self.kinds: dict[str, list[tuple[int, int, str]]] = {}  # name -> its stretches (start, end, "i" or "f")
        self.pieces: dict[str, dict[int, Any]] = {}  # name -> {chunk index: its Series}

    def add(self, chunk: Any) -> None:
        np = self.np
        start, n = self.rows, len(chunk)
        if start + n > self.capacity:
            self._grow(max(start + n, 2 * self.capacity))
        index = len(self.chunks)
        self.chunks.append((start, n))
        for name in chunk.columns:
            col = chunk[name]
            kind = _number_kind(col.dtype, np)
            if name not in self.pieces and kind is None and name in self.numbers:
                self._to_pieces(name)
            if name in self.pieces or kind is None:
                self.pieces.setdefault(name, {})[index] = col
                continue
            buf = self.numbers.get(name)
            if buf is None:
                buf = self.numbers[name] = np.empty(self.capacity, dtype=np.float64)
                self.kinds[name] = []
            buf.view(np.int64 if kind == "i" else np.float64)[start:start + n] = col.to_numpy()
            self.kinds[name].append((start, start + n, kind))
        self.rows = start + n

    def _grow(self, capacity: int) -> None:
        for name, buf in self.numbers.items():
            bigger = self.np.empty(capacity, dtype=buf.dtype)
            bigger[:self.rows] = buf[:self.rows]
            self.numbers[name] = bigger
        self.capacity = capacity

    def _to_pieces(self, name: str) -> None:
        """A number column met a chunk of another type: its chunks so far become Series again, each in the
        type it had (read back from its stretch's bits)."""
        np, buf = self.np, self.numbers.pop(name)
        starts = {start: i for i, (start, _) in enumerate(self.chunks)}
        self.pieces[name] = {starts[a]: self.pd.Series(buf.view(np.int64 if kind == "i" else np.float64)[a:b].copy())
                             for a, b, kind in self.kinds.pop(name)}

    def frame(self, order: dict[str, None]) -> Any:
        pd, np, n = self.pd, self.np, self.rows
        if not n:
            return pd.DataFrame([])
        columns: dict[str, Any] = {}
        for name, buf in self.numbers.items():
            stretches = self.kinds[name]
            if all(kind == "i" for _, _, kind in stretches) and sum(b - a for a, b, _ in stretches) == n:
                columns[name] = buf.view(np.int64)[:n]
                continue
            values, filled = buf[:n], np.zeros(n, dtype=bool)
            for a, b, kind in stretches:
                if kind == "i":
                    values[a:b] = buf.view(np.int64)[a:b]  # numpy copies an overlapping source first
                filled[a:b] = True
            values[~filled] = np.nan
            columns[name] = values
        self.numbers.clear()
        if self.pieces:
            parts = [pd.DataFrame({name: by_chunk[i] for name, by_chunk in self.pieces.items() if i in by_chunk},
                                  index=pd.RangeIndex(length)) for i, (_, length) in enumerate(self.chunks)]
            self.pieces.clear()
            joined = pd.concat(parts, ignore_index=True, sort=False)
            del parts
            columns.update({name: joined[name] for name in joined.columns})
        # copy=False: each array becomes its column as it is (pandas would otherwise copy every one of them)
        return pd.DataFrame({name: columns[name] for name in order if name in columns}, copy=False)


def _number_kind(dtype: Any, np: Any) -> str | None:
    """"i" for int64, "f" for float64 (the two types concat keeps in one 8-byte array), else None."""
    if dtype == np.dtype(np.int64):
        return "i"
    if dtype == np.dtype(np.float64):
        return "f"
    return None


class _ProducedBy:
    """The config columns of each result of ``dataframe(all_results=True)``: those of the config that produced it.
    A trial's current config (``configs``: shown, flattened) for most; after a PBT exploit the trial's rows up to
    the cloned checkpoint's iteration (its current generation holds them) were produced by its config before,
    which its exploit events tell (``_epochs``), shown as its current one is (``show``: flattened, ``mask``:
    masked unless ``show_secrets``)."""

    def __init__(self, configs: dict[int, dict[str, Any]], events: list[tuple[int, float, str, int | None, Any]],
                 show: Callable[[dict[str, Any]], dict[str, Any]], mask: Callable[[Any], Any]) -> None:
        self.configs = configs
        self.exploited: dict[int, tuple[list[Epoch], list[dict[str, Any]]]] = {}
        for tid, data in exploits(events).items():
            if tid in configs and len(found := epochs({}, data)) > 1:  # schema 1 stores: one epoch, no old configs
                shown = [show(mask(e.config)) for e in found[:-1]] + [configs[tid]]
                self.exploited[tid] = (found, shown)

    def at(self, tid: int, iteration: int) -> dict[str, Any]:
        """The shown config that produced the trial's current-generation result at ``iteration``."""
        found = self.exploited.get(tid)
        if found is None:
            return self.configs.get(tid, {})
        return found[1][epoch_of(found[0][-1].generation, iteration, found[0])]

    def stretches(self, tid: int, rows: Sequence[tuple[Any, ...]], start: int, end: int
                  ) -> Iterable[tuple[int, dict[str, Any]]]:
        """(first row, config) of each stretch of one config among the trial's rows start..end-1 (by iteration).
        The epoch of a row only grows with its iteration and changes only past an exploit's cloned iteration: the
        stretches begin where those iterations fall among the rows' (a bisection each, not a look at every row)."""
        found = self.exploited.get(tid)
        if found is None:
            return ((start, self.configs.get(tid, {})),)
        iterations = [rows[i][1] for i in range(start, end)]
        cuts = sorted({0} | {bisect.bisect_right(iterations, e.cloned) for e in found[0][1:]})
        out: list[tuple[int, dict[str, Any]]] = []
        for cut in cuts:
            if cut < len(iterations):
                config = self.at(tid, iterations[cut])
                if not out or config is not out[-1][1]:
                    out.append((start + cut, config))
        return out


def _fill_config(cols: dict[str, list[Any]], config: dict[str, Any], start: int, end: int) -> None:
    """Rows start..end-1 of a chunk are one trial's: its config values fill its config columns there (NaN
    where an earlier trial had a key it lacks)."""
    for name, value in config.items():
        col = cols.setdefault(name, [])
        if len(col) < start:
            col.extend([math.nan] * (start - len(col)))
        col.extend([value] * (end - start))


def _statuses(status: Any) -> set[TrialStatus]:
    items = [status] if isinstance(status, (str, TrialStatus)) else status
    try:
        items = list(items)
    except TypeError:
        raise ConfigError(f"status: expected a TrialStatus, its name, or a list of them, got {status!r}") from None
    out: set[TrialStatus] = set()
    for item in items:
        if isinstance(item, TrialStatus):
            out.add(item)
        elif isinstance(item, str) and item.upper() in TrialStatus.__members__:
            out.add(TrialStatus[item.upper()])
        else:
            raise ConfigError(f"status: {item!r} is not a trial status; expected one of "
                              f"{[s.value for s in TrialStatus]}")
    return out


_JSON_SCALARS = frozenset((str, int, float, bool, type(None)))


def _matches(wanted: Any, got: Any) -> bool:
    if callable(wanted) and not isinstance(wanted, type):
        return bool(wanted(got))
    if isinstance(wanted, dict):
        return isinstance(got, dict) and all(k in got and _matches(v, got[k]) for k, v in wanted.items())
    if isinstance(wanted, (list, tuple)):
        return (isinstance(got, (list, tuple)) and len(got) == len(wanted)
                and all(_matches(w, g) for w, g in zip(wanted, got)))
    if type(wanted) not in _JSON_SCALARS:
        from tunesmith.space import plain

        converted = plain(wanted)  # np.True_ as True (not 1), np.int64(3) as 3, an array as a list: a config's
        if converted is not wanted:
            return _matches(converted, got)
    if isinstance(wanted, bool) != isinstance(got, bool):
        return False  # True is not 1 in a config
    return bool(wanted == got)


_CONSTRAINT = CONSTRAINT_PREFIX  # feasible_result (what run(constraints=...) means): the store's, SQL's beside it


def _chosen_objective(stored: Objective, metric: Any, mode: Any) -> Objective:
    """What ``load(metric=, mode=)`` ranks by, over the experiment's own objective (``stored``), checked by
    ``Objective.from_args`` as ``run()``'s arguments are. Without ``mode``, each metric given takes its mode from
    the experiment (one metric of a single-objective experiment's, the experiment's one mode, as before). One metric
    in a list (and its mode, alone in a list or not) is that single metric: ``best`` ranks by it.

    Raises:
        ConfigError: naming ``metric`` or ``mode`` and what was expected.
    """
    metric, mode = unwrap_single(metric, mode)
    if metric is None and mode is None:
        return stored
    if metric is None:
        metric = stored.metric
    elif mode is None:
        names = [metric] if isinstance(metric, str) else list(metric) if isinstance(metric, (list, tuple)) else []
        if all(isinstance(m, str) and m for m in names):
            unknown = [m for m in names if stored.mode_of(m) is None]
            if isinstance(metric, str) and unknown and not stored.is_multi:
                mode = stored.mode  # a single-objective experiment's mode, for another metric
            elif unknown:
                wanted = ("mode='min' or 'max'" if isinstance(metric, str)
                          else f"mode=[...], a list of {len(names)} 'min'/'max' values")
                raise ConfigError(f"mode: {unknown[0]!r} is not one of the experiment's metrics "
                                  f"{list(stored.names)!r}, so its mode is unknown; pass {wanted}")
            else:
                modes = [stored.mode_of(m) for m in names]
                mode = modes[0] if isinstance(metric, str) else modes
    return Objective.from_args(metric, mode)


class _Ranked(Protocol):
    """What :func:`best_first` ranks: a trial (``TrialResult``, or a lighter record of one with its id)."""

    @property
    def id(self) -> int: ...


_T = TypeVar("_T", bound=_Ranked)


def _last_result(t: TrialResult) -> dict[str, Any]:
    return t.last_result


def feasible_first(items: Sequence[_T], result: Callable[[_T], dict[str, Any]]) -> list[_T]:
    """The ``items`` (trials) that rank: with ``run(constraints=...)``, those whose ``result(item)`` is feasible
    (:func:`feasible_result`), when there is one; else (or without constraints) every one, in the order given.
    What ``best``, ``top()`` and ``pareto_front()`` rank, and so the report's Pareto plot and `tunesmith show`."""
    feasible = [item for item in items if feasible_result(result(item))]
    return feasible or list(items)


def best_first(objective: Objective, items: Sequence[_T],
               result: Callable[[_T], dict[str, Any]]) -> tuple[list[_T], list[_T]]:
    """``items`` (trials, by id) as ``best``/``top()`` rank them by the single ``objective``'s value in
    ``result(item)`` (a trial's last result): (the ranked ones, best first; the others).

    The ranked ones are those of :func:`feasible_first` whose result holds a real number (not NaN, not a bool)
    for the metric, by value, ties by id. The others: the trials outside that set with a value (with constraints:
    the infeasible ones), in the same order, then the trials without a value, in the order given. `tunesmith
    show` lists both, so its order is ``result.best``'s (feasible first)."""
    pool = {id(item) for item in feasible_first(items, result)}
    ranked: list[tuple[float, int, _T]] = []
    outside: list[tuple[float, int, _T]] = []
    unvalued: list[_T] = []
    for item in items:
        metrics = result(item)
        if objective.value(metrics) is None:
            unvalued.append(item)
        else:
            (ranked if id(item) in pool else outside).append((-objective.score(metrics), item.id, item))
    ranked.sort(key=lambda x: (x[0], x[1]))
    outside.sort(key=lambda x: (x[0], x[1]))
    return [t for _, _, t in ranked], [t for _, _, t in outside] + unvalued


def _trial_id(trial: int | str | TrialResult) -> int:
    """A trial's id from an id (any whole number: the dataframe's ``trial_id`` is numpy's, not a bool), a name
    (``"3"``, ``"trial_00003"``, ASCII digits) or a ``TrialResult`` (``rs.history(rs.best)``: its ``id``).

    Raises:
        KeyError: a string that is no trial's name, naming it.
        ConfigError: anything else, naming it and what was expected.
    """
    if isinstance(trial, TrialResult):
        return trial.id
    if isinstance(trial, numbers.Integral) and not isinstance(trial, bool):
        return int(trial)
    if not isinstance(trial, str):
        raise ConfigError(f"trial: expected an id (3), a name ('3', 'trial_00003') or a TrialResult; got "
                          f"{reprlib.repr(trial)} ({type(trial).__name__})")
    if trial.isascii():
        digits = trial[6:] if trial.startswith("trial_") else trial
        if digits.isdigit():
            return int(digits)
    raise KeyError(f"not a trial id or name: {trial!r}; expected an id (3) or a name ('3', 'trial_00003')")


def _storable_id(tid: int) -> bool:
    """Whether ``tid`` fits SQLite's INTEGER (an id past it is no trial of any store; SQLite would overflow)."""
    return -(2**63) <= tid < 2**63


def load(name_or_path: str | os.PathLike[str], metric: str | list[str] | None = None,
         mode: str | list[str] | None = None) -> ResultSet:
    """Read an experiment back: a name under ``./tunesmith_results`` (or ``$TUNESMITH_RESULTS``), or a folder path.
    Returns the same object as ``run``. Safe while the experiment runs.

    The name is looked for as `tunesmith show NAME` looks for it: ``<storage>/<name_or_path>`` when it holds an
    ``experiment.db``, else ``name_or_path`` as a path to an experiment folder. A folder without an
    ``experiment.db`` (a data set folder named like the experiment, in the current folder) is not an experiment
    and does not hide the one of that name.

    ``metric``/``mode``: what "best" means, checked as ``run()`` checks them (``ResultSet``).

    Raises:
        ConfigError: no such experiment (the message names both places looked at), or a ``metric``/``mode`` that
            ``run()`` would refuse (naming the argument and what was expected).
        StoreError: its store is damaged, from a newer tunesmith or missing a table (the message names the file).
    """
    return ResultSet(_layout.find_experiment(name_or_path), metric=metric, mode=mode)


def _mask_text_results(frame: Any, configs: dict[int, Any], past: dict[int, list[Any]]) -> None:
    """The all-results frame's text results masked in place, as ``mask_result`` masks one result (with the secrets
    of its trial's config and of the configs it had before, ``past``: a PBT exploit's rows up to its clone were
    reported under the old one): only columns of text are looked at (numbers, the usual, are left alone); then a
    column whose name quotes a secret of any trial's config is renamed masked (``mask_name``), merged with one
    masked alike."""
    from tunesmith._secrets import mask_name, mask_reported_text, secret_strings

    secrets = {tid: secret_strings([config, *past.get(tid, ())]) for tid, config in configs.items()}
    metrics = [c for c in frame.columns if c != "trial_id" and not str(c).startswith("config/")]
    columns = [c for c in metrics if frame[c].dtype.kind not in "biufcmM"] if len(frame) else []
    for column in columns:
        values = frame[column].tolist()
        masked = [mask_reported_text(str(column), v, secrets.get(tid, ())) if isinstance(v, str) else v
                  for v, tid in zip(values, frame["trial_id"].tolist())]
        if masked != values:
            frame[column] = masked
    every = frozenset().union(*secrets.values())
    for column in metrics:
        name = mask_name(str(column), every)
        if name == column:
            continue
        if name in frame.columns:  # another trial's name masked alike: one column, as each trial has one
            frame[name] = frame[name].combine_first(frame.pop(column))
        else:
            frame.columns = [name if c == column else c for c in frame.columns]  # (rename's inplace: deprecated)
