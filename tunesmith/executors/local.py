"""The local executor: a pool of long-lived worker processes on this machine.

Workers are reused between trials (the training function is sent to each worker once). A trial's
resources are reserved in a :class:`ResourcePool`; its GPUs reach it through ``CUDA_VISIBLE_DEVICES``.
A trial that asks for no GPU on a machine with GPUs sees none (``CUDA_VISIBLE_DEVICES=""``), as a Ray actor
with no GPU does. A worker that ran a trial on some GPUs is reused only for trials on the same GPUs, and one
that ran a trial with no GPU visible only for such trials, since CUDA reads that variable once per process.
A stopped trial ends at its next ``report()``; if it does not within the grace period its worker is killed
and replaced. A trial that runs longer than ``trial_time_limit_s`` is
stopped the same way and ends in ERROR.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Set as AbstractSet
from multiprocessing.connection import Connection
from typing import Any

import cloudpickle

from tunesmith import _ranks
from tunesmith._errors import ConfigError
from tunesmith.executors import _forkserver, _procs
from tunesmith.executors._base import (
    Done,
    Event,
    Executor,
    Launch,
    Results,
    check_trial_timeout,
    stop_changes,
    trial_spec,
)
from tunesmith.executors._wire import DECIDE, DONE, ENDING, EXIT, RESULTS, RUN, STOP
from tunesmith.executors.resources import (
    THREAD_VARS,
    ResourcePool,
    cuda_visible,
    detect_cpus,
    detect_gpus,
    thread_env,
    total_amounts,
)

log = logging.getLogger("tunesmith")
# a function's name in its workers' cache: one per setup (hashing its bytes loaded OpenSSL at every run's start)
_FN_KEYS = itertools.count()
# a worker being started: the driver's and the worker's ends of its socket pair, its environment, and its fork
# asked of the fork server, or its process started the plain way
_Asking = tuple[socket.socket, socket.socket, dict[str, str], "_forkserver.Asked | subprocess.Popen[bytes]"]
_MAX_MSGS_PER_WORKER = 256  # per poll, so one chatty trial cannot starve the others
# A worker whose last trial ran shorter than this (from its start to the driver reading its end) is handed its next
# trial while the current one runs (``LocalBackend(queue_ahead=True)``, where the run allows it): for such trials
# the driver's own work per trial (storing the end, asking the searcher, sending the next) is a large share of a
# trial, and the worker would otherwise wait for it. Longer trials are not queued: the driver's work is lost in
# them, and a trial handed out early would wait, counted as running, for as long as the one before it runs.
AHEAD_S = 0.05
# A trial handed ahead to a worker whose trials run at least this long (by the worker's clock, at their last result)
# has its folder made by the driver, in a moment with no event to handle, while the worker still runs the trial
# before (``LocalBackend._wait``): time enough for it to be there when the worker gets to it. A no-op trial is
# over sooner than the driver could make it; making it anyway only moves the work onto the driver.
PREMAKE_S = 0.0005
# the GPUs nvidia-smi lists, asked once per driver process (``_machine_gpus``)
_SMI_GPUS: list[str] | None = None


class _Worker:
    __slots__ = ("proc", "conn", "trial_id", "fns", "cuda", "stop_deadline", "last_seen", "limit_at", "over_limit",
                 "readable", "began", "short", "ran_s", "shape", "queued", "queued_stop", "stop_on_result",
                 "rank0_returned")

    def __init__(self, proc: subprocess.Popen[bytes] | _forkserver.ForkedProcess, conn: Connection) -> None:
        self.proc = proc
        self.conn = conn
        self.trial_id: int | None = None
        self.fns: set[str] = set()
        # CUDA_VISIBLE_DEVICES this process was first given ("": none, to a trial without GPU on a machine with
        # some); None: never set, as the driver has it
        self.cuda: str | None = None
        self.stop_deadline: float | None = None
        self.stop_on_result = False  # that stop was decided on one of the trial's results (stop_on_result)
        self.rank0_returned: float | None = None  # when it said its trial's rank 0 returned (ENDING)
        self.last_seen = time.monotonic()
        self.limit_at: float | None = None  # when the trial's trial_time_limit_s runs out
        self.over_limit: str | None = None  # why the trial was stopped for its time limit: it ends in ERROR
        # whether its socket has more to read now: one poll object for the worker's life, not one per message
        self.readable = select.poll()
        self.readable.register(conn.fileno(), select.POLLIN)
        self.began = 0.0  # when its trial started (monotonic)
        self.short = False  # its last trial ran shorter than AHEAD_S: it may be handed the next one early
        # how long its trial had run at its last result, by the worker's clock (the running trial's, or before
        # its first result the one before): how long this worker's trials take (PREMAKE_S)
        self.ran_s = 0.0
        # the running trial's resources if a trial could queue behind it (one process, no GPU), else None
        self.shape: dict[str, float] | None = None
        self.queued: Launch | None = None  # the trial it was handed ahead, to start when this one ends
        self.queued_stop = False  # that trial was asked to stop before it started


class LocalBackend(Executor):
    """Trials in worker processes on this machine.

    Args:
        total_resources: override what the machine offers, e.g. ``{"cpu": 4, "gpu": 2}``: non-negative numbers,
            a whole number of GPUs (ids 0..n-1 unless ``gpu_ids`` is given); other names are resources of your
            own (``{"tpu": 2}``), but not a name like ``cpu`` or ``gpu`` (``"cpus"``, ``"GPU"``: a typo).
            Default: the CPUs this process may use (fewer under a cgroup CPU quota: ``cpu_quota``) and the GPUs
            in ``CUDA_VISIBLE_DEVICES`` or listed by ``nvidia-smi`` (found when the run starts, whatever its trials
            ask for; nvidia-smi is asked once per process).
        gpu_ids: the device ids to hand out, a list such as ``["0", "1"]`` (integers are taken as their text).
            A trial that asks for no GPU sees none of them (``CUDA_VISIBLE_DEVICES=""``); ``gpu_ids=[]`` (or
            ``total_resources={"gpu": 0}``) hands out no GPU and leaves ``CUDA_VISIBLE_DEVICES`` as the driver has
            it in every trial, for trials that place their work on devices themselves.
        grace_period_s: how long a stopped trial has to reach its next ``report()`` before its worker is
            killed (seconds, >= 0); a trial run as several ranks stopped on one of its results, after its rank 0
            returned: the other ranks' time to return (``_ranks.END_GRACE_S``) first.
        trial_timeout_s: a running trial whose worker sends nothing (no result, no heartbeat: workers send
            one every half second, also while the trial computes between reports) for this long is declared
            dead: its worker is killed and the trial fails (and is retried per ``max_failures``). At least 2
            seconds, as ``run(trial_timeout_s=...)``.
        start_method: ``"forkserver"`` (default; Linux): workers are forks of one server process that has
            tunesmith imported, started once per driver process and kept for its later runs (a worker is
            ready in milliseconds instead of an interpreter start); elsewhere, or if it cannot start,
            ``"spawn"``: each worker is a fresh ``python -m tunesmith.executors._worker`` (on Linux, a fork that
            process keeps, so that nothing its trials start outlives the driver). Either way a worker gets the
            driver's environment, working directory and output at the moment it starts.
        queue_ahead: hand a worker whose trials are short (under a twentieth of a second each: ``AHEAD_S``)
            its next trial while the current one runs, so it starts the next one at once instead of waiting for
            the driver to store the end and choose what follows. Only where the run allows it (the FIFO scheduler
            and a searcher that does not learn from results: random, grid, Sobol; README, "Short trials"), for
            one-process CPU trials with the same resources as the one running. ``False``: a worker gets a trial
            only when it is free.
    """

    START_METHODS = ("forkserver", "spawn")

    # what an experiment's spec keeps of it (``record``), for `tunesmith resume` to build the same backend
    RECORDED = ("total_resources", "gpu_ids", "grace_period_s", "trial_timeout_s", "start_method", "queue_ahead")

    def record(self) -> dict[str, Any]:
        """``{"kind": "local"}`` with the arguments it was given that differ from the defaults (plain values,
        checked by the constructor): `tunesmith resume` builds the same backend from them."""
        import inspect

        defaults = inspect.signature(LocalBackend.__init__).parameters  # one place for them: the constructor's
        given = {name: getattr(self, "total_resources_arg" if name == "total_resources" else name)
                 for name in self.RECORDED}
        return {"kind": "local", **{k: v for k, v in given.items() if v != defaults[k].default}}

    def __init__(self, total_resources: dict[str, float] | None = None, gpu_ids: list[str] | None = None,
                 grace_period_s: float = 5.0, trial_timeout_s: float | None = None,
                 start_method: str = "forkserver", queue_ahead: bool = True) -> None:
        # every argument is checked before anything is made (as run() checks the same settings)
        total_resources = total_amounts(total_resources, "LocalBackend")
        gpu_ids = _checked_gpu_ids(gpu_ids)
        if total_resources is not None and gpu_ids is not None and "gpu" in total_resources and (
                total_resources["gpu"] != len(gpu_ids)):
            raise ConfigError(f"LocalBackend: total_resources['gpu'] = {total_resources['gpu']:g} but gpu_ids names "
                              f"{len(gpu_ids)} devices: leave 'gpu' out of total_resources (gpu_ids sets it)")
        if (isinstance(grace_period_s, bool) or not isinstance(grace_period_s, (int, float))
                or not math.isfinite(grace_period_s) or grace_period_s < 0):
            raise ConfigError(f"LocalBackend: grace_period_s must be a number of seconds >= 0, got {grace_period_s!r}")
        check_trial_timeout(trial_timeout_s, "LocalBackend: trial_timeout_s")
        if start_method not in self.START_METHODS:
            raise ConfigError(f"LocalBackend(start_method={start_method!r}): expected one of "
                              f"{', '.join(map(repr, self.START_METHODS))}")
        self.start_method = start_method
        if not isinstance(queue_ahead, bool):
            raise ConfigError(f"LocalBackend(queue_ahead={queue_ahead!r}): expected True or False")
        self.queue_ahead = queue_ahead
        self._queued: dict[int, _Worker] = {}  # trials handed ahead -> the busy worker that holds them
        self._orphans: list[_Worker] = []  # killed workers whose queued trial must start elsewhere
        self._late_starts: dict[int, float] = {}  # trials handed ahead -> when they really started
        self.total_resources_arg = total_resources
        self.gpu_ids = gpu_ids
        self.grace_period_s = grace_period_s
        self.trial_timeout_s = trial_timeout_s
        self._pool: ResourcePool | None = None
        self._workers: list[_Worker] = []
        self._asked: _Asking | None = None  # the first worker, asked for by prestart() and not yet taken
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
        self._told_hidden = False  # the warning that GPUs are hidden from trials asking for none: once
        self._stop_bytes: bytes | None = None
        self._user_threads: frozenset[str] = frozenset()
        self._pending_events: list[Event] = []
        # the folders of trials handed ahead, to make while the driver waits for events (chdir_to_trial_dir)
        self._to_make: dict[int, str] = {}

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

    def _ensure_pool(self) -> ResourcePool:
        """What this machine offers, found once, at the first question (``run()`` asks before any trial), with its
        GPUs whatever the trials ask for: a pool made without them for a first trial with no GPU could not take
        them in later, when a GPU trial comes while that one runs."""
        if self._pool is None:
            total = dict(self.total_resources_arg or {})
            total.setdefault("cpu", float(detect_cpus()))
            gpu_ids = self.gpu_ids
            if gpu_ids is None:
                gpu_ids = [str(i) for i in range(int(total["gpu"]))] if "gpu" in total else _machine_gpus()
            total["gpu"] = float(len(gpu_ids))
            given = ("LocalBackend(total_resources=)", self.total_resources_arg or ())  # named in its errors
            self._pool = ResourcePool(total, gpu_ids, given)
        return self._pool

    def total_resources(self) -> dict[str, float]:
        return dict(self._ensure_pool().total)

    def check_ranks(self, ranks: int | None) -> None:
        """Any number: the worker runs rank 0, and starts and watches the others (``_local_ranks``)."""

    def check_resources(self, resources: dict[str, float]) -> None:
        pool = self._ensure_pool()
        if resources.get("gpu", 0.0) > 0 and not pool.gpu_ids:
            if self.gpu_ids is not None or "gpu" in (self.total_resources_arg or {}):
                told = "gpu_ids=[]" if self.gpu_ids is not None else f"total_resources={self.total_resources_arg!r}"
                raise ConfigError(f"resources['gpu'] = {resources['gpu']:g} but this backend has no GPU to hand "
                                  f"out: LocalBackend({told})")
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            if visible is not None:  # the user's own setting hides them: "set it" would not help
                raise ConfigError(f"resources['gpu'] = {resources['gpu']:g} but no GPU was found: "
                                  f"CUDA_VISIBLE_DEVICES={visible!r} in this process's environment hides every GPU "
                                  f"(list the devices to use in it, or unset it to use those nvidia-smi lists)")
            raise ConfigError(f"resources['gpu'] = {resources['gpu']:g} but no GPU was found (set "
                              f"CUDA_VISIBLE_DEVICES, or check that nvidia-smi works)")
        pool.check(resources)

    def _no_gpu(self) -> str | None:
        """``CUDA_VISIBLE_DEVICES`` for a trial that asks for no GPU: none visible ("") where this backend hands
        out GPUs, so it cannot compute on one another trial holds; else None: left as the driver has it."""
        return "" if self._pool is not None and self._pool.gpu_ids else None

    # -- trials ---------------------------------------------------------------------------------------
    def try_start(self, launch: Launch) -> bool:
        pool = self._ensure_pool()
        gpus = pool.acquire(launch.trial_id, launch.resources)
        if gpus is None:
            return self._hand_ahead(launch)
        env = self._env(launch)  # with CUDA_VISIBLE_DEVICES="" for a trial with no GPU on a machine with some
        cuda, rank_cuda = self._no_gpu(), None
        if gpus:
            cuda = cuda_visible(gpus)
            if launch.ranks is not None:  # the trial's devices (all reserved here), dealt to its ranks
                rank_cuda = [",".join(ids) for ids in _ranks.rank_devices(list(gpus), launch.ranks)]
                cuda = rank_cuda[0]  # the worker runs rank 0
            env["CUDA_VISIBLE_DEVICES"] = cuda
        worker = self._idle_worker(cuda)
        spec = self._spec(worker, launch, env, rank_cuda)
        if cuda is not None and worker.cuda is None:
            worker.cuda = cuda
        self._began(worker, launch)
        try:
            worker.conn.send((RUN, spec))
        except OSError:
            self._worker_died(worker)
        return True

    def _env(self, launch: Launch) -> dict[str, str]:
        env = thread_env(launch.resources, self._user_threads | launch.env.keys())
        if not launch.resources.get("gpu", 0.0) and (no_gpu := self._no_gpu()) is not None:
            env["CUDA_VISIBLE_DEVICES"] = no_gpu  # (a trial with GPUs gets its own in try_start)
            if self.default_resources and not self._told_hidden:
                self._told_hidden = True
                log.warning("this machine has %d GPU(s) but the trials ask for none (resources= left at its default, "
                            "one CPU each): they see none (CUDA_VISIBLE_DEVICES=\"\"), as Ray Tune's do. Ask for them "
                            "(resources={\"cpu\": 1, \"gpu\": 0.5}), or leave every GPU visible to every trial with "
                            "backend=LocalBackend(gpu_ids=[])", len(self._ensure_pool().gpu_ids))
        env.update(launch.env)
        env["TUNESMITH_ORIG_WORKING_DIR"] = self._cwd
        return env

    def _spec(self, worker: _Worker, launch: Launch, env: dict[str, str],
              rank_cuda: list[str] | None) -> dict[str, Any]:
        known = self._fn_key in worker.fns  # the function (and its import path) is sent once per worker
        worker.fns.add(self._fn_key)
        return trial_spec(launch, env=env, fn_key=self._fn_key, takes_config=self._takes_config,
                          sys_path=[] if known else self._sys_path, stop=self._stop_bytes,
                          chdir=self.chdir_to_trial_dir, fn=None if known else self._fn_bytes, rank_cuda=rank_cuda)

    def _began(self, worker: _Worker, launch: Launch) -> None:
        """``worker`` runs ``launch`` from now (its time limit counts from now)."""
        worker.trial_id = launch.trial_id
        worker.stop_deadline = None
        worker.last_seen = worker.began = time.monotonic()
        worker.limit_at = None if self.trial_time_limit_s is None else worker.last_seen + self.trial_time_limit_s
        worker.over_limit = None
        worker.shape = launch.resources if launch.ranks is None and worker.cuda in (None, "") and not (
            launch.resources.get("gpu", 0.0)) else None
        self._by_trial[launch.trial_id] = worker

    def _hand_ahead(self, launch: Launch) -> bool:
        """With every resource taken: give ``launch`` to a busy worker to start when its trial ends (``queue_ahead``),
        if one runs short trials of the same shape and holds no other. False: none does, nothing was sent."""
        if not (self.queue_ahead and self.ahead_ok) or launch.ranks is not None or launch.resources.get("gpu", 0.0):
            return False
        chosen = None
        for worker in self._by_trial.values():
            if (worker.short and worker.queued is None and worker.stop_deadline is None
                    and worker.shape == launch.resources and (chosen is None or worker.began < chosen.began)):
                chosen = worker  # the one whose trial began first: likely the first to end
        if chosen is None:
            return False
        spec = self._spec(chosen, launch, self._env(launch), None)
        chosen.queued = launch
        chosen.queued_stop = False
        self._queued[launch.trial_id] = chosen
        try:
            chosen.conn.send((RUN, spec))
        except OSError:
            # found dead only now: its trial's resources are free again, and go to this trial at once (left for
            # the next poll, a later launch would take them, and this one have no worker to start on)
            chosen.queued = None
            self._unqueue(launch.trial_id)
            self._worker_died(chosen)
            return self.try_start(launch)
        if self.chdir_to_trial_dir and chosen.ran_s >= PREMAKE_S:
            self._to_make[launch.trial_id] = launch.trial_dir
        return True

    def _unqueue(self, trial_id: int) -> None:
        """A trial handed ahead left its worker's queue: it started there, or it never will there."""
        del self._queued[trial_id]
        self._to_make.pop(trial_id, None)

    def _promote(self, worker: _Worker) -> None:
        """The worker ended its trial and started the one it was handed ahead: that one runs from now, on the
        resources the ended one gave back (the same shape, CPU only, released just before)."""
        launch = worker.queued
        assert launch is not None
        worker.queued = None
        self._unqueue(launch.trial_id)
        assert self._pool is not None
        if self._pool.acquire(launch.trial_id, launch.resources) is None:  # cannot happen: the same amounts were freed
            log.warning("trial %s started on a worker with no resources left to reserve for it", launch.trial_id)
        self._began(worker, launch)
        self._late_starts[launch.trial_id] = time.time()
        if worker.queued_stop:  # asked to stop while it waited: the worker stops it at once or at its first report
            worker.stop_deadline = worker.began + self.grace_period_s

    def _start_orphans(self, events: list[Event]) -> None:
        """Queued trials of workers that died (or were killed) before starting them: on another worker now, with
        the resources the dead worker's trial gave back; one already asked to stop ends as stopped."""
        orphans, self._orphans = self._orphans, []
        for worker in orphans:
            launch, worker.queued = worker.queued, None
            if launch is None:
                continue
            self._unqueue(launch.trial_id)
            if worker.queued_stop:
                events.append(Done(launch.trial_id, "stopped", None))
            elif self.try_start(launch):
                if launch.trial_id in self._by_trial:  # started now (not handed ahead again): its start is now
                    self._late_starts[launch.trial_id] = time.time()
            else:
                events.append(Done(launch.trial_id, "error", "the worker it was handed to died before starting it, "
                                   "and no other could take it"))

    def queued(self) -> AbstractSet[int]:
        return self._queued.keys()  # a view: asked once per launch, not copied

    def late_start(self, trial_id: int) -> float | None:
        return self._late_starts.pop(trial_id, None)

    def prestart(self) -> None:
        """The first worker: its start (a fork, or an interpreter with ``spawn``) overlaps the store's creation
        instead of following it. Asked of the fork server without waiting for its answer, which is read when a
        worker is first needed (``_prestarted``). It has no CUDA devices pinned yet, so any first trial can
        take it."""
        if not self._workers and self._asked is None:
            self._asked = self._ask()

    def _prestarted(self) -> None:
        """The worker ``prestart`` asked for, among the workers once it is there (before any use of them)."""
        if self._asked is not None:
            asked, self._asked = self._asked, None
            self._started(asked)

    def _idle_worker(self, cuda: str | None) -> _Worker:
        self._prestarted()
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
            if w.cuda is None:  # a fresh worker, or one of trials without GPU where none are handed out
                return w
        if idle:  # every idle worker is pinned to other devices (or to none): replace one
            self._kill(idle[0])
        return self._spawn()

    def _spawn(self) -> _Worker:
        return self._started(self._ask())

    def _ask(self) -> _Asking:
        """A worker's socket pair and environment, and its process: asked of the fork server (forked by the
        time ``_started`` waits for it), or, where the server is not used or cannot be asked, started now."""
        parent, child = socket.socketpair()
        env = _forkserver.worker_env()
        server = _forkserver.get() if self.start_method == "forkserver" else None
        if server is not None:
            try:
                cwd: str | None = os.getcwd()
            except OSError:
                cwd = None  # the working directory was deleted: the worker keeps the server's
            try:
                return parent, child, env, server.ask(child.fileno(), env, cwd)
            except _forkserver.ServerGone as e:
                log.warning("%s; starting this worker the plain way", e)
        return parent, child, env, _plain_worker(child, env)

    def _started(self, asking: _Asking) -> _Worker:
        """The worker of ``asking``, once forked (or started the plain way if the server failed), registered."""
        parent, child, env, started = asking
        proc: subprocess.Popen[bytes] | _forkserver.ForkedProcess
        if isinstance(started, _forkserver.Asked):
            try:
                proc = started.wait()
            except _forkserver.ServerGone as e:
                log.warning("%s; starting this worker the plain way", e)
                proc = _plain_worker(child, env)
        else:
            proc = started
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
        on_result = self.stopping_on_result  # (``stop_on_result`` comes through here)
        worker = self._by_trial.get(trial_id)
        if worker is None:
            worker = self._queued.get(trial_id)
            if worker is not None and not worker.queued_stop:
                # the worker drops it unstarted (and says so with a DONE), or stops it if it just began
                worker.queued_stop = True
                self._to_make.pop(trial_id, None)  # no folder for a trial that will not run, if not made yet
                try:
                    worker.conn.send((STOP, trial_id, on_result))
                except OSError:
                    pass
            return
        if not stop_changes(worker.stop_deadline, worker.stop_on_result, on_result):
            return
        deadline = time.monotonic() + self.grace_period_s
        worker.stop_deadline = deadline if worker.stop_deadline is None else min(worker.stop_deadline, deadline)
        worker.stop_on_result = on_result
        self._after_ranks(worker)
        try:
            worker.conn.send((STOP, trial_id, on_result))
        except OSError:
            pass

    def _after_ranks(self, worker: _Worker) -> None:
        """A trial stopped on one of its results whose rank 0 returned is killed only after its other ranks' time to
        return (``_ranks.ends_by``): they may still be in their last all-reduce, or saving."""
        if worker.stop_deadline is not None and worker.stop_on_result and worker.rank0_returned is not None:
            worker.stop_deadline = max(worker.stop_deadline,
                                       _ranks.ends_by(worker.rank0_returned, self.grace_period_s))

    def running(self) -> int:
        return len(self._by_trial) + len(self._queued)

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
        ready = self._wait(timeout) if self._by_fd else []
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
        if self._orphans:
            self._start_orphans(events)
        return events

    def _wait(self, timeout: float) -> list[tuple[int, int]]:
        """The workers' sockets with something to read, waiting up to ``timeout`` seconds. While none has, the
        folders of trials handed ahead (``PREMAKE_S``) are made one at a time, before their workers get to them: a
        mkdir in a large folder is a large part of a short trial's cost on some file systems, spent here when the
        driver has nothing else to do instead of on a worker's path from one trial to the next. A worker makes the
        folder itself when it is not there (``_worker._enter``), so this only saves it the time; a driver with no
        idle moment makes none."""
        while self._to_make and timeout > 0:
            ready = self._poller.poll(0)
            if ready:
                return ready
            tid = next(iter(self._to_make))
            try:
                _procs.make_folder(self._to_make.pop(tid))
            except OSError:
                pass  # e.g. a file of that name: the worker tries again, and its trial fails saying why
        return self._poller.poll(timeout * 1000)

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
            if worker.limit_at is not None and now >= worker.limit_at and stop_changes(
                    worker.stop_deadline, worker.stop_on_result, False):
                # (a trial already being stopped ends as it was asked to, within its grace period; one stopped on a
                # result, whose other ranks may have their time to return, is stopped from outside: at once)
                worker.over_limit = self.over_limit()
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
                worker.ran_s = msg[2][-1][1]
            elif kind == ENDING:
                if worker.trial_id == msg[1]:
                    worker.rank0_returned = time.monotonic()
                    self._after_ranks(worker)
            elif kind == DONE:
                if msg[4]:  # its last results, sent with its end
                    events.append(Results(msg[1], msg[4], False))
                    worker.ran_s = msg[4][-1][1]
                done = Done(msg[1], msg[2], msg[3])
                if worker.trial_id == done.trial_id:
                    if worker.over_limit is not None and done.status in ("ok", "stopped"):
                        done = Done(done.trial_id, "error", worker.over_limit)
                    short = time.monotonic() - worker.began < AHEAD_S
                    self._finish(worker)
                    worker.short = short
                    if worker.queued is not None:
                        self._promote(worker)  # the worker started it as it sent this end
                elif worker.queued is not None and worker.queued.trial_id == done.trial_id:
                    worker.queued = None  # stopped before it started: the worker dropped it
                    self._unqueue(done.trial_id)
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
        worker.stop_deadline = worker.rank0_returned = None
        worker.stop_on_result = False
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
        if worker.queued is not None and worker not in self._orphans:
            self._orphans.append(worker)  # its queued trial starts elsewhere (``_start_orphans``, in poll)
        if worker in self._workers:
            self._workers.remove(worker)
        if self._by_conn.pop(worker.conn, None) is not None:
            fd = worker.conn.fileno()
            self._poller.unregister(fd)
            del self._by_fd[fd]
        if isinstance(worker.proc, subprocess.Popen) and worker.proc.returncode is None:
            # started the plain way: its keeper, our child, dies with the worker's group below and cannot kill what
            # the trial started in a session of its own (a daemon), as the fork server does for its workers. Every
            # descendant of the keeper is killed first, the worker included, deepest first, and again until none is
            # left: one forked as its parent was killed passes to the keeper (a child subreaper), kept alive for that
            _procs.kill_all_descendants(worker.proc.pid)
        try:
            os.killpg(worker.proc.pid, signal.SIGKILL)  # the worker and anything the trial started in its group
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
        """The processes the workers were started as (a worker started the plain way: its keeper, on Linux)."""
        self._prestarted()
        return [w.proc.pid for w in self._workers]

    def shutdown(self) -> None:
        self._prestarted()  # a worker asked for and never used is stopped with the others
        for worker in list(self._workers):
            try:
                worker.conn.send((EXIT,))
            except OSError:
                pass
        _wait_exited([w.proc for w in self._workers if w.trial_id is None], 2.0)
        for worker in list(self._workers):
            self._kill(worker)
        self._by_trial.clear()
        self._queued.clear()
        self._to_make.clear()
        self._orphans.clear()


