"""``run(warm_start=...)``: earlier experiments' finished trials handed to the searcher as data. The folders are
checked when ``run`` checks its arguments; their (config, last result) pairs are read here, so the searcher stays
pure, and read as data only: nothing in those folders is imported or unpickled."""

from __future__ import annotations

import logging
import os
from typing import Any

from tunesmith import _layout
from tunesmith._errors import ConfigError
from tunesmith._layout import STORE_FILE
from tunesmith.results import ResultSet
from tunesmith.searchers._base import Searcher
from tunesmith.trial import TrialStatus

log = logging.getLogger("tunesmith")


def warm_start_dirs(warm_start: Any, storage_path: str | None) -> list[str]:
    """The experiment folders ``warm_start`` names, checked: each found as ``ts.load`` finds it (a name under the
    storage path, else a folder path)."""
    if warm_start is None:
        return []
    items = [warm_start] if isinstance(warm_start, (str, os.PathLike)) else warm_start
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, (str, os.PathLike)) for i in items):
        raise ConfigError(f"warm_start must be an experiment name or folder, or a list of them, got {warm_start!r}")
    dirs = []
    for item in items:
        try:
            dirs.append(_layout.find_experiment(item, storage_path))
        except ConfigError as e:  # its message names both places looked in
            where = str(e).removeprefix(f"no experiment {os.fspath(item)!r}: ")
            raise ConfigError(f"warm_start: {os.fspath(item)!r} is no experiment: {where}") from None
        first = next((i for i, d in enumerate(dirs[:-1]) if _same(d, dirs[-1])), None)
        if first is not None:  # its trials would be handed to the searcher twice, weighed double
            raise ConfigError(f"warm_start: {os.fspath(items[first])!r} and {os.fspath(item)!r} name the same "
                              f"experiment ({dirs[-1]}); give each experiment once")
    return dirs


def recorded(dirs: list[str], root: str) -> list[str] | None:
    """How the spec records the sources of an experiment in the storage folder ``root``: a source inside ``root``
    by its path relative to it (``A``: found next to the experiment after the storage folder moves), any other by
    its absolute path."""
    out = []
    for path in dirs:
        inside = path != root and os.path.commonpath([path, root]) == root
        out.append(os.path.relpath(path, root) if inside else path)
    return out or None


def recorded_places(record: Any, root: str, name: str, command: str = "tunesmith resume NAME") -> list[str]:
    """The folders an experiment's recorded sources (``recorded``) name, the relative ones under ``root``, its
    storage folder now. The record is data from the folder: a relative entry that would leave ``root`` is refused
    (only read, never followed to write, delete or import anything). ``command``: the resume command, for the
    message that says how to point at the sources."""
    if record is None:
        return []
    if not isinstance(record, list) or not all(isinstance(e, str) and e and "\0" not in e for e in record):
        raise ConfigError(f"resume: experiment {name!r} records its warm_start sources as {record!r}, not a list of "
                          f"folders; {_point_at(command)}")
    places = []
    for entry in record:
        if not os.path.isabs(entry) and (os.path.normpath(entry) != entry or entry.split(os.sep)[0] == os.pardir):
            raise ConfigError(f"resume: experiment {name!r} records the warm_start source {entry!r}, which is "
                              f"neither a folder path nor one inside its storage folder; {_point_at(command)}")
        places.append(os.path.normpath(os.path.join(root, entry)))
    return places


def _point_at(command: str) -> str:
    return (f"pass its sources where they are now: {command} --warm-start FOLDER (once per source, in their order; "
            f"Python: warm_start=[...]); or, to go on without them (the search then differs from the one the "
            f"experiment began), --no-warm-start (Python: warm_start=[])")


