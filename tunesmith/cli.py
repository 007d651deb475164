"""The ``tunesmith`` command line: run, ls, show, report, resume, trust, rm.

Exit codes scripts can rely on: 0 success; 1 a trial or the experiment failed, an unexpected error
(a damaged store...), or a declined confirmation; 2 a usage or configuration error (bad option, bad
space file, unknown experiment, an experiment that is running); 130 interrupted (Ctrl-C); 143 stopped
by SIGTERM (both leave the experiment resumable). Errors are one line on standard error;
``tunesmith --debug ...`` shows the traceback.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import inspect
import json
import math
import os
import re
import shutil
import sys
import time
from typing import Any

import click

from tunesmith import _layout
from tunesmith._display import ERROR_CHARS, cut, error_lines, printable
from tunesmith._errors import ConfigError
from tunesmith._importing import importing
from tunesmith._secrets import shown

_DEBUG = "tunesmith.debug"
# What `run --scheduler/--searcher NAME` builds: a public class of tunesmith (its lazy exports import
# only the one asked for) and its arguments. `resume` rebuilds any of these classes from the stored spec.
_SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "fifo": ("FIFO", {}), "asha": ("ASHA", {}), "hyperband": ("HyperBand", {}), "median": ("MedianStopping", {}),
}
_SEARCHERS: dict[str, tuple[str, dict[str, Any]]] = {  # the Optuna ones need tunesmith[optuna]
    "random": ("Random", {}), "quasirandom": ("QuasiRandom", {}), "bohb": ("BOHB", {}),
    "tpe": ("OptunaSearch", {"sampler": "tpe"}), "cmaes": ("OptunaSearch", {"sampler": "cmaes"}),
    "gp": ("OptunaSearch", {"sampler": "gp"}), "nsgaii": ("OptunaSearch", {"sampler": "nsgaii"}),
}
_REBUILDABLE = {"scheduler": {cls for cls, _ in _SCHEDULERS.values()},
                "searcher": {cls for cls, _ in _SEARCHERS.values()}}


def _public_class(name: str) -> Any:
    import tunesmith

    return getattr(tunesmith, name)


class _Cli(click.Group):
    """Turns exceptions into one line on stderr and an exit code (the traceback with ``--debug``)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            raise  # the reader closed the pipe (`| head`): click ends quietly, status 1
        except KeyboardInterrupt:
            if ctx.meta.get(_DEBUG):
                raise
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # noqa: BLE001 - every error reaches the user as one line and a code
            if ctx.meta.get(_DEBUG):
                raise
            config = isinstance(exc, (ConfigError, ImportError))
            hint = "" if config else " (run with --debug for the traceback)"
            click.echo(f"error: {printable(_one_line(exc), one_line=True)}{hint}", err=True)
            ctx.exit(2 if config else 1)


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " ".join(lines) if isinstance(exc, ConfigError) else (lines[0] if lines else "")
    return text if isinstance(exc, (ConfigError, ImportError)) else f"{type(exc).__name__}: {text}"


# run()'s parameters that `tunesmith run` takes as options, for its errors: run()'s words are the Python names
_OPTION_OF = {"time_budget_s": "--time-budget", "max_concurrent": "--max-concurrent", "num_samples": "--num-samples",
              "resources": "--resources", "stop": "--stop"}
_PARAMETER = re.compile(r"(?<![\w'\"-])(time_budget_s|max_concurrent|num_samples)\b"
                        r"|(?<![\w'\"-])(resources|stop)\[('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\]")


def _as_options(message: str) -> str:
    """``message`` (a ConfigError of run()) naming the command line's options where it names run()'s parameters:
    ``max_concurrent`` is ``--max-concurrent``, ``stop['loss']`` is ``--stop loss``. Quoted text (a user's keys
    and values) is left as it is."""
    def option(match: re.Match[str]) -> str:
        if match[1]:
            return _OPTION_OF[match[1]]
        return f"{_OPTION_OF[match[2]]} {ast.literal_eval(match[3])}"
    return _PARAMETER.sub(option, message)


def _storage_option(fn: Any) -> Any:
    return click.option("--storage-path", type=click.Path(file_okay=False), default=None, callback=_not_empty,
                        help="Folder of experiment folders [default: $TUNESMITH_RESULTS or ./tunesmith_results].")(fn)


def _not_empty(ctx: click.Context, param: click.Parameter, value: str | None, what: str = "a folder") -> str | None:
    """An empty path is refused: it is ``--storage-path "$RESULTS"`` with the variable unset, and taken as the
    current folder it made `rm NAME` remove ``./NAME`` (``-o ""``: the default file)."""
    if value == "":
        raise click.BadParameter(f"expected {what}, got an empty value (an unset variable?); leave the option out "
                                 "for the default", ctx=ctx, param=param)
    return value