def _checked_gpu_ids(gpu_ids: Any) -> list[str] | None:
    """``LocalBackend(gpu_ids=...)``: a list (or tuple) of device ids, each one entry of ``CUDA_VISIBLE_DEVICES``
    (an index, or a ``GPU-``/``MIG-`` UUID), named once; integers are taken as their text."""
    if gpu_ids is None:
        return None
    if not isinstance(gpu_ids, (list, tuple)):
        got = f"the string {gpu_ids!r}" if isinstance(gpu_ids, str) else type(gpu_ids).__name__
        raise ConfigError(f"LocalBackend: gpu_ids must be a list of device ids such as ['0', '1'], got {got}")
    out: list[str] = []
    for i, g in enumerate(gpu_ids):
        text = str(g) if isinstance(g, int) and not isinstance(g, bool) else g
        # CUDA reads CUDA_VISIBLE_DEVICES up to its first invalid entry: a "-1" hides every device after it
        if (not isinstance(text, str) or not text.strip() or text != text.strip() or "," in text
                or text.startswith("-")):
            raise ConfigError(f"LocalBackend: gpu_ids[{i}] must be one device id (an index such as '0' or a "
                              f"'GPU-...' UUID, as CUDA_VISIBLE_DEVICES lists them), got {g!r}")
        if text in out:
            raise ConfigError(f"LocalBackend: gpu_ids: device {text!r} is named twice (it would be handed out twice)")
        out.append(text)
    return out


def _machine_gpus() -> list[str]:
    """The GPUs this process may use (``detect_gpus``): ``CUDA_VISIBLE_DEVICES``, read each time (a driver may set
    it between runs), else what nvidia-smi lists, asked once per process (a subprocess: tens of milliseconds or
    more, which a run whose trials use no GPU would otherwise pay each time; a machine without nvidia-smi pays a
    look along PATH)."""
    global _SMI_GPUS
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return detect_gpus()
    if _SMI_GPUS is None:
        _SMI_GPUS = detect_gpus()
    return list(_SMI_GPUS)


def _plain_worker(child: socket.socket, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A worker started as a new interpreter, talking over ``child``; on Linux, a fork of it that it keeps, so
    that nothing its trials start outlives the driver (``_worker.keep``)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tunesmith.executors._worker", str(child.fileno()), str(os.getpid())],
        pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, env=env,
        start_new_session=True,  # Ctrl-C reaches the driver only; it stops trials in order
    )


def _wait_exited(procs: list[Any], timeout: float) -> None:
    """Wait up to ``timeout`` seconds until every one of ``procs`` has exited, and reap them."""
    deadline = time.monotonic() + timeout
    _procs.wait_gone([proc.pid for proc in procs], timeout)
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass

