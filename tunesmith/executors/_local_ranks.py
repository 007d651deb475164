"""The ranks 1..N-1 of a trial on the local backend, started and watched by the worker that runs rank 0.

Rank 0 is the trial as a worker always runs it (its session, its reports through the worker's channel). The
others are fresh interpreters (``python -m tunesmith._ranks``), started before rank 0's function, with the
worker's environment plus their own (``_ranks.rank_env``: the torchrun variables, their devices; the thread
variables of a rank's share, ``_ranks.rank_threads``, rank 0's too), and their output going where rank 0's goes
(the trial's ``output.log``). A thread watches them:

* a rank that fails (a non-zero exit, a signal) fails the trial with its traceback: every other rank is
  killed at once, and rank 0 gets ``FAIL_GRACE_S`` to end by itself (gloo raises in a collective whose peer is
  gone). One blocked where Python cannot interrupt it (a NCCL collective, a C loop) is not waited for: the
  thread sends what rank 0 reported, then the trial's end with the rank's traceback, asking the driver to
  retire this worker, and the process exits (the driver kills what is left of its process group);
* when rank 0 ends (returned, stopped, paused, failed), the others end with it: after a return, or a stop on the
  result rank 0 just reported that ended it at that report (a stop rule judged in the worker, a STOP the scheduler's
  plan promised, the driver's stop answering it at a decision point), they get ``_ranks.END_GRACE_S`` to return too
  (a DDP loop's ranks end together; one that fails then fails the trial) unless a stop from outside the trial's
  results comes meanwhile (the time limit, the dashboard's, the experiment's end; not the driver's stop at ``done``
  or a stop rule met by rank 0's last result: ``Executor.stop_on_result``: told by the worker that rank 0 returned
  (ENDING), the driver kills the trial only after that time, ``_ranks.ends_by``); otherwise (a pause, an exploit, a
  stop read at a later report) they are killed at once.

Nothing outlives the trial: what the ranks started is killed with the rest of the trial's descendants (the
worker is a child subreaper), and a rank dies with the worker (its parent-death signal).
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from tunesmith import _ranks
from tunesmith.executors import _procs

FAIL_GRACE_S = 3.0  # how long rank 0 has to end by itself after another rank failed
RANK0_FAILED_WAIT_S = 1.0  # how long the other ranks have to end when rank 0 failed (one may be why)
END_STOP_CHECK_S = 0.1  # while the others have END_GRACE_S to return after rank 0: how often a stop is looked for


class RankGroup:
    """Ranks 1..N-1 of one trial, started by :meth:`start` in the worker that runs rank 0 and ended by
    :meth:`end` when rank 0's function is over."""

    def __init__(self, spec: dict[str, Any], fn_bytes: bytes, channel: Any) -> None:
        self.spec = spec
        self.fn_bytes = fn_bytes
        self.channel = channel
        self.world = int(spec["ranks"])
        self.procs: dict[int, subprocess.Popen[bytes]] = {}  # rank -> process
        self.errs: dict[int, int] = {}  # rank -> read end of its error pipe
        self.lock = threading.Lock()
        self.failure: str | None = None  # the first failed rank's story
        self.returned: dict[int, int] = {}  # rank -> pid of one that returned (exit code 0) while rank 0 ran
        self.ending = False  # rank 0 is over: exits from now on are ours (or the grace period's)
        self.retiring = False  # the watcher ends the trial and the worker (rank 0 is stuck)
        self.rank0_done = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._threads: dict[str, str] = {}  # each rank's thread variables (start)

    def rank0_env(self) -> dict[str, str]:
        """Rank 0's rendezvous environment, chosen with the others', and its thread variables (its share's, as
        every rank's: ``_ranks.rank_threads``), for the worker's own ``os.environ``."""
        return {**self._envs[0], **self._threads}

    def share(self) -> dict[str, float]:
        """Each rank's share of the trial's resources."""
        return _ranks.split_resources(self.spec["resources"], self.world)

    def start(self) -> None:
        """Choose the rendezvous port and start ranks 1..N-1 (rank 0 is the calling process)."""
        port = _ranks.free_port()
        devices: list[str | None] = list(self.spec.get("rank_cuda") or [None] * self.world)
        self._envs = [_ranks.rank_env(r, self.world, r, self.world, "127.0.0.1", port,
                                      None if devices[r] is None else devices[r].split(","))  # type: ignore[union-attr]
                      for r in range(self.world)]
        share = self.share()
        # each rank's thread pools from its share of the trial's CPUs, where the worker's environment has them from
        # the whole trial's (``spec["env"]``; none where the user set them)
        self._threads = _ranks.rank_threads(self.spec.get("env") or {}, self.spec["resources"], share)
        for rank in range(1, self.world):
            r_err, w_err = os.pipe()
            env = dict(os.environ)
            env.update(self._threads)  # from its start (rank_spec's env sets them again, before the function runs)
            env.update(self._envs[rank])
            data = pickle.dumps(_ranks.rank_spec(self.spec, self.fn_bytes, self._envs[rank], share, list(sys.path)))
            proc = subprocess.Popen([sys.executable, "-m", "tunesmith._ranks", str(w_err)], stdin=subprocess.PIPE,
                                    pass_fds=(w_err,), env=env)
            os.close(w_err)
            os.set_blocking(r_err, False)
            self.procs[rank], self.errs[rank] = proc, r_err
            try:
                assert proc.stdin is not None
                proc.stdin.write(data)
                proc.stdin.close()
            except OSError:
                pass  # it died at once: the watcher reports how
        threading.Thread(target=self._watch, name="tunesmith-ranks", daemon=True).start()

    # the watcher thread ------------------------------------------------------------------------------
    def _watch(self) -> None:
        left = dict(self.procs)
        fds: dict[int, int] = {}
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        for rank, proc in left.items():
            try:
                fd = os.pidfd_open(proc.pid)
            except (OSError, AttributeError):
                continue  # no pidfds here: polled below
            fds[fd] = rank
            poller.register(fd, select.POLLIN)
        try:
            while left:
                poller.poll(None if len(fds) == len(left) else 100)
                with self.lock:
                    if self.ending:
                        return
                    for rank, proc in list(left.items()):
                        code = proc.poll()
                        if code is None:
                            continue
                        del left[rank]
                        for fd, r in list(fds.items()):
                            if r == rank:
                                poller.unregister(fd)
                                os.close(fd)
                                del fds[fd]
                        if code == 0:
                            self.returned[rank] = proc.pid  # no failure: named if rank 0 then fails
                        elif self.failure is None:
                            self.failure = self._story(rank, proc.pid, code)
                    failed = self.failure is not None
                if failed:
                    self._kill_all()
                    self._fail_trial()
                    return
        finally:
            for fd in fds:
                os.close(fd)

    def _story(self, rank: int, pid: int, code: int) -> str:
        tb = b""
        try:
            while True:
                chunk = os.read(self.errs[rank], 1 << 16)
                if not chunk:
                    break
                tb += chunk
        except (BlockingIOError, OSError):
            pass
        how = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        text = tb.decode("utf-8", "replace").rstrip()
        head = f"rank {rank} of {self.world} (pid {pid}) failed ({how})"
        return f"{head}:\n{text}" if text else head

    def _fail_trial(self) -> None:
        """Another rank failed and the others are killed: rank 0 ends by itself within FAIL_GRACE_S (its
        collective raises), or is stuck where Python cannot reach: then this thread ends the trial and the
        worker."""
        if self.rank0_done.wait(FAIL_GRACE_S):
            return
        with self.lock:
            if self.ending:
                return  # rank 0 ended just now: it reports the failure itself
            self.retiring = True
        try:
            self.channel.finish("error", f"{self.failure}\n\nrank 0 did not end within {FAIL_GRACE_S:g}s "
                                         f"(blocked in a collective?): its worker was ended", retire=True)
        finally:
            os._exit(1)

    # rank 0's thread ---------------------------------------------------------------------------------
    def end(self, status: str) -> str | None:
        """Rank 0's function is over (``status``: "ok" it returned, "stopped", "error"): end the other ranks
        (after a return, once they returned too, within ``_ranks.END_GRACE_S`` unless a stop from outside the
        trial's results comes first; after a failure, once they ended within ``RANK0_FAILED_WAIT_S``; after a stop,
        at once). Returns why the trial failed because of them, or None. Blocks forever if the watcher is already
        ending the worker."""
        self.rank0_done.set()
        if status == "error" and self.failure is None:
            # rank 0 failed or was stopped: when another rank's death made it fail (gloo raises once the peer's
            # socket closes, while that process may still be exiting), that rank's story is the trial's
            _procs.wait_gone([p.pid for p in self.procs.values()], RANK0_FAILED_WAIT_S)
            with self.lock:
                for rank, proc in self.procs.items():
                    code = proc.poll()
                    if code is not None and code != 0 and self.failure is None:
                        self.failure = self._story(rank, proc.pid, code)
                    elif code == 0:  # the watcher may not have seen it yet (it waits for this lock)
                        self.returned.setdefault(rank, proc.pid)
                if self.failure is None and self.returned:  # rank 0's collective may have failed for that
                    rank, pid = min(self.returned.items())
                    self.failure = (f"rank 0 failed after rank {rank} of {self.world} (pid {pid}) had returned (exit "
                                    f"code 0) while rank 0 still ran: a rank that ends early leaves the others "
                                    f"alone in their collectives")
        if status == "ok" and self.failure is None:
            deadline = time.monotonic() + _ranks.END_GRACE_S
            if any(proc.poll() is None for proc in self.procs.values()):
                self.channel.ending()  # the driver's stop on a result of the trial's kills only after this wait
            for rank, proc in self.procs.items():
                code = self._returned(proc, deadline)
                if code is None:
                    break  # the time is over, or a stop from outside came: the rest are killed below
                with self.lock:
                    if code != 0 and self.failure is None:
                        self.failure = self._story(rank, proc.pid, code)
        with self.lock:
            retiring = self.retiring
            self.ending = True
        while retiring:  # the watcher is sending the trial's end and exits the process
            time.sleep(60)
        self._kill_all()
        self._close()
        return self.failure

    def _returned(self, proc: subprocess.Popen[bytes], deadline: float) -> int | None:
        """``proc``'s exit code once it ends before ``deadline``; None past it, or once a stop from outside the
        trial's results reaches it (the time limit, the dashboard, the experiment's end: the trial is to end now,
        not after the driver's grace period). A stop the driver decided on a result rank 0 reported (``done``, a stop
        rule, the scheduler's decision) changes nothing: rank 0 has returned, and the others are ending too."""
        while not self.channel.stopped_from_outside():
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                return proc.wait(timeout=min(left, END_STOP_CHECK_S))
            except subprocess.TimeoutExpired:
                continue
        return None

    def _kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for proc in self.procs.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _close(self) -> None:
        for fd in (*self.errs.values(), self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self.errs.clear()