def _root(storage_path: str | None) -> str:
    return _layout.storage_root(storage_path)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="tunesmith", prog_name="tunesmith")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Hyperparameter tuning: run experiments and look at their results.

    Experiments live in folders under --storage-path (default $TUNESMITH_RESULTS or ./tunesmith_results).

    \b
    Exit codes:
      0    ok
      1    a trial or the experiment failed, an unexpected error, or a declined confirmation
      2    usage or configuration error (bad option, bad space file, unknown experiment)
      130  interrupted (Ctrl-C); 143 stopped by SIGTERM: resume with `tunesmith resume NAME`
    """
    ctx.meta[_DEBUG] = debug


# ------------------------------------------------------------------------------------------------ run


@cli.command(short_help="Run an experiment of a training function.")
@click.argument("target", metavar="MODULE_OR_FILE:FN")
@click.option("--space", "space_file", type=click.Path(dir_okay=False), default=None,
              help="Search space as YAML or JSON, e.g. 'lr: {loguniform: [1e-4, 1e-1]}'.")
@click.option("--metric", default=None, help="The reported metric to optimise.")
@click.option("--mode", type=click.Choice(["min", "max"]), default=None, help="Minimise or maximise --metric.")
@click.option("--num-samples", type=int, default=1, show_default=True,
              help="Trials to run (per grid point with the random and quasirandom searchers; the others search "
                   "a grid's values instead of crossing them); -1 for no limit (needs --time-budget).")
@click.option("--name", default=None, help="Experiment folder name [default: <fn>_<date>_<time>].")
@_storage_option
@click.option("--stop", "stops", multiple=True, metavar="KEY=VALUE",
              help="Stop a trial when KEY reaches VALUE, e.g. training_iteration=100 or loss=0.01. Repeatable.")
@click.option("--time-budget", type=float, default=None, metavar="SECONDS", help="Stop everything after this long.")
@click.option("--max-concurrent", type=int, default=None, help="At most this many trials at once.")
@click.option("--resources", default=None, metavar="cpu=1,gpu=0.5", help="Resources per trial.")
@click.option("--seed", type=int, default=None, help="Seed of the searcher.")
@click.option("--searcher", type=click.Choice(list(_SEARCHERS)), default="random", show_default=True,
              help="How configs are chosen (tpe, cmaes, gp, nsgaii: Optuna's samplers, tunesmith[optuna]).")
@click.option("--scheduler", type=click.Choice(sorted(_SCHEDULERS)), default="fifo", show_default=True,
              help="Trial scheduler, with its default settings.")
@click.option("--verbose", type=click.IntRange(0, 2), default=1, show_default=True,
              help="0 quiet, 1 progress, 2 more detail.")
def run(target: str, space_file: str | None, metric: str | None, mode: str | None, num_samples: int,
        name: str | None, storage_path: str | None, stops: tuple[str, ...], time_budget: float | None,
        max_concurrent: int | None, resources: str | None, seed: int | None, searcher: str, scheduler: str,
        verbose: int) -> None:
    """Run an experiment: the training function FN from a module or a .py file.

    \b
    Examples:
      tunesmith run train.py:train --space space.yaml --metric loss --mode min --num-samples 20
      tunesmith run mypkg.train:main --space space.json --stop training_iteration=50 --resources cpu=2
      tunesmith run train.py:train --space space.yaml --metric loss --mode min --searcher tpe --seed 0
    """
    from tunesmith._run import run as run_experiment
    from tunesmith._space_file import load_space

    space = load_space(space_file) if space_file else {}
    stop = _key_values(stops, "--stop") or None
    per_trial = _key_values(resources.split(","), "--resources") if resources else None
    cls, kwargs = _SCHEDULERS[scheduler]
    sched = _public_class(cls)(**kwargs)
    cls, kwargs = _SEARCHERS[searcher]
    search = _public_class(cls)(seed=seed, **kwargs)
    if searcher not in ("random", "quasirandom") and _has_grid(space):
        click.echo(f"note: --searcher {searcher} searches a grid's values as a choice, not crossing them: "
                   f"--num-samples {num_samples} counts trials, not trials per grid point (--searcher random "
                   "or quasirandom cross grids)", err=True)
    fn = load_target(target)
    try:
        result = run_experiment(
            fn, space, metric=metric, mode=mode, num_samples=num_samples, scheduler=sched, searcher=search,
            resources=per_trial, name=name, storage_path=storage_path, stop=stop, time_budget_s=time_budget,
            max_concurrent=max_concurrent, verbose=verbose)
    except ConfigError as exc:
        raise ConfigError(_as_options(str(exc))) from exc
    counts = _counts(result.trials)
    click.echo(printable(f"experiment {result.name}: {len(result.trials)} trials ({counts}); folder {result.path}"))
    if result.metric and result.mode:
        try:
            best = result.best
            value = best.metrics.get(result.metric) if isinstance(result.metric, str) else None
            config = json.dumps(_cut_texts(shown(best).config), default=str)
            click.echo(printable(f"best {best.name} by its last result: {result.metric}={_fmt(value)} "
                                 f"config={config}"))
        except ConfigError:
            pass
    if result.errors:
        first = shown(result.errors[0])
        last = error_lines(first.error)
        click.echo(printable(f"error: {len(result.errors)} trial(s) failed; first {first.name}: "
                             f"{cut(last[-1], ERROR_CHARS) if last else 'failed'} (traceback: tunesmith show "
                             f"{result.name} --json)", one_line=True), err=True)
        sys.exit(1)
    if result.status == "failed":
        click.echo(printable(f"error: experiment {result.name} failed", one_line=True), err=True)
        sys.exit(1)


def _has_grid(space: dict[str, Any]) -> bool:
    from tunesmith.space import Grid, domains

    return any(isinstance(domain, Grid) for _path, domain in domains(space))


def load_target(target: str) -> Any:
    """The function named by ``MODULE:FN`` or ``path/to/file.py:FN``.

    A file is loaded as a module named after the file (not ``__main__``, so its ``if __name__ ==
    "__main__"`` block does not run) and its folder goes on ``sys.path``, so worker processes can import
    it. For a module name the current folder goes on ``sys.path``, as with ``python -m``.

    Raises:
        ConfigError: a malformed target, a module that cannot be imported, or a missing or non-callable FN.
    """
    module_part, sep, attr = target.rpartition(":")
    if not sep or not module_part or not attr:
        raise ConfigError(f"expected MODULE:FN or FILE.py:FN (e.g. train.py:train), got {target!r}")
    if module_part.endswith(".py") or os.path.isfile(module_part):
        module = _load_file(module_part)
    else:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_part)
        except ImportError as exc:
            raise ConfigError(f"cannot import module {module_part!r}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{module_part} has no {attr!r} (found: "
                              f"{', '.join(n for n in dir(module) if not n.startswith('_'))[:200]})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{target}: {attr} is not a function (got {type(obj).__name__})")
    return obj


def _load_file(path: str) -> Any:
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"no such file: {path}")
    name = os.path.splitext(os.path.basename(path))[0]
    existing = sys.modules.get(name)
    if existing is not None:
        if os.path.abspath(getattr(existing, "__file__", "") or "") == path:
            return existing
        raise ConfigError(f"{path}: a module named {name!r} is already imported (from "
                          f"{getattr(existing, '__file__', 'built-in')}); rename the file")
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        with importing(path):
            spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ConfigError(f"{path}: importing it raised {type(exc).__name__}: {exc}") from exc
    return module


def _key_values(items: Any, option: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key, text = key.strip(), text.strip()
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not sep or not key or math.isnan(value):
            raise ConfigError(f"{option}: expected KEY=NUMBER, got {item!r}")
        out[key] = int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value
    return out


# ----------------------------------------------------------------------------------------- ls and show


SHOW_PAGE = 20  # trials in `tunesmith show`'s table unless --limit or --all
# more trials than this are printed as plain aligned lines, one per trial, not as rich's table: rich lays out
# every cell (benchmarks/scale.py row 6 measures `show --all`)
SHOW_RICH_ROWS = 200
WATCH_S = 2.0  # `show --watch`'s default seconds between draws
WATCH_MIN_S = 0.2
WATCH_MAX_S = 86_400.0


class _Seconds(click.ParamType):
    """``--watch``'s period: a number of seconds, at least :data:`WATCH_MIN_S`."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"expected seconds between draws (a number >= {WATCH_MIN_S:g}, e.g. --watch 5), got {value!r}; "
                      "put --watch after NAME", param, ctx)
        if not WATCH_MIN_S <= seconds <= WATCH_MAX_S:  # NaN too
            self.fail(f"expected seconds between draws of at least {WATCH_MIN_S:g} and at most {WATCH_MAX_S:g} "
                      f"(a day), got {value!r}", param, ctx)
        return seconds


