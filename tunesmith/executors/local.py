"""The local executor: a pool of long-lived worker processes on this machine.

Workers are reused between trials (the training function is sent to each worker once). A trial's
resources are reserved in a :class:`ResourcePool`; its GPUs reach it through ``CUDA_VISIBLE_DEVICES``.
A worker that ran a trial on some GPUs is reused only for trials on the same GPUs, since CUDA reads that
variable once per process. A stopped trial ends at its next ``report()``; if it does not within the
grace period its worker is killed and replaced. A trial that runs longer than ``trial_time_limit_s`` is
stopped the same way and ends in ERROR.
"""

from __future__ import annotations

import itertools
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

import cloudpickle

from tunesmith import _ranks
from tunesmith._errors import ConfigError
from tunesmith.executors import _forkserver, _procs
from tunesmith.executors._base import Done, Event, Executor, Launch, Results, trial_spec
from tunesmith.executors._wire import DECIDE, DONE, EXIT, RESULTS, RUN, STOP
from tunesmith.executors.resources import (
    THREAD_VARS,
    ResourcePool,
    cuda_visible,
    detect_cpus,
    detect_gpus,
    thread_env,
)

log = logging.getLogger("tunesmith")
# a function's name in its workers' cache: one per setup (hashing its bytes loaded OpenSSL at every run's start)
_FN_KEYS = itertools.count()
_MAX_MSGS_PER_WORKER = 256  # per poll, so one chatty trial cannot starve the others


class _Worker:
    __slots__ = ("proc", "conn", "trial_id", "fns", "cuda", "stop_deadline", "last_seen", "limit_at", "over_limit",
                 "readable")

    def __init__(self, proc: subprocess.Popen[bytes] | _forkserver.ForkedProcess, conn: Connection) -> None:
        self.proc = proc
        self.conn = conn
        self.trial_id: int | None = None
        self.fns: set[str] = set()
        self.cuda: str | None = None  # CUDA_VISIBLE_DEVICES this process was first given
        self.stop_deadline: float | None = None
        self.last_seen = time.monotonic()
        self.limit_at: float | None = None  # when the trial's trial_time_limit_s runs out
        self.over_limit: str | None = None  # why the trial was stopped for its time limit: it ends in ERROR
        # whether its socket has more to read now: one poll object for the worker's life, not one per message
        self.readable = select.poll()
        self.readable.register(conn.fileno(), select.POLLIN)


