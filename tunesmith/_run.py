"""``tunesmith.run``: check every input, open the experiment folder and store, run the controller."""

from __future__ import annotations

import datetime
import errno
import functools
import gc
import logging
import math
import numbers
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, cast

from tunesmith import _importing, _layout
from tunesmith._errors import ConfigError, TrialError
from tunesmith._layout import LOCK_FILE, PID_FILE, STORE_FILE, check_name  # noqa: F401 - names kept here

if TYPE_CHECKING:
    from tunesmith._objective import Objective
    from tunesmith.callbacks._base import Callback
    from tunesmith.executors._base import Executor
    from tunesmith.results import ResultSet
    from tunesmith.schedulers._base import Scheduler
    from tunesmith.searchers._base import Searcher
    from tunesmith.store.sqlite import Store
# The rest is imported inside run(), after the fork server's start: the server's own start (an interpreter
# and tunesmith's imports) is what the first result waits for, so it begins before this module's imports.

log = logging.getLogger("tunesmith")
_F = TypeVar("_F", bound=Callable[..., Any])
_setup = threading.local()  # .paused: this thread's run() paused the garbage collector for its setup


def _collector_paused(fn: _F) -> _F:
    """``run`` with Python's cyclic garbage collector paused while it sets up, unless it was off already:
    ``_setup_done`` resumes it before the first trial starts, and any way out of ``run`` does too.

    The setup imports the run machinery and makes long-lived objects only, so each collection in it scans them
    for nothing: a share of the time from start to the first result (issue 19 row 11). Processes forked
    meanwhile (the fork server) turn it back on as a new interpreter has it (``_forkserver._as_new``)."""

    @functools.wraps(fn)
    def paused(*args: Any, **kwargs: Any) -> Any:
        outer = getattr(_setup, "paused", False)  # a run inside a run's setup (a searcher's, a callback's)
        was_on = _setup.paused = gc.isenabled()
        if was_on:
            gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            _setup_done()
            _setup.paused = outer  # the outer run, if still setting up, resumes the collector itself

    return cast(_F, paused)


def _setup_done() -> None:
    if getattr(_setup, "paused", False):
        _setup.paused = False
        gc.enable()


def _check_compared_metrics(scheduler: Scheduler) -> None:
    """``compared_metrics`` must be names, checked before anything is stored: a scheduler of the user's own that
    answered None failed in the driver with a TypeError, its store left 'running'; a string was read a letter at a
    time."""
    from tunesmith.schedulers._base import misanswered

    names = scheduler.compared_metrics()
    if not isinstance(names, (list, tuple)) or not all(isinstance(name, str) for name in names):
        raise misanswered(scheduler, "compared_metrics", names, "a list of metric names (those it compares "
                          "trials by; none for FIFO)")


def _check_mutated_keys(scheduler: Scheduler, space: Any) -> None:
    """Each key a scheduler mutates (PBT, PB2) must be a key of ``space`` (when it is a dict): a constant, a
    domain, a key of a nested dict or of a choice's dict options. Else a ConfigError naming it: a typo (``lr`` for
    ``learning_rate``) gave exploited trials a new key nothing read, and left the real one unexplored. And the values
    the scheduler may set there (``mutation_values``) must be of the entry's kind (``_check_mutation_kind``). Skipped
    without a space (a define-by-run or a searcher of your own makes the keys)."""
    if not isinstance(space, dict) or not space:
        return
    from tunesmith.schedulers._base import misanswered
    from tunesmith.space import Choice, Grid

    pairs = scheduler.mutated_keys()
    if not isinstance(pairs, (list, tuple)) or not all(
            isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], (list, tuple))
            and all(isinstance(key, str) for key in pair[0]) and isinstance(pair[1], str) for pair in pairs):
        raise misanswered(scheduler, "mutated_keys", pairs, "a list of (path, name) pairs, a tuple of keys and how "
                          "the argument names it: (('optim', 'lr'), \"hyperparam_mutations['optim']['lr']\")")

    values = scheduler.mutation_values()
    if not isinstance(values, dict):
        raise misanswered(scheduler, "mutation_values", values, "a dict of path -> a list of values or a domain")
    # each key's entries in the space: one, or one per dict option of a choice that holds it
    entries: dict[tuple[str, ...], list[Any]] = {}
    stack: list[tuple[tuple[str, ...], Any]] = [((), space)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                entries.setdefault((*path, str(key)), []).append(value)
                stack.append(((*path, str(key)), value))
        elif isinstance(node, (Choice, Grid)):  # a choice of dicts: their keys are under the choice's
            stack.extend(reversed([(path, option) for option in (node.options if isinstance(node, Choice) else
                                                                 node.values) if isinstance(option, dict)]))
    for path, where in pairs:
        if tuple(path) not in entries:
            shown = sorted("/".join(k) for k in entries)
            raise ConfigError(f"{where} is not a key of the space (its keys: {', '.join(shown[:30])}"
                              f"{', ...' if len(shown) > 30 else ''}): a trial's config would get it only once "
                              f"exploited, and nothing of the space would be explored under it")
        if tuple(path) in values:
            _check_mutation_kind(tuple(path), where, values[tuple(path)], entries[tuple(path)])


def _check_mutation_kind(path: tuple[str, ...], where: str, spec: Any, entries: list[Any]) -> None:
    """A ConfigError naming the key, the space's entry and the mutation when the mutation's values are of another
    kind than the entry's (``_kind``): an exploit silently gave ``ts.choice(["adam", "sgd"])``'s key a float."""
    from tunesmith._secrets import mask_text_at
    from tunesmith.space import Domain

    mutated, kind = _kind(spec if isinstance(spec, list) else [spec]), _kind(entries)
    if mutated is None or kind is None or mutated == kind:
        return
    quoted = [field for value in [spec, *entries] for field in (
        [getattr(value, f) for f in value._fields] if isinstance(value, Domain) else [value])]
    text = (f"{where}: {spec!r} gives {mutated}, but the space's {'/'.join(path)!r} is "
            f"{', '.join(repr(entry) for entry in entries)} ({kind}): an exploit would replace its value with "
            f"{mutated}; give {kind} there, or leave the key out")
    raise ConfigError(mask_text_at(path, text, *quoted))


def _kind(values: list[Any]) -> str | None:
    """"numbers", "text" or "booleans" when every one of ``values`` (constants, or domains: a numeric one gives
    numbers, a choice or grid its options') is of that kind; None when they mix or one is of no such kind (None, a
    dict, a list, a ``sample_from``): nothing to compare then."""
    import tunesmith.space as d

    found: set[str | None] = set()
    for value in values:
        if isinstance(value, (d.Uniform, d.QUniform, d.LogUniform, d.QLogUniform, d.Normal, d.QNormal, d.RandInt,
                              d.LogRandInt)):
            found.add("numbers")
        elif isinstance(value, (d.Choice, d.Grid)):
            found.add(_kind(list(value.options if isinstance(value, d.Choice) else value.values)))
        elif isinstance(value, bool):
            found.add("booleans")
        else:
            found.add("numbers" if isinstance(value, numbers.Real) else "text" if isinstance(value, str) else None)
    return found.pop() if len(found) == 1 else None


def _keep_by(keep_by: Any, objective: Objective) -> tuple[Any, Any]:
    """``keep_by`` as (the metric ranking checkpoints, its mode): a metric the run optimises takes its mode; another
    comes with its own, ``("accuracy", "max")`` (ranked in the run's mode it kept the worst checkpoints).

    Raises:
        ConfigError: a metric the run does not optimise without its direction, or a malformed pair.
    """
    if keep_by is None:
        return None, None
    if isinstance(keep_by, (list, tuple)):  # (name, mode); a list once stored in the spec (a resume)
        if len(keep_by) != 2 or not isinstance(keep_by[0], str) or not keep_by[0] or keep_by[1] not in ("min", "max"):
            raise ConfigError(f"keep_by: expected a metric name or (name, 'min'|'max'), got {keep_by!r}")
        return keep_by[0], keep_by[1]
    if not isinstance(keep_by, str) or not keep_by:
        raise ConfigError(f"keep_by: expected a metric name or (name, 'min'|'max'), got {keep_by!r}")
    if keep_by not in objective.names:
        raise ConfigError(f"keep_by={keep_by!r} is not a metric the run optimises ({objective.metric!r}), so the "
                          f"direction that makes a checkpoint better is unknown: give it, keep_by=({keep_by!r}, "
                          f"'max') or ({keep_by!r}, 'min')")
    return keep_by, objective.mode_of(keep_by)


def _not_a_plain_function(fn: Any) -> str | None:
    """What ``fn`` is if calling it would run nothing: a generator or an async function (a partial of one too)."""
    import functools
    import inspect

    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        return "a generator function (its body runs only when iterated)"
    if inspect.iscoroutinefunction(fn):
        return "an async function (its body runs only when awaited)"
    return None


def _cannot_take_config(fn: Any) -> str | None:
    """The signature of ``fn`` when a trial cannot call it as ``fn(config)`` though it takes parameters (a trial
    calls ``fn()`` when it takes none): ``f(config, extra)``, ``f(*, config)``. None when it can, or when Python
    cannot tell (a builtin)."""
    import inspect

    from tunesmith._stop import signature_refusing

    try:
        if not inspect.signature(fn).parameters:  # a trial calls fn()
            return None
    except (TypeError, ValueError):
        return None
    return signature_refusing(fn, None)


def _positive(name: str, value: Any, integer: bool = False) -> None:
    if value is None:
        return
    ok = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
    if not ok or not math.isfinite(value) or value <= 0:
        kind = "a positive integer" if integer else "a positive number of seconds"
        raise ConfigError(f"{name} must be {kind}, got {value!r}")


@_collector_paused
def run(
    fn: Any,
    space: dict[str, Any] | None = None,
    *,
    metric: str | list[str] | None = None,
    mode: str | list[str] | None = None,
    num_samples: int = 1,
    scheduler: Scheduler | None = None,
    searcher: Searcher | None = None,
    resources: dict[str, float] | Any = None,
    name: str | None = None,
    storage_path: str | None = None,
    stop: Any = None,
    time_budget_s: float | None = None,
    max_concurrent: int | None = None,
    backend: str | Executor = "local",
    seed: int | None = None,
    verbose: int = 1,
    callbacks: list[Callback] | None = None,
    file_loggers: bool = False,
    strict_metric_checking: bool = True,
    raise_on_failed_trial: bool = False,
    max_failures: int = 0,
    trial_timeout_s: float | None = None,
    resume: bool = False,
    restart_errored: str | None = None,
    keep: int | None = None,
    keep_by: str | tuple[str, str] | None = None,
    trial_time_limit_s: float | None = None,
    chdir_to_trial_dir: bool = True,
    dashboard: bool | dict[str, Any] = False,
    fail_fast: bool | str = False,
    warm_start: str | list[str] | None = None,
    constraints: Any = None,
    ranks: int | None = None,
) -> ResultSet:
    """Run an experiment: many trials of ``fn`` over ``space``, in parallel, and return their results.

    Args:
        fn: the training function, ``fn(config)`` (or ``fn()``); inside it call ``tunesmith.report``. Or a
            :class:`Trainable` subclass (``setup``/``step``/``save_checkpoint``/``load_checkpoint``); any other
            class (a Ray Tune ``Trainable``) is a ``ConfigError``.
            Functions defined in ``__main__``, closures and lambdas work (shipped with cloudpickle); one that
            cannot be pickled is a ``ConfigError`` before anything is created.
        space: the search space: a dict (nested allowed) of domains (``uniform``, ``choice``, ``grid``...)
            and constants. Keys may not contain ``/`` (flat views join nested keys with it); numpy and torch
            values become Python numbers. ``sample_from`` functions are called once more, on a throwaway draw,
            before anything is created, so that a value the store cannot hold fails early.
        metric, mode: the metric to optimise and ``"min"`` or ``"max"``; or, multi-objective, a list of
            metrics and a list of modes (``metric=["loss", "latency"], mode=["min", "min"]``): the searcher
            gets them all, ``result.pareto_front()`` gives the non-dominated trials and ``result.best`` asks
            for one metric (``get_best(metric=...)``). A scheduler that compares trials by one metric (ASHA,
            PBT...) then needs its own ``metric=``/``mode=``. One metric in a list (``["loss"]``, its mode alone
            in a list or not) is that single metric, as ``load`` reads it.
        num_samples: trials to run (per grid point when the space has ``grid`` dimensions; configs, each run
            ``n`` times, with ``Repeat(searcher, n)``); ``-1`` for no limit, which needs ``time_budget_s``.
        scheduler: decides per result (default ``FIFO()``: run every trial to its end).
        searcher: proposes configs (default ``Random(seed=seed)``, which also crosses ``grid`` dimensions).
        resources: per trial, e.g. ``{"cpu": 1, "gpu": 0.25}`` (default one CPU). Fractional GPUs share a
            device; the trial sees its device through ``CUDA_VISIBLE_DEVICES``. ``{"cpu": 0}`` alone is refused
            (nothing would hold a trial back). Or a function of the config, ``lambda config: {"gpu": 1 if
            config["big"] else 0.25}``: called per trial, each trial's request is checked (a ``ConfigError``
            naming the trial's config when it asks for more than there is) and held by the executor.
        ranks: run each trial's function as this many processes (data-parallel ranks), each with the torchrun
            environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...) so that ``init_process_group()`` works
            unchanged; ``resources`` is then the trial's total, split evenly over its ranks. Rank 0's reports
            and checkpoints are the trial's; other ranks' reports are ignored. A resize changes the number of
            ranks with the resources. ``None`` (default): one process, without that environment; ``ranks=1``:
            one rank with it. See docs/distributed-trials.md. Local and Ray backends.
        name: the experiment folder's name (default ``<fn name>_<date>_<time>``).
        storage_path: where experiment folders go (default ``./tunesmith_results`` or
            ``$TUNESMITH_RESULTS``): a local folder (a URL is a ``ConfigError``: checkpoints go to a URL with
            ``RayBackend(storage=...)``).
        stop: ``{"training_iteration": 100}``, ``{"loss": 0.01}`` (reached in the direction of ``mode``),
            ``{"done": True}`` (a flag the trial reports), ``fn(trial_id, result) -> bool``, a
            :class:`Stopper` (``TrialPlateau(...)`` per trial; ``ExperimentPlateau(...)`` or your own with
            ``stop_all()`` end the whole experiment), or a list of them (any one stops).
        time_budget_s: stop everything after this many seconds.
        max_concurrent: at most this many trials at once (default: as many as resources allow).
        backend: ``"local"`` (worker processes on this machine), ``"ray"`` (a Ray actor per trial on a local
            Ray, or the cluster ``ray.init`` already joined; needs ``tunesmith[ray]``) or a backend instance:
            ``LocalBackend(start_method="spawn")``, ``RayBackend(address="auto")``, ``SimulatedBackend(...)``.
        seed: seed of the default searcher (with ``searcher=`` given, it is not used: a warning says so).
        verbose: 0 silent, 1 progress table (plain lines when not a terminal), 2 more detail.
        callbacks: extra :class:`Callback` objects (loggers such as ``TensorBoardLogger``, or your own).
        file_loggers: also write each trial's results live to ``progress.csv`` and ``result.jsonl`` (and its
            config to ``params.json``) in its folder. Off by default: the SQLite store holds every result, and
            ``tunesmith export NAME`` writes the same files from it on demand (a folder and three files per
            trial cost a run of short trials 1.2-2x its time; docs/callbacks.md).
        strict_metric_checking: fail the experiment when a trial's first result lacks ``metric``.
        raise_on_failed_trial: raise :class:`TrialError` at the end if any trial ended in ERROR.
        max_failures: restarts allowed per trial (0 default, -1 forever) when its function raises, its worker
            dies, or it goes silent for ``trial_timeout_s``; it restarts from its latest checkpoint. A
            ``ConfigError`` the function raises (a misconfiguration, e.g. a bridge's metric never logged) is
            never retried: a retry would fail the same way.
        trial_timeout_s: declare a trial dead when its worker sends nothing, not even its heartbeat (one a
            half second, also while the trial computes), for this long (at least 2 s). A slow but alive trial
            is never killed, with one exception: the heartbeat is sent by a thread of the worker, which needs
            Python's lock, so one C call that holds it longer than this (a pathological regex, some extension
            code) looks hung; set it above the longest such call.
        resume: continue the experiment ``name`` after a crash or an interruption: finished trials are not
            run again, unfinished ones restart from their latest good checkpoint, the searcher and scheduler
            continue from their replayed state. Pass the same ``fn`` and ``space``.
        keep: checkpoints kept per trial (default all). A trial's latest checkpoint, and one another trial
            still needs (PBT), are never deleted.
        keep_by: keep the ``keep`` best checkpoints by this metric instead of the latest ones: a metric the run
            optimises (ranked in its ``mode``), or any other with its direction, ``("accuracy", "max")``. The first
            result with a checkpoint must hold it (else a ``ConfigError``, or a warning without
            ``strict_metric_checking``).
        restart_errored: on resume, ``"restart"`` runs ERROR trials again from scratch, ``"resume"``
            continues them from their latest checkpoint; ``None`` leaves them as they are. A trial run again gets
            its ``max_failures`` retries again (its ``num_failures`` still counts every failure).
        trial_time_limit_s: wall-clock seconds a trial may run (counted from each start: a restart or resume
            starts its clock again); then it is stopped, killed after the grace period if it does not end,
            and fails (retried per ``max_failures``). Catches a trial that hangs alive, which
            ``trial_timeout_s`` cannot see.
        chdir_to_trial_dir: run each trial in its own folder (``trials/<trial>``), so relative paths
            written by concurrent trials cannot collide (default). The driver's working directory stays
            first on ``sys.path`` and is in the environment variable ``TUNESMITH_ORIG_WORKING_DIR``: read
            a relative data path as ``os.path.join(os.environ["TUNESMITH_ORIG_WORKING_DIR"], path)``.
            ``False``: trials run in the driver's working directory.
        dashboard: serve the live dashboard of this experiment from a thread of this process while it runs
            (read-only; the URL is printed, with ``?token=`` when it has a token); a dict passes options to
            ``tunesmith.dashboard.start`` (``port``, ``host``, ``token``, ``allow_control``, ``allowed_hosts``),
            checked, and the port bound, before anything is written: a bad option or a port in use is a
            ``ConfigError``. See docs/dashboard.md.
        warm_start: an earlier experiment (a name under ``storage_path``, or a folder), or a list of them: its
            finished trials are handed to the searcher (``searcher.warm_start``) before the first suggestion.
            Model-based searchers (``OptunaSearch``, ``BOHB``) learn from those whose config fits this space
            and skip the others (the count is logged); ``Random`` and ``QuasiRandom`` ignore them.
        constraints: ``fn(result) -> list of floats`` (each <= 0 when feasible), called in the driver on every
            result; the values are stored with it as ``constraint/0``, ``constraint/1``... ``OptunaSearch``
            passes them to its sampler (``tpe``, ``nsgaii``, ``gp``: Optuna's ``constraints_func``);
            ``best``, ``top`` and ``pareto_front()`` rank feasible trials only, when there is one.
        fail_fast: the first trial that ends in ERROR (after its ``max_failures`` retries) stops every other
            trial at once and starts no new one; ``"raise"`` also makes ``run`` raise a ``TrialError``.

    Returns:
        A :class:`ResultSet`: ``.best``, ``.trials``, ``.errors``, ``.history(id)``, ``.dataframe()``.

    Raises:
        ConfigError: bad input (before any trial starts), or a metric that trials do not report.
    """
    _importing.check()  # a script's top level imported to load its function: no experiment of its own
    if backend == "local" or getattr(backend, "start_method", None) == "forkserver":
        from tunesmith.executors import _forkserver

        _forkserver.get()  # first: its start (an interpreter and imports) overlaps the setup below
    from tunesmith._controller import Controller, Terminated
    from tunesmith._objective import Objective, unwrap_single
    from tunesmith._retention import Retention
    from tunesmith._stop import StopRules
    from tunesmith.callbacks import default_callbacks
    from tunesmith.executors._base import Executor, check_trial_timeout
    from tunesmith.executors.resources import normalize
    from tunesmith.schedulers._base import FIFO, Scheduler, starts_trials_early
    from tunesmith.searchers._base import Searcher
    from tunesmith.store.sqlite import Store

    if not callable(fn):
        raise ConfigError(f"fn must be the training function (callable), got {type(fn).__name__}")
    from tunesmith.trainable import as_function

    fn = as_function(fn)  # a tunesmith.Trainable subclass runs as a function; any other class is refused
    what = _not_a_plain_function(fn)
    if what is not None and not getattr(backend, "takes_generator_functions", False):  # SimulatedBackend's are
        raise ConfigError(f"fn {getattr(fn, '__qualname__', fn)!r} is {what}: tunesmith calls it and it would run "
                          "nothing; expected a plain function that calls tunesmith.report (SimulatedBackend takes "
                          "generator functions)")
    signature = None if getattr(backend, "takes_generator_functions", False) else _cannot_take_config(fn)
    if signature is not None:  # each trial would fail with a TypeError, and the run say finished
        raise ConfigError(f"fn {getattr(fn, '__qualname__', fn)!r} cannot be called as fn(config): its parameters are "
                          f"{signature}; expected one parameter for the config (others optional), or none")
    # numpy (and torch) scalars as the Python numbers and flags they stand for (a sweep over np.arange passes them)
    from tunesmith.space._plain import plain

    num_samples, time_budget_s, max_concurrent, verbose, seed, max_failures, trial_timeout_s, trial_time_limit_s = (
        plain(v) for v in (num_samples, time_budget_s, max_concurrent, verbose, seed, max_failures, trial_timeout_s,
                            trial_time_limit_s))
    chdir_to_trial_dir, fail_fast, ranks, keep = (plain(v) for v in (chdir_to_trial_dir, fail_fast, ranks, keep))
    if space is None:
        space = {}
    # checked once (one metric in a list is that metric, as load reads it); everything below is handed the value
    objective = Objective.from_args(*unwrap_single(metric, mode))
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or (num_samples < 1 and num_samples != -1):
        raise ConfigError(f"num_samples must be a positive integer or -1 (no limit), got {num_samples!r}")
    _positive("time_budget_s", time_budget_s)
    _positive("max_concurrent", max_concurrent, integer=True)
    _check_callbacks(callbacks)
    if num_samples == -1 and time_budget_s is None:
        raise ConfigError("num_samples=-1 runs trials without limit: give time_budget_s too")
    if verbose not in (0, 1, 2):
        raise ConfigError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    if isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < -1:
        raise ConfigError(f"max_failures must be an integer >= 0, or -1 for no limit, got {max_failures!r}")
    check_trial_timeout(trial_timeout_s)
    _positive("trial_time_limit_s", trial_time_limit_s)
    if not isinstance(chdir_to_trial_dir, bool):
        raise ConfigError(f"chdir_to_trial_dir must be True or False, got {chdir_to_trial_dir!r}")
    if not (fail_fast is True or fail_fast is False or fail_fast == "raise"):
        raise ConfigError(f"fail_fast must be True, False or 'raise', got {fail_fast!r}")
    if restart_errored not in (None, "restart", "resume"):
        raise ConfigError(f"restart_errored must be None, 'restart' or 'resume', got {restart_errored!r}")
    if resume and name is None:
        raise ConfigError("resume=True needs the name of the experiment to resume")
    keep_metric, keep_mode = _keep_by(keep_by, objective)
    retention = Retention(keep, keep_metric, keep_mode)
    resources_fn = resources if callable(resources) else None
    per_trial = normalize(None if resources_fn is not None else resources)
    from tunesmith import _ranks

    ranks = None if ranks is None else _ranks.check_ranks(ranks)
    if ranks is not None and resources_fn is None:
        _ranks.split_resources(per_trial, ranks)  # a GPU split that makes no sense is refused here
    if constraints is not None and not callable(constraints):
        raise ConfigError(f"constraints must be a function fn(result) -> list of floats (<= 0 feasible), got "
                          f"{type(constraints).__name__}")
    warm_dirs = _warm_start_dirs(warm_start, storage_path)
    stop_rules = StopRules(stop, objective, keep_by=keep_metric)
    from tunesmith.dashboard import check_run_option

    board_options = check_run_option(dashboard)  # the dashboard's options too, before anything is written

    if searcher is None:
        from tunesmith.searchers.random import Random

        searcher = Random(seed=seed)
    elif not isinstance(searcher, Searcher):
        raise ConfigError(f"searcher must be a tunesmith searcher (e.g. tunesmith.Random()), got {searcher!r}")
    elif seed is not None:
        log.warning("seed=%d seeds only the default searcher, not the %s given: give it its own seed (e.g. %s(seed="
                    "%d)) for a reproducible search", seed, type(searcher).__name__, type(searcher).__name__, seed)
    if scheduler is None:
        scheduler = FIFO()
    elif not isinstance(scheduler, Scheduler):
        raise ConfigError(f"scheduler must be a tunesmith scheduler (e.g. tunesmith.ASHA()), got {scheduler!r}")
    if constraints is not None and not searcher.use_constraints():
        log.info("constraints: %s does not use them; they are stored with each result and rank best and "
                 "pareto_front()", type(searcher).__name__)
    # setup keeps its public (metric, mode) arguments (users' own searchers and schedulers implement it):
    # the objective's run form, a name or a list
    searcher.setup(space, objective.metric, objective.mode, num_samples)
    _say_grid_is_searched(searcher, space, num_samples)
    scheduler.setup(objective.metric, objective.mode)
    _check_mutated_keys(scheduler, space)
    _check_compared_metrics(scheduler)
    earlier = None  # the earlier trials handed to the searcher, to keep in the store (a resume replays them)
    if warm_dirs and not resume:  # a resume's are known once its checks pass (below)
        from tunesmith._warm_start import earlier_trials, warm_start_searcher

        earlier = earlier_trials(warm_dirs)
        warm_start_searcher(searcher, earlier)
    space_json = _space_json(space)  # before anything is created: a constant the store cannot hold fails here
    _check_sampled_values(space)

    if backend == "local":
        from tunesmith.executors.local import LocalBackend

        executor: Executor = LocalBackend(trial_timeout_s=trial_timeout_s)
    elif isinstance(backend, Executor):
        executor = backend
        if trial_timeout_s is not None:
            executor.trial_timeout_s = trial_timeout_s  # type: ignore[attr-defined]
    elif backend == "ray":
        from tunesmith.executors.ray import RayBackend

        executor = RayBackend(trial_timeout_s=trial_timeout_s)
    else:
        raise ConfigError(f"backend must be 'local', 'ray' or a backend (e.g. tunesmith.RayBackend(address="
                          f"'auto')), got {backend!r}")
    board = None  # the dashboard: its port bound before anything is written, served once the run is set up
    try:  # a check refusing the run after the backend connected (to Ray: maybe starting it) shuts it down
        executor.check_ranks(ranks)  # first: with ranks, a backend checks each rank's share of the resources
        if resources_fn is None:
            executor.check_resources(per_trial)  # a function's requests are checked per trial
        executor.stop_rules = stop_rules
        executor.trial_time_limit_s = trial_time_limit_s
        executor.chdir_to_trial_dir = chdir_to_trial_dir
        executor.default_resources = resources is None  # trials ask for what they were given by default
        # a trial may be handed to a busy worker ahead (LocalBackend(queue_ahead=True)) only where suggesting it early
        # changes nothing: a scheduler whose class says so (FIFO, ASHA, MedianStopping), a searcher that does not learn
        executor.ahead_ok = starts_trials_early(scheduler) and not searcher.learns_from_results
        if _ships_fn(executor):
            _check_picklable(fn)

        if name is None:
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
            base = re.sub(r"[^A-Za-z0-9._-]", "_", getattr(fn, "__name__", "experiment")).lstrip("._-") or "experiment"
            name = f"{base}_{stamp}"
        # a resume's folder exists: any folder name (it may have been renamed); a new one gets a safe name
        if resume:
            _layout.check_folder_name(name)
        else:
            check_name(name)
        root = _layout.storage_root(storage_path)
        exp_dir = os.path.join(root, name)
        store_file = _layout.store_path(exp_dir)
        if resume and not os.path.exists(store_file):
            raise ConfigError(f"resume=True: there is no experiment {name!r} in {root}")
        board = _bind_dashboard(board_options, root, name)  # a port in use is refused before anything is written
        _make_folder(root, exp_dir, storage_path)
        lock = _acquire(exp_dir, name)  # first: a live experiment is reported as such, not as "exists"
    except BaseException:
        if board is not None:
            board.stop()
        executor.shutdown()
        raise
    try:
        _layout.unlink_planted_links(exp_dir)  # the driver writes only inside the folder, whoever made it
        if os.path.exists(store_file) and not resume:
            raise ConfigError(f"experiment {name!r} already exists in {root}: resume it (resume=True), choose "
                              f"another name, or remove it (tunesmith rm {name})")
        executor.prestart()  # the first worker starts while the store is made (shut down below if the run fails)
        before: dict[str, Any] = {}  # what a resume that fails once the store is written puts back (_undo_resume)
        total_samples = num_samples  # the run's own, plus any added from the dashboard (a resume honours them)
        warm_record, kept = _recorded_warm_start(warm_dirs, root), None  # the spec's record of the sources
        stored_earlier: list[Any] | None = None  # the earlier trials the store kept before this resume
        total_time = time_budget_s  # the same for the seconds extend_time added
        # A resume is checked, and everything that may still refuse it done, through a reader first: the store is
        # opened for writing (an older schema migrated) only then, so a refused resume leaves the file as it was.
        if resume:
            before, trials, kept_earlier = _stored_meta(store_file)
            stored_spec = before.get("spec", {})
            _check_resumable(stored_spec, name, objective, space_json, searcher.to_spec(), scheduler.to_spec(),
                             ranks)
            _check_seeds(stored_spec, name, searcher, scheduler)
            total_samples = _with_added_samples(before, num_samples)
            _check_num_samples(name, searcher, space, num_samples, total_samples, trials)
            kept = _kept_warm_start(before, warm_start, warm_dirs, root, name)
            if kept is None:  # a store of before schema 4 kept no earlier trials: its sources are read again
                warm_dirs = _resume_warm_dirs(stored_spec, warm_start, warm_dirs, root, name)
                warm_record = _recorded_warm_start(warm_dirs, root)
            total_time = _with_added_time(before, time_budget_s)  # the lock is held: the meta read is current
            # an unseeded searcher/scheduler drew a new seed: take the one drawn first (recorded in the spec),
            # so the resumed experiment continues the stream it replays
            if _adopt_drawn_seed(searcher, stored_spec.get("searcher")) or total_samples != num_samples:
                searcher.setup(space, objective.metric, objective.mode, total_samples)
            taken: list[Any] = []
            if kept is not None:
                stored_earlier = kept_earlier or []
                taken, earlier, warm_record = _replayed_warm_start(stored_earlier, kept, stored_spec, warm_start,
                                                                   warm_record, name)
            elif warm_dirs:
                from tunesmith._warm_start import earlier_trials

                taken = earlier = earlier_trials(warm_dirs)
            if taken:  # after the searcher's last setup: a setup starts it afresh (a source unread refuses)
                from tunesmith._warm_start import warm_start_searcher

                warm_start_searcher(searcher, taken)
            if _adopt_drawn_seed(scheduler, stored_spec.get("scheduler")):
                scheduler.setup(objective.metric, objective.mode)
        spec = {
            "name": name, **objective.to_spec(), "num_samples": num_samples,
            "space": space_json, "searcher": searcher.to_spec(), "scheduler": scheduler.to_spec(),
            "stop": stop_rules.to_spec(), "time_budget_s": time_budget_s, "max_concurrent": max_concurrent,
            "resources": per_trial if resources_fn is None else {"callable": _qualname(resources_fn)},
            "warm_start": warm_record, "constraints": constraints and _qualname(constraints),
            "fail_fast": fail_fast, "ranks": ranks, "keep": retention.keep, "keep_by": keep_by,
            "max_failures": max_failures, "trial_timeout_s": trial_timeout_s, "trial_time_limit_s": trial_time_limit_s,
            "chdir_to_trial_dir": chdir_to_trial_dir, "file_loggers": file_loggers,
            "strict_metric_checking": strict_metric_checking,  # `tunesmith resume` runs with them too
            "fn": f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', '?')}",
            "fn_file": script_of(fn),  # a function of a script run as `python train.py`: its file, for the hint
            "backend": _backend_record(executor),  # `tunesmith resume` runs on the same kind (RayBackend: its args)
        }
        from tunesmith.trainable import end_at_done

        end_at_done(fn, stop_rules)  # a Trainable's done ends its trial (after the spec: not the user's rule)
        # a new store is renamed into place with its spec (publish): a driver killed before leaves no
        # half-made experiment, and the name can be created again
        store = Store(store_file, create=not resume)
        with store.transaction() as db:
            store.set_meta(db, "spec", spec)
            store.set_meta(db, "status", "running")
            if not resume:
                store.set_meta(db, "created", time.time())
            if earlier is not None:
                store.set_warm_start(db, earlier)
            event = store.log_event(db, "resume" if resume else "start", None, {"pid": os.getpid()})
        store.publish()
        try:
            executor.setup(fn, exp_dir)
            all_callbacks: list[Callback] = default_callbacks(verbose, callbacks, file_loggers=file_loggers)
            controller = Controller(
                name=name, exp_dir=exp_dir, fn=fn, searcher=searcher, scheduler=scheduler, executor=executor,
                store=store, metric=objective.metric, mode=objective.mode, num_samples=total_samples,
                stop=stop_rules, time_budget_s=total_time, max_concurrent=max_concurrent, resources=per_trial,
                callbacks=all_callbacks, strict_metric=strict_metric_checking, max_failures=max_failures,
                retention=retention, fail_fast=fail_fast, resources_fn=resources_fn, constraints=constraints,
                ranks=ranks, resume_command=lambda: resume_command(exp_dir, fn, spec=spec))
            if resume:
                controller.replay(restart_errored)  # a damaged store fails here
            if board is not None:
                board.start()
                print(board.announce(), flush=True)  # the URL with its token: printed for its user to open
        except BaseException:
            if resume:
                _undo_resume(store, before, event, (stored_earlier,) if earlier is not None else None)
            store.close()
            raise
        _setup_done()  # the collector runs as usual from the first trial on
        try:
            controller.run()  # Ctrl-C and SIGTERM end it cleanly (Controller._defer_signals)
        except (KeyboardInterrupt, SystemExit) as e:  # SystemExit: sys.exit() in a user's hook (Controller.run)
            if controller.ended == "interrupted":  # not a run that ended, then exited in on_experiment_end
                log.warning("experiment %s interrupted; its results are stored. Resume with: %s", name,
                            resume_hint(name, fn, root, spec))
            if isinstance(e, Terminated):
                raise SystemExit(128 + signal.SIGTERM) from None
            raise
        finally:
            store.close()
    finally:
        if board is not None:
            board.stop()  # also where the run failed before it served (its port bound, or its thread started)
        executor.shutdown()  # what prestart() started, where the run failed before its controller ran
        _release(lock, exp_dir)
    from tunesmith.results import ResultSet  # after the run: not part of its start

    result = ResultSet(exp_dir)
    if raise_on_failed_trial and result.errors:
        first = result.errors[0]
        raise TrialError(f"{len(result.errors)} trial(s) failed; first: {first.name}:\n{first.error}")
    return result


def _warm_start_dirs(warm_start: Any, storage_path: str | None) -> list[str]:
    if warm_start is None:
        return []
    from tunesmith._warm_start import warm_start_dirs

    return warm_start_dirs(warm_start, storage_path)


def _resume_warm_dirs(stored: Any, warm_start: Any, given: list[str], root: str, name: str) -> list[str]:
    """A resume's warm-start sources: the recorded ones (``warm_start`` None), or the same given again (one no longer
    found: at its new place, or left out); others are refused as the other resume mismatches are."""
    record = stored.get("warm_start") if isinstance(stored, dict) else None
    if record is None and warm_start is None:
        return []
    from tunesmith._warm_start import resume_sources

    return resume_sources(record, warm_start, given, root, name, resume_command(name, root=root))


def _kept_warm_start(meta: dict[str, Any], warm_start: Any, given: list[str], root: str,
                     name: str) -> dict[int, int] | None:
    """For a resume of an experiment that kept the earlier trials it took in (schema 4): which of its recorded
    sources it keeps (index in the record -> index in ``given``; all, when ``warm_start`` is None). None for a
    store that kept none: its sources are read again (``_resume_warm_dirs``)."""
    from tunesmith.store.sqlite import WARM_START_KEY

    if WARM_START_KEY not in meta:
        return None
    spec = meta.get("spec")
    record = spec.get("warm_start") if isinstance(spec, dict) else None
    if warm_start is None:
        return {i: i for i in range(len(record))} if isinstance(record, list) else {}
    from tunesmith._warm_start import kept_sources

    return kept_sources(record, given, root, name, resume_command(name, root=root))


def _replayed_warm_start(trials: list[Any], kept: dict[int, int], spec: dict[str, Any], warm_start: Any,
                         record: list[str] | None, name: str) -> tuple[list[Any], list[Any] | None, Any]:
    """A resume's earlier trials: those the store kept (``trials``) of the sources it keeps (``_kept_warm_start``;
    the sources are not read); the same to keep again, renumbered, where the sources were given (at another place,
    or left out), else None (the store keeps what it has); and the spec's record of the sources (the one stored,
    or that of those given)."""
    if warm_start is None:
        if trials:
            log.info("resume: warm start from the %d earlier trials experiment %r took in when it began (kept with "
                     "it: its sources are not read again)", len(trials), name)
        return trials, None, spec.get("warm_start")
    again = [(kept[source], config, result) for source, config, result in trials if source in kept]
    return again, again, record


def _recorded_warm_start(warm_dirs: list[str], root: str) -> list[str] | None:
    """The spec's record of the sources: those in the storage folder by their path in it (found after it moves)."""
    if not warm_dirs:
        return None
    from tunesmith._warm_start import recorded

    return recorded(warm_dirs, root)


def _backend_record(executor: Executor) -> dict[str, Any]:
    """The spec's record of the backend: ``{"kind": "local"}``, a RayBackend's plain arguments (``record``), or
    another backend's class name (which `tunesmith resume` cannot build)."""
    record = getattr(executor, "record", None)
    if callable(record):
        return cast(dict[str, Any], record())
    from tunesmith.executors.local import LocalBackend

    return {"kind": "local" if isinstance(executor, LocalBackend) else type(executor).__name__}


def _bind_dashboard(options: dict[str, Any] | None, root: str, name: str) -> Any:
    """The run's dashboard (checked options, ``check_run_option``) with its port bound, not yet serving; None
    without one. A port in use is a ConfigError here, before the run writes anything."""
    if options is None:
        return None
    from tunesmith.dashboard import make_app
    from tunesmith.dashboard._server import Dashboard

    host, port = options.get("host", "127.0.0.1"), options.get("port", 0)
    app = make_app(root, name, **{k: v for k, v in options.items() if k != "port"})
    return Dashboard(app, host, port)


def script_of(fn: Any) -> str | None:
    """The file of the script whose ``__main__`` defines ``fn`` (a run started as ``python train.py``), or None.
    The store names such a function ``__main__:train``, which ``tunesmith resume`` cannot import by that name."""
    if getattr(fn, "__module__", None) != "__main__":
        return None
    file = getattr(sys.modules.get("__main__"), "__file__", None)
    return os.path.abspath(file) if isinstance(file, str) and file.endswith(".py") else None


def resume_command(name: str, fn: Any = None, script: str | None = None, qualname: str | None = None,
                   root: str | None = None, spec: dict[str, Any] | None = None) -> str:
    """The command that resumes experiment ``name`` (quoted for the shell): with ``--fn FILE:FN`` where its function
    was defined in a script run as ``python FILE`` (``fn``'s, or the stored ``script`` and ``qualname``), with
    ``--resources``, ``--constraints`` and ``--stop`` for the functions of the user's in its stored ``spec`` that
    the script defines (see ``_function_options``), and with ``--storage-path ROOT`` where ``root`` (the
    experiment's storage folder) is not the default one. A name that starts with ``-`` comes after ``--`` (else
    it reads as an option)."""
    import shlex

    script = script or (script_of(fn) if fn is not None else None)
    qualname = qualname or getattr(fn, "__qualname__", None)
    options = f" --fn {shlex.quote(f'{script}:{qualname}')}" if script and qualname else ""
    if spec:
        named, _cannot = _function_options(spec, script or _main_script())
        options += "".join(f" {option} {shlex.quote(value)}" for option, value in named)
    if root is not None and os.path.abspath(root) != _layout.storage_root(None):
        options += f" --storage-path {shlex.quote(root)}"
    if name.startswith("-"):
        return f"tunesmith resume{options} -- {shlex.quote(name)}"
    return f"tunesmith resume {shlex.quote(name)}{options}"


def resume_hint(name: str, fn: Any, root: str, spec: dict[str, Any]) -> str:
    """How to resume experiment ``name``, as the interrupt message says it: the command, and the ``tunesmith.run``
    call; the call alone where the command line could not import a function of the user's the experiment needs."""
    python = python_resume_hint(name, root)
    _named, cannot = _function_options(spec, script_of(fn) or _main_script())
    if cannot:
        return (f"{python} (the command line cannot import {', '.join(cannot)} by name: a lambda, a function "
                f"defined inside another, or one of an interactive session; pass the same functions)")
    backend = spec.get("backend")
    if isinstance(backend, dict) and (backend.get("kind") not in (None, "local", "ray") or backend.get("not_recorded")):
        # `tunesmith resume` refuses it (cli._rebuild_backend): a backend of your own, or a RayBackend with init_kwargs
        # or credentials the store does not keep
        return f"{python} with the same backend= (the command line cannot build it from the store)"
    return f"{resume_command(name, fn, root=root, spec=spec)}  (or {python})"


_WHAT = {"--resources": "the resources function", "--constraints": "the constraints function",
         "--stop": "the stop rule"}


def _function_options(spec: dict[str, Any], script: str | None) -> tuple[list[tuple[str, str]], list[str]]:
    """The options of `tunesmith resume` that name the user's functions (and Stoppers) a stored ``spec`` needs,
    ``(option, FILE.py:NAME)`` for those defined in the script run as ``python FILE.py`` (stored as ``__main__:NAME``,
    which the command line cannot import by that name); and the ones it cannot import at all, described. The
    others (``module:NAME``) are left to the command, which imports them once the user confirms, as ``--fn``'s.
    Stop rules go all or none, in their order (the command takes one ``--stop`` per stored rule)."""
    stored: list[tuple[str, Any]] = []
    resources = spec.get("resources")
    if isinstance(resources, dict) and "callable" in resources:
        stored.append(("--resources", resources["callable"]))
    if spec.get("constraints"):
        stored.append(("--constraints", spec["constraints"]))
    stop = spec.get("stop")
    for rule in stop if isinstance(stop, list) else [stop]:
        if isinstance(rule, dict) and ("callable" in rule or "stopper" in rule):
            stored.append(("--stop", rule["callable"] if "callable" in rule else rule["stopper"]))
    found: list[tuple[str, str, bool]] = []  # (option, what the command line imports, defined in the script)
    cannot: list[str] = []
    for option, value in stored:
        module, sep, attr = value.rpartition(":") if isinstance(value, str) else ("", "", "")
        if not sep or not module or not attr or "<" in attr or (module == "__main__" and not script):
            cannot.append(f"{_WHAT[option]} {value!r}")
        elif module == "__main__":
            found.append((option, f"{script}:{attr}", True))
        else:
            found.append((option, value, False))
    stops_in_script = any(in_script for option, _value, in_script in found if option == "--stop")
    return [(option, value) for option, value, in_script in found
            if in_script or (option == "--stop" and stops_in_script)], cannot


def _main_script() -> str | None:
    """The file of the script this process runs as ``python FILE.py`` (its ``__main__``), or None."""
    file = getattr(sys.modules.get("__main__"), "__file__", None)
    return os.path.abspath(file) if isinstance(file, str) and file.endswith(".py") else None


def python_resume_hint(name: str, root: str | None = None) -> str:
    """The ``tunesmith.run`` call that resumes experiment ``name``, with ``storage_path=`` where ``root`` is not the
    default storage folder."""
    where = f", storage_path={root!r}" if root is not None and os.path.abspath(root) != _layout.storage_root(None) \
        else ""
    return f"tunesmith.run(..., name={name!r}{where}, resume=True)"


def _stored_meta(store_file: str) -> tuple[dict[str, Any], int, list[Any] | None]:
    """The metadata of the store a resume continues, its number of trials and the earlier trials its warm start kept
    (None for a store that kept none: before schema 4), read without writing: the writer opened after the resume's
    checks migrates an older schema."""
    from tunesmith.store.sqlite import WARM_START_KEY, Store

    reader = Store(store_file, readonly=True)
    try:
        meta = reader.meta()
        return (meta, sum(reader.trial_counts().values()),
                reader.warm_start_trials() if WARM_START_KEY in meta else None)
    finally:
        reader.close()


def _undo_resume(store: Store, before: dict[str, Any], event: int, earlier: tuple[list[Any] | None] | None) -> None:
    """A resume that failed before its loop ran anything (a damaged store its replay could not read, a dashboard
    that could not start) leaves the experiment as it was: its status (a finished one is not left "running", which
    readers show as crashed), spec and error, without the ``resume`` event, a finished one's results index, and
    the earlier trials of its warm start where the resume wrote them (``earlier``: a tuple of those kept before,
    or of None where none were; None where the resume wrote none)."""
    try:
        with store.transaction() as db:
            for key in ("spec", "status", "error"):
                if key in before:
                    store.set_meta(db, key, before[key])
            if earlier is not None:
                store.set_warm_start(db, earlier[0])
            store.delete_event(db, event)
        if before.get("status") == "finished":
            store.index_results()  # marking it running dropped the index
    except Exception:  # noqa: BLE001 - the resume's own error is the one the user must see
        log.exception("could not restore experiment %s's status after its resume failed", store.path)


def _qualname(fn: Any) -> str:
    from tunesmith._stop import stored_name

    return stored_name(fn)  # module:qualname: `tunesmith resume` imports it once the user confirms


def _with_added_samples(meta: dict[str, Any], num_samples: int) -> int:
    """A resume's num_samples: the run's own plus those the dashboard added (``add_samples``, kept in the store's
    ``meta``); the searcher is to be set up again with the sum."""
    from tunesmith.dashboard._commands import ADDED_KEY

    added = meta.get(ADDED_KEY)
    if num_samples == -1 or isinstance(added, bool) or not isinstance(added, int) or added <= 0:
        return num_samples
    log.info("resume: num_samples %d + %d added from the dashboard", num_samples, added)
    return num_samples + added


def _with_added_time(meta: dict[str, Any], time_budget_s: float | None) -> float | None:
    """A resume's time budget: the run's own plus the seconds the dashboard added (``extend_time``, kept in the
    store's ``meta``); none without a budget of its own."""
    from tunesmith.dashboard._commands import TIME_ADDED_KEY, added_time

    added = added_time(meta)
    if time_budget_s is None or not added:
        if time_budget_s is None and TIME_ADDED_KEY in meta:
            log.info("resume: no time_budget_s: the %g s added from the dashboard do not apply", added)
        return time_budget_s
    log.info("resume: time_budget_s %g + %g s added from the dashboard", time_budget_s, added)
    return time_budget_s + added


def _check_resumable(stored: dict[str, Any], name: str, objective: Objective, space_json: Any, searcher: Any,
                     scheduler: Any, ranks: int | None = None) -> None:
    """A resume replays the stored trials through the searcher and scheduler: it must be given the experiment's
    metric, mode and space (a ``sample_from`` function compares by its place, not its identity), searcher
    and scheduler of the same kinds (their settings may change, but not a seed: ``_check_seeds``), and its
    ``ranks`` (its trials' checkpoints were written by that many processes)."""
    from tunesmith._objective import unwrap_single

    same = {**objective.to_spec(), **({"ranks": ranks} if "ranks" in stored else {})}
    # one metric in a list, as an earlier version stored it, is that metric (``run`` reads it so now)
    ran = dict(stored, **dict(zip(("metric", "mode"), unwrap_single(stored.get("metric"), stored.get("mode")))))
    for key, value in same.items():
        if ran.get(key) != value:
            raise ConfigError(f"resume: experiment {name!r} was run with {key}={ran.get(key)!r}, not "
                              f"{value!r}; pass the same {key}")
    hint = "; to build on its results with another one, start a new experiment with warm_start=[its folder]"
    if "space" in stored and _comparable(stored["space"]) != _comparable(space_json):  # JSON text: NaN is NaN
        # shown as every output shows a config: a secret in either space is ***
        where, there, here = _first_difference(_without_reprs(stored["space"]), _without_reprs(space_json))
        shown = [_shortened(_shown_space(v, where)) for v in (there, here)]
        raise ConfigError(f"resume: experiment {name!r} was run with another space: it differs at space"
                          f"{''.join(f'[{k!r}]' for k in where)}: {shown[0]!r} there, {shown[1]!r} here (stored space: "
                          f"{_shortened(_shown_space(stored['space']))!r}); pass the same space{hint}")
    if "space" in stored and _key_order(stored["space"]) != _key_order(space_json):
        # the same keys, another order: a grid's points and the random draws follow the keys' order, so the
        # resumed search would run some grid points again and others never
        raise ConfigError(f"resume: experiment {name!r} was run with another space (its keys in another order: "
                          f"{_key_order(stored['space'])}, not {_key_order(space_json)}); the order decides the grid's "
                          f"order and the draws: pass the keys in the stored order")
    for kind, spec in (("searcher", searcher), ("scheduler", scheduler)):
        was = stored.get(kind)
        if isinstance(was, dict) and "type" in was and was.get("type") != spec.get("type"):
            raise ConfigError(f"resume: experiment {name!r} was run with another {kind}: {was['type']}, not "
                              f"{spec.get('type')}; pass the same kind of {kind}{hint}")


def _check_callbacks(callbacks: Any) -> None:
    """``callbacks`` is a list (or tuple) of ``Callback`` objects: one given alone, a class, a function is named."""
    from tunesmith.callbacks._base import Callback

    if callbacks is None:
        return
    if isinstance(callbacks, Callback) or not isinstance(callbacks, (list, tuple)):
        raise ConfigError(f"callbacks must be a list of Callback objects, e.g. callbacks=[{type(callbacks).__name__}"
                          f"()]; got {type(callbacks).__name__}")
    for i, cb in enumerate(callbacks):
        if not isinstance(cb, Callback):
            what = f"the class {cb.__name__} (not an instance: {cb.__name__}())" if isinstance(cb, type) else \
                type(cb).__name__
            raise ConfigError(f"callbacks[{i}]: expected a Callback object (a subclass of tunesmith.Callback, "
                              f"instantiated), got {what}")
        _check_hook_names(cb)


def _check_hook_names(cb: Any) -> None:
    """Warn of a method that looks like a misspelled hook (``on_trial_result``): it would never be called."""
    import difflib

    from tunesmith.callbacks._base import Callback

    hooks = [name for name in vars(Callback) if name.startswith("on_")]
    for name in dir(type(cb)):
        if name.startswith("on_") and name not in hooks and callable(getattr(type(cb), name, None)):
            near = difflib.get_close_matches(name, hooks, n=1, cutoff=0.85)
            if near:
                log.warning("callback %s.%s is no hook of tunesmith.Callback, so it is never called: did you mean %s?",
                            type(cb).__name__, name, near[0])


def _comparable(space_json: Any) -> str:
    """A stored space's JSON text (keys sorted) without what differs between two runs of the same code (a
    ``sample_from``'s repr holds its function's address). Texts compare a NaN as equal to itself (``nan != nan``
    would refuse the same space), and ``True``, ``1`` and ``1.0`` as the different values a config gets."""
    import json

    return json.dumps(_without_reprs(space_json), sort_keys=True, default=repr)


_MISSING_KEY = "(no such key)"


def _first_difference(a: Any, b: Any, path: tuple[Any, ...] = ()) -> tuple[tuple[Any, ...], Any, Any]:
    """The first key path (in ``a``'s key order, then ``b``'s) where two stored spaces differ, with the value each
    has there; a domain is compared whole (its arguments are not keys of the space)."""
    if isinstance(a, dict) and isinstance(b, dict) and "__domain__" not in a and "__domain__" not in b:
        for key in [*a, *(k for k in b if k not in a)]:
            x, y = a.get(key, _MISSING_KEY), b.get(key, _MISSING_KEY)
            if _comparable(x) != _comparable(y):
                return _first_difference(x, y, (*path, key))
    return path, a, b


def _shortened(value: Any, most: int = 80) -> Any:
    """``value`` with every string longer than ``most`` characters cut (``...`` and how many more): a message that
    quotes a space stays readable when the space holds a 20 KB prompt."""
    if isinstance(value, str) and len(value) > most:
        return f"{value[:most]}... ({len(value) - most} more characters)"
    if isinstance(value, dict):
        return {k: _shortened(v, most) for k, v in value.items()}
    if isinstance(value, list):
        return [_shortened(v, most) for v in value]
    return value


def _shown_space(space_json: Any, path: tuple[Any, ...] = ()) -> Any:
    """A stored space as messages show it: each value masked as a config's value at its key path would be (a
    constant, a domain's arguments and options), the domains' names kept."""
    from tunesmith._secrets import mask_at

    if isinstance(space_json, dict):
        if "__domain__" in space_json:
            return {k: v if k == "__domain__" else mask_at(path, v) for k, v in space_json.items()}
        return {k: _shown_space(v, (*path, k)) for k, v in space_json.items()}
    return mask_at(path, space_json)


def _key_order(space_json: Any, prefix: str = "") -> list[str]:
    """The space's keys in their order, nested ones as ``a/b`` (a domain's own keys are not the space's)."""
    out: list[str] = []
    if isinstance(space_json, dict) and "__domain__" not in space_json:
        for key, value in space_json.items():
            out.append(prefix + str(key))
            out.extend(_key_order(value, f"{prefix}{key}/"))
    return out


def _without_reprs(space_json: Any) -> Any:
    if isinstance(space_json, dict):
        if space_json.get("__domain__") == "sample_from":
            return "sample_from"
        return {k: _without_reprs(v) for k, v in space_json.items()}
    if isinstance(space_json, list):
        return [_without_reprs(v) for v in space_json]
    return space_json


def _with_specs(obj: Any, stored: Any) -> Iterator[tuple[Any, dict[str, Any]]]:
    """``obj`` with its stored spec when the spec is of its type, after the searchers or schedulers it wraps
    (``ConcurrencyLimiter``, ``Repeat``: a constructor argument stored as a spec of its own) with theirs."""
    if not isinstance(stored, dict) or stored.get("type") != type(obj).__name__:
        return
    for key, inner in stored.items():  # what obj wraps, stored as its spec (constructor_spec: to_spec())
        wrapped = getattr(obj, key, None) if isinstance(inner, dict) and "type" in inner else None
        if wrapped is not None and hasattr(wrapped, "to_spec"):
            yield from _with_specs(wrapped, inner)
    yield obj, stored


def _stored_seed(spec: dict[str, Any]) -> int | None:
    seed = spec.get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def _adopt_drawn_seed(obj: Any, stored: Any) -> bool:
    """Give ``obj`` (built with ``seed=None``, so it drew one) the seed its stored spec recorded, when the spec
    is of the same type, and likewise the searcher or scheduler it wraps; return whether one changed (``obj``'s
    ``setup``, which sets up what it wraps, must then run again)."""
    changed = False
    for each, spec in _with_specs(obj, stored):
        seed = _stored_seed(spec)
        if getattr(each, "seed", 0) is None and hasattr(each, "_seed") and seed is not None and each._seed != seed:
            each._seed = seed
            changed = True
    return changed


def _check_seeds(stored: dict[str, Any], name: str, searcher: Any, scheduler: Any) -> None:
    """A resume goes on with the random streams it replays: a searcher or scheduler (or one it wraps) given another
    seed than its stored one would draw what the experiment never would have, and is refused as another metric is
    (one given none takes the stored seed: ``_adopt_drawn_seed``)."""
    for kind, obj in (("searcher", searcher), ("scheduler", scheduler)):
        for each, spec in _with_specs(obj, stored.get(kind)):
            seed, given = _stored_seed(spec), getattr(each, "seed", None)
            if seed is not None and isinstance(given, int) and not isinstance(given, bool) and given != seed:
                raise ConfigError(f"resume: experiment {name!r} was run with seed={seed} (its {type(each).__name__} "
                                  f"{kind}'s), not {given}; pass the same seed, or none (the stored one is taken): "
                                  f"another would draw what the experiment never would have")


def _say_grid_is_searched(searcher: Any, space: Any, num_samples: int) -> None:
    """``OptunaSearch`` and ``BOHB`` (wrapped or not) take a ``grid`` key for a choice and search it: unlike ``Random``
    they need not run every grid point, which ``grid`` does not say (a warning)."""
    from tunesmith.searchers._wrapped import unwrapped
    from tunesmith.space import Grid, domains

    kind = type(unwrapped(searcher)[0]).__name__
    if kind not in ("OptunaSearch", "BOHB") or not isinstance(space, dict):
        return
    grids = [(path, d) for path, d in domains(space) if isinstance(d, Grid) and len(d.values) > 1]  # one: in each
    if grids:
        log.warning("%s searches the grid keys %s as choices, not crossing them as Random and QuasiRandom do: the "
                    "configs need not include each of the grid's %d points (num_samples=%d)", kind,
                    ["/".join(path) for path, _ in grids], math.prod(len(d.values) for _, d in grids), num_samples)


def _trials_per_sample(searcher: Any, space: dict[str, Any]) -> int | None:
    """How many trials each of ``num_samples`` makes with one of tunesmith's searchers (``Random`` and
    ``QuasiRandom`` cross the grid, ``Repeat`` runs each config ``n`` times); None for another searcher."""
    from tunesmith.searchers._wrapped import unwrapped
    from tunesmith.searchers.random import Random, total_trials
    from tunesmith.searchers.sobol import QuasiRandom

    inner, per_config = unwrapped(searcher)
    if type(inner) in (Random, QuasiRandom):
        grid = total_trials(space, 1)
        return None if grid is None else grid * per_config
    return per_config if type(inner).__name__ in ("OptunaSearch", "BOHB") else None


def _check_num_samples(name: str, searcher: Any, space: dict[str, Any], num_samples: int, total: int,
                       trials: int) -> None:
    """A resume's ``num_samples`` may grow or shrink, but not below the trials the experiment has: those beyond
    would be left as they are without a word (``total``: with the samples the dashboard added)."""
    per = _trials_per_sample(searcher, space) if total != -1 else None
    if per is None or per * total >= trials:
        return
    need = num_samples + -(-(trials - per * total) // per)
    raise ConfigError(f"resume: experiment {name!r} already has {trials} trials: num_samples={num_samples} allows "
                      f"{per * total}; pass num_samples={need} or more")


def _space_json(space: dict[str, Any]) -> Any:
    from tunesmith.space import space_to_json

    return space_to_json(space)


def _make_folder(root: str, exp_dir: str, storage_path: str | None) -> None:
    """Create the experiment folder; a storage path (or experiment folder) that is a file is a ConfigError."""
    what = "storage_path" if storage_path is not None else "the results folder ($TUNESMITH_RESULTS)"
    for path, label in ((root, what), (exp_dir, "the experiment folder")):
        if os.path.exists(path) and not os.path.isdir(path):
            raise ConfigError(f"{label} {path} is a file, not a folder: give a folder (it holds one folder per "
                              f"experiment)")
    try:
        os.makedirs(exp_dir, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{what}: cannot create the experiment folder {exp_dir} ({e.strerror or e})") from e


def _check_sampled_values(space: dict[str, Any]) -> None:
    """Resolve the space once, with a throwaway generator, and check that the store can hold the config: the
    values of ``sample_from`` functions are known only once they are called, and a trial's config that cannot
    be stored would otherwise fail after the experiment folder exists. (numpy and torch numbers are fine:
    ``resolve`` makes them Python numbers.)"""
    import random

    from tunesmith.space import check_storable, resolve, validate_space

    if _has_sample_from(space):
        validate_space(space)
        check_storable(resolve(space, random.Random(0)), "config")


def _has_sample_from(value: Any) -> bool:
    from tunesmith.space import Choice, Grid, SampleFrom

    if isinstance(value, SampleFrom):
        return True
    if isinstance(value, dict):
        return any(_has_sample_from(v) for v in value.values())
    if isinstance(value, (Choice, Grid)):
        return any(_has_sample_from(v) for v in (value.options if isinstance(value, Choice) else value.values))
    return False


def _ships_fn(executor: Executor) -> bool:
    """Whether the executor pickles ``fn`` to run it in other processes (the simulated one calls it in place)."""
    simulated = sys.modules.get("tunesmith.executors.simulated")  # not imported: not a SimulatedBackend
    return simulated is None or not isinstance(executor, simulated.SimulatedBackend)


def _check_picklable(fn: Any) -> None:
    """Workers get ``fn`` pickled (cloudpickle): one that cannot be pickled fails here, before anything is created,
    rather than in the executor's setup after the experiment folder exists. (The executors pickle it again:
    once more for the check, which is small next to starting the workers.)"""
    import cloudpickle

    try:
        cloudpickle.dumps(fn)
    except Exception as e:  # noqa: BLE001 - pickling raises TypeError, PicklingError, AttributeError...
        what = getattr(fn, "__qualname__", None) or repr(fn)
        raise ConfigError(f"fn {what!r} cannot be pickled to send it to the worker processes: {type(e).__name__}: "
                          f"{e}. Create what it cannot pickle (a lock, an open file or connection, a loaded model "
                          f"holding one...) inside the function, or pass the values it needs in the config") from e


def _acquire(exp_dir: str, name: str) -> Any:
    """Hold the experiment's lock (an exclusive flock on ``.driver.lock``, what ``driver_running`` probes), or a
    ConfigError naming the driver that holds it. flock directly: the filelock package is slow to import, a large
    share of a run's start (benchmarks/pertrial.py, first result); it stays the fallback where there is no flock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no flock here (Windows)
        return _acquire_filelock(exp_dir, name)
    path = _layout.lock_path(exp_dir)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as e:
        if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):  # the folder, not the file: a read-only mount
            raise ConfigError(f"cannot write in the folder of experiment {name!r} ({exp_dir}: {e.strerror}); copy "
                              f"it somewhere writable and resume the copy") from None
        raise ConfigError(f"cannot open experiment {name!r}'s lock file {path} ({e.strerror}); expected a plain "
                          f"file (a link is not followed)") from None
    # a moment's patience: `tunesmith ls` probes the lock (a shared flock, held for microseconds)
    deadline = time.monotonic() + 0.2
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES) or time.monotonic() >= deadline:
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                    raise
                raise ConfigError(f"experiment {name!r} is being run by another driver (pid "
                                  f"{_layout.read_pid(exp_dir)}); wait for it or stop it first") from None
            time.sleep(0.02)
    _layout.write_pid(exp_dir)  # a fresh file renamed over: a planted symlink is replaced, not followed
    return fd


def _acquire_filelock(exp_dir: str, name: str) -> Any:  # pragma: no cover - where there is no flock
    from filelock import FileLock, Timeout

    lock = FileLock(_layout.lock_path(exp_dir))
    try:
        lock.acquire(timeout=0.2, poll_interval=0.02)
    except Timeout:
        raise ConfigError(f"experiment {name!r} is being run by another driver (pid {_layout.read_pid(exp_dir)});"
                          f" wait for it or stop it first") from None
    _layout.write_pid(exp_dir)
    return lock


def _release(lock: Any, exp_dir: str) -> None:
    _layout.remove_pid(exp_dir)
    if isinstance(lock, int):
        os.close(lock)  # releases the flock
    else:
        lock.release()