class _WatchCommand(click.Command):
    """`show`: click reads the negative number in ``--watch -1`` (or ``--watch=-1``) as an unknown option ``-1``; say
    what ``--watch`` expects instead."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        for i, arg in enumerate(args):
            if arg == "--":
                break
            value = arg[len("--watch="):] if arg.startswith("--watch=") else (
                args[i + 1] if arg == "--watch" and i + 1 < len(args) else None)
            if value is not None and value.startswith("-") and value[1:2].isdigit():
                raise click.BadParameter(f"expected seconds between draws of at least {WATCH_MIN_S:g}, got {value!r}",
                                         ctx=ctx, param_hint="'--watch'")
        return super().parse_args(ctx, args)


def _experiments(root: str) -> list[str]:
    from tunesmith._layout import store_path

    if not os.path.isdir(root):
        return []
    return sorted(os.path.join(root, d) for d in os.listdir(root) if os.path.isfile(store_path(os.path.join(root, d))))


def _summary(path: str) -> dict[str, Any]:
    from tunesmith.results import ResultSet

    name = os.path.basename(path)
    try:
        rs = ResultSet(path)
        counts = rs._store.trial_counts()  # counted by SQLite; the best is ranked by SQLite, one row read
        status = rs.status
        best = None
        if rs.metric and rs.mode:
            try:
                b = rs.best
                value = b.metrics.get(rs.metric) if isinstance(rs.metric, str) else None  # several: best raised
                best = {"trial": b.name, "metric": rs.metric, "mode": rs.mode, "value": value}
            except ConfigError:
                best = None
    except Exception as exc:  # noqa: BLE001 - one damaged experiment must not hide the others
        return {"name": name, "path": path, "status": "unreadable", "error": _one_line(exc), "trials": 0,
                "errors": 0, "best": None, "created": None, "age_s": None}
    created = rs.meta.get("created")
    if isinstance(created, bool) or not isinstance(created, (int, float)) or not -1e12 < created < 1e12:
        created = None  # not a time (a store someone else wrote; NaN fails the bounds): sorted last, age unknown
    return {"name": name, "path": path, "status": status, "trials": sum(counts.values()),
            "errors": counts.get("ERROR", 0), "best": best, "created": created,
            "age_s": (time.time() - created) if created is not None else None}


@cli.command(short_help="Serve the live dashboard of the experiments (a local web page).")
@click.argument("name", required=False)
@_storage_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback needs --token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8788, show_default=True,
              help="Port; 0 picks a free one.")
@click.option("--token", default=None, envvar="TUNESMITH_DASHBOARD_TOKEN",
              help="Access token every request must carry [env TUNESMITH_DASHBOARD_TOKEN].")
@click.option("--allow-control", is_flag=True, help="Allow stopping trials, the experiment, more samples or time.")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="Another name the Host header may carry (a reverse proxy's). Repeatable.")
def dashboard(name: str | None, storage_path: str | None, host: str, port: int, token: str | None,
              allow_control: bool, allowed_hosts: tuple[str, ...]) -> None:
    """Serve a live dashboard of the experiments under the storage path (or only NAME) until Ctrl-C.

    The first line printed is `tunesmith dashboard: http://HOST:PORT/` (with ?token=... when a token is set,
    URL-encoded). A port in use is an error (exit 2): pass another --port, or --port 0 for a free one.
    """
    from tunesmith._layout import check_folder_name, store_path
    from tunesmith.dashboard import serve

    root = _root(storage_path)
    if name is not None:
        folder = os.path.join(root, check_folder_name(name))
        if not os.path.isfile(store_path(folder)):
            raise ConfigError(f"no experiment {name!r} in {root} (tunesmith ls --storage-path {root})")

    def announce(line: str) -> None:  # the URL with its token (URL-encoded): printed for its user to open
        click.echo(line)
        sys.stdout.flush()

    serve(root, name, host=host, port=port, token=token, allow_control=allow_control,
          allowed_hosts=allowed_hosts, announce=announce)


@cli.command(name="ls", short_help="List experiments: status, trials, best, age.")
@_storage_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def ls_command(storage_path: str | None, as_json: bool) -> None:
    """List the experiments under the storage path: status, trials, best, age."""
    root = _root(storage_path)
    rows = [_summary(p) for p in _experiments(root)]
    rows.sort(key=lambda r: (r["created"] is None, r["created"] or 0, r["name"]))
    if as_json:
        click.echo(_json_text(rows))
        return
    if not rows:
        click.echo(printable(f"no experiments in {root}", one_line=True))
        return
    cells = []
    for r in rows:
        trials = f"{r['trials']}" + (f" ({r['errors']} failed)" if r["errors"] else "")
        best = r["best"]
        best_text = f"{best['metric']}={_fmt(best['value'])} ({best['trial']})" if best else "-"
        cells.append([r["name"], r["status"], trials, best_text, _age(r["age_s"])])
    click.echo(_plain_table(["name", "status", "trials", "best", "age"], cells))


@cli.command(cls=_WatchCommand, short_help="Show the trials of an experiment (sortable, --json, --watch).")
@click.argument("name")
@_storage_option
@click.option("--sort", "sort_key", default=None, metavar="KEY",
              help="Sort by a metric, a config key, 'id', 'status' or 'iteration'; '-KEY' for descending "
                   "[default: the experiment's metric, best first].")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help=f"Show at most this many trials [default: {SHOW_PAGE} in the table, every trial with --json].")
@click.option("--all", "show_all", is_flag=True, help="Show every trial in the table.")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON of every trial (with full configs, results and tracebacks); --limit shortens it.")
@click.option("--show-secrets", is_flag=True,
              help="Show config values that look like secrets (keys with key/token/secret/password) as stored.")
@click.option("--watch", type=_Seconds(), is_flag=False, flag_value=WATCH_S, default=None, metavar="[SECONDS]",
              help=f"Redraw the page every SECONDS (default {WATCH_S:g}, at least {WATCH_MIN_S:g}, at most "
                   f"{WATCH_MAX_S:g}) until Ctrl-C or the experiment ends; one process, reading only what changed. "
                   "Put it after NAME.")
def show(name: str, storage_path: str | None, sort_key: str | None, limit: int | None, show_all: bool,
         as_json: bool, show_secrets: bool, watch: float | None) -> None:
    """Show the trials of experiment NAME (a name under the storage path, or a folder), best first.

    The table shows the first 20 in that order and says how many more there are (--limit N, --all);
    --json gives every trial unless --limit is given. --watch redraws the page until Ctrl-C or the experiment
    ends, in one process (cheaper beside a running experiment than running show again and again).

    \b
    Examples:
      tunesmith show mnist-asha
      tunesmith show mnist-asha --sort=-lr --limit 10
      tunesmith show mnist-asha --json | jq '.trials[0].config'
      tunesmith show mnist-asha --watch 5
    """
    if show_all and limit is not None:
        raise ConfigError(f"--all and --limit {limit}: give one of them (--all shows every trial, --limit N the "
                          "first N)")
    if watch is not None and as_json:
        raise ConfigError("--watch and --json: give one of them (--watch redraws the table, --json prints once)")
    rs = _open(name, storage_path)
    if limit is None and not show_all and not as_json:
        limit = SHOW_PAGE  # drawing 10,000 rows takes seconds and nobody reads them: page, and say so
    if watch is not None:
        _watch(_Watch(rs, sort_key, limit, show_secrets), watch)
        return
    everyone, trials, note = _select(rs, sort_key, limit, show_secrets)
    if as_json:
        click.echo(_json_text({
            "name": rs.name, "path": rs.path, "status": rs.status, "metric": rs.metric,
            "mode": rs.mode,
            "trials": [{"id": t.id, "name": t.name, "status": t.status.value, "iteration": t.iteration,
                        "config": t.config, "last_result": t.last_result, "error": t.error,
                        "num_failures": t.num_failures, "parent_id": t.parent_id,
                        "parent_iteration": t.parent_iteration} for t in trials],
        }))
        return
    for item in _page(rs, rs.status, everyone, trials, note, sort_key):
        if isinstance(item, str):
            click.echo(item)
        else:
            _print(item)


def _select(rs: Any, sort_key: str | None, limit: int | None, show_secrets: bool,
            briefs: _Briefs | None = None) -> tuple[list[Any], list[Any], str | None]:
    """(every trial, the shown ones in order, a note on the order) for `show`: with ``limit``, light records of
    every trial ranked and the shown trials' rows read (``briefs`` keeps them between draws of ``--watch``)."""
    if limit is None:
        everyone: list[Any] = list(rs.trials)
        trials, note = _sorted_trials(rs, everyone, sort_key)
    else:  # a page: rank light records, then read the shown trials' rows only
        key = _order(rs, sort_key)[0]
        everyone = (briefs or _Briefs()).read(rs, None if key in ("id", "status", "iteration") else key)
        ranked, note = _sorted_trials(rs, everyone, sort_key)
        trials = [rs.trial(t.id) for t in ranked[:limit]]
    if not show_secrets:
        trials = [shown(t) for t in trials]  # configs and error messages masked
    return everyone, trials, note


def _page(rs: Any, status: str, everyone: list[Any], trials: list[Any], note: str | None,
          sort_key: str | None) -> list[Any]:
    """What `show` prints, in order: lines (``printable`` already) and the table of ``trials``."""
    from tunesmith.space import flatten

    total = len(everyone)
    out: list[Any] = [printable(f"experiment {rs.name} ({status}), {total} trials ({_counts(everyone)}), folder "
                                f"{rs.path}", one_line=True)]
    error = rs.meta.get("error") if status == "failed" else None
    if isinstance(error, str) and error:  # why the driver's loop ended (Controller._record_error)
        from tunesmith._secrets import mask_text, secret_strings

        secrets = set().union(*(secret_strings(t.config) for t in everyone))  # it may quote a config
        out.append(printable(f"failed: {cut(mask_text(error, secrets) or error, ERROR_CHARS)}", one_line=True))
    if note:
        out.append(printable(note, one_line=True))
    elif sort_key is None and rs.metrics and rs.modes:
        feasible = ", the trials whose last result is feasible first" if rs._constrained() else ""
        out.append(printable(f"best first by each trial's last {rs.metrics[0]} ({rs.modes[0]}){feasible}",
                             one_line=True))
    config_keys = list(dict.fromkeys(k for t in trials for k in flatten(t.config)))
    from tunesmith.results import feasible_result

    # run(constraints=...): their values, and whether the last result meets them
    constrained = sorted({k for t in trials for k in t.last_result if k.startswith("constraint/")},
                         key=lambda k: (len(k), k))
    metrics = list(rs.metrics) + [k for k in constrained if k not in rs.metrics]
    parents = any(t.parent_id is not None for t in trials)  # PBT: whose checkpoint the latest exploit cloned
    columns = (["trial", "status", "iter"] + (["parent"] if parents else []) + metrics
               + (["feasible"] if constrained else []) + config_keys)
    rows = []
    for t in trials:
        flat = flatten(t.config)
        row = [t.name, t.status.value.lower(), str(t.iteration)]
        if parents:
            row.append("" if t.parent_id is None else f"{t.parent_id}@{t.parent_iteration}")
        row += [_fmt(t.last_result.get(m, "")) for m in metrics]
        if constrained:
            ok = feasible_result(t.last_result)
            row.append("" if ok is None else "yes" if ok else "no")
        row += [_fmt_value(flat[k]) if k in flat else "" for k in config_keys]  # blank: a key the trial lacks
        rows.append(row)
    if len(rows) > SHOW_RICH_ROWS:  # a dump (--all, a long --limit): one line per trial, for a pager or grep
        out.append(_plain_table(columns, rows))
    else:
        table = _table(*columns)
        for row in rows:
            table.add_row(*row)
        out.append(table)
    for t in trials:
        if t.error:
            lines = error_lines(t.error)
            out.append(printable(f"{t.name} failed: {cut(lines[-1], ERROR_CHARS) if lines else ''}", one_line=True))
    if len(trials) < total:
        out.append(f"{total - len(trials)} more trials not shown: --limit N shows the first N, --all every one, "
                   "--json all of them as JSON")
    return out


class _Watch:
    """The state `show --watch` keeps between draws: one read-only connection (no lock: a reader never blocks the
    writer, and each read is a statement of its own, so no snapshot is held between draws), SQLite's count of
    commits by others (a tick with none reads nothing), and the trials' decoded records (:class:`_Briefs`)."""

    def __init__(self, rs: Any, sort_key: str | None, limit: int | None, show_secrets: bool) -> None:
        self.rs, self.sort_key, self.limit, self.show_secrets = rs, sort_key, limit, show_secrets
        self.briefs = _Briefs()
        self.version: int | None = None
        self.status: str | None = None

    def poll(self) -> tuple[list[Any] | None, bool]:
        """(the page, or None when nothing changed since the last one; whether the experiment ended: finished,
        failed, interrupted, or its driver gone)."""
        version = self.rs._store.data_version()
        changed = version != self.version
        if changed:
            self.rs.refresh()  # its metadata: the status
        status = _layout.live_status(self.rs.path, str(self.rs.meta.get("status", "running")))
        ended = status != "running"
        if not changed and status == self.status:
            return None, ended
        self.version, self.status = version, status
        everyone, trials, note = _select(self.rs, self.sort_key, self.limit, self.show_secrets, self.briefs)
        return _page(self.rs, status, everyone, trials, note, self.sort_key), ended


def _watch(watch: _Watch, seconds: float) -> None:
    """Draw ``watch``'s page every ``seconds`` until Ctrl-C or the experiment ends (then once more: exit 0). On a
    terminal rich's Live redraws it in place; elsewhere (a pipe, a file) each changed page is printed after the
    last, with no control sequences."""
    from rich.console import Console, Group
    from rich.text import Text

    out = sys.stdout
    tty = out.isatty()
    console = Console(file=out, width=None if tty else 240, highlight=False, soft_wrap=False, markup=False,
                      emoji=False)
    live = None
    if tty:
        from rich.live import Live

        live = Live(console=console, auto_refresh=False, redirect_stdout=False, redirect_stderr=False)
        live.start()
    try:
        first = True
        while True:
            page, ended = watch.poll()
            if page is not None and live is not None:
                live.update(Group(*(Text(i) if isinstance(i, str) else i for i in page)), refresh=True)
            elif page is not None:
                if not first:
                    click.echo("")
                for item in page:
                    if isinstance(item, str):
                        click.echo(item)
                    else:
                        console.print(item)
                out.flush()
            first = False
            if ended:
                return
            time.sleep(seconds)
    except KeyboardInterrupt:
        return  # watching was stopped; the experiment goes on
    finally:
        if live is not None:
            live.stop()


class _Brief:
    """What ranking a trial in `show` needs: its id, status, iteration and the value its last result holds at the
    key it is ranked by (``found``: SQLite's number, else its last result decoded here; ``_ABSENT`` when it has
    none), its config decoded only when asked for (sorting by a config key). A page of 20 out of 10,000 trials
    builds 20 TrialResults."""

    __slots__ = ("id", "status", "iteration", "found", "_config", "row")

    def __init__(self, row: tuple[int, str, int, str | None, str, Any], key: str | None) -> None:
        self.row = row
        self.id, status, self.iteration, last, self._config, picked = row
        self.status = _status(status)
        if key is None:  # picked is None: nothing ranks by the last result
            self.found: Any = _ABSENT
        elif picked == "decode":
            self.found = ((json.loads(last) if last is not None else None) or {}).get(key, _ABSENT)
        else:
            self.found = _ABSENT if picked == "absent" else picked

    @property
    def config(self) -> Any:
        if isinstance(self._config, str):
            self._config = json.loads(self._config)
        return self._config

    def result(self, key: str, whole: bool) -> dict[str, Any]:
        """Its last result as ranking by ``key`` needs it: decoded whole when ``whole`` (feasibility reads its
        ``constraint/<i>`` values), else only the value at ``key`` (none when absent)."""
        if not whole:
            return {} if self.found is _ABSENT else {key: self.found}
        decoded = json.loads(self.row[3]) if self.row[3] is not None else {}  # ValueError: damaged
        return decoded if isinstance(decoded, dict) else {}


_ABSENT: Any = object()  # a trial's last result lacks the key it is ranked by


@functools.cache
def _status(text: str) -> Any:
    """The TrialStatus named ``text``: one enum lookup per status rather than per trial."""
    from tunesmith.trial import TrialStatus

    return TrialStatus(text)


class _Briefs:
    """Every trial's :class:`_Brief`, kept between draws of `show --watch`: a row equal to the one read last time
    keeps its brief (its last result is not decoded again)."""

    def __init__(self) -> None:
        self._by_id: dict[int, _Brief] = {}

    def read(self, rs: Any, key: str | None) -> list[_Brief]:
        """Every trial's brief, for ranking by ``key`` (a key of the last results; None when the order needs
        none: by id, status or iteration, or no order)."""
        from tunesmith.store.sqlite import StoreError

        old, new = self._by_id, {}
        try:
            for row in rs._store.trial_briefs(key):
                kept = old.get(row[0])
                new[row[0]] = kept if kept is not None and kept.row == row else _Brief(row, key)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:  # nested too deeply too
            raise StoreError(f"the experiment store {rs._store.path} is damaged: a trial's row cannot be read "
                             f"({type(e).__name__}: {e})") from e
        self._by_id = new
        return list(new.values())


def _order(rs: Any, sort_key: str | None) -> tuple[str | None, bool]:
    """(the key `show` sorts by, descending): ``--sort``'s, else the experiment's first metric and its mode; None
    when there is no order to give (no --sort and no metric)."""
    if sort_key is None:
        if not (rs.metrics and rs.modes):
            return None, False
        return rs.metrics[0], rs.modes[0] == "max"  # several metrics: by the first
    if sort_key.startswith("-"):
        return sort_key[1:], True
    return sort_key, False


def _sorted_trials(rs: Any, trials: list[Any], sort_key: str | None) -> tuple[list[Any], str | None]:
    """``trials`` (TrialResults or _Briefs, by id) in the order ``--sort`` asks for, and a note when that order
    could not be had: when no trial reported the metric asked for (every trial failed before its first report,
    exactly when a user looks at why), they come by id instead of the command failing."""
    from tunesmith.space import flatten

    trials = list(trials)
    if sort_key is None and rs.metrics and rs.modes:
        return _best_first(rs, trials)
    sort_key, descending = _order(rs, sort_key)
    if sort_key is None:
        return trials, None

    def value(t: Any) -> Any:
        if sort_key == "id":
            return t.id
        if sort_key == "status":
            return t.status.value
        if sort_key == "iteration":
            return t.iteration
        found = t.found if isinstance(t, _Brief) else t.last_result.get(sort_key, _ABSENT)
        if found is not _ABSENT:
            return found
        flat = flatten(t.config)
        return flat.get(sort_key[7:] if sort_key.startswith("config/") else sort_key, _ABSENT)

    keyed = [(value(t), t) for t in trials]  # each trial's value found once (`show --watch` ranks every draw)
    known = [(v, t) for v, t in keyed if v is not _ABSENT and _sortable(v)]
    if not known and trials and sort_key in rs.metrics:
        return sorted(trials, key=lambda t: t.id), f"no trial has reported {sort_key!r} yet: sorted by id"
    if not known and trials and all(v is _ABSENT for v, _t in keyed):  # a key some trial has (None, NaN) is taken
        raise ConfigError(f"--sort: no trial has {sort_key!r} (a metric, a config key, 'id', 'status' or "
                          "'iteration')")
    missing = [t for v, t in keyed if v is _ABSENT or not _sortable(v)]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v, _t in known)
    known.sort(key=lambda p: (p[0] if numeric else str(p[0]), p[1].id), reverse=descending)
    return [t for _v, t in known] + missing, None


def _best_first(rs: Any, trials: list[Any]) -> tuple[list[Any], str | None]:
    """`show`'s default order: ``result.best``'s (``results.best_first``: by the experiment's first metric, with
    constraints the feasible trials first), then the other trials (infeasible, then without the metric)."""
    from tunesmith._objective import Objective
    from tunesmith.results import best_first

    metric = rs.metrics[0]
    whole = rs._constrained()  # feasibility needs a trial's whole last result; else the metric's value is enough

    try:  # each trial's last result decoded once at most
        results = {t.id: t.result(metric, whole) if isinstance(t, _Brief) else t.last_result for t in trials}
    except ValueError as e:  # a last result that is not JSON
        from tunesmith.store.sqlite import StoreError

        raise StoreError(f"the experiment store {rs._store.path} is damaged: a trial's last result cannot be read "
                         f"({type(e).__name__}: {e})") from e
    ranked, others = best_first(Objective.single(metric, rs.modes[0]), trials, lambda t: results[t.id])
    if trials and not any(_sortable(results[t.id].get(metric)) for t in trials):  # others: every trial, by id
        return others, f"no trial has reported {metric!r} yet: sorted by id"
    return ranked + others, None


