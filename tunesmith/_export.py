"""``tunesmith export``: each trial's ``progress.csv``, ``result.jsonl`` and ``params.json`` written from the store.

The store holds every result, so these files are made on demand instead of during the run (the default file
loggers cost a folder and three files per trial while trials run; see docs/callbacks.md). The files are the
ones ``CSVLogger`` and ``JSONLLogger`` write (the same formatting functions), of each trial's current history
(a PBT exploit's superseded rows are not in them, as in the loggers' files).

The experiment folder may be someone else's: nothing is written through a symbolic link found there (a trial
folder that is a link is refused, a file that is a link is replaced, not followed; ``tunesmith._safe_write``),
and a trial id the store gives is used in a path only when it is a whole number.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from tunesmith import _layout
from tunesmith._errors import ConfigError
from tunesmith._safe_write import replacing
from tunesmith._secrets import shown_results
from tunesmith.callbacks.csv_json import (
    ERRORS,
    PARAMS_JSON,
    PROGRESS_CSV,
    RESULT_JSONL,
    csv_text,
    jsonl_lines,
    params_text,
)
from tunesmith.store.sqlite import Store, stored_results
from tunesmith.trial import TrialView

FORMATS = ("csv", "jsonl")


def export(exp_dir: str, formats: Iterable[str] = FORMATS, to: str | None = None) -> tuple[int, str]:
    """Write every trial's files from the store of the experiment in ``exp_dir``.

    Args:
        exp_dir: the experiment folder.
        formats: ``"csv"`` (``progress.csv``) and/or ``"jsonl"`` (``result.jsonl``); ``params.json`` always.
        to: the folder to put the trial folders in [default: the experiment's ``trials/``]; made if missing.

    Returns:
        (trials written, the folder they are in).

    Raises:
        ConfigError: an unknown format, a folder on the way that is a symbolic link or no folder, or a trial id
            in the store that is not a whole number.
    """
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ConfigError(f"export: unknown format(s) {unknown or formats!r}; expected one or more of {list(FORMATS)}")
    out = os.path.abspath(to) if to is not None else os.path.join(exp_dir, _layout.TRIALS)
    if to is not None and not os.path.islink(out):  # a link (to a missing folder too) is refused below, by name
        os.makedirs(out, exist_ok=True)  # the user's own path: made as given
    _real_folder(out)
    store = Store(_layout.store_path(exp_dir), readonly=True)
    try:
        n = 0
        past = store.past_configs()  # every trial's, in one read of the event log
        for rec in store.trials():
            tid = rec["id"]
            if type(tid) is not int or tid < 0:
                raise ConfigError(f"export: the store of {exp_dir} names a trial {tid!r}; expected a whole number")
            trial = TrialView(id=tid, config=rec["config"] if isinstance(rec["config"], dict) else {})
            folder = os.path.join(out, _layout.trial_name(tid))
            _real_folder(folder)
            # one trial's results at a time: memory follows the largest trial, not the experiment
            # masked with the secrets of every config it had (a PBT exploit's rows up to its clone came from the old)
            results = shown_results([trial.config, *past.get(tid, ())], stored_results(store, tid))
            _write(os.path.join(folder, PARAMS_JSON), params_text(trial))
            if "csv" in formats:
                _write(os.path.join(folder, PROGRESS_CSV), csv_text(results) if results else "")
            if "jsonl" in formats:
                _write(os.path.join(folder, RESULT_JSONL), "".join(jsonl_lines(results)))
            n += 1
    finally:
        store.close()
    return n, out


def _real_folder(path: str) -> None:
    """Make ``path`` (its parent exists) and check it is a folder, not a symbolic link to one."""
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    mode = os.lstat(path).st_mode
    if not stat.S_ISDIR(mode):
        what = "a symbolic link" if stat.S_ISLNK(mode) else "not a folder"
        raise ConfigError(f"export: {path} is {what}; nothing is written through it (export elsewhere with --to DIR)")


def _write(path: str, text: str) -> None:
    """A new file is created in one step (``O_EXCL | O_NOFOLLOW``: never an existing file or link); one that
    exists (a second export, the live loggers' file, a planted link) is replaced through a fresh name."""
    data = text.encode("utf-8", ERRORS)  # as the loggers encode it: a lone surrogate as its escape
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        with replacing(path, "wb") as f:
            f.write(data)
        return
    with os.fdopen(fd, "wb") as f:
        f.write(data)
