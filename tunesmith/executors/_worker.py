"""A long-lived worker process: runs one trial at a time for the local executor.

Forked by the fork server (``tunesmith.executors._forkserver``, on Linux), or started the plain way as
``python -m tunesmith.executors._worker FD DRIVER_PID``, with one end of a socket pair: that process forks the
worker on Linux and keeps it (``keep``), as the fork server keeps its own. It never imports the driver's
``__main__``: the training function arrives cloudpickled. It dies with its parent, the fork server or the
keeper (Linux parent-death signal; they die with the driver), also when the driver is killed with SIGKILL.
It is a child subreaper: processes a trial started, daemons included, stay its descendants, and are killed
when the trial ends; when the worker itself is killed they pass to its parent (a subreaper too), which
kills them, and kills everything before it exits.

A trial runs in its own folder (the trial's folder) unless the run said otherwise, with the driver's
working directory in ``TUNESMITH_ORIG_WORKING_DIR`` and still first on ``sys.path``.

Messages: pickled tuples over the socket (both ends are our own processes), tagged as
``tunesmith.executors._wire`` says.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import os
import pickle
import select
import signal
import sys
import threading
import time
import traceback
from collections import deque
from multiprocessing.connection import Connection
from typing import Any, NoReturn

from tunesmith._errors import ConfigError
from tunesmith._importing import importing
from tunesmith._safe_write import open_log as _open_log
from tunesmith.executors._base import CONFIG_ERROR
from tunesmith.executors._procs import (
    become_subreaper,
    die_with_parent,
    flush_quietly,
    kill_children,
    make_folder,
    standard_fds,
)
from tunesmith.executors._wire import DECIDE, DONE, ENDING, EXIT, HEARTBEAT, READY, RESULTS, RUN, STOP

HEARTBEAT_S = 0.5
BATCH = 1024  # results per message at most
COALESCE_S = 0.002  # a result waits at most this long for others to share its message
# report() and should_stop() look for a stop message at most this often (a syscall each time). Far above
# Python's switch interval (sys.getswitchinterval()) on purpose: a thread that gives the GIL up and takes it
# back more often than that starves the others (a waiting thread asks for the GIL only after a whole interval
# with no switch), and a trial training in Python that asked every millisecond kept the flusher from sending
# its results at all.
STOP_CHECK_S = 0.05
# While results or trial ends came within ACTIVE_S, the flusher ticks every COALESCE_S and a new result needs no
# wake-up call (a thread switch per trial, some 15% of a no-op trial's cost); beyond, it waits to be woken.
ACTIVE_S = 0.05


class _Channel:
    """Batches results to the driver from the trial's thread; a flusher thread sends what waits and a
    heartbeat when idle. Control messages are read by the trial's thread only."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.buf: list[tuple[Any, ...]] = []
        self.trial_id = -1
        self.stopped = False
        # a stop came that the driver did not decide on one of the trial's results (the time limit, the dashboard, the
        # experiment's end): the other ranks of a trial run as several are ended at once (``_local_ranks``)
        self.stopped_outside = False
        self.inbox: deque[tuple[Any, ...]] = deque()
        self.last_send = time.monotonic()
        self.wake = threading.Event()
        self.active = 0.0  # when a result was last buffered or a trial ended (lock held)
        self.ticking = False  # the flusher ticks every COALESCE_S: no wake needed (lock held to change)
        # one poll object for the life of the worker: a stop check costs one cheap syscall, made at most
        # every STOP_CHECK_S (a trial reporting in a tight loop would otherwise pay one per report)
        self._next_check = 0.0
        self._poller = select.poll()
        self._poller.register(conn.fileno(), select.POLLIN)
        threading.Thread(target=self._flusher, name="tunesmith-flusher", daemon=True).start()

    # trial thread ----------------------------------------------------------------------------------
    def send_result(self, row: tuple[Any, ...], wait: bool) -> Any:
        with self.lock:
            self.buf.append(row)
            n = len(self.buf)
            if wait or n >= BATCH or row[4] is not None:
                self._flush_locked(waiting=wait)
                n = 0
            if n == 1:
                self.active = time.monotonic()
            wake = n == 1 and not self.ticking
        if wake:
            self.wake.set()
        if wait:
            return self._wait_decision()
        return None

    def stop_requested(self) -> bool:
        if not self.stopped:
            now = time.monotonic()
            if now >= self._next_check:
                self._next_check = now + STOP_CHECK_S
                if self._poller.poll(0):
                    self._read_control()
        return self.stopped

    def begin(self, trial_id: int) -> None:
        """The trial ``trial_id`` starts: no stop yet (this worker's thread reads every STOP, after this)."""
        self.trial_id = trial_id
        self.stopped = self.stopped_outside = False

    def stopped_from_outside(self) -> bool:
        """Whether a stop from outside the trial's results came (``stopped_outside``), read now if a message waits: also
        after a stop on a result, which ``stop_requested`` no longer reads past."""
        if not self.stopped_outside and self._poller.poll(0):
            self._read_control()
        return self.stopped_outside

    def _read_control(self) -> None:
        while self.conn.poll():
            msg = self.conn.recv()
            if msg[0] == STOP and msg[1] == self.trial_id:
                self._stop(msg)
            else:
                self._not_for_this_trial(msg)

    def _stop(self, msg: tuple[Any, ...]) -> None:
        """This trial's STOP (``_wire``: whether the driver decided it on one of the trial's results)."""
        self.stopped = True
        if not msg[2]:
            self.stopped_outside = True

    def read_waiting(self) -> None:
        """Between trials: read what came (one poll), so that a STOP for a trial still in the inbox drops it."""
        if self._poller.poll(0):
            self._read_control()

    def _not_for_this_trial(self, msg: tuple[Any, ...]) -> None:
        """A message read during a trial that is not about it: a STOP for a trial waiting in the inbox drops that
        trial; a DECIDE (or a STOP) for an earlier trial is stale; anything else (the next trial's RUN, sent
        ahead) waits in the inbox."""
        if msg[0] == STOP:
            self._drop_waiting(msg[1])
        elif msg[0] != DECIDE:
            self.inbox.append(msg)

    def _drop_waiting(self, trial_id: int) -> None:
        """A STOP for a trial that is not running: if it waits in the inbox (handed ahead by the driver), it is
        dropped unstarted and its end sent now; otherwise the STOP is stale (for a trial already ended)."""
        for msg in self.inbox:
            if msg[0] == RUN and msg[1]["trial_id"] == trial_id:
                self.inbox.remove(msg)
                with self.lock:
                    self.conn.send((DONE, trial_id, "stopped", None, []))
                return

    def _wait_decision(self) -> tuple[bool, int | None, Any]:
        """(continue, the next decision point, the decision plan from it)."""
        while True:
            msg = self.conn.recv()
            if msg[0] == DECIDE and msg[1] == self.trial_id:
                return (msg[2] and not self.stopped), msg[3], msg[4]
            if msg[0] == STOP and msg[1] == self.trial_id:
                self._stop(msg)
                return False, None, None
            self._not_for_this_trial(msg)

    def ending(self) -> None:
        """Rank 0 of this trial returned and its other ranks have their time to return (after what it reported):
        a stop the driver decides on one of its results leaves them that time (``_ranks.ends_by``)."""
        with self.lock:
            self._flush_locked(waiting=False)
            self.conn.send((ENDING, self.trial_id))
            self.last_send = time.monotonic()

    def finish(self, status: str, tb: str | None, retire: bool = False) -> None:
        """The trial's end, after what it reported. The results not sent yet travel with the end: one message,
        so the driver stores a short trial's results and its end in one transaction (two messages could reach
        it in two batches). ``retire``: this worker exits now (it ran rank 0 of a trial run as several ranks):
        the driver gives it no further trial, and kills what is left of it."""
        with self.lock:
            rows, self.buf = self.buf, []
            self.conn.send((DONE, self.trial_id, status, tb, rows, True) if retire
                           else (DONE, self.trial_id, status, tb, rows))
            self.last_send = self.active = time.monotonic()

    # both threads, lock held -----------------------------------------------------------------------
    def _flush_locked(self, waiting: bool) -> None:
        if self.buf:
            self.conn.send((RESULTS, self.trial_id, self.buf, waiting))
            self.buf = []
            self.last_send = time.monotonic()

    # flusher thread --------------------------------------------------------------------------------
    def _flusher(self) -> None:
        while True:
            if self.ticking:
                time.sleep(COALESCE_S)
            elif self.wake.wait(HEARTBEAT_S / 2):
                self.wake.clear()
                time.sleep(COALESCE_S)
            try:
                with self.lock:
                    now = time.monotonic()
                    if self.buf:
                        self._flush_locked(waiting=False)
                    elif now - self.last_send >= HEARTBEAT_S:
                        self.conn.send((HEARTBEAT,))
                        self.last_send = now
                    # decided with the lock held: a result buffered after this sees it and wakes us if we stopped
                    self.ticking = now - self.active < ACTIVE_S
            except OSError:
                os._exit(0)  # the driver is gone