def _sortable(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


# ------------------------------------------------------------------------------------------- report


@cli.command(short_help="Write an HTML report with every plot.")
@click.argument("name")
@_storage_option
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, callback=lambda c, p, v: _not_empty(
              c, p, v, "a file"), help="The HTML file to write [default: <experiment folder>/report.html].")
@click.option("--metric", default=None, help="Metric to plot [default: the experiment's].")
@click.option("--mode", type=click.Choice(["min", "max"]), default=None, help="[default: the experiment's]")
@click.option("--pareto", default=None, metavar="M1:MODE,M2:MODE",
              help="Add a Pareto-front plot of two metrics, e.g. loss:min,latency:min.")
@click.option("--x", "x", default="training_iteration", show_default=True, metavar="KEY",
              help="The learning curves' x axis: any counter the trials report (timesteps, episodes).")
@click.option("--final", type=click.Choice(["last", "best", "mean_last"]), default="last", show_default=True,
              help="A trial's value in the sensitivity plot: its last result, its best, or the mean of its last 5.")
def report(name: str, storage_path: str | None, output: str | None, metric: str | None, mode: str | None,
           pareto: str | None, x: str, final: str) -> None:
    """Write an HTML report of experiment NAME with every plot (one file, works offline)."""
    from tunesmith.plots.report import write_report

    rs = _open(name, storage_path)
    pairs = None
    if pareto:
        pairs = []
        for item in pareto.split(","):
            key, _, direction = item.strip().partition(":")
            if not key or direction not in ("min", "max"):
                raise ConfigError(f"--pareto: expected METRIC:min|max,METRIC:min|max, got {pareto!r}")
            pairs.append((key, direction))
        if len(pairs) != 2 or pairs[0][0] == pairs[1][0]:
            raise ConfigError(f"--pareto: expected two different metrics, got {pareto!r}")
    _check_reported(rs, ([("--metric", metric)] if metric else []) + [("--pareto", key) for key, _ in pairs or []])
    path = os.path.abspath(output or os.path.join(rs.path, "report.html"))
    try:
        plots = write_report(rs, path, metric=metric, mode=mode, pareto=pairs, x=x, final=final)
    except ConfigError as e:  # the plots name their parameter `x`: here it is the option --x
        raise ConfigError(f"--x: {str(e)[3:]}") if str(e).startswith("x: ") else e from None
    except OSError as e:
        raise _unwritable(e, output or path, "-o" if output else None, "-o FILE") from e
    click.echo(printable(f"wrote {path} ({len(plots)} plots: {', '.join(plots)})", one_line=True))


def _unwritable(e: OSError, path: str, option: str | None, instead: str) -> Exception:
    """What the user is told when ``path`` (given as ``option``, or None for a default path) cannot be written:
    the path as given and the reason, with the folder at fault where it is another (a file standing where a
    folder is needed), never a temporary name of ours; ``e`` itself when it is about another file. Either way
    exit 2: a default path (in the experiment folder, maybe read-only) says to give ``instead`` (``-o FILE``)."""
    target = os.path.abspath(path)
    at = os.path.abspath(e.filename) if isinstance(e.filename, str) else target
    if not (target == at or target.startswith(at.rstrip(os.sep) + os.sep) or at.startswith(target + os.sep)
            or os.path.dirname(at) == os.path.dirname(target)):
        return e  # not about where we write: as any other error
    reason = e.strerror or type(e).__name__
    blocker = next((p for p in _ancestors(target) if os.path.lexists(p) and not os.path.isdir(p)), None)
    if isinstance(e, (FileExistsError, NotADirectoryError)) and blocker is not None:
        reason += f" ({blocker!r} is a file, where a folder is needed)"
    elif target.startswith(at.rstrip(os.sep) + os.sep):
        reason += f" ({at!r})"
    message = f"cannot write {path!r}: {reason}"
    if option:
        return click.BadParameter(message, param_hint=option)
    return ConfigError(f"{message}; pass {instead} to write elsewhere")


def _ancestors(path: str) -> list[str]:
    """The folders above ``path``, outermost first."""
    out = []
    while (parent := os.path.dirname(path)) != path:
        out.append(parent)
        path = parent
    return out[::-1]


def _check_reported(rs: Any, named: list[tuple[str, str]]) -> None:
    """Each (option, metric) names a key some trial reported (a typo would draw empty plots), once any trial
    reported something."""
    reported = {k for t in rs.trials for k in t.last_result}
    for option, key in named:
        if reported and key not in reported:
            listed = {k for t in rs.trials for k in shown(t).last_result}  # a name may quote a secret
            raise ConfigError(f"{option}: no trial reported {key!r}; expected one of the reported keys "
                              f"{sorted(listed)}")


@cli.command(short_help="Write each trial's progress.csv / result.jsonl / params.json from the store.")
@click.argument("name")
@_storage_option
@click.option("--format", "formats", type=click.Choice(["csv", "jsonl"]), multiple=True,
              help="progress.csv (csv) and/or result.jsonl (jsonl); repeat for both [default: both]. "
                   "params.json is always written.")
@click.option("--to", "to", type=click.Path(file_okay=False), default=None,
              help="The folder to put the trial folders in [default: <experiment folder>/trials].")
def export(name: str, storage_path: str | None, formats: tuple[str, ...], to: str | None) -> None:
    """Write the per-trial files of experiment NAME (the file loggers' files) from its store, on demand.

    The run writes no per-trial files by default (run(..., file_loggers=True) writes them live); every
    result is in the store, so this makes them when you want them. Safe while the experiment runs.
    """
    from tunesmith._export import FORMATS
    from tunesmith._export import export as write

    if to is not None and not to.strip():
        raise click.BadParameter("expected a folder, got an empty path", param_hint="--to")
    rs = _open(name, storage_path)
    try:
        n, folder = write(rs.path, formats or FORMATS, to)
    except OSError as e:
        raise _unwritable(e, to or os.path.join(rs.path, "trials"), "--to" if to else None, "--to DIR") from e
    click.echo(printable(f"wrote the files of {n} trials in {folder}", one_line=True))


# ------------------------------------------------------------------------------------------- resume


@cli.command(short_help="Resume an experiment after its driver stopped.")
@click.argument("name")
@click.argument("target", required=False, metavar="[MODULE_OR_FILE:FN]")
@_storage_option
@click.option("--space", "space_file", type=click.Path(dir_okay=False), default=None,
              help="The space file it was run with [default: the space stored with the experiment].")
@click.option("--restart-errored", type=click.Choice(["restart", "resume"]), default=None,
              help="Run failed trials again from scratch (restart) or from their checkpoint (resume) "
                   "[default: leave them failed].")
@click.option("--verbose", type=click.IntRange(0, 2), default=1, show_default=True,
              help="0 quiet, 1 progress, 2 more detail.")
@click.option("--fn", "fn_option", default=None, metavar="MODULE_OR_FILE:FN",
              help="The training function to run (the same as TARGET).")
@click.option("--resources", "resources_option", default=None, metavar="MODULE_OR_FILE:FN",
              help="The resources function (config -> resources) of an experiment run with one.")
@click.option("--constraints", "constraints_option", default=None, metavar="MODULE_OR_FILE:FN",
              help="The constraints function (result -> floats) of an experiment run with one.")
@click.option("--stop", "stop_options", multiple=True, metavar="MODULE_OR_FILE:OBJ",
              help="A stop rule of your own (a function, a Stopper or a Stopper class) for the experiment's: "
                   "one per such rule, in their order.")
@click.option("--warm-start", "warm_starts", multiple=True, metavar="NAME_OR_FOLDER",
              help="Where the experiment's warm-start sources are now, when one was moved: one per source, in "
                   "their order [default: the ones it was run with]. Repeatable.")
@click.option("--no-warm-start", is_flag=True,
              help="Go on without the warm-start sources that can no longer be found (the search then differs "
                   "from the one the experiment began).")
@click.option("--trust-stored-fn", is_flag=True,
              help="Run what the experiment's store names without asking: the training function, and a "
                   "resources function, constraints function or stop rule of your own (they are imported and "
                   "called: only for a folder you trust).")