def resume_sources(record: Any, warm_start: Any, given: list[str], root: str, name: str,
                   command: str = "tunesmith resume NAME") -> list[str]:
    """The sources a resume of experiment ``name`` warm-starts from, for an experiment stored without the trials it
    took in (a store of before schema 4): those it recorded (``record``, found under ``root``, its storage folder
    now) when ``warm_start`` is None (said in the log); else those given (``given``, found), as
    :func:`kept_sources` checks them.

    Raises:
        ConfigError: a recorded source is not found and none was given (how to point at it said); or the sources
            given are others than the recorded ones.
    """
    places = recorded_places(record, root, name, command)
    if warm_start is None:
        missing = [p for p in places if not os.path.isfile(_layout.store_path(p))]
        if missing:
            raise ConfigError(f"resume: experiment {name!r} was run with warm_start={list(record or [])!r}, and "
                              f"{' and '.join(missing)} holds no experiment now (no {STORE_FILE}: moved or deleted); "
                              f"{_point_at(command)}")
        if places:
            log.info("resume: warm start from the sources experiment %r was run with: %s", name, ", ".join(places))
        return places
    kept_sources(record, given, root, name, command)
    return given


def kept_sources(record: Any, given: list[str], root: str, name: str,
                 command: str = "tunesmith resume NAME") -> dict[int, int]:
    """Which recorded sources (``record``, found under ``root``) a resume of experiment ``name`` given the sources
    ``given`` (found) keeps: each kept one's index in the record to its index in ``given``. ``given`` must be the
    recorded ones, except that one no longer found may be given at its new place (the folder is not compared: a
    moved folder and another experiment look alike) or left out (with a warning).

    Raises:
        ConfigError: the sources given are others than the recorded ones.
    """
    places = recorded_places(record, root, name, command)
    missing = [i for i, p in enumerate(places) if not os.path.isfile(_layout.store_path(p))]
    kept: dict[int, int] = {}
    for i, place in enumerate(places):  # each source found still is given again; the rest stand in for missing ones
        if i not in missing:
            again = next((j for j, g in enumerate(given) if j not in kept.values() and _same(g, place)), None)
            if again is None:
                break
            kept[i] = again
    new = [j for j in range(len(given)) if j not in kept.values()]
    if len(kept) < len(places) - len(missing) or len(new) > len(missing):
        raise ConfigError(f"resume: experiment {name!r} was run with warm_start={list(record or [])!r}, not "
                          f"{given!r}; pass the same (one no longer found: its new folder in its place); to build on "
                          f"other results, start a new experiment with warm_start=[...]")
    kept.update(zip(missing, new))
    for i in missing[len(new):]:
        log.warning("resume: experiment %r goes on without the earlier trials of its warm_start source %s (no "
                    "experiment there now): its search differs from the one it began", name, places[i])
    if new:
        log.info("resume: warm start from %s in place of %s (not found)", ", ".join(given[j] for j in new),
                 ", ".join(places[i] for i in missing[:len(new)]))
    return kept


def _same(a: str, b: str) -> bool:
    """Whether two folders are one (their paths, or the same folder on disk: a link, another name for it)."""
    if os.path.normcase(os.path.normpath(a)) == os.path.normcase(os.path.normpath(b)):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def earlier_trials(dirs: list[str]) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
    """The earlier experiments' finished trials, (index of its folder in ``dirs``, config, last result), read as
    data only: nothing in those folders is imported or unpickled. The run keeps them in its store
    (``Store.set_warm_start``): a resume replays them from there, never reading the folders again."""
    trials: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
    for source, path in enumerate(dirs):
        earlier = ResultSet(path)
        trials += [(source, t.config, t.last_result) for t in earlier.trials
                   if t.status is TrialStatus.TERMINATED and t.last_result]
    return trials


def warm_start_searcher(searcher: Searcher, earlier: list[tuple[int, Any, Any]]) -> None:
    """Hand the earlier trials (``earlier_trials``, or those the store kept) to the searcher as (config, last
    result) pairs (the searcher stays pure)."""
    trials = [(config, result) for _source, config, result in earlier]
    used = searcher.warm_start(trials)
    if used:
        log.info("warm start: %s observed %d of %d finished earlier trials (%d skipped: outside this space or "
                 "without the metric)", type(searcher).__name__, used, len(trials), len(trials) - used)
    elif trials:
        log.warning("warm start: %s took in none of the %d finished earlier trials (Random and QuasiRandom learn "
                    "nothing from results and ignore warm_start; a model-based searcher skips configs outside "
                    "its space)", type(searcher).__name__, len(trials))