class _Output:
    """Where a trial's prints go: during a trial, file descriptors 1 and 2 are a pipe that a thread copies
    into the trial's ``output.log``, created on the first byte (a trial that prints nothing costs no file,
    which matters when trials are short: a file creation can take a millisecond); between trials they are
    the process's own stdout and stderr again. Output of C code and subprocesses is captured too (it is
    the descriptors that change, not only ``sys.stdout``).

    What a trial does with ``sys.stdout``/``sys.stderr`` (and ``sys.__stdout__``/``sys.__stderr__``) is undone
    when it ends: a stream it replaced (by a file, None, anything), or one of the process's own that it closed
    (a new one is made on the same descriptor), is the process's own again for the next trial."""

    _NAMES = (("stdout", 1), ("stderr", 2), ("__stdout__", 1), ("__stderr__", 2))

    def __init__(self) -> None:
        self.base = (os.dup(1), os.dup(2))
        self.r, self.w = os.pipe()
        os.set_blocking(self.r, False)
        self.lock = threading.Lock()
        self.path: str | None = None
        self.fd: int | None = None
        # the process's own streams, put back after every trial (``sys.__stdout__`` is None where Python started
        # without a descriptor 1: then it is our stdout too, so that a trial's ``sys.stdout = sys.__stdout__`` prints)
        out, err = sys.stdout, sys.stderr
        self.own: list[Any] = [out, err, sys.__stdout__ or out, sys.__stderr__ or err]
        self._put_back()
        threading.Thread(target=self._pump, name="tunesmith-output", daemon=True).start()

    def start(self, path: str) -> None:
        flush_quietly(sys.stdout)  # the process's own (``end`` put them back): what they hold is not the trial's
        flush_quietly(sys.stderr)
        with self.lock:
            self.path = path
            _dup2(self.w, 1)
            _dup2(self.w, 2)

    def end(self) -> None:
        """Back to the process's stdout/stderr, once everything the trial printed is in its file. Never raises,
        whatever the trial did to its streams: its end (and its results) must reach the driver."""
        flush_quietly(sys.stdout)  # the trial's (closed, broken, None: what it held is lost, the descriptors are not)
        flush_quietly(sys.stderr)
        for i, (name, _) in enumerate(self._NAMES):
            if getattr(sys, name, None) is not self.own[i]:  # replaced: what the trial printed before is its too
                flush_quietly(self.own[i])
        with self.lock:  # not while the copying thread opens the trial's file: that takes a number too
            _dup2(self.base[0], 1)
            _dup2(self.base[1], 2)
        self._put_back()  # after the descriptors: a stream made anew here needs descriptor 1 or 2 open
        with self.lock:
            self._drain()  # written before the switch: it is in the pipe now
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
            self.path = None

    def _put_back(self) -> None:
        """``sys.stdout``, ``sys.stderr``, ``sys.__stdout__``, ``sys.__stderr__``: the process's own again, whatever
        a trial put there (a file, None, anything); one of its own that a trial closed is replaced by a new one on
        the same descriptor. No system call unless a stream was closed: a usual trial leaves them as they were."""
        own = self.own
        for i, (name, fd) in enumerate(self._NAMES):
            stream = own[i]
            if _closed(stream):
                new = _reopened(stream, fd)
                own[:] = [new if s is stream else s for s in own]  # sys.stdout is sys.__stdout__: both, the new one
                stream = new
            if getattr(sys, name, None) is not stream:
                setattr(sys, name, stream)

    def _pump(self) -> None:
        poller = select.poll()
        poller.register(self.r, select.POLLIN)
        while True:
            poller.poll()
            with self.lock:
                self._drain()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.r, 1 << 16)
            except BlockingIOError:
                return
            if not data:
                return
            self._write(data)

    def _write(self, data: bytes) -> None:
        if self.path is not None and self.fd is None:
            try:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                self.fd = _above_std(_open_log(self.path))
            except OSError:
                self.path = None  # e.g. the disk is full: to the worker's own output instead
        # between trials: output of a subprocess the last trial left running
        target = self.fd if self.fd is not None else self.base[0]
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(target, view):]
            except OSError:
                return  # nowhere to write (disk full, stdout closed): dropped, the trial goes on