def resume(name: str, target: str | None, storage_path: str | None, space_file: str | None,
           restart_errored: str | None, verbose: int, fn_option: str | None, resources_option: str | None,
           constraints_option: str | None, stop_options: tuple[str, ...], warm_starts: tuple[str, ...],
           no_warm_start: bool, trust_stored_fn: bool) -> None:
    """Resume experiment NAME after its driver stopped (crash, Ctrl-C, kill): finished trials are kept,
    unfinished ones continue from their latest checkpoint, the search goes on where it was.

    The space and settings are the ones stored with the experiment. The function is the one you name
    (TARGET or --fn: MODULE:FN, or FILE.py:FN for a file in another folder). Without one, the function named
    in the store (imported from the current folder) runs only once you confirm it: at a prompt on a
    terminal, or with --trust-stored-fn. A folder someone else made could name any importable function. The
    same holds for a resources function, a constraints function or a stop rule of your own that the
    experiment was run with: name yours (--resources, --constraints, --stop) or confirm the stored ones.
    An experiment run with warm_start= replays the earlier trials it kept, without reading its sources; one
    stored by a tunesmith before that reads them again: --warm-start says where one went, --no-warm-start goes
    on without the lost ones.
    """
    from tunesmith import _run

    rs = _open(name, storage_path)
    params = inspect.signature(_run.run).parameters
    if "resume" not in params:
        raise ConfigError("resume is not available yet in this version of tunesmith")
    spec = rs.meta.get("spec", {})
    kwargs = resume_arguments(spec, space_file)  # before anything is imported: a bad spec is only data
    kwargs = {k: v for k, v in kwargs.items() if k in params}
    if target and fn_option and target != fn_option:
        raise ConfigError(f"two functions given: TARGET {target!r} and --fn {fn_option!r}; give one")
    if warm_starts and no_warm_start:
        raise ConfigError("--warm-start and --no-warm-start given: give one, not both")
    if warm_starts or no_warm_start:  # else run() reuses the recorded sources
        kwargs["warm_start"] = list(warm_starts)
    stored = _own_instead(kwargs, resources_option, constraints_option, stop_options)
    if not (target or fn_option):
        stored.insert(0, _stored_fn(name, spec))
    for item in stored:  # checked as text: nothing imported yet
        item.check()
    _confirm_stored(name, stored, trust_stored_fn)
    _confirm_backend(name, kwargs.get("backend"), trust_stored_fn)
    fn = load_target(target or fn_option or stored.pop(0).name)
    kwargs = _resolve(kwargs)
    if "restart_errored" in params:
        kwargs["restart_errored"] = restart_errored
    # the folder found is the experiment resumed (its name is the folder's, whatever name is stored in it)
    result = _run.run(fn, name=os.path.basename(rs.path), storage_path=os.path.dirname(rs.path), resume=True,
                      verbose=verbose, **kwargs)
    click.echo(printable(f"experiment {result.name}: {len(result.trials)} trials ({_counts(result.trials)}); "
                         f"folder {result.path}", one_line=True))
    if result.errors or result.status == "failed":
        click.echo(printable(f"error: {len(result.errors)} trial(s) failed (tunesmith show {result.name})",
                             one_line=True), err=True)
        sys.exit(1)


class _Stored:
    """A function (or Stopper) the store names as ``module:qualname``: data until the user confirms it, or names
    their own in its place (``option``). ``kind``: "function" (imported as it is) or "stopper" (a Stopper class,
    built without arguments)."""

    def __init__(self, name: Any, what: str, option: str, kind: str = "function") -> None:
        self.name, self.what, self.option, self.kind = name, what, option, kind
        self.value: Any = None

    def __repr__(self) -> str:
        return f"{self.what} {self.name!r}"

    def check(self) -> None:
        """A name the command line can import (a lambda, a nested function or a callable object cannot be)."""
        module, sep, attr = self.name.rpartition(":") if isinstance(self.name, str) else ("", "", "")
        if not sep or not module or not attr or "<" in self.name:
            raise ConfigError(f"the experiment was run with {self} of your own, which cannot be imported by name "
                              f"(a lambda, a function defined inside another, a callable object, or a store "
                              f"written before tunesmith recorded its module); name one: {self.option} "
                              "MODULE_OR_FILE:NAME, or resume from Python: tunesmith.run(..., resume=True)")

    def load(self, target: str | None = None) -> Any:
        """Import it (``target``: the user's own instead); a Stopper class is built without arguments."""
        from tunesmith._stop import Stopper

        where = target or self.name
        obj = load_target(where)
        if isinstance(obj, type):
            if not issubclass(obj, Stopper) or self.option != "--stop" or (target is None and self.kind != "stopper"):
                raise ConfigError(f"{where} is a class, not {self.what.replace('the ', 'a ')}")
            try:
                obj = obj()
            except TypeError as exc:
                raise ConfigError(f"{where}: the Stopper class cannot be built without arguments ({exc}); name an "
                                  f"instance: {self.option} MODULE_OR_FILE:OBJ, or resume from Python") from exc
        elif self.kind == "stopper" and target is None and not isinstance(obj, Stopper):
            raise ConfigError(f"{where} is not a tunesmith.Stopper, as {self} was")
        return obj


def _stored_fn(name: str, spec: dict[str, Any]) -> _Stored:
    stored = spec.get("fn") if isinstance(spec, dict) else None
    from tunesmith._run import resume_command

    if not isinstance(stored, str) or not stored:
        raise ConfigError(f"experiment {name!r} names no training function; give it: "
                          f"{resume_command(name, script='MODULE_OR_FILE', qualname='FN')}")
    if stored.startswith("__main__:"):  # run as `python train.py`: __main__ here is the command line's own
        script = spec.get("fn_file")
        script = script if isinstance(script, str) and script else None
        qualname = stored.partition(":")[2]
        how = resume_command(name, script=script or "FILE.py", qualname=qualname, spec=spec if script else None)
        ran = f"python {script}" if script else "python FILE.py"
        raise ConfigError(f"experiment {name!r} was run as a script ({ran}), so its store names the function "
                          f"{stored!r}, which cannot be imported by that name; name the script's function: {how}")
    return _Stored(stored, "the function", "--fn")


def _stored_items(kwargs: dict[str, Any]) -> list[tuple[Any, Any, _Stored]]:
    """(container, key, item) of every ``_Stored`` in the rebuilt arguments, in order."""
    out: list[tuple[Any, Any, _Stored]] = []
    for key in ("resources", "constraints"):
        if isinstance(kwargs.get(key), _Stored):
            out.append((kwargs, key, kwargs[key]))
    stop = kwargs.get("stop")
    if isinstance(stop, _Stored):
        out.append((kwargs, "stop", stop))
    elif isinstance(stop, list):
        out.extend((stop, i, item) for i, item in enumerate(stop) if isinstance(item, _Stored))
    return out


def _own_instead(kwargs: dict[str, Any], resources: str | None, constraints: str | None,
                 stops: tuple[str, ...]) -> list[_Stored]:
    """Put the functions the user named in place of the stored ones (imported: the user chose them); the stored
    ones still to import."""
    items = _stored_items(kwargs)
    stored_stops = [item for _c, _k, item in items if item.option == "--stop"]
    if stops and len(stops) != len(stored_stops):
        raise ConfigError(f"--stop given {len(stops)} time(s); the experiment has {len(stored_stops)} stop rule(s) of "
                          f"your own ({', '.join(repr(i.name) for i in stored_stops) or 'none'}): one --stop each, "
                          "in their order")
    own = {"--resources": [resources] if resources else [], "--constraints": [constraints] if constraints else [],
           "--stop": list(stops)}
    for option, given in own.items():
        if given and not any(item.option == option for _c, _k, item in items):
            raise ConfigError(f"{option} given, but the experiment was run without one of your own")
    left = []
    for _container, _key, item in items:
        given = own[item.option]
        if given:
            item.value = item.load(given.pop(0))
        else:
            left.append(item)
    return left


