"""Control commands from the dashboard to a running driver, as atomic files in the experiment folder.

The dashboard never writes the store (the driver is its only writer). A control request becomes one JSON
file ``<experiment>/commands/<32 hex>.json``, written through a fresh name and renamed into place
(``tunesmith._safe_write.replacing``), so the driver never reads half a command. The driver lists the folder
at most every ``POLL_S`` seconds (:class:`CommandInbox`), checks each file strictly (the folder is
untrusted: anyone who can write there can drop a file), applies what is valid through its own paths, logs a
``command`` event in the store saying what it did or why it refused, and deletes the file.

A request may carry an idempotency key (the page sends a fresh one per click): its command's id, and so its file's
name, is derived from the key (``command_id``), so the same request sent twice (a double click, a retry) names one
command. The app answers a request whose command is still queued or already logged with the first answer and writes
nothing; a driver drops, without applying or logging it again, a file whose id is already among the store's
``command`` events (:meth:`CommandInbox.seen`: read from the store, so it holds across a resume too).

A command is for the driver that was running when it was sent: a driver refuses (and logs, and deletes) every file
older than its own start, one left by a driver killed before it looked, or carried by a copied folder; and a driver
that ends looks one last time, once its end is in the store, refusing what it finds (``end_commands``).
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
from collections.abc import Callable
from typing import Any

from tunesmith import _layout
from tunesmith._errors import ConfigError
from tunesmith._safe_write import replacing
from tunesmith.trial import trial_name

log = logging.getLogger("tunesmith")

COMMANDS = "commands"
POLL_S = 0.5
MAX_BYTES = 4096
MAX_PER_TICK = 32
MAX_AT_END = 1024  # the last look, as the driver ends: what is left beyond is refused by the next driver
COARSE_S = 0.05  # a filesystem may stamp files with a clock a jiffy behind time.time()
ENDED = "the experiment ended before it was applied"
STALE = "sent before this driver started (a command is for the driver running when it was sent): not applied"
ACTIONS = ("stop_trial", "stop_experiment", "add_samples", "extend_time")
_FILE = re.compile(r"^[0-9a-f]{32}\.json\Z")
_KEY = re.compile(r"^[A-Za-z0-9_-]{16,64}\Z")
KEY_RULE = "16 to 64 letters, digits, '-' or '_' (a fresh random id per command, e.g. a UUID)"
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


def check_key(key: str) -> str:
    """An idempotency key (the ``Idempotency-Key`` header: untrusted) as the key, or ``ConfigError`` saying what a
    key is (never echoing the value). One pair of surrounding double quotes is dropped: the IETF draft's header is a
    structured-field string, ``"..."``."""
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not _KEY.match(key):
        what = "some not allowed" if 16 <= len(key) <= 64 else "too few" if len(key) < 16 else "too many"
        raise ConfigError(f"Idempotency-Key must be {KEY_RULE}; got {len(key)} characters ({what})")
    return key


def command_id(key: str) -> str:
    """The id (and file name) of the command an idempotency key names: 32 hex digits, the same for the same key."""
    import hashlib  # here: the driver imports this module, and hashlib loads OpenSSL (tests/test_startup.py)

    return hashlib.sha256(b"tunesmith-command:" + check_key(key).encode()).hexdigest()[:32]


def write_command(exp_dir: str, command: dict[str, Any], key: str | None = None) -> str:
    """Validate ``command`` and leave it for the driver; returns the command's id: ``command_id(key)`` with an
    idempotency ``key`` (the same key writes the same file again), else a fresh one. The folder is made here
    (private to this user); a ``commands`` that is a link or not a folder is refused, never followed."""
    clean = validate(command)
    cid = command_id(key) if key is not None else uuid.uuid4().hex
    folder = commands_dir(exp_dir)
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{folder} is not a folder (a link or a file): refusing to write a command there")
    with replacing(os.path.join(folder, cid + ".json"), "w", encoding="utf-8") as f:
        json.dump({**clean, "id": cid, "time": time.time()}, f)
    return cid


def take_back(exp_dir: str, cid: str) -> bool:
    """Remove a command the driver has not taken yet: True if it was still there (it will never be applied),
    False if the driver took it first (its ``command`` event says what became of it)."""
    try:
        os.unlink(os.path.join(commands_dir(exp_dir), cid + ".json"))
    except FileNotFoundError:
        return False
    return True


def queued(exp_dir: str, cid: str) -> dict[str, Any] | None:
    """The command file ``cid`` still waiting for the driver, as written (``{}`` for one that cannot be read as a
    JSON object), or None when there is none (never written, or taken by the driver)."""
    path = os.path.join(commands_dir(exp_dir), cid + ".json")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        data = os.read(fd, MAX_BYTES + 1) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
    finally:
        os.close(fd)
    try:
        raw = json.loads(data.decode("utf-8")) if len(data) <= MAX_BYTES else None
    except (UnicodeDecodeError, ValueError):
        raw = None
    return raw if isinstance(raw, dict) else {}


def same_command(command: dict[str, Any], recorded: dict[str, Any]) -> bool:
    """Whether ``recorded`` (a queued file, or a ``command`` event's data) is the validated ``command``."""
    return {k: v for k, v in recorded.items() if k not in ("id", "time", "applied", "detail")} == command


def driver_start(exp_dir: str) -> float:
    """When this driver started, on the clock that stamps the folder's files (what a command file's time is compared
    with, whatever the clocks of the machines that wrote them say): the time of the pid file it wrote when it took
    the experiment's lock (``tunesmith._run._acquire``), before the page could see it running. A controller run
    without that file (tests, an embedding): now, less a moment for filesystems that stamp with a coarse clock."""
    now = time.time() - COARSE_S
    try:
        fd = os.open(_layout.pid_path(exp_dir), os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return now
    try:
        st = os.fstat(fd)
        mine = stat.S_ISREG(st.st_mode) and os.read(fd, 32).strip() == str(os.getpid()).encode()
    except OSError:
        return now
    finally:
        os.close(fd)
    return st.st_mtime if mine else now


Taken = tuple[dict[str, Any] | None, str, str | None]


class CommandInbox:
    """The driver's side: :meth:`take` gives the commands waiting (at most every ``POLL_S``), and removes every file
    it looked at, valid or not (a refused file is logged, with why)."""

    def __init__(self, exp_dir: str, clock: Any = time.monotonic) -> None:
        self.folder = commands_dir(exp_dir)
        self._clock = clock
        self._next = 0.0
        self.since = driver_start(exp_dir)  # a file older than this was sent to another driver
        self._seen: set[str] | None = None

    def seen(self, store: Any) -> set[str]:
        """The ids of the commands already taken, by this driver or one before it (the store's ``command`` events,
        read once; the caller adds those it logs): a file with one of them is the same request again."""
        if self._seen is None:
            self._seen = {d["id"] for d in store.command_events() if isinstance(d.get("id"), str)}
        return self._seen

    def take(self, last: bool = False) -> list[Taken]:
        """(command or None when unreadable, its id, why it is refused or None) triples, oldest first; an unreadable
        file's is (None, its name, why). ``last``: the driver's last look (now, up to ``MAX_AT_END`` files)."""
        now = self._clock()
        if now < self._next and not last:
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
                entries = sorted((e for e in it if _FILE.match(e.name)), key=_mtime)
        except OSError:
            return []
        out: list[Taken] = []
        for entry in entries[:MAX_AT_END if last else MAX_PER_TICK]:
            taken = self._read(entry)
            try:
                os.unlink(entry.path)  # the name we listed in our own folder: a link is removed, not its target
            except OSError:
                continue  # someone else took it (the page, taking it back)
            out.append(taken)
        return out

    def _read(self, entry: os.DirEntry[str]) -> Taken:
        name = entry.name[:-5]
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
        except OSError as e:
            return None, name, f"{entry.name}: cannot be opened ({e.strerror}; a link is never followed)"
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None, name, f"{entry.name}: not a regular file"
            data = os.read(fd, MAX_BYTES + 1)
        finally:
            os.close(fd)
        if len(data) > MAX_BYTES:
            return None, name, f"{entry.name}: larger than {MAX_BYTES} bytes"
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            return None, name, f"{entry.name}: not JSON ({e})"
        if isinstance(raw, dict):
            if raw.get("id") not in (None, name):
                return None, name, f"{entry.name}: its id does not match its file name"
            raw = {k: v for k, v in raw.items() if k not in ("id", "time")}
        try:
            command = validate(raw)
        except ConfigError as e:
            return None, name, f"{entry.name}: {e}"
        # its mtime, not its "time": the folder's clock, the one driver_start read
        return command, name, STALE if st.st_mtime < self.since else None


def _mtime(entry: os.DirEntry[str]) -> float:
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return 0.0


def apply_commands(ctl: Any, inbox: CommandInbox, ended: bool = False) -> None:
    """The driver's loop tick (``Controller._loop``): apply each command waiting through the controller's own
    paths and log a ``command`` event per file (what was done, or why not). ``ended``: the driver's last look, once
    its end is in the store (``end_commands``): everything left is refused."""
    taken = inbox.take(last=ended)
    if not taken:
        return
    events: list[tuple[int | None, dict[str, Any]]] = []
    then: list[Callable[[], None]] = []  # what the commands applied ask of the executor, after their events
    seen = inbox.seen(ctl.store)
    for command, ref, refused in taken:
        if command is None:
            log.warning("dashboard command refused: %s", refused)
            events.append((None, {"action": None, "applied": False, "detail": refused}))
            continue
        if ref in seen:  # the same request again (its idempotency key): its first copy's event stands for it
            log.info("dashboard command %s %s: already taken, not applied again", command["action"], ref)
            continue
        seen.add(ref)
        if refused is None and ended:
            refused = ENDED
        applied, detail = (False, refused) if refused is not None else _apply(ctl, command, then)
        (log.info if applied else log.warning)("dashboard command %s: %s", command["action"], detail)
        events.append((command.get("trial_id"), {**command, "id": ref, "applied": applied, "detail": detail}))
    with ctl.store.transaction() as db:
        for trial_id, data in events:
            ctl.store.log_event(db, "command", trial_id, data)
    for act in then:  # the stops, once the store says they were applied: a resume honours them from there
        act()


def end_commands(ctl: Any) -> None:
    """The driver's last look at its inbox, after its end status is committed: a command the page queued while it
    saw the experiment running is refused and logged here, never left for a later driver (``api_control`` takes
    back one that lands after this look)."""
    try:
        apply_commands(ctl, ctl._inbox, ended=True)
    except Exception:  # noqa: BLE001 - the run has ended and says so; the next driver refuses what is left
        log.exception("could not refuse the dashboard commands left at the end")


def _apply(ctl: Any, command: dict[str, Any], then: list[Callable[[], None]]) -> tuple[bool, str]:
    """Apply ``command`` to the driver's state; what it asks of the executor (a stop) goes in ``then``, done once the
    command's event is in the store (a resume reads the stops applied there: ``tunesmith._replay``)."""
    action = command["action"]
    if action == "stop_trial":
        return _stop_trial(ctl, command["trial_id"], then)
    if action == "stop_experiment":
        if ctl._stopping:
            return False, "the experiment is already stopping"
        ctl._stopping = True  # the commands after it see it stopping; its trials are stopped once it is stored
        ctl.ended_by = ctl.ended_by or "a stop from the dashboard"
        then.append(ctl._begin_stopping)
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
    seconds = float(command["seconds"])
    with ctl.store.transaction() as db:  # kept for a resume, which adds it to its own time_budget_s
        ctl.store.set_meta(db, TIME_ADDED_KEY, added_time(ctl.store.meta()) + seconds)
    ctl.time_budget_s += seconds
    ctl.view.deadline_s = ctl.time_budget_s  # the schedulers' deadline (Deadline's too)
    return True, f"time budget now {ctl.time_budget_s:g} s"


TIME_ADDED_KEY = "time_budget_added"  # store meta: seconds added from the dashboard; a resume adds them to its own


def added_time(meta: dict[str, Any]) -> float:
    """The seconds ``extend_time`` added to the experiment's time budget (the store's meta), 0 for none (or for a
    value that is not a finite positive number: the meta is data from the folder)."""
    added = meta.get(TIME_ADDED_KEY)
    if isinstance(added, (int, float)) and not isinstance(added, bool) and 0 < added < float("inf"):
        return float(added)
    return 0.0


def _stop_trial(ctl: Any, tid: int, then: list[Callable[[], None]]) -> tuple[bool, str]:
    """A running trial is stopped as a scheduler's Stop is (its worker confirms), told to stop once the command's
    event is stored (``then``): a driver that dies before the trial's end leaves the stop to the resume, which ends
    the trial where it was (``tunesmith._replay``); a paused one, or one waiting to start, ends now as a scheduler's
    stop of a paused trial does (``Controller._terminate_paused``: the store first, then the scheduler and searcher
    hear it ended)."""
    from tunesmith.schedulers._base import Stop

    trial = ctl.trials.get(tid)
    if trial is None or trial.status.is_finished:
        if trial is None and tid >= ctl._next_id:
            return False, f"no trial {tid} yet"
        # finished trials leave the controller (``_trial_memory``): the store has their end
        rec = ctl.store.trial(tid) if trial is None else {"status": trial.status.value}
        if rec is None:
            return False, f"no trial {tid} in this experiment"
        return False, f"{trial_name(tid)} already ended ({rec['status']})"
    if tid in ctl._running:
        if tid in ctl._actions:
            return False, f"{trial.name} is already being stopped or paused"
        ctl._actions[tid] = Stop()
        ctl._stop_reasons[tid] = "dashboard"  # the stop event's reason: not a scheduler's early stop in the plots
        then.append(lambda: ctl.executor.stop(tid))
        return True, f"stopping {trial.name} at iteration {trial.iteration}"
    waiting = [launch for launch in ctl._pending_launch if launch.trial_id == tid]
    if tid not in ctl._paused and not waiting:
        return False, f"{trial.name} is not running ({trial.status.value})"
    state = f"{trial.status.value}: not started" if trial.start_time is None else (
        f"{trial.status.value} at iteration {trial.iteration}")
    for launch in waiting:
        ctl._pending_launch.remove(launch)
    ctl._paused.add(tid)
    ctl._flush_store()  # a trial made since the last transaction, or restarted, is in the store before its end
    ctl._stored_pending.discard(tid)  # it never starts
    ctl._terminate_paused([tid], reason="dashboard")
    return True, f"stopped {trial.name} ({state})"


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
    earlier = store.warm_start_trials()  # those the run took in and kept (its sources are not read again)
    if earlier:
        warm_start_searcher(searcher, earlier)
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
