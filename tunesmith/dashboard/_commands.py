"""Control commands from the dashboard to a running driver, as atomic files in the experiment folder.

The dashboard never writes the store (the driver is its only writer). A control request becomes one JSON
file ``<experiment>/commands/<32 hex>.json``, written through a fresh name and renamed into place
(``tunesmith._safe_write.replacing``), so the driver never reads half a command. The driver lists the folder
at most every ``POLL_S`` seconds (:class:`CommandInbox`), checks each file strictly (the folder is
untrusted: anyone who can write there can drop a file), applies what is valid through its own paths, logs a
``command`` event in the store saying what it did or why it refused, and deletes the file.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import stat
import time
import uuid
from typing import Any

from tunesmith._errors import ConfigError
from tunesmith._safe_write import replacing

log = logging.getLogger("tunesmith")

COMMANDS = "commands"
POLL_S = 0.5
MAX_BYTES = 4096
MAX_PER_TICK = 32
ACTIONS = ("stop_trial", "stop_experiment", "add_samples", "extend_time")
_FILE = re.compile(r"^[0-9a-f]{32}\.json\Z")
_INT_MAX = 10**9


def commands_dir(exp_dir: str) -> str:
    return os.path.join(exp_dir, COMMANDS)


def validate(command: Any) -> dict[str, Any]:
    """The command as a clean dict, or ``ConfigError`` saying what is wrong. Accepted shapes::

        {"action": "stop_trial", "trial_id": 3}
        {"action": "stop_experiment"}
        {"action": "add_samples", "n": 10}            1 <= n <= 1e9
        {"action": "extend_time", "seconds": 600}     0 < seconds <= 1e9
    """
    if not isinstance(command, dict):
        raise ConfigError(f"a command must be a JSON object, got {type(command).__name__}")
    action = command.get("action")
    if action not in ACTIONS:
        raise ConfigError(f"command action must be one of {', '.join(ACTIONS)}, got {action!r}")
    fields = {"stop_trial": ("trial_id",), "stop_experiment": (), "add_samples": ("n",),
              "extend_time": ("seconds",)}[action]
    extra = sorted(set(command) - {"action", *fields})
    if extra:
        raise ConfigError(f"command {action}: unexpected field(s) {extra}; expected {list(fields)}")
    out: dict[str, Any] = {"action": action}
    for key in fields:
        value = command.get(key)
        if key == "seconds":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= _INT_MAX
        else:
            ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= _INT_MAX
        if not ok:
            raise ConfigError(f"command {action}: {key} must be a positive number up to {_INT_MAX}, got {value!r}")
        out[key] = value
    return out


def write_command(exp_dir: str, command: dict[str, Any]) -> str:
    """Validate ``command`` and leave it for the driver; returns the command's id. The folder is made here
    (private to this user); a ``commands`` that is a link or not a folder is refused, never followed."""
    clean = validate(command)
    folder = commands_dir(exp_dir)
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{folder} is not a folder (a link or a file): refusing to write a command there")
    command_id = uuid.uuid4().hex
    with replacing(os.path.join(folder, command_id + ".json"), "w", encoding="utf-8") as f:
        json.dump({**clean, "id": command_id, "time": time.time()}, f)
    return command_id


class CommandInbox:
    """The driver's side: :meth:`take` gives the valid commands waiting (at most every ``POLL_S``), and
    removes every file it looked at, valid or not (a refused file is logged, with why)."""

    def __init__(self, exp_dir: str, clock: Any = time.monotonic) -> None:
        self.folder = commands_dir(exp_dir)
        self._clock = clock
        self._next = 0.0

    def take(self) -> list[tuple[dict[str, Any] | None, str]]:
        """(command or None when refused, its id or file name / why refused) pairs, oldest first."""
        now = self._clock()
        if now < self._next:
            return []
        self._next = now + POLL_S
        try:
            st = os.lstat(self.folder)
        except OSError:
            return []
        if not stat.S_ISDIR(st.st_mode):
            return []  # a link or file where the folder goes: never followed
        try:
            with os.scandir(self.folder) as it:
                entries = sorted((e for e in it if _FILE.match(e.name)), key=_mtime)[:MAX_PER_TICK]
        except OSError:
            return []
        out: list[tuple[dict[str, Any] | None, str]] = []
        for entry in entries:
            command, why = self._read(entry)
            try:
                os.unlink(entry.path)  # the name we listed in our own folder: a link is removed, not its target
            except OSError:
                continue  # someone else took it
            out.append((command, why))
        return out

    @staticmethod
    def _read(entry: os.DirEntry[str]) -> tuple[dict[str, Any] | None, str]:
        name = entry.name[:-5]
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
        except OSError as e:
            return None, f"{entry.name}: cannot be opened ({e.strerror}; a link is never followed)"
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None, f"{entry.name}: not a regular file"
            data = os.read(fd, MAX_BYTES + 1)
        finally:
            os.close(fd)
        if len(data) > MAX_BYTES:
            return None, f"{entry.name}: larger than {MAX_BYTES} bytes"
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            return None, f"{entry.name}: not JSON ({e})"
        if isinstance(raw, dict):
            if raw.get("id") not in (None, name):
                return None, f"{entry.name}: its id does not match its file name"
            raw = {k: v for k, v in raw.items() if k not in ("id", "time")}
        try:
            return validate(raw), name
        except ConfigError as e:
            return None, f"{entry.name}: {e}"


def _mtime(entry: os.DirEntry[str]) -> float:
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return 0.0


def apply_commands(ctl: Any, inbox: CommandInbox) -> None:
    """The driver's loop tick (``Controller._loop``): apply each command waiting through the controller's own
    paths and log a ``command`` event per file (what was done, or why not)."""
    taken = inbox.take()
    if not taken:
        return
    events: list[tuple[int | None, dict[str, Any]]] = []
    for command, ref in taken:
        if command is None:
            log.warning("dashboard command refused: %s", ref)
            events.append((None, {"action": None, "applied": False, "detail": ref}))
            continue
        applied, detail = _apply(ctl, command)
        (log.info if applied else log.warning)("dashboard command %s: %s", command["action"], detail)
        events.append((command.get("trial_id"), {**command, "id": ref, "applied": applied, "detail": detail}))
    with ctl.store.transaction() as db:
        for trial_id, data in events:
            ctl.store.log_event(db, "command", trial_id, data)


def _apply(ctl: Any, command: dict[str, Any]) -> tuple[bool, str]:
    from tunesmith.schedulers._base import Stop

    action = command["action"]
    if action == "stop_trial":
        tid = command["trial_id"]
        trial = ctl.trials.get(tid)
        if trial is None:
            return False, f"no trial {tid} in this experiment"
        if tid not in ctl._running:
            return False, f"{trial.name} is not running ({trial.status.value})"
        if tid in ctl._actions:
            return False, f"{trial.name} is already being stopped or paused"
        ctl._actions[tid] = Stop()
        ctl._stop_reasons[tid] = "dashboard"  # the stop event's reason: not a scheduler's early stop in the plots
        ctl.executor.stop(tid)
        return True, f"stopping {trial.name} at iteration {trial.iteration}"
    if action == "stop_experiment":
        if ctl._stopping:
            return False, "the experiment is already stopping"
        ctl._begin_stopping()
        return True, f"stopping the experiment ({len(ctl._running)} running trials)"
    if action == "add_samples":
        if ctl._stopping:
            return False, "the experiment is stopping"
        return add_samples(ctl, command["n"])
    # extend_time
    if ctl.time_budget_s is None:
        return False, "the experiment has no time budget to extend"
    if ctl._stopping:
        return False, "the experiment is already stopping"
    ctl.time_budget_s += float(command["seconds"])
    ctl.view.time_budget_s = ctl.time_budget_s
    return True, f"time budget now {ctl.time_budget_s:g} s"


ADDED_KEY = "num_samples_added"  # store meta: samples added from the dashboard; a resume adds them to its own


def add_samples(ctl: Any, n: int) -> tuple[bool, str]:
    """Raise the experiment's ``num_samples`` by ``n``: the searcher is set up again with the larger count and
    shown its history from the store, as a resume does (``Searcher.restore_suggestion`` then every ``observe``
    in the order it happened), so that it suggests what a run started with that count would have suggested
    next. Works for every searcher that resumes, the user's own included. A searcher with nothing more to
    suggest (a finite list or grid it has used up) is set up again as it was, and the command says so.
    The count added is kept in the store (``num_samples_added``), so a resume honours it."""
    from tunesmith.searchers._base import FINISHED, UNLIMITED

    searcher = ctl.searcher
    name = type(searcher).__name__
    before = ctl.num_samples
    if before == UNLIMITED:
        return False, "num_samples is -1: the experiment already creates trials until it is stopped"
    if not isinstance(getattr(searcher, "space", None), dict):
        return False, f"the searcher {name} keeps no space from its setup (it does not call Searcher.setup)"
    after = before + n
    ctl._flush_store()  # every trial created so far is in the store: the replay shows it to the searcher
    try:
        _set_up_again(ctl, after)
    except Exception as e:  # noqa: BLE001 - the user's searcher: say why, and keep it as it was
        _set_up_again(ctl, before)
        return False, f"the searcher {name} could not be set up with num_samples {after}: {type(e).__name__}: {e}"
    try:
        probe = copy.deepcopy(searcher).suggest(ctl._next_id)  # searchers are pure: a copy's answer changes nothing
    except Exception:  # noqa: BLE001 - a searcher that cannot be copied: its next suggest will tell
        probe = None
    if probe is FINISHED:
        _set_up_again(ctl, before)
        return False, (f"the searcher {name} has no more configs to suggest (its grid or list is exhausted): "
                       f"num_samples stays {before}")
    ctl.num_samples = after
    ctl._searcher_done = False
    with ctl.store.transaction() as db:
        added = ctl.store.meta().get(ADDED_KEY, 0)
        ctl.store.set_meta(db, ADDED_KEY, (added if isinstance(added, int) else 0) + n)
    return True, f"num_samples {before} -> {after}"


def _set_up_again(ctl: Any, num_samples: int) -> None:
    """``setup`` with ``num_samples``, the warm start again, then the stored suggestions and results replayed in
    the order they happened (as ``tunesmith._replay`` does on resume)."""
    from tunesmith._warm_start import warm_start_searcher
    from tunesmith.store.sqlite import result_dict

    searcher, store = ctl.searcher, ctl.store
    searcher.setup(searcher.space, ctl.metric, ctl.mode, num_samples)
    spec = store.meta().get("spec") or {}
    warm = spec.get("warm_start") if isinstance(spec, dict) else None
    if isinstance(warm, list) and warm:
        warm_start_searcher(searcher, [str(d) for d in warm])
    history: list[tuple[float, int, int, int, Any]] = []
    for rec in store.trials():
        tid = rec["id"]
        searcher.restore_suggestion(tid, rec["config"])
        rows = store.results(tid)
        history.extend((row.timestamp, 0, tid, row.iteration, row) for row in rows)
        if rec["status"] in ("TERMINATED", "ERROR"):
            end = rec["end_time"] if rec["end_time"] is not None else (rows[-1].timestamp if rows else 0.0)
            last = result_dict(rows[-1]) if rows else {}
            history.append((end, 1, tid, 0, last))
    history.sort(key=lambda h: h[:4])
    for _time, order, tid, _it, item in history:
        if order == 1:
            searcher.observe(tid, item, True)
        else:
            searcher.observe(tid, result_dict(item), False)