def _dup2(fd: int, target: int) -> None:
    """``os.dup2``, again while Linux answers EBUSY: another thread of the trial is opening a file that took
    ``target``'s number (the trial closed 1 or 2); the open completes, and ``target`` is then ours."""
    while True:
        try:
            os.dup2(fd, target)
            return
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise


def _above_std(fd: int) -> int:
    """``fd`` moved above 0-2, where a trial that closed its standard descriptors let a new file land: the
    worker puts its own stdout and stderr back on 1 and 2 when the trial ends, which would close that file."""
    if fd > 2:
        return fd
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    os.close(fd)
    return moved


def _closed(stream: Any) -> bool:
    """Whether one of the process's own streams can no longer be written (a trial closed it), or is none."""
    try:
        return stream is None or bool(stream.closed)
    except BaseException:  # noqa: BLE001 - no way to tell: a new one
        return True


def _reopened(old: Any, fd: int) -> Any:
    """A new text stream on ``fd`` (never closing it) in place of ``old``, one of the process's own that a trial
    closed: its encoding, errors and buffering where it has them. ``old`` itself where none can be made (no file
    descriptor left): a trial's print() then raises in the trial, which fails it, not the worker."""
    encoding, errors, line_buffering, write_through, buffering = "utf-8", "backslashreplace", True, False, -1
    try:
        encoding, errors = old.encoding, old.errors
        line_buffering, write_through = old.line_buffering, old.write_through
        buffering = 0 if isinstance(old.buffer, io.RawIOBase) else -1  # python -u: unbuffered as it was
    except BaseException:  # noqa: BLE001, S110 - not a TextIOWrapper: the defaults
        pass
    try:
        return io.TextIOWrapper(open(fd, "wb", buffering=buffering, closefd=False), encoding=encoding,  # noqa: SIM115
                                errors=errors, line_buffering=line_buffering, write_through=write_through)
    except BaseException:  # noqa: BLE001 - e.g. EMFILE, an encoding name gone
        return old


