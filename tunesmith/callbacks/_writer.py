"""The file loggers' adaptive writer: background threads that run queued writes, shared by the file loggers
of one experiment (``acquire``/``release``), one thread while writes are quick and more while the
filesystem is slow."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any


class Writer:
    """Background threads that run queued writes, a trial's writes in the order they came and on one
    thread at a time (its files' state, e.g. the CSV header, is never touched by two at once).

    One thread while writes are quick. While they are slow, as on a latency-bound filesystem (NFS, a
    network disk, a virtual disk in a slow phase) where each file creation waits on the device for a
    millisecond or more, more threads start (up to ``MAX_THREADS``) and overlap those waits: a run of
    short trials would otherwise wait for one thread's backlog. More threads on a fast disk only compete
    with the loop for the interpreter lock, so they start only then (measure both with
    ``.venv/bin/python benchmarks/slow_fs.py``). Writes queue in ``QUEUES`` lanes by trial; a thread takes what has
    queued in a lane a few milliseconds after waking, so a run of many small trials costs the loop a list
    append per write instead of a thread switch per write."""

    COALESCE_S = 0.005
    QUEUES = 8
    MAX_THREADS = 8
    SLOW_S = 0.0005  # every write of a batch took longer than this: the filesystem is slow
    PROBE = 3  # writes a batch needs to tell

    def __init__(self, name: str) -> None:
        self._cv = threading.Condition()
        self._queues: list[list[tuple[Callable[[BaseException], None], Callable[..., None], tuple[Any, ...]]]] = [
            [] for _ in range(self.QUEUES)]
        self._taken = [False] * self.QUEUES  # a thread is writing this lane's batch
        self._pending = 0  # writes queued, not yet taken
        self._busy = 0  # threads writing a batch
        self._closed = False
        self._name = name
        self.users = 0  # file loggers of the experiment writing through these threads
        self.dirs: dict[int, str] = {}  # trial folders made so far, shared by those loggers
        self._threads: list[threading.Thread] = []
        self._start_thread()

    def submit(self, on_error: Callable[[BaseException], None], fn: Callable[..., None], *args: Any) -> None:
        lane = getattr(args[0], "id", 0) % self.QUEUES if args else 0
        with self._cv:
            queue = self._queues[lane]
            queue.append((on_error, fn, args))
            self._pending += 1
            if len(queue) == 1 and not self._taken[lane]:
                self._cv.notify()

    def flush(self) -> None:
        with self._cv:
            while self._pending or self._busy:
                self._cv.wait()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        for thread in list(self._threads):
            thread.join()

    @property
    def threads(self) -> int:
        """How many threads write now (one, more while the filesystem is slow)."""
        return len(self._threads)

    def _start_thread(self) -> None:
        thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _free_lane(self) -> int | None:
        for i, queue in enumerate(self._queues):
            if queue and not self._taken[i]:
                return i
        return None

    def _run(self) -> None:
        woke = True
        while True:
            with self._cv:
                lane = self._free_lane()
                while lane is None:
                    if self._closed and not self._pending:
                        return
                    self._cv.wait()
                    woke = True
                    lane = self._free_lane()
                self._taken[lane] = True
                self._busy += 1
                closing = self._closed
            if woke and not closing:
                time.sleep(self.COALESCE_S)  # let the batch grow; flush() and close() wait for it anyway
            woke = False
            with self._cv:
                batch, self._queues[lane] = self._queues[lane], []
                self._pending -= len(batch)
            fastest = math.inf
            clock = time.perf_counter
            for on_error, fn, args in batch:
                t = clock()
                try:
                    fn(*args)
                except Exception as e:  # noqa: BLE001 - reported through on_error; later writes go on
                    on_error(e)
                fastest = min(fastest, clock() - t)
            with self._cv:
                self._taken[lane] = False
                self._busy -= 1
                # Slow only if even the batch's fastest write was: one write can be slow for waiting on the
                # interpreter lock (the loop holds it), every write of a batch only on a slow filesystem.
                if (len(batch) >= self.PROBE and fastest > self.SLOW_S and self._free_lane() is not None
                        and len(self._threads) < self.MAX_THREADS and not self._closed):
                    self._start_thread()  # and another lane waits: overlap its waits
                self._cv.notify_all()


_SHARED: dict[str, Writer] = {}  # experiment folder -> the writer its file loggers share
_SHARED_LOCK = threading.Lock()


def acquire(path: str) -> Writer:
    """The writer the file loggers of the experiment at ``path`` share (started by the first of them)."""
    with _SHARED_LOCK:
        writer = _SHARED.get(path)
        if writer is None:
            writer = _SHARED[path] = Writer("tunesmith-file-loggers")
        writer.users += 1
    return writer


def release(path: str, writer: Writer) -> None:
    """One file logger of the experiment is done: the last one closes the writer (everything queued is
    written first); any other waits until what is queued so far is written."""
    with _SHARED_LOCK:
        writer.users -= 1
        last = writer.users == 0
        if last and _SHARED.get(path) is writer:
            del _SHARED[path]
    if last:
        writer.close()
    else:
        writer.flush()