class LocalBackend(Executor):
    """Trials in worker processes on this machine.

    Args:
        total_resources: override what the machine offers, e.g. ``{"cpu": 4, "gpu": 2}`` (GPU ids 0..n-1
            unless ``gpu_ids`` is given). Default: the CPUs this process may use and the GPUs in
            ``CUDA_VISIBLE_DEVICES`` or listed by ``nvidia-smi``.
        gpu_ids: the device ids to hand out.
        grace_period_s: how long a stopped trial has to reach its next ``report()`` before its worker is
            killed.
        trial_timeout_s: a running trial whose worker sends nothing (no result, no heartbeat: workers send
            one every half second, also while the trial computes between reports) for this long is declared
            dead: its worker is killed and the trial fails (and is retried per ``max_failures``).
        start_method: ``"forkserver"`` (default; Linux): workers are forks of one server process that has
            tunesmith imported, started once per driver process and kept for its later runs (a worker is
            ready in milliseconds instead of an interpreter start); elsewhere, or if it cannot start,
            ``"spawn"``: each worker is a fresh ``python -m tunesmith.executors._worker``. Either way a worker
            gets the driver's environment, working directory and output at the moment it starts.
    """

    START_METHODS = ("forkserver", "spawn")

    def __init__(self, total_resources: dict[str, float] | None = None, gpu_ids: list[str] | None = None,
                 grace_period_s: float = 5.0, trial_timeout_s: float | None = None,
                 start_method: str = "forkserver") -> None:
        if start_method not in self.START_METHODS:
            raise ConfigError(f"LocalBackend(start_method={start_method!r}): expected one of "
                              f"{', '.join(map(repr, self.START_METHODS))}")
        self.start_method = start_method
        self.total_resources_arg = total_resources
        self.gpu_ids = gpu_ids
        self.grace_period_s = grace_period_s
        self.trial_timeout_s = trial_timeout_s
        self._pool: ResourcePool | None = None
        self._workers: list[_Worker] = []
        self._by_trial: dict[int, _Worker] = {}
        self._by_conn: dict[Connection, _Worker] = {}
        # the workers' sockets, registered once each (not a new selector per poll: one per event batch)
        self._by_fd: dict[int, _Worker] = {}
        self._poller = select.poll()
        self._fn_key = ""
        self._fn_bytes = b""
        self._takes_config = True
        self._sys_path: list[str] = []
        self._cwd = ""
        self._stop_bytes: bytes | None = None
        self._user_threads: frozenset[str] = frozenset()
        self._pending_events: list[Event] = []

    # -- setup ----------------------------------------------------------------------------------------
    def setup(self, fn: Any, experiment_dir: str) -> None:
        import inspect

        self._fn_bytes = cloudpickle.dumps(fn)
        self._fn_key = f"fn{next(_FN_KEYS)}"
        try:
            self._takes_config = len(inspect.signature(fn).parameters) > 0
        except (TypeError, ValueError):
            self._takes_config = True
        self._cwd = os.getcwd()
        # absolute: a trial runs in its own folder, where a relative entry would name another one
        self._sys_path = [os.path.abspath(p) if p else self._cwd for p in sys.path]
        self._stop_bytes = self.stop_rules.for_trials() if self.stop_rules is not None else None
        self._user_threads = frozenset(var for var in THREAD_VARS if var in os.environ)  # the user's: kept

    def _ensure_pool(self, need_gpus: bool) -> ResourcePool:
        if self._pool is not None and (not need_gpus or self._pool.gpu_ids or self.gpu_ids is not None):
            return self._pool
        total = dict(self.total_resources_arg or {})
        total.setdefault("cpu", float(detect_cpus()))
        gpu_ids = self.gpu_ids
        if gpu_ids is None:
            if "gpu" in total:
                gpu_ids = [str(i) for i in range(int(total["gpu"]))]
            elif need_gpus:
                gpu_ids = detect_gpus()
            else:
                gpu_ids = []
        total["gpu"] = float(len(gpu_ids))
        if self._pool is not None and self._pool.assigned:
            raise RuntimeError("GPU detection after trials started")  # cannot happen: checked at setup
        self._pool = ResourcePool(total, gpu_ids)
        return self._pool

    def total_resources(self) -> dict[str, float]:
        return dict(self._ensure_pool(False).total)

    def check_ranks(self, ranks: int | None) -> None:
        """Any number: the worker runs rank 0, and starts and watches the others (``_local_ranks``)."""

    def check_resources(self, resources: dict[str, float]) -> None:
        pool = self._ensure_pool(resources.get("gpu", 0.0) > 0)
        if resources.get("gpu", 0.0) > 0 and not pool.gpu_ids:
            raise ConfigError(f"resources['gpu'] = {resources['gpu']:g} but no GPU was found (set "
                              f"CUDA_VISIBLE_DEVICES, or check that nvidia-smi works)")
        pool.check(resources)

    # -- trials ---------------------------------------------------------------------------------------
    def try_start(self, launch: Launch) -> bool:
        pool = self._ensure_pool(launch.resources.get("gpu", 0.0) > 0)
        gpus = pool.acquire(launch.trial_id, launch.resources)
        if gpus is None:
            return False
        env = thread_env(launch.resources, self._user_threads | launch.env.keys())
        env.update(launch.env)
        env["TUNESMITH_ORIG_WORKING_DIR"] = self._cwd
        cuda = cuda_visible(gpus) if gpus else None
        rank_cuda = None
        if launch.ranks is not None and cuda is not None:  # the trial's devices (all reserved here), dealt to its ranks
            rank_cuda = [",".join(ids) for ids in _ranks.rank_devices(list(gpus), launch.ranks)]
            cuda = rank_cuda[0]  # the worker runs rank 0
        if cuda is not None:
            env["CUDA_VISIBLE_DEVICES"] = cuda
        worker = self._idle_worker(cuda)
        known = self._fn_key in worker.fns  # the function (and its import path) is sent once per worker
        spec = trial_spec(launch, env=env, fn_key=self._fn_key, takes_config=self._takes_config,
                          sys_path=[] if known else self._sys_path, stop=self._stop_bytes,
                          chdir=self.chdir_to_trial_dir, fn=None if known else self._fn_bytes, rank_cuda=rank_cuda)
        worker.fns.add(self._fn_key)
        if cuda is not None and worker.cuda is None:
            worker.cuda = cuda
        worker.trial_id = launch.trial_id
        worker.stop_deadline = None
        worker.last_seen = time.monotonic()
        worker.limit_at = None if self.trial_time_limit_s is None else worker.last_seen + self.trial_time_limit_s
        worker.over_limit = None
        self._by_trial[launch.trial_id] = worker
        try:
            worker.conn.send((RUN, spec))
        except OSError:
            self._worker_died(worker)
        return True

    def prestart(self) -> None:
        """The first worker: its start (a fork, or an interpreter with ``spawn``) overlaps the store's creation
        instead of following it. It has no CUDA devices pinned yet, so any first trial can take it."""
        if not self._workers:
            self._spawn()

    def _idle_worker(self, cuda: str | None) -> _Worker:
        idle = []
        for w in self._workers:
            if w.trial_id is None:
                if w.proc.poll() is None and not getattr(w.proc, "orphaned", False):
                    idle.append(w)
                else:  # died while idle, or dying with its fork server: not handed a trial to fail
                    self._kill(w)
        for w in idle:
            if w.cuda == cuda or (w.cuda is None and cuda is None):
                return w
        for w in idle:
            if w.cuda is None:  # a fresh or CPU-only worker: CUDA not yet pinned in it
                return w
        if idle:  # every idle worker is pinned to other GPUs: replace one
            self._kill(idle[0])
        return self._spawn()

    def _spawn(self) -> _Worker:
        parent, child = socket.socketpair()
        env = _forkserver.worker_env()
        proc: Any = None
        server = _forkserver.get() if self.start_method == "forkserver" else None
        if server is not None:
            try:
                cwd: str | None = os.getcwd()
            except OSError:
                cwd = None  # the working directory was deleted: the worker keeps the server's
            try:
                proc = server.spawn(child.fileno(), env, cwd)
            except _forkserver.ServerGone as e:
                log.warning("%s; starting this worker the plain way", e)
        if proc is None:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tunesmith.executors._worker", str(child.fileno())],
                pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,  # Ctrl-C reaches the driver only; it stops trials in order
            )
        child.close()
        conn = Connection(parent.detach())
        worker = _Worker(proc, conn)
        self._workers.append(worker)
        self._by_conn[conn] = worker
        self._by_fd[conn.fileno()] = worker
        self._poller.register(conn.fileno(), select.POLLIN)
        return worker

    takes_plans = True  # a worker's session follows the scheduler's plan (session._Plan)

    def decide(self, trial_id: int, cont: bool, next_decision: int | None, plan: tuple[Any, ...] | None = None) -> None:
        worker = self._by_trial.get(trial_id)
        if worker is not None:
            if not cont and worker.stop_deadline is None:  # a stop: one that catches it is killed in time
                worker.stop_deadline = time.monotonic() + self.grace_period_s
            try:
                worker.conn.send((DECIDE, trial_id, cont, next_decision, plan))
            except OSError:
                pass  # its death shows up in poll()

    def stop(self, trial_id: int) -> None:
        worker = self._by_trial.get(trial_id)
        if worker is None or worker.stop_deadline is not None:
            return
        worker.stop_deadline = time.monotonic() + self.grace_period_s
        try:
            worker.conn.send((STOP, trial_id))
        except OSError:
            pass

    def running(self) -> int:
        return len(self._by_trial)

    # -- events ---------------------------------------------------------------------------------------
    def poll(self, timeout: float) -> list[Event]:
        events, self._pending_events = self._pending_events, []
        if self._by_trial:
            deadline = min((t for w in self._by_trial.values() for t in (w.stop_deadline, w.limit_at)
                            if t is not None), default=None)
            if deadline is not None:
                timeout = max(0.0, min(timeout, deadline - time.monotonic()))
        if events:
            timeout = 0.0
        ready = self._poller.poll(timeout * 1000) if self._by_fd else []
        for fd, _ev in ready:
            worker = self._by_fd.get(fd)
            if worker is None:
                continue
            self._drain(worker, events)
        if self.trial_time_limit_s is not None:
            self._enforce_time_limit()
        self._enforce_grace(events)
        if self.trial_timeout_s is not None:
            self._enforce_heartbeat(events)
        return events

    def _enforce_heartbeat(self, events: list[Event]) -> None:
        now = time.monotonic()
        for tid, worker in list(self._by_trial.items()):
            silent = now - worker.last_seen
            if silent > self.trial_timeout_s and worker.stop_deadline is None:  # type: ignore[operator]
                self._finish(worker)
                self._kill(worker)
                events.append(Done(tid, "error", f"no heartbeat from the worker for {silent:.1f}s "
                                   f"(trial_timeout_s={self.trial_timeout_s:g}): hung or stopped; worker killed"))

    def _enforce_time_limit(self) -> None:
        """A trial past its wall-clock limit is stopped (killed after the grace period if it does not end)
        and ends in ERROR: the heartbeat cannot tell a hung trial from a slow one, the clock can."""
        now = time.monotonic()
        for worker in list(self._by_trial.values()):
            if worker.limit_at is not None and now >= worker.limit_at and worker.stop_deadline is None:
                # (a trial already being stopped ends as it was asked to, within its grace period)
                worker.over_limit = (f"the trial ran longer than its limit (trial_time_limit_s="
                                     f"{self.trial_time_limit_s:g}); stopped")
                worker.limit_at = None
                if worker.trial_id is not None:
                    self.stop(worker.trial_id)

    def _drain(self, worker: _Worker, events: list[Event]) -> None:
        conn = worker.conn
        for _ in range(_MAX_MSGS_PER_WORKER):
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                self._worker_died(worker, events)
                return
            kind = msg[0]
            if kind == RESULTS:
                events.append(Results(msg[1], msg[2], msg[3]))
            elif kind == DONE:
                if msg[4]:  # its last results, sent with its end
                    events.append(Results(msg[1], msg[4], False))
                done = Done(msg[1], msg[2], msg[3])
                if worker.trial_id == done.trial_id:
                    if worker.over_limit is not None and done.status != "error":
                        done = Done(done.trial_id, "error", worker.over_limit)
                    self._finish(worker)
                events.append(done)
                if len(msg) > 5 and msg[5]:  # the worker ends itself (it ran rank 0): no trial goes to it
                    self._kill(worker)
                    return
            # READY and HEARTBEAT only prove liveness
            worker.last_seen = time.monotonic()
            if not worker.readable.poll(0):
                return

    def _finish(self, worker: _Worker) -> None:
        tid = worker.trial_id
        if tid is not None:
            self._by_trial.pop(tid, None)
            if self._pool is not None:
                self._pool.release(tid)
        worker.trial_id = None
        worker.stop_deadline = None
        worker.limit_at = None
        worker.over_limit = None

    def _enforce_grace(self, events: list[Event]) -> None:
        now = time.monotonic()
        for tid, worker in list(self._by_trial.items()):
            if worker.stop_deadline is not None and now >= worker.stop_deadline:
                over = worker.over_limit
                log.warning("trial %s did not stop within %.1fs; killing its worker", tid, self.grace_period_s)
                self._finish(worker)
                self._kill(worker)
                if over is not None:
                    events.append(Done(tid, "error", f"{over}, then killed: it did not end within the grace "
                                                     f"period ({self.grace_period_s:g}s)"))
                else:
                    events.append(Done(tid, "stopped", None))

    def _worker_died(self, worker: _Worker, events: list[Event] | None = None) -> None:
        tid = worker.trial_id
        code = worker.proc.poll()
        if code is None:
            try:
                code = worker.proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                code = None
        self._finish(worker)
        self._kill(worker)
        if tid is not None:
            how = (f"killed by signal {signal.Signals(-code).name}" if code is not None and code < 0
                   else f"exit code {code}" if code is not None else "its exit status is unknown")
            event = Done(tid, "error", f"the worker process running this trial died ({how})")
            (events if events is not None else self._pending_events).append(event)

    def _kill(self, worker: _Worker) -> None:
        if worker in self._workers:
            self._workers.remove(worker)
        if self._by_conn.pop(worker.conn, None) is not None:
            fd = worker.conn.fileno()
            self._poller.unregister(fd)
            del self._by_fd[fd]
        try:
            os.killpg(worker.proc.pid, signal.SIGKILL)  # the worker and anything the trial started
        except (ProcessLookupError, PermissionError):
            pass
        try:
            worker.conn.close()
        except OSError:
            pass
        try:
            worker.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def worker_pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers]

    def shutdown(self) -> None:
        for worker in list(self._workers):
            try:
                worker.conn.send((EXIT,))
            except OSError:
                pass
        _wait_exited([w.proc for w in self._workers if w.trial_id is None], 2.0)
        for worker in list(self._workers):
            self._kill(worker)
        self._by_trial.clear()


def _wait_exited(procs: list[Any], timeout: float) -> None:
    """Wait up to ``timeout`` seconds until every one of ``procs`` has exited, and reap them."""
    deadline = time.monotonic() + timeout
    _procs.wait_gone([proc.pid for proc in procs], timeout)
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass

