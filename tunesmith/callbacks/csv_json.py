"""File loggers: every result of every trial as ``progress.csv`` and ``result.jsonl``, its config as
``params.json``, in the trial's folder ``<experiment>/trials/<trial_name>/``.

Both append one batch at a time and close the file after it, so the number of open files does not grow
with the number of trials. The writing happens on background threads that the file loggers of an
experiment share (one, more while the filesystem is slow; see ``callbacks/_writer.py``), each trial's writes in the
order of the calls, so a slow disk (creating a folder and three files per trial can take milliseconds
each) never stalls the experiment's loop; ``flush()`` waits for what is queued, and the experiment's end
flushes. (Shared, not one thread per logger: two writer threads competing with the loop for the
interpreter lock cost more than both loggers' writes on one, on a fast disk.)
``background=False`` writes in the calling thread instead (the batch is on disk when the call returns).

A trial that restarts from a checkpoint at iteration k (pause/resume, PBT exploit) reports iterations
after k again: the rows after k are dropped first, as in the store, so a file never holds an iteration
twice. In a resumed experiment (a new driver) a trial's files are first written again from the store as it starts
(the earlier driver's may lack rows: one killed with SIGKILL leaves those its writer thread had not written yet, one
without file loggers none at all), then its restart replaces the rows after k.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import operator
import os
from collections.abc import Callable
from typing import Any

from tunesmith import _layout
from tunesmith._flat import flat_metrics
from tunesmith._safe_write import open_nofollow, replacing
from tunesmith._secrets import shown, shown_results
from tunesmith.callbacks._base import Callback, ExperimentInfo
from tunesmith.callbacks._writer import Writer, acquire, release
from tunesmith.trial import ITERATION, TIME_TOTAL, TIMESTAMP, Result, TrialView

log = logging.getLogger("tunesmith")
PROGRESS_CSV = "progress.csv"
RESULT_JSONL = "result.jsonl"
PARAMS_JSON = "params.json"
# json.dumps with options builds an encoder per call; one shared encoder halves the cost of a line
_ENCODER = json.JSONEncoder(default=str, allow_nan=True)
_PLAIN = (int, float, str, bool)  # written by csv as they are (None, lists, dicts need _cell)
# A character UTF-8 cannot encode (a lone surrogate: ``os.listdir`` decodes a file name's bytes that are not UTF-8
# to ``\udcff``...) is written as its escape, ``\udcff``, as ``result.jsonl`` writes it: the files stay UTF-8,
# and one such value costs neither its batch's rows nor the export. Every file these loggers and the export write.
ERRORS = "backslashreplace"


class _TrialFileLogger(Callback):
    """Shared part: where a trial's folder is, ``params.json``, and restart bookkeeping.

    Args:
        params: write ``params.json`` (default). ``default_callbacks`` turns it off for the second of two
            file loggers, so the same file is not written twice per trial.
        background: write on a background thread (default; see the module docstring).
    """

    def __init__(self, params: bool = True, background: bool = True) -> None:
        self.params = params
        self.background = background
        self._writer: Writer | None = None
        self._failed = False
        self._root: str | None = None
        self._last_iteration: dict[int, int] = {}
        self._params: dict[int, dict[str, Any]] = {}
        self._dirs: dict[int, str] = {}
        self._resumed = False
        self._experiment: ExperimentInfo | None = None  # a resumed driver's: its store has the trials' results

    def on_experiment_start(self, experiment: ExperimentInfo) -> None:
        self._root = experiment.path
        # Files an earlier driver of this experiment left (a resume): a trial's files are written from the store
        # when it starts in this driver (``on_trial_start``), and its first batch replaces their rows from its first
        # iteration on. A fresh experiment has no trials folder yet, and its loggers look for no file to replace.
        self._resumed = os.path.isdir(os.path.join(experiment.path, _layout.TRIALS))
        self._experiment = experiment if self._resumed else None
        if self.background and self._writer is None:
            self._writer = acquire(experiment.path)
            self._dirs = self._writer.dirs

    def on_experiment_end(self, experiment: ExperimentInfo) -> None:
        self._experiment = None
        writer, self._writer = self._writer, None
        if writer is None:
            return
        self._dirs = {}
        release(experiment.path, writer)  # this logger's writes are on disk when its end returns

    def flush(self) -> None:
        """Wait until every write queued so far is on disk (a no-op with ``background=False``)."""
        if self._writer is not None:
            self._writer.flush()

    def _do(self, fn: Callable[..., None], *args: Any) -> None:
        if self._writer is None:
            fn(*args)
        else:
            self._writer.submit(self._report_error, fn, *args)

    def _report_error(self, error: BaseException) -> None:
        if not self._failed:  # logged once: the same disk problem repeats per batch
            self._failed = True
            log.error("%s could not write a trial's file (later failures are not logged): %s",
                      type(self).__name__, error, exc_info=error)

    def trial_dir(self, trial: TrialView) -> str:
        """The folder of ``trial`` (created on demand)."""
        if self._root is None:
            raise RuntimeError(f"{type(self).__name__} used before on_experiment_start")
        path = self._dirs.get(trial.id)
        if path is None:  # made once per trial: a makedirs per batch costs more than the batch's rows
            path = _layout.trial_dir(self._root, trial.id)
            try:
                os.mkdir(path)  # one system call; makedirs looks at the parent first
            except FileExistsError:
                pass
            except FileNotFoundError:
                os.makedirs(path, exist_ok=True)
            self._dirs[trial.id] = path
        return path

    def on_trial_start(self, trial: TrialView) -> None:
        stored = getattr(self._experiment, "_stored_results", None)  # tunesmith's ExperimentInfo in a resumed driver
        if stored is not None and trial.id not in self._last_iteration:  # its first start in this driver
            # read here: the store is the loop's; masked with the secrets of every config it had (an exploited
            # trial's rows up to its clone came from its config before; none without an exploit: no read)
            past = [] if trial.parent_id is None else self._experiment._past_configs(trial.id)  # type: ignore[union-attr]
            results = shown_results([trial.config, *past], stored(trial.id))
            if results:
                self._do(self._write_stored, trial, results)
                self._last_iteration[trial.id] = results[-1].iteration  # a batch from here on is a restart
        # Written again only when the config changed (a PBT exploit gives the trial a new one).
        if self.params and self._params.get(trial.id) != trial.config:
            # secret-looking values masked (``tunesmith._secrets``): the store keeps them, the trial gets them
            self._do(self._write_params, trial, params_text(trial))
            self._params[trial.id] = dict(trial.config)

    def on_trial_complete(self, trial: TrialView) -> None:
        # Nothing more is written for a finished trial: what is kept about it goes, so the memory follows the
        # running trials. Its folder and header go after its queued writes (in its lane, in order).
        self._params.pop(trial.id, None)
        self._last_iteration.pop(trial.id, None)
        self._do(self._forget, trial)

    on_trial_error = on_trial_complete

    def _forget(self, trial: TrialView) -> None:
        self._dirs.pop(trial.id, None)

    def _write_params(self, trial: TrialView, text: str) -> None:
        # Written in place, not through a temporary name and a rename: one file operation fewer per trial
        # (on a slow disk, a third of this thread's time for short trials). A crash in the middle leaves
        # the file of a trial that was running then, and a resume rewrites it when the trial restarts; the
        # config itself is in the store either way.
        _append(os.path.join(self.trial_dir(trial), PARAMS_JSON), text, truncate=True)

    def on_trial_results(self, trial: TrialView, results: list[Result]) -> None:
        if not results:
            return
        first = results[0].iteration
        last = self._last_iteration.get(trial.id)
        # a restart: iterations this driver wrote come again, or the trial's first batch in a resumed driver
        # (the earlier driver's rows from there on are replaced, as in the store)
        restarted = self._resumed if last is None else first <= last
        self._do(self._write, trial, self._rows(shown_results(trial.config, results)), first if restarted else None)
        self._last_iteration[trial.id] = results[-1].iteration

    def _rows(self, results: list[Result]) -> Any:
        """What ``_write`` gets for a batch, made in the calling thread."""
        raise NotImplementedError

    def _write(self, trial: TrialView, rows: Any, restart_at: int | None) -> None:
        raise NotImplementedError

    def _write_stored(self, trial: TrialView, results: list[Result]) -> None:
        """The trial's file as ``tunesmith export`` writes it from ``results`` (the store's)."""
        raise NotImplementedError


class JSONLLogger(_TrialFileLogger):
    """Writes every result of a trial as one JSON object per line to ``trials/<trial>/result.jsonl``.

    Keys are the reported metrics (nested dicts flattened to ``outer/inner``) plus ``training_iteration``,
    ``time_total_s`` and ``timestamp``. NaN and infinities are written as ``NaN`` / ``Infinity``, as in
    the store (Python's ``json`` reads them back). The config is in ``params.json`` beside it.

    Args:
        params: also write the trial's config to ``params.json`` (default True).
        background: write on a background thread (default True); ``flush()`` waits for it.

    Example:
        ``ts.run(train, space, callbacks=[ts.JSONLLogger()])``
    """

    def _rows(self, results: list[Result]) -> list[str]:
        return jsonl_lines(results)

    def _write(self, trial: TrialView, rows: list[str], restart_at: int | None) -> None:
        path = os.path.join(self.trial_dir(trial), RESULT_JSONL)
        if restart_at is not None and os.path.exists(path):
            with open(path, encoding="utf-8", errors=ERRORS) as f:
                kept = [line for line in f if line.strip() and _iteration(json.loads(line)) < restart_at]
            _write_atomic(path, "".join(kept))
        _append(path, "".join(rows))

    def _write_stored(self, trial: TrialView, results: list[Result]) -> None:
        _write_atomic(os.path.join(self.trial_dir(trial), RESULT_JSONL), "".join(jsonl_lines(results)))


class CSVLogger(_TrialFileLogger):
    """Writes every result of a trial as one row of ``trials/<trial>/progress.csv``.

    The header is the keys of the trial's first result, in order. A key that first appears later is
    added at the end of the header and the file is rewritten once (earlier rows get an empty cell);
    a row without some key gets an empty cell too. When a restart drops rows, the header is made again from the
    rows that stay (the file is then the one ``tunesmith export`` writes). Lists and other non-scalar values are
    written as JSON; text UTF-8 cannot encode (a lone surrogate) as its backslash escape (``ERRORS``). The config
    is in ``params.json`` beside it.

    Args:
        params: also write the trial's config to ``params.json`` (default True).
        background: write on a background thread (default True); ``flush()`` waits for it.

    Example:
        ``ts.run(train, space, callbacks=[ts.CSVLogger()])``
    """

    def __init__(self, params: bool = True, background: bool = True) -> None:
        super().__init__(params, background)
        self._header: dict[int, list[str]] = {}
        # trial -> column -> the iteration of the first row that had it: a restart drops the columns only the
        # dropped rows had (one number per column, kept for the columns this logger added, and for every column of a
        # trial whose file was written from the store: ``_write_stored``; the file cannot tell, as an empty cell is a
        # key reported as "" as well as one not reported)
        self._since: dict[int, dict[str, float]] = {}

    def _forget(self, trial: TrialView) -> None:
        super()._forget(trial)
        self._header.pop(trial.id, None)
        self._since.pop(trial.id, None)

    def _write_stored(self, trial: TrialView, results: list[Result]) -> None:
        since: dict[str, float] = {}
        for r in results:
            for key in r.metrics if r._json is not None else flat_metrics(r.metrics):
                since.setdefault(key, r.iteration)
        _write_atomic(os.path.join(self.trial_dir(trial), PROGRESS_CSV), csv_text(results), newline="")
        self._header[trial.id] = list(since)  # csv_text's header: every key in the order it first appears
        self._since[trial.id] = since

    def _rows(self, results: list[Result]) -> tuple[bool, list[dict[str, Any]]]:
        # (scalars, rows): results a trial reported are flat dicts of scalars already (report() checked
        # them): no flattening, and _write may take their values as they are. Others are flattened.
        if all(r._json is not None for r in results):
            return True, [r.metrics for r in results]
        return False, [flat_metrics(r.metrics) for r in results]

    def _write(self, trial: TrialView, batch: tuple[bool, list[dict[str, Any]]], restart_at: int | None) -> None:
        scalars, rows = batch
        path = os.path.join(self.trial_dir(trial), PROGRESS_CSV)
        header = self._header.get(trial.id)
        if header is None:
            header = self._header[trial.id] = _read_header(path)
        since = self._since.setdefault(trial.id, {})
        old: list[dict[str, str]] | None = None
        if header and restart_at is not None and os.path.exists(path):
            # The rows from restart_at on go, and with them the columns only they had: the header is then the
            # keys of the rows that stay, in the order they first appear, as the export writes it.
            old = _kept_rows(path, restart_at)
            # a column this logger neither added nor wrote from the store (a logger used outside run, on a file
            # it did not write) stays if a kept row has a value in it
            header = [k for k in header if (since[k] < restart_at if k in since else any(row.get(k) for row in old))]
            for k in set(since).difference(header):
                del since[k]
        known = set(header)
        new_keys = [k for row in rows if not known.issuperset(row) for k in row if k not in known]
        grown = list(dict.fromkeys([*header, *new_keys])) if new_keys else header
        for row in rows if new_keys else ():
            for k in row:
                if k not in since and k not in known:
                    since[k] = _iteration(row)
        if old is not None or (header and grown != header and os.path.exists(path)):
            self._rewrite(path, grown, old)
            self._header[trial.id] = header = grown
        write_header = not header  # no file yet, or an empty one; a rewrite above wrote its own header
        buf = io.StringIO()
        writer = csv.writer(buf)
        if write_header:
            writer.writerow(grown)
        # csv.writer on lists: DictWriter's per-row key checks cost more than the writing itself
        n = len(grown)
        if scalars and n > 1 and all(len(row) == n for row in rows):
            # every row has every key (its keys are in the header, and as many): picked in C
            writer.writerows(map(operator.itemgetter(*grown), rows))
        else:
            writer.writerows(_cells([row.get(k, "") for k in grown]) for row in rows)
        _append(path, buf.getvalue())
        # Only now: a batch that failed to reach the file (a full disk) must not count as having written
        # the header, or every later row would go to a file without one.
        self._header[trial.id] = grown

    @staticmethod
    def _rewrite(path: str, header: list[str], old: list[dict[str, str]] | None) -> None:
        """``path`` again with ``header`` and the ``old`` rows (default: every row it has)."""
        if old is None:
            old = _kept_rows(path, None)
        with replacing(path, "w", encoding="utf-8", errors=ERRORS, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header, restval="", extrasaction="ignore")
            writer.writeheader()
            writer.writerows(old)


def params_text(trial: TrialView) -> str:
    """``params.json``: the trial's config, secret-looking values masked (``tunesmith._secrets``: the store keeps
    them, the trial gets them)."""
    return json.dumps(shown(trial).config, indent=2, sort_keys=True, default=str, allow_nan=True)


def jsonl_lines(results: list[Result]) -> list[str]:
    """``result.jsonl``'s lines for ``results``.

    A result a trial reported (or one read from the store) is its metrics' JSON text as the trial sent it (the
    same encoder as this one's) with the three added keys appended, instead of encoding every number again (a
    third of this logger's time per result). Other results go through the encoder."""
    encode = _ENCODER.encode
    lines = []
    for r in results:
        text, m = r._json, r.metrics
        if text is not None:  # ``metrics`` was made from it: the same keys and values
            lines.append(f"{text[:-1]}{', ' if len(text) > 2 else ''}\"{ITERATION}\": {r.iteration}, "
                         f"\"{TIME_TOTAL}\": {m[TIME_TOTAL]!r}, \"{TIMESTAMP}\": {m[TIMESTAMP]!r}}}\n")
        else:
            lines.append(encode(flat_metrics(m)) + "\n")
    return lines


def csv_text(results: list[Result]) -> str:
    """``progress.csv`` for ``results``, as ``CSVLogger`` leaves it: the header is every key in the order it
    first appears, a row without a key has an empty cell, a non-scalar value is written as JSON."""
    rows = [r.metrics if r._json is not None else flat_metrics(r.metrics) for r in results]
    header = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(_cells([row.get(k, "") for k in header]) for row in rows)
    return buf.getvalue()


def _read_header(path: str) -> list[str]:
    """The header of an existing file (a logger re-created for the same folder appends to it)."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8", errors=ERRORS, newline="") as f:
        return next(csv.reader(f), [])


def _kept_rows(path: str, restart_at: int | None) -> list[dict[str, str]]:
    """The rows of the CSV file at ``path`` (those before iteration ``restart_at`` when given)."""
    with open(path, encoding="utf-8", errors=ERRORS, newline="") as f:
        rows = list(csv.DictReader(f))
    return rows if restart_at is None else [row for row in rows if _iteration(row) < restart_at]


def _iteration(row: dict[str, Any]) -> float:
    try:
        return float(row.get(ITERATION, math.inf))
    except (TypeError, ValueError):
        return math.inf


def _cells(values: list[Any]) -> list[Any]:
    for value in values:
        if value.__class__ not in _PLAIN:
            return [_cell(v) for v in values]
    return values


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (bool, int, float, str)):
        return value
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


def _append(path: str, text: str, truncate: bool = False) -> None:
    """Write ``text`` at the end of ``path`` (created if missing; emptied first with ``truncate``) in three
    system calls, where ``open()`` makes six or seven: a short trial's three small files are most of the
    writer thread's time (``.venv/bin/python benchmarks/slow_fs.py`` measures it)."""
    data = memoryview(text.encode("utf-8", ERRORS))
    fd = open_nofollow(path, os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if truncate else os.O_APPEND))
    try:
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


def _write_atomic(path: str, text: str, newline: str | None = None) -> None:
    with replacing(path, "w", encoding="utf-8", errors=ERRORS, newline=newline) as f:
        f.write(text)
