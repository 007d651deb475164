"""The Ray executor's actor runtime: what runs inside a trial's Ray actor, on whichever node Ray placed it.

:class:`_TrialActor` runs one trial at a time in a thread, with the same code as a local worker process
(``tunesmith.executors._worker._run_trial``, ``tunesmith.session``); only the channel differs:
:class:`_ActorChannel` buffers results for the driver's long poll (``events``), one message per batch, which
doubles as the heartbeat, and queues the checkpoints a trial on another node than the driver sends
(``_ray_transfer``) or uploads them to the storage URL, and what such a trial prints (its node-local
``output.log``, read as it grows) for the driver's copy. The driver's side is ``tunesmith.executors.ray``.

Ray exports :class:`_TrialActor` by reference (module and name): every node imports it from this module,
so it imports no Ray at module level and nothing of the driver's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

from tunesmith._importing import importing
from tunesmith._layout import OUTPUT_LOG
from tunesmith.checkpoint import is_url
from tunesmith.executors._ray_keep import keep_ray_up
from tunesmith.executors._ray_transfer import (
    CHUNK_BYTES,
    RESTORE,
    chunks,
    make_staging,
    receive_folder,
    remove_empty_staging,
    trial_files,
    under_staging_root,
)
from tunesmith.executors._ray_transfer import staging_dir as _staging_dir
from tunesmith.executors._wire import CHUNK, DONE, ENDING, FILE, OUTPUT, RESULTS

HEARTBEAT_S = 0.5  # the long poll returns at least this often: a live actor answers, a dead one cannot
BATCH = 4096  # results per message at most
MAX_QUEUED_ROWS = 65536  # a trial reporting faster than the driver reads waits here (bounded memory)
LOG_BYTES = 1 << 20  # of a node-local output.log read per long poll (the rest at the next)


class _ActorChannel:
    """The trial's side of the link to the driver, for ``tunesmith.executors._worker._run_trial``: results are
    buffered here and taken by the driver's long poll (:meth:`take`); decisions and stops are put here by
    the actor's other methods. Thread-safe: the trial's thread and Ray's method threads share it."""

    def __init__(self) -> None:
        self.cv = threading.Condition()
        self.rows: list[tuple[Any, ...]] = []
        self.out: list[tuple[Any, ...]] = []  # messages ready for the driver, in order
        self.queued_rows = 0
        self.queued_bytes = 0
        self.trial_id = -1
        self.stopped = False
        self.stopped_outside = False  # a stop not decided on the trial's results came (``_worker._Channel``'s)
        # stops that came for a trial before its run() reset the channel for it (the actor's methods run in threads of
        # their own, in any order): trial -> whether one came from outside its results; taken by that reset
        self.early_stops: dict[int, bool] = {}
        self.decision: tuple[bool, int | None] | None = None
        self.ship_to: str | None = None  # the driver's checkpoints folder, when checkpoints must be sent
        self.upload_to: str | None = None  # the trial's checkpoints URL, with RayBackend(storage=...)
        self.last_shipped: str | None = None
        self.keep: str | None = None  # a staging folder that must not be deleted (the restore checkpoint)
        self.chunk_bytes = CHUNK_BYTES
        self.on_finish: Callable[[], None] | None = None
        self.log: str | None = None  # the node-local output.log whose new bytes go to the driver
        self.log_fd: int | None = None  # open once the trial has printed
        self.log_at = 0  # how much of it was sent
        self.files_from: str | None = None  # the node-local folder whose files the trial's end sends
        self.polls = 0  # the driver's long polls begun (each sent once it had the answer to the one before)

    def reset(self, trial_id: int, ship_to: str | None, keep: str | None, chunk_bytes: int = CHUNK_BYTES,
              upload_to: str | None = None, on_finish: Callable[[], None] | None = None,
              log: str | None = None, files_from: str | None = None) -> None:
        """Ready for the next trial. ``log``: its output.log on this node when the driver's folder is on another
        (only what is written from now on is sent: a file left by a run whose actor was killed was sent then or
        is lost with it). ``files_from``: its node-local folder, whose files its end sends to the driver."""
        with self.cv:
            self.files_from = files_from
            self._close_log_locked()
            self.log = log
            try:
                self.log_at = os.path.getsize(log) if log is not None else 0
            except OSError:
                self.log_at = 0
            self.on_finish = on_finish
            self.upload_to = upload_to
            self.chunk_bytes = chunk_bytes
            self.rows, self.out = [], []
            self.queued_rows = self.queued_bytes = 0
            self.trial_id = trial_id
            outside = self.early_stops.pop(trial_id, None)
            self.early_stops.clear()  # any other is for a trial that ended
            self.stopped, self.stopped_outside = outside is not None, bool(outside)
            self.decision = None
            self.ship_to = ship_to
            self.last_shipped = None
            self.keep = keep

    # trial thread ----------------------------------------------------------------------------------
    def send_result(self, row: tuple[Any, ...], wait: bool) -> Any:
        if row[4] is not None and self.upload_to is not None:
            row = self._upload(row)
        elif row[4] is not None and self.ship_to is not None:
            row = self._ship(row)
        with self.cv:
            while self.queued_rows >= MAX_QUEUED_ROWS and not self.stopped:
                self.cv.wait(HEARTBEAT_S)
            self.rows.append(row)
            self.queued_rows += 1
            if wait or len(self.rows) >= BATCH or row[4] is not None:
                self._flush_locked(wait)
            self.cv.notify_all()
            if not wait:
                if row[4] is not None:
                    self._delivered_locked(self.out[-1])
                return None
            while True:
                if self.stopped:
                    return False, None
                if self.decision is not None:
                    decision, self.decision = self.decision, None
                    return decision[0] and not self.stopped, decision[1]
                self.cv.wait()

    def _delivered_locked(self, msg: tuple[Any, ...]) -> None:
        """Wait until the driver has ``msg`` (a result naming a checkpoint), as a local worker's write into its pipe
        does: an actor killed right after must not take it along (the retry restores the checkpoint). Taken by a long
        poll is not enough (its answer may die with the process): the driver's next poll, sent once it has the answer,
        tells it came."""
        while any(m is msg for m in self.out):
            self.cv.wait(HEARTBEAT_S)
        taken_by = self.polls
        while self.polls <= taken_by:
            self.cv.wait(HEARTBEAT_S)

    def begin(self, trial_id: int) -> None:
        """``_run_trial`` starts the trial: the channel is its since ``reset``, with any stop that came since (or
        before, ``early_stops``), which is kept."""

    def stop_requested(self) -> bool:
        return self.stopped

    def ending(self) -> None:
        """As ``_worker._Channel.ending``: rank 0 returned, the other ranks have their time to return."""
        with self.cv:
            self._flush_locked(False)
            self.out.append((ENDING, self.trial_id))
            self.cv.notify_all()

    def finish(self, status: str, tb: str | None, retire: bool = False) -> None:
        """The trial's end, after what it reported. ``retire``: this actor ran rank 0 of a trial run as several
        ranks (torch.distributed's state stays in the process): the driver kills it instead of reusing it."""
        # everything it printed (the output was drained before this) goes ahead of its end, in bounded pieces
        while True:
            with self.cv:
                while self.queued_bytes >= self.chunk_bytes:
                    self.cv.wait(HEARTBEAT_S)
                if not self._read_log_locked():
                    self._close_log_locked()
                    self.log = None
                    break
                self.cv.notify_all()
        files_from, self.files_from = self.files_from, None
        sent = self._send_files(files_from) if files_from is not None else []
        with self.cv:  # taken by the driver, every piece: only then are the node's copies let go (an actor
            while self.queued_bytes > 0:  # killed before, e.g. past a stop's grace period, leaves them there)
                self.cv.wait(HEARTBEAT_S)
        if files_from is not None:
            _remove_sent(files_from, sent)
        # before the driver hears of the end: a retry it starts at once may use the same staging folder
        on_finish, self.on_finish = self.on_finish, None
        if on_finish is not None:
            on_finish()
        with self.cv:
            self._flush_locked(False)
            self.out.append((DONE, self.trial_id, status, tb, True) if retire else (DONE, self.trial_id, status, tb))
            self.cv.notify_all()

    def _read_log_locked(self) -> int:
        """Queue what the trial's node-local output.log gained since the last read (at most ``LOG_BYTES``) for
        the driver; how many bytes. A log that cannot be read (not yet created: nothing printed) gives 0."""
        if self.log is None:
            return 0
        try:
            if self.log_fd is None:
                self.log_fd = os.open(self.log, os.O_RDONLY | os.O_NOFOLLOW)
            data = os.pread(self.log_fd, LOG_BYTES, self.log_at)
        except OSError:
            return 0
        if data:
            self._flush_locked(False)  # results before it stay before it
            self.out.append((OUTPUT, self.trial_id, data))
            self.log_at += len(data)
            self.queued_bytes += len(data)
        return len(data)

    def _close_log_locked(self) -> None:
        if self.log_fd is not None:
            os.close(self.log_fd)
            self.log_fd = None

    def _flush_locked(self, waiting: bool) -> None:
        if self.rows:
            self.out.append((RESULTS, self.trial_id, self.rows, waiting))
            self.rows = []

    def _ship(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        """Queue the checkpoint folder ``row[4]`` for the driver, in chunks, behind the rows before it; the
        row then names the folder the driver will have. Waits while more than a chunk is queued."""
        src: str = row[4]
        assert self.ship_to is not None
        dest = os.path.join(self.ship_to, os.path.basename(src))
        for rel, offset, data in chunks(src, self.chunk_bytes):
            with self.cv:
                while self.queued_bytes >= self.chunk_bytes:  # bounded, stopped or not
                    self.cv.wait(HEARTBEAT_S)
                self._flush_locked(False)
                self.out.append((CHUNK, self.trial_id, dest, rel, offset, data))
                self.queued_bytes += len(data)
                self.cv.notify_all()
        self._sent(src)
        return (*row[:4], dest)

    def _send_files(self, folder: str) -> list[str]:
        """Queue the files the trial wrote in ``folder`` (:func:`trial_files`) for the driver, in pieces of at
        most a chunk, waiting while more than a chunk is queued; return those queued whole (a file that cannot
        be read is not sent, and stays)."""
        sent = []
        for rel in trial_files(folder):
            path = os.path.join(folder, rel)
            try:
                with open(path, "rb", opener=_no_follow) as f:
                    mode = os.fstat(f.fileno()).st_mode & 0o777  # its permission bits go with it
                    offset = 0
                    while True:
                        data = f.read(self.chunk_bytes)
                        last = len(data) < self.chunk_bytes
                        with self.cv:
                            while self.queued_bytes >= self.chunk_bytes:
                                self.cv.wait(HEARTBEAT_S)
                            self._flush_locked(False)
                            self.out.append((FILE, self.trial_id, rel, offset, data, last, mode))
                            self.queued_bytes += len(data)
                            self.cv.notify_all()
                        offset += len(data)
                        if last:
                            break
                sent.append(path)
            except OSError:
                continue  # unreadable (or gone): it stays where it is
        return sent

    def _upload(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        """Upload the checkpoint folder ``row[4]`` to the trial's storage URL (before the row is queued, so
        the driver never hears of a checkpoint that is not there); the row then names its URL."""
        from tunesmith.checkpoint import upload

        src: str = row[4]
        assert self.upload_to is not None
        dest = self.upload_to + "/" + os.path.basename(src)
        upload(src, dest)
        self._sent(src)
        return (*row[:4], dest)

    def _sent(self, src: str) -> None:
        """The staging copy of the checkpoint sent before ``src`` is no longer needed (the trial restores from
        its latest, ``src``, which stays until the next one is sent)."""
        if self.last_shipped is not None and self.last_shipped not in (src, self.keep):
            shutil.rmtree(self.last_shipped, ignore_errors=True)
        self.last_shipped = src

    # driver's calls, from Ray's method threads -----------------------------------------------------------
    def take(self, timeout: float) -> list[tuple[Any, ...]]:
        with self.cv:
            self.polls += 1  # the driver has the answer to its previous poll (``_delivered_locked``)
            self.cv.notify_all()
            if not self.out and not self.rows:
                self.cv.wait(timeout)
            self._read_log_locked()  # what it printed meanwhile, as it runs
            self._flush_locked(False)
            msgs, size, n = [], 0, 0
            for msg in self.out:
                if msg[0] in (CHUNK, OUTPUT, FILE):
                    data = msg[2] if msg[0] == OUTPUT else msg[5] if msg[0] == CHUNK else msg[4]
                    if size and size + len(data) > self.chunk_bytes:
                        break
                    size += len(data)
                elif msg[0] == RESULTS:
                    self.queued_rows -= len(msg[2])
                msgs.append(msg)
                n += 1
            del self.out[:n]
            self.queued_bytes -= size
            self.cv.notify_all()
            return msgs

    def decide(self, trial_id: int, cont: bool, next_decision: int | None) -> None:
        with self.cv:
            if trial_id == self.trial_id:
                self.decision = (cont, next_decision)
                self.cv.notify_all()

    def stop(self, trial_id: int, on_result: bool = False) -> None:
        """``on_result``: the driver decided the stop on one of the trial's results (``Executor.stop_on_result``)."""
        with self.cv:
            if trial_id == self.trial_id:
                self.stopped = True
                if not on_result:
                    self.stopped_outside = True
                self.cv.notify_all()
            else:  # for the trial whose run() has not reset the channel yet (or a stale one, dropped at that reset)
                self.early_stops[trial_id] = self.early_stops.get(trial_id, False) or not on_result


class _TrialActor:
    """One Ray actor: runs one trial at a time (in its own thread), reused for the next trial with the same
    resources. Created as a threaded actor so that ``events``, ``decide`` and ``stop`` run while the trial
    does."""

    def __init__(self) -> None:
        import ray

        keep_ray_up()
        self.channel = _ActorChannel()
        self.functions: dict[str, Any] = {}
        from tunesmith.executors._worker import _Output

        self.output = _Output()
        self.node_id = ray.get_runtime_context().get_node_id()
        self.thread: threading.Thread | None = None

    def run(self, spec: dict[str, Any], fn_ref: list[Any], restore_files: list[Any] | None) -> dict[str, Any]:
        """Start the trial in a thread; return where it runs. The restore checkpoint, when it has to come
        from the driver, is written here first, so the driver can drop its copy when this returns."""
        import ray

        from tunesmith import _signing

        spec = dict(spec)
        signing_key = spec.pop("signing_key")
        _signing.use(signing_key)  # the driver's key signs what this trial writes
        storage = spec.pop("storage")  # this trial's checkpoints URL, with RayBackend(storage=...)
        restore_error = spec.pop("restore_error", None)  # the driver could not send the restore checkpoint
        remote = spec["driver_node"] != self.node_id and not spec["shared_storage"]
        driver_trial_dir, driver_restore = spec["trial_dir"], spec["restore"]
        driver_ckpts = os.path.join(spec["trial_dir"], "checkpoints")
        # a node-local folder for checkpoints on their way to the driver or to the storage URL
        stage = _staging_dir(self.node_id, spec["trial_dir"]) if remote or storage else None
        keep = None
        group = None
        try:
            if stage is not None:
                make_staging(stage)
            if restore_error is not None:
                from tunesmith.checkpoint import CheckpointError

                raise CheckpointError(restore_error)
            sys_path = spec.pop("sys_path")
            for p in reversed(sys_path):
                if p not in sys.path:
                    sys.path.insert(0, p)
            if remote:
                spec["trial_dir"] = stage
            if stage is not None:
                spec["checkpoint_dir"] = os.path.join(stage, "checkpoints")
            if is_url(spec["restore"]):
                from tunesmith.checkpoint import download

                assert stage is not None  # a URL restore means storage=, which stages

                os.makedirs(os.path.join(stage, RESTORE), exist_ok=True)
                keep = spec["restore"] = download(spec["restore"], os.path.join(stage, RESTORE))
            elif remote and spec["restore"] is not None and restore_files is not None:
                assert stage is not None  # remote: staged
                keep = spec["restore"] = receive_folder(restore_files, os.path.join(stage, RESTORE),
                                                        os.path.basename(spec["restore"]))
            fn = self.functions.get(spec["fn_key"])
            if fn is None:
                with importing("the training function's module (in a Ray actor, to load the function)"):
                    fn = self.functions[spec["fn_key"]] = ray.get(fn_ref[0])
            if spec.get("ranks") is not None:  # ranks 1..N-1 on the other bundles of this actor's group
                from tunesmith.executors._ray_ranks import RayRankGroup

                group = RayRankGroup({**spec, "sys_path": sys_path}, self.channel, fn_ref, restore_files,
                                     node_id=self.node_id, driver_node=spec["driver_node"],
                                     shared_storage=spec["shared_storage"], driver_trial_dir=driver_trial_dir,
                                     driver_restore=driver_restore, signing_key=signing_key)
        except BaseException:  # noqa: BLE001 - reported as the trial's failure; the actor lives on
            self.channel.reset(spec["trial_id"], None, None,
                               on_finish=None if stage is None else lambda: _remove_staging(stage))
            self.channel.finish("error", "could not start the trial in its Ray actor:\n" + traceback.format_exc())
            return {"node": self.node_id, "pid": os.getpid()}
        self.channel.reset(spec["trial_id"], driver_ckpts if remote and not storage else None, keep,
                           spec["chunk_bytes"], upload_to=storage,
                           on_finish=None if stage is None else lambda: _remove_staging(stage),
                           log=os.path.join(stage, OUTPUT_LOG) if remote and stage is not None else None,
                           files_from=stage if remote and spec["sync_trial_files"] else None)
        self.thread = threading.Thread(target=self._run, args=(spec, fn, group), name="tunesmith-trial", daemon=True)
        self.thread.start()
        return {"node": self.node_id, "pid": os.getpid()}

    def _run(self, spec: dict[str, Any], fn: Any, group: Any) -> None:
        from tunesmith.executors._worker import _run_trial

        _run_trial(spec, fn, self.channel, self.output, group=group)

    def events(self, timeout: float) -> list[tuple[Any, ...]]:
        return self.channel.take(timeout)

    def decide(self, trial_id: int, cont: bool, next_decision: int | None) -> None:
        self.channel.decide(trial_id, cont, next_decision)

    def stop(self, trial_id: int, on_result: bool = False) -> None:
        self.channel.stop(trial_id, on_result)


def _remove_sent(folder: str, sent: list[str]) -> None:
    """The files ``sent`` to the driver go from the node, then the folders in ``folder`` they leave empty."""
    for path in sent:
        with contextlib.suppress(OSError):
            os.remove(path)
    for root, _dirs, _names in os.walk(folder, topdown=False):
        if root != folder:
            with contextlib.suppress(OSError):
                os.rmdir(root)  # emptied (a folder that still holds something stays)


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)


def _remove_staging(stage: str) -> None:
    """Every checkpoint of the trial was read for the driver (queued in memory) or uploaded to the
    storage, and its output.log was read for the driver: the staging copies can go, and the folder with them
    when the trial left nothing else there (files it wrote itself stay: they are the user's). Only a staging folder
    below this user's private root, with no link on the way (``under_staging_root``): nothing is removed elsewhere."""
    if not under_staging_root(stage):
        return
    shutil.rmtree(os.path.join(stage, "checkpoints"), ignore_errors=True)
    shutil.rmtree(os.path.join(stage, RESTORE), ignore_errors=True)  # (a restore/ of the trial's own stays)
    try:
        os.remove(os.path.join(stage, OUTPUT_LOG))
    except OSError:
        pass  # nothing printed, or the trial ran on the driver's node (only its checkpoints were staged)
    remove_empty_staging(stage)  # (not empty: the trial wrote files of its own there)