def _resolve(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The arguments with every ``_Stored`` replaced by what it names (imported now: confirmed) or the user's."""
    for container, key, item in _stored_items(kwargs):
        container[key] = item.value if item.value is not None else item.load()
    return kwargs


def _confirm_stored(name: str, stored: list[_Stored], trusted: bool) -> None:
    """Return once the user confirmed what the store names (``--trust-stored-fn`` or yes at a prompt on a
    terminal): the store is data anyone could have written, and importing and calling what it names runs
    their choice of code (any importable callable, e.g. ``os:system``, gets the config)."""
    if not stored or trusted:
        return
    named = ", ".join(repr(item) for item in stored)
    own = ", ".join(f"{item.option} MODULE_OR_FILE:{'FN' if item.option != '--stop' else 'OBJ'}" for item in stored)
    ways = (f"name your own (tunesmith resume {name} {own}), or confirm the stored "
            f"{'one' if len(stored) == 1 else 'ones'} with --trust-stored-fn")
    it = "it" if len(stored) == 1 else "them"
    _confirmed(f"experiment {name!r} was run with {named} (named in its store); resume runs only what you name or "
               "confirm", f"Experiment {name!r} was run with {named} (named in its store). Import and run {it}?",
               ways)


def _confirmed(refusal: str, question: str, ways: str) -> None:
    """Return once the user says yes to ``question`` at a prompt on a terminal; without a terminal, a ConfigError
    (``refusal``: ``ways``); a no ends the command (status 1) saying ``ways``."""
    if not sys.stdin.isatty():
        raise ConfigError(f"{refusal}: {ways}")
    if not click.confirm(printable(f"{question} Only if you trust whoever made this folder", one_line=True),
                         default=False):
        click.echo(printable(f"not resumed: {ways}", one_line=True), err=True)
        sys.exit(1)


def _confirm_backend(name: str, backend: Any, trusted: bool) -> None:
    """Return once the user confirmed a Ray cluster or storage the store names (``--trust-stored-fn`` or yes at a
    prompt on a terminal), as for a stored function: the store is data anyone could have written, and resuming
    there sends the trials (their configs, the signing key) to that cluster and writes checkpoints to that
    storage. A local Ray (``address`` None) or ``"auto"`` (this machine's, or ``$RAY_ADDRESS``) needs none."""
    address, storage = getattr(backend, "address", None), getattr(backend, "storage", None)
    named = []
    if address not in (None, "auto"):
        named.append(f"address={address!r}")
    if storage is not None:
        named.append(f"storage={storage!r}")
    if not named or trusted:
        return
    what = f"a RayBackend with {' and '.join(named)} (named in its store)"
    ways = ("confirm it with --trust-stored-fn, or resume from Python with a backend of yours: "
            "tunesmith.run(..., resume=True, backend=tunesmith.RayBackend(...))")
    _confirmed(f"experiment {name!r} ran on {what}; resume runs there only once you confirm",
               f"Experiment {name!r} ran on {what}. Resume there?", ways)


def resume_arguments(spec: dict[str, Any], space_file: str | None = None) -> dict[str, Any]:
    """``run`` arguments rebuilt from an experiment's stored spec (as ``run`` wrote it). Nothing is imported: a
    function or Stopper of the user's (``resources``, ``constraints``, ``stop``) is left as the ``_Stored`` name
    that ``resume`` imports once the user confirms it.

    Raises:
        ConfigError: something that cannot be rebuilt from JSON (a scheduler with settings that are not plain
            values); resume such an experiment from Python.
    """
    from tunesmith.space import space_from_json

    if space_file:
        from tunesmith._space_file import load_space

        space = load_space(space_file)
    else:
        space = space_from_json(spec.get("space") or {})
    resources = spec.get("resources") or None
    if isinstance(resources, dict) and "callable" in resources:
        resources = _Stored(resources["callable"], "the resources function", "--resources")
    constraints = spec.get("constraints") or None
    out: dict[str, Any] = {
        "space": space, "metric": spec.get("metric"), "mode": spec.get("mode"),
        "stop": _rebuild_stop(spec.get("stop") or None),
        "num_samples": spec.get("num_samples", 1), "time_budget_s": spec.get("time_budget_s"),
        "max_concurrent": spec.get("max_concurrent"), "resources": resources,
        "scheduler": _rebuild(spec.get("scheduler"), "scheduler"),
        "searcher": _rebuild(spec.get("searcher"), "searcher"),
    }
    if constraints:
        out["constraints"] = _Stored(constraints, "the constraints function", "--constraints")
    for key in ("keep", "keep_by", "max_failures", "fail_fast", "ranks", "trial_timeout_s", "trial_time_limit_s",
                "chdir_to_trial_dir", "file_loggers", "strict_metric_checking"):  # warm_start: run() reads its record
        if key in spec:
            out[key] = spec[key]
    backend = _rebuild_backend(spec.get("backend"))
    if backend is not None:
        out["backend"] = backend
    return out


def _rebuild_backend(record: Any) -> Any:
    """The backend an experiment ran on, from its spec's record (``_run._backend_record``): ``None`` for the local
    backend with its defaults (and a store written before backends were recorded), a ``LocalBackend`` with the
    arguments it was given, a ``RayBackend`` built with the recorded
    arguments. Never the local backend in place of another: a Ray experiment resumed on this machine's processes
    would write its checkpoints beside the driver instead of to its ``storage=``.

    Raises:
        ConfigError: a backend that cannot be built from the record (one of the user's own, a RayBackend whose
            ``init_kwargs`` or credentials were not stored); resume it from Python with that backend.
    """
    if not isinstance(record, dict) or record.get("kind") is None:
        return None
    if record.get("kind") == "local":  # its arguments other than the defaults, if any (checked by the constructor)
        from tunesmith.executors.local import LocalBackend

        local = {k: v for k, v in record.items() if k in LocalBackend.RECORDED}
        return LocalBackend(**local) if local else None
    python = "tunesmith.run(..., resume=True, backend=...)"
    if record.get("kind") != "ray":
        raise ConfigError(f"the experiment ran on a backend of its own ({record.get('kind')!r}), which the command "
                          f"line cannot build; resume it from Python with that backend: {python}")
    from tunesmith.executors.ray import RayBackend

    python = "tunesmith.run(..., resume=True, backend=tunesmith.RayBackend(...))"
    left = record.get("not_recorded")
    if left:
        raise ConfigError(f"the experiment ran on a RayBackend whose {' and '.join(map(str, left))} the store does not "
                          f"keep (they may hold credentials); resume it from Python with the same backend: {python}")
    args = {k: v for k, v in record.items() if k in RayBackend.RECORDED}
    try:
        return RayBackend(**args)
    except (TypeError, ConfigError) as exc:
        raise ConfigError(f"the experiment's RayBackend cannot be built again from its stored arguments ({exc}); "
                          f"resume it from Python: {python}") from exc


def _rebuild_stop(stop: Any) -> Any:
    """``stop`` from its stored form: thresholds as they are, the plateau rules from their arguments, a function or
    a Stopper of the user's own as its stored name (imported by ``resume`` once confirmed)."""
    from tunesmith._stop import ExperimentPlateau, TrialPlateau

    if isinstance(stop, list):
        return [_rebuild_stop(item) for item in stop]
    if not isinstance(stop, dict):
        return stop
    if "callable" in stop:
        return _Stored(stop["callable"], "the stop function", "--stop")
    if "stopper" in stop:
        return _Stored(stop["stopper"], "the Stopper", "--stop", kind="stopper")
    for cls in (TrialPlateau, ExperimentPlateau):
        if set(stop) == {cls.__name__} and isinstance(stop[cls.__name__], dict):
            return cls(**stop[cls.__name__])
    return stop


_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")  # object.__repr__'s text


def _rebuild(spec: Any, kind: str) -> Any:
    """A scheduler or searcher from its stored constructor arguments (``{"type": "ASHA", ...}``)."""
    if not spec:
        return None
    type_name = spec.get("type") if isinstance(spec, dict) else None
    if type_name not in _REBUILDABLE[kind]:
        raise ConfigError(f"the experiment's {kind} {type_name!r} cannot be rebuilt from the command line "
                          f"(it can rebuild {', '.join(sorted(_REBUILDABLE[kind]))}); resume it from Python: "
                          "tunesmith.run(..., resume=True)")
    for key, value in spec.items():  # an object argument is stored by its repr (_spec._jsonable): not rebuildable
        if isinstance(value, str) and _OBJECT_REPR.fullmatch(value):
            raise ConfigError(f"the experiment's {kind} {type_name} was given {key}={value} (an object, stored by "
                              f"its text): it cannot be rebuilt from the command line; resume it from Python: "
                              f"tunesmith.run(..., resume=True) with the same {key}")
    cls = _public_class(str(type_name))
    try:
        return cls(**{k: v for k, v in spec.items() if k != "type"})
    except TypeError as exc:
        raise ConfigError(f"the experiment's {kind} {type_name} cannot be rebuilt from its stored settings "
                          f"({exc}); resume it from Python: tunesmith.run(..., resume=True)") from exc


# -------------------------------------------------------------------------------------------- trust


@cli.command(short_help="Sign an experiment's checkpoints with your key (adopt a folder you trust).")
@click.argument("name")
@_storage_option
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def trust(name: str, storage_path: str | None, yes: bool) -> None:
    """Sign every intact checkpoint of experiment NAME with your key, so that its pickles load.

    Checkpoints are signed by the key of the user whose tunesmith wrote them, and a pickled one that your
    key did not sign is not loaded (unpickling runs code its author chose). Run this once for an experiment
    written before checkpoints were signed, or one made by someone you trust. Every checksum is checked
    first; a damaged checkpoint is left unsigned.
    """
    from tunesmith.checkpoint import CheckpointError, resign

    rs = _open(name, storage_path)
    if rs.status == "running":
        raise ConfigError(f"experiment {name!r} is running (its driver is alive); trust it after it stopped")
    folders = _checkpoint_folders(rs.path)
    if not folders:
        click.echo(printable(f"experiment {name!r} has no checkpoints in {rs.path}", one_line=True))
        return
    if not yes and not sys.stdin.isatty():
        raise ConfigError(f"tunesmith trust {name}: not on a terminal, so not asked; pass --yes to sign the "
                          f"{len(folders)} checkpoints of {rs.path}")
    if not yes and not click.confirm(printable(
            f"Sign the {len(folders)} checkpoints of {rs.path} with your key? Their pickles then load like your "
            "own: only for a folder whose origin you trust", one_line=True), default=False):
        click.echo("not signed", err=True)
        sys.exit(1)
    signed, damaged = 0, []
    for folder in folders:
        try:
            signed += resign(folder)
        except CheckpointError as exc:
            damaged.append(f"{os.path.relpath(folder, rs.path)} ({_one_line(exc)})")
        except OSError as exc:  # not damaged (a read is a CheckpointError): the folder refuses writes (read-only)
            done = f"{signed} of the {len(folders)} are signed" if signed else f"none of the {len(folders)} is signed"
            raise ConfigError(f"cannot sign the checkpoints of {rs.path}: cannot write in "
                              f"{os.path.relpath(folder, rs.path)} ({exc.strerror or type(exc).__name__}); {done}"
                              ) from exc
    click.echo(printable(f"signed {signed} of {len(folders)} checkpoints of {rs.path} "
                         f"({len(folders) - signed - len(damaged)} were signed by your key already)", one_line=True))
    if damaged:
        click.echo(printable(f"error: {len(damaged)} damaged checkpoint(s) left unsigned: {'; '.join(damaged)}",
                             one_line=True), err=True)
        sys.exit(1)


def _checkpoint_folders(path: str) -> list[str]:
    """The checkpoint folders in an experiment folder (``trials/<trial>/checkpoints/checkpoint_N``), found on
    disk, not from paths in the store; no symbolic link is followed."""
    from tunesmith._layout import checkpoint_entries
    from tunesmith.checkpoint import CHECKPOINT_NAME

    return [e.path for _trial, e in checkpoint_entries(path)
            if CHECKPOINT_NAME.fullmatch(e.name) and e.is_dir(follow_symlinks=False)]


# ----------------------------------------------------------------------------------------------- rm


@cli.command(short_help="Delete an experiment (its folder).")
@click.argument("name")
@_storage_option
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def rm(name: str, storage_path: str | None, yes: bool) -> None:
    """Delete experiment NAME (its folder under the storage path, checkpoints included)."""
    from tunesmith._layout import STORE_FILE, driver_running

    root = os.path.realpath(_root(storage_path))
    candidate = name if (os.sep in name or name.startswith(".")) else os.path.join(root, name)
    if os.path.islink(candidate.rstrip(os.sep) or candidate):
        # what it points to may be another experiment: "rm alias" does not say to delete that one
        raise ConfigError(f"refusing to remove {name!r}: it is a link (to {os.readlink(candidate.rstrip(os.sep))!r}), "
                          "not an experiment folder; delete the link itself, or name the folder it points to")
    path = os.path.realpath(candidate)
    if os.path.dirname(path) != root or path == root:
        raise ConfigError(f"refusing to remove {name!r}: not an experiment folder directly under the storage "
                          f"path {root}")
    if not os.path.isfile(os.path.join(path, STORE_FILE)):
        raise ConfigError(f"no experiment {name!r} in {root}")
    if driver_running(path):
        raise ConfigError(f"experiment {os.path.basename(path)!r} is running (its driver is alive); stop it first")
    shown_path = printable(path, one_line=True)  # a folder's name is the user's: shown, never obeyed
    if not yes and not click.confirm(f"Remove experiment {printable(os.path.basename(path), one_line=True)} "
                                     f"({shown_path})?", default=False):
        click.echo("not removed", err=True)
        sys.exit(1)
    try:
        shutil.rmtree(path)
    except OSError as e:  # a read-only mount, a folder of another user's: rmtree names only the file, relative
        at = f" ({printable(str(e.filename), one_line=True)})" if e.filename else ""
        raise ConfigError(f"cannot remove experiment folder {shown_path}: {e.strerror or e}{at}; what it could "
                          "not remove is still there") from None
    click.echo(f"removed {shown_path}")


# ---------------------------------------------------------------------------------------------- util


def _open(name: str, storage_path: str | None) -> Any:
    from tunesmith.results import ResultSet

    try:  # resolved as ts.load resolves it
        return ResultSet(_layout.find_experiment(name, storage_path))
    except ConfigError as e:
        raise ConfigError(f"{e} (tunesmith ls --storage-path {_root(storage_path)})") from None


def _counts(trials: list[Any]) -> str:
    from collections import Counter

    counts = Counter(t.status for t in trials)  # by the enum member: its name is read once per status, not per trial
    return ", ".join(f"{n} {s}" for s, n in sorted((s.value.lower(), n) for s, n in counts.items())) or "none"


def _json_text(obj: Any) -> str:
    """``--json``'s output: strict JSON (NaN and infinities, which JSON has not, as null, as the report and the
    dashboard give them; numpy numbers as numbers; anything else as its text)."""
    from tunesmith.plots.render import _plain

    return json.dumps(_plain(obj), indent=2, allow_nan=False, default=str)


def _fmt(value: Any) -> str:
    """A value in a cell: numbers to 6 digits, text ``cut`` with its length (a 10 kB prompt in a config would fill
    the screen for each trial)."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return cut(json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value))


def _cut_texts(value: Any) -> Any:
    """``value`` with each text in it ``cut`` (a config printed as JSON on one line)."""
    if isinstance(value, dict):
        return {k: _cut_texts(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut_texts(v) for v in value]
    return cut(value) if isinstance(value, str) else value


def _fmt_value(value: Any) -> str:
    """A config value in a cell, each value recognisable as the report writes it (``plots._figure._label``): text
    as it is (``adam``) unless it would read as another value, then quoted (``"1"``, ``"true"``, ``"null"``,
    ``""``); ``true``/``false``/``null``; a float with its point (``1.0``, to 6 digits); cut as ``_fmt`` cuts."""
    from tunesmith.plots._figure import _label

    if isinstance(value, float) and math.isfinite(value):
        text = f"{value:.6g}"
        return text if any(c in text for c in ".en") else f"{text}.0"
    return _fmt(_label(value) if isinstance(value, (str, bool, float)) or value is None else value)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(max(seconds, 0))}s ago"


def _table(*columns: str) -> Any:
    """A rich table whose headers and cells are plain text: names, config keys and values are never read
    as markup (``"[INST] {prompt} [/INST]"``) and their control characters are shown escaped."""
    from rich import box
    from rich.table import Table

    from tunesmith._display import text

    class PlainTable(Table):
        def add_row(self, *cells: Any, **kwargs: Any) -> None:
            super().add_row(*(text(c) if isinstance(c, str) else c for c in cells), **kwargs)

    table = PlainTable(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in columns:
        table.add_column(text(col), overflow="fold")
    return table


def _plain_table(columns: list[str], rows: list[list[str]]) -> str:
    """Aligned plain-text columns under a header and a rule, every cell ``printable`` on one line: what `ls` prints
    (a few rows: drawing them with rich would cost its import, a large share of the command; benchmarks/scale.py
    row 8 measures `ls`)."""
    grid = [[printable(c, one_line=True) for c in row] for row in [columns, *rows]]
    widths = [max(_width(row[i]) for row in grid) for i in range(len(columns))]

    def line(cells: list[str]) -> str:
        return "  ".join(c + " " * (w - _width(c)) for c, w in zip(cells, widths)).rstrip()

    return "\n".join([line(grid[0]), line(["-" * w for w in widths]), *(line(row) for row in grid[1:])])


def _width(cell: str) -> int:
    """Columns a terminal gives ``cell``: two for a wide (East Asian) character, none for a combining mark."""
    if cell.isascii():
        return len(cell)
    import unicodedata

    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in cell)


def _print(renderable: Any) -> None:
    from rich.console import Console

    out = sys.stdout
    console = Console(file=out, width=None if out.isatty() else 240, highlight=False, soft_wrap=False,
                      markup=False, emoji=False)
    console.print(renderable)


def main(argv: list[str] | None = None) -> None:
    """The ``tunesmith`` console script."""
    cli.main(args=argv, prog_name="tunesmith")


if __name__ == "__main__":
    main()