def _to_output(text: str) -> None:
    """``text`` on file descriptor 2: during a trial, the pipe into its output.log."""
    flush_quietly(sys.stderr)  # what the trial wrote before comes first (a stream it closed or broke: nothing)
    data = memoryview(text.encode("utf-8", "backslashreplace"))
    try:
        while data:
            data = data[os.write(2, data):]
    except OSError:
        pass  # nowhere to write: the traceback is stored with the trial all the same


def _torch_threads(torch: Any) -> None:
    """torch sizes its pool once, at import: in a worker that imported it for an earlier trial, the count follows
    this trial's (its CPUs, or the user's value), read as torch reads it at import: ``MKL_NUM_THREADS`` over
    ``OMP_NUM_THREADS``, so that a worker's first trial and its later ones agree. Other libraries' pools
    (OpenBLAS, MKL loaded by numpy) keep the size they had when first loaded in this worker."""
    environ = os.environ
    for var in ("MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        try:
            count = int(environ.get(var, ""))
        except ValueError:
            continue  # unset or not a number: torch's import skips it too
        if count < 1:
            continue
        try:
            if torch.get_num_threads() != count:
                torch.set_num_threads(count)
        except (AttributeError, RuntimeError):
            pass  # a torch without the call: left as it is
        return


def _enter(folder: str) -> None:
    """Make ``folder`` the working directory, creating it if needed (``_procs.make_folder``: a mkdir first, then
    the chdir; the folder of a trial handed ahead may have been made by the driver while this worker ran the one
    before, ``LocalBackend._wait``)."""
    make_folder(folder)
    os.chdir(folder)


def _forked_exit(error: BaseException | None, config: dict[str, Any]) -> NoReturn:
    """The end of a process the trial forked (``os.fork()`` without an exec) in which the training function returned
    or raised: it holds a copy of the worker, and must never speak for it (end the trial, run the next): it exits
    at once, 0 for a return or ``sys.exit(0)``, 1 otherwise, after its own prints (and the traceback of an error,
    masked as the trial's own is)."""
    code = 0
    if error is not None:
        code = 0 if isinstance(error, SystemExit) and error.code in (0, None) else 1
        if not isinstance(error, SystemExit):
            from tunesmith._secrets import mask_text, secret_strings

            tb = traceback.format_exc()
            _to_output(mask_text(tb, secret_strings(config)) or tb)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001, S110 - a closed or broken stream: exit all the same
        pass
    os._exit(code)


def _run_trial(spec: dict[str, Any], fn: Any, channel: Any, output: _Output, own_children: bool = False,
               fn_bytes: bytes | None = None, group: Any = None) -> bool:
    """Run one trial. ``own_children``: this process runs nothing but trials (a local worker), so any child
    process left when the trial ends is the trial's, and is killed. A trial with ``spec["ranks"]`` (not None)
    runs here as rank 0, its other ranks in processes started from ``fn_bytes`` (``_local_ranks``), or by
    ``group`` (the same interface: a Ray actor's ranks on the bundles of its placement group, ``_ray_ranks``)."""
    from tunesmith import session
    from tunesmith._layout import OUTPUT_LOG
    from tunesmith.checkpoint import Checkpoint

    trial_id = spec["trial_id"]
    channel.begin(trial_id)
    environ = os.environ
    for key, value in spec["env"].items():
        if environ.get(key) != value:  # a reused worker mostly has them already: a putenv each is a trial's 10%
            environ[key] = value
    if "torch" in sys.modules:
        _torch_threads(sys.modules["torch"])
    try:
        # the experiment's stop rules, evaluated on each result as it is made (cloudpickled: a callable too)
        stop_rules = pickle.loads(spec["stop"]) if spec.get("stop") else None
    except BaseException:  # noqa: BLE001 - e.g. a module the rule needs is not importable here
        channel.finish("error", "could not load the stop rules in the worker:\n" + traceback.format_exc())
        return False
    restore = None
    if spec["restore"] is not None:
        restore = Checkpoint(spec["restore"], iteration=spec["iteration"])
    ranks, saved_env = group, {}
    if ranks is None and spec.get("ranks") is not None and fn_bytes is not None:
        from tunesmith.executors._local_ranks import RankGroup

        ranks = RankGroup(spec, fn_bytes, channel)
    session._session = session._Session(
        trial_id, spec["config"], spec["trial_dir"], spec["resources"] if ranks is None else ranks.share(), channel,
        spec["iteration"], spec["decision_iteration"], restore, spec["time_offset"], spec.get("checkpoint_dir"),
        stop_rules, world_size=1 if ranks is None else ranks.world, plan=spec.get("decision_plan"),
        held_checkpoints=spec.get("held_checkpoints") or ())
    output.start(os.path.join(spec["trial_dir"], OUTPUT_LOG))
    status, tb = "ok", None
    misconfigured = False  # the function raised a ConfigError: the trial ends CONFIG_ERROR, which is not retried
    try:  # restored after the trial, whether it ran in its own folder or moved itself elsewhere
        home: str | None = os.getcwd()
    except OSError:
        home = None  # the working directory is gone: the trial's chdir, if any, is not undone
    pid = os.getpid()
    try:
        if ranks is not None:  # their output goes where rank 0's goes now: the trial's output.log
            ranks.start()
            env0 = ranks.rank0_env()  # its rendezvous, and its thread variables sized from its share
            saved_env = {k: os.environ.get(k) for k in env0}
            os.environ.update(env0)
            if "torch" in sys.modules:
                _torch_threads(sys.modules["torch"])
        if spec.get("chdir", False):
            # its own working folder: relative paths written by concurrent trials cannot collide
            _enter(spec["trial_dir"])
        try:
            out = fn(spec["config"]) if spec["takes_config"] else fn()
        except BaseException as e:
            if os.getpid() != pid:
                _forked_exit(e, spec["config"])
            raise
        if os.getpid() != pid:
            _forked_exit(None, spec["config"])
        if isinstance(out, dict) and not channel.stopped:
            session._session.report(out, None)
    except session.StopTrial:
        status = "stopped"
    except BaseException as e:  # noqa: BLE001 - the trial's failure is reported, the worker lives on
        status, tb, misconfigured = "error", traceback.format_exc(), isinstance(e, ConfigError)
        from tunesmith._secrets import mask_text, secret_strings

        # into its output.log after what it printed, as a script's on its terminal; what tunesmith writes there
        # shows no secret of the config (the stored error keeps the text as raised, masked where it is shown)
        _to_output(mask_text(tb, secret_strings(spec["config"])) or tb)
    finally:
        if session._session is not None and session._session.end_hooks:
            session.run_end_hooks(session._session)  # before its children are ended (session.at_trial_end)
        if ranks is not None:
            # rank 0 returned after a stop the driver decided on one of its results (its ``done``, a stop rule), or a
            # stop on the result it just reported ended it there (``_rank0_end``): the others have their time to return
            # too; after any other stop (a pause, an exploit), they are ended at once
            failed = ranks.end(_rank0_end(status, channel, session._session))
            if failed is not None:  # a rank's failure is the trial's, whatever rank 0 did after it
                status, tb, misconfigured = "error", failed + (f"\n\nrank 0 then failed:\n{tb}" if tb else ""), False
            for key, old in saved_env.items():  # a later trial on this worker must not see this one's ranks
                if old is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = old
        session._session = None
        if home is not None:
            try:
                os.chdir(home)
            except OSError:
                os.chdir("/")  # the folder it came from is gone
        if own_children:
            kill_children()  # before its end is reported: nothing it started outlives it
        output.end()
    if channel.stopped and status == "ok":
        status = "stopped"
    # a process that ran rank 0 keeps torch.distributed's process group (and a GPU's collective state): it
    # runs no further trial
    channel.finish(CONFIG_ERROR if misconfigured else status, tb, retire=ranks is not None)
    return ranks is not None


def _rank0_end(status: str, channel: Any, trial_session: Any) -> str:
    """How rank 0 ended, for its other ranks (``RankGroup.end``): "stopped" (they are ended at once) after a stop from
    outside the trial's results; "ok" (their time to return) when a stop on the result rank 0 just reported ended it
    at that report (a stop rule judged in this trial, a STOP the scheduler's plan promised, the driver's stop
    answering it at a decision point: ``session._Session.stopped_at_result``), as the driver's stop on that result
    would after rank 0 returned; else ``status`` (a pause or an exploit at a decision point: "stopped")."""
    if status != "error" and channel.stopped_outside:
        return "stopped"
    if status == "stopped" and getattr(trial_session, "stopped_at_result", False):
        return "ok"
    return status


def main(fd: int | None = None, parent: int | None = None) -> None:
    """Serve trials over the socket ``fd`` (default: the one named on the command line) until told to
    exit or the driver is gone. ``parent``: the process this worker was started by (the fork server, the
    keeper of a worker started the plain way, or the driver), which it dies with; None: the one it has."""
    die_with_parent()
    conn = Connection(standard_fds(int(sys.argv[1]) if fd is None else fd))
    if os.getppid() == 1 or (parent is not None and os.getppid() != parent):
        return  # our parent died before we could ask to follow it
    become_subreaper()  # what a trial starts stays ours to kill, daemons included
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C and stops us in order
    output = _Output()
    channel = _Channel(conn)
    functions: dict[str, Any] = {}
    fn_bytes: dict[str, bytes] = {}  # as sent: what a trial's other ranks start from
    with channel.lock:
        conn.send((READY, os.getpid()))
    while True:
        try:
            if not channel.inbox:
                channel.inbox.append(conn.recv())
            channel.read_waiting()  # a trial handed ahead may have been stopped before it could start
        except (EOFError, OSError):
            return
        if not channel.inbox:
            continue
        msg = channel.inbox.popleft()
        kind = msg[0]
        if kind == RUN:
            spec = msg[1]
            for p in reversed(spec.get("sys_path", [])):
                if p not in sys.path:
                    sys.path.insert(0, p)
            fn = functions.get(spec["fn_key"])
            if fn is None:
                if spec.get("fn") is not None:  # sent once per worker: kept, to load again if loading it failed
                    fn_bytes[spec["fn_key"]] = spec["fn"]
                try:
                    with importing("the training function's module (in a worker, to load the function)"):
                        fn = functions[spec["fn_key"]] = pickle.loads(fn_bytes[spec["fn_key"]])
                except BaseException:  # noqa: BLE001 - e.g. the function's module is not importable here
                    channel.trial_id = spec["trial_id"]
                    channel.finish("error", "could not load the training function in the worker:\n"
                                   + traceback.format_exc())
                    continue
            if _run_trial(spec, fn, channel, output, own_children=True, fn_bytes=fn_bytes.get(spec["fn_key"])):
                return
        elif kind == EXIT:
            return


def keep(fd: int, driver: int) -> None:
    """A worker started the plain way (``python -m tunesmith.executors._worker FD DRIVER_PID``): this process forks
    the worker and stays its parent, a child subreaper told of the driver's death by a catchable parent-death
    signal, as the fork server is for the workers it forks. When the driver dies (SIGKILL included) it kills the
    worker and everything its trials started, daemons and processes the worker cannot reap yet included
    (``kill_children``); when the worker ends it kills what its trial left, then ends as the worker did (its
    exit code, or the same signal), which is what the driver sees. The worker stays in this process's group,
    which the driver kills to end a worker. Where Linux's parent-death signal or child subreapers are not
    available, the worker runs in this process: a driver SIGKILL then leaves what its trials started."""
    waited = {signal.SIGTERM, signal.SIGCHLD}
    # blocked before the parent-death signal is asked for: it waits, pending, for sigwaitinfo below
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    if not (die_with_parent(signal.SIGTERM) and become_subreaper()):
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        main(fd, parent=driver)
        return
    if os.getppid() != driver:
        return  # the driver died before we could ask to follow it
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C and stops the worker in order
    me = os.getpid()
    worker = os.fork()
    if worker == 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # nothing a trial starts inherits them blocked
        main(fd, parent=me)
        return  # the interpreter's end, as a worker's of its own
    os.close(fd)  # the worker's alone: the driver's end sees it close when the worker ends
    while signal.sigwaitinfo(waited).si_signo != signal.SIGTERM:
        try:
            pid, status = os.waitpid(worker, os.WNOHANG)
        except ChildProcessError:  # not ours to reap: gone without a status
            pid, status = worker, 1 << 8
        if pid == worker:
            kill_children()  # what its trial left, passed to us
            _end_as(os.waitstatus_to_exitcode(status))
    kill_children(timeout=60.0)  # the driver is gone: the worker with everything its trials started
    _end_as(-signal.SIGTERM)


def _end_as(code: int) -> NoReturn:
    """End this process as one that ended with ``code`` (negative: killed by that signal, without a second core
    dump)."""
    if code < 0:
        import resource

        sig = -code
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        with contextlib.suppress(OSError, ValueError):
            signal.signal(sig, signal.SIG_DFL)  # SIGKILL and SIGSTOP have none to set
        with contextlib.suppress(OSError, ValueError):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
            os.kill(os.getpid(), sig)
        os._exit(128 + sig)  # a signal that does not end a process: the shell's code for it
    os._exit(code)


if __name__ == "__main__":
    keep(int(sys.argv[1]), int(sys.argv[2]))
