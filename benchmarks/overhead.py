"""Overhead of tunesmith against a plain multiprocessing floor, on this machine, in one run.

    .venv/bin/python benchmarks/overhead.py            # full sizes (the issue's workloads)
    .venv/bin/python benchmarks/overhead.py --quick    # smaller, for a smoke run
    .venv/bin/python benchmarks/overhead.py --backend ray [--quick]   # on Ray, beside Ray Tune

Prints one table. Workloads:
  (a) N no-op trials reporting once: trials/s
  (b) 4 trials x M reports each in a tight loop: results/s, end to end (every result stored in SQLite)
  (c) 40 trials x 10 iterations of sleep(0.05) at concurrency 2: wall time vs the ideal 10 s
  (d) time from interpreter start (`python -c`) to the first stored result
  (e) peak RSS of the whole process tree (driver + workers + fork server) during (a)

(a) and (b) run after a one-trial warm-up run, so their workers are forks of the fork server that run
started (it stays for the process's later runs); the rows "start_method='spawn'" give the same with a
fresh interpreter per worker, what a process's first run pays to start its workers.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psutil

if not os.environ.get("PYTHONPATH"):  # with PYTHONPATH set, its tunesmith (scale.py's before/after runs)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tunesmith as ts  # noqa: E402
from tunesmith.executors.local import LocalBackend  # noqa: E402

_DISCARDED: list[str] = []


def discard(path: str) -> None:
    """Delete ``path`` (a benchmark's store) when this process exits, not now. On ext4 without a journal (this
    development VM's disk) the kernel will not reuse an inode for 60-300 s after its file is deleted
    (``recently_deleted`` in fs/ext4/ialloc.c), and each new file or folder scans past them: deleting 10,000
    trial folders between two measured runs made the second run's folder making several times dearer (a
    10,000 no-op-trial run: 1.85 s with nothing deleted before it, 2.4-7.3 s after deletions, most of it kernel
    time), a cost charged to whichever run came next. Delete nothing a later measurement of this process sees."""
    if not _DISCARDED:
        import atexit

        atexit.register(lambda: [shutil.rmtree(p, ignore_errors=True) for p in _DISCARDED])
    _DISCARDED.append(path)


# --- trial functions ----------------------------------------------------------------------------------
def noop(config):
    ts.report({"x": 1})


def tight(config):
    n = config["n"]
    for i in range(n):
        ts.report({"loss": 1.0 / (i + 1)})


def sleepy(config):
    for _ in range(10):
        time.sleep(0.05)
        ts.report({"v": 1})


# --- multiprocessing floor ----------------------------------------------------------------------------
def _mp_noop(_):
    return {"x": 1}


def _mp_noops(n: int) -> None:
    """The floor of (a): n no-op tasks on a fresh pool of spawned processes, one per core."""
    with mp.get_context("spawn").Pool(os.cpu_count()) as pool:
        pool.map(_mp_noop, range(n), chunksize=1)


def _mp_tight(n, conn):
    batch = []
    for i in range(n):
        batch.append({"loss": 1.0 / (i + 1)})
        if len(batch) == 1000:
            conn.send(batch)
            batch = []
    conn.send(batch)
    conn.close()


def _mp_sleepy(_):
    for _ in range(10):
        time.sleep(0.05)
    return 1


class PeakRSS:
    """Samples the RSS of this process and all its descendants every 10 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(0.01)

    def __enter__(self) -> PeakRSS:
        self._t.start()
        return self

    def __exit__(self, *a) -> None:
        self._stop.set()
        self._t.join()


def ts_run(fn, space, num, storage, **kw):
    return ts.run(fn, space=space, num_samples=num, storage_path=storage, verbose=0, **kw)


FIRST_RESULT_TS = r"""
import time, sys
import tunesmith as ts
class First(ts.Callback):
    def on_trial_results(self, trial, results):
        print(repr(time.time()), flush=True); sys.stdout.flush(); import os; os._exit(0)
def f(config):
    ts.report({"x": 1})
ts.run(f, num_samples=1, storage_path=sys.argv[1], verbose=0, callbacks=[First()])
"""

FIRST_RESULT_MP = r"""
import time, multiprocessing as mp
def f(_):
    return {"x": 1}
if __name__ == "__main__":
    with mp.Pool(2) as p:
        p.map(f, [0])
    print(repr(time.time()), flush=True)
"""


def _first_result_once(code: str, storage: str) -> float:
    """Seconds from starting ``code`` in a fresh interpreter to the time it prints (its first result)."""
    path = os.path.join(storage, "first.py")
    with open(path, "w") as f:
        f.write(code)
    t0 = time.time()
    out = subprocess.run([sys.executable, path, tempfile.mkdtemp(dir=storage)], capture_output=True,
                         text=True, check=True).stdout
    return float(out.strip().splitlines()[-1]) - t0


def first_result_latency(code: str, storage: str, repeats: int = 5) -> float:
    """The median of ``repeats`` starts of ``code``."""
    return statistics.median(_first_result_once(code, storage) for _ in range(repeats))


def first_result_pairs(storage: str, pairs: int = 15) -> dict[str, float]:
    """tunesmith's first result against a pool's, interleaved (one of each, ``pairs`` times): the medians of
    each side and of the ratio pair by pair, which a drift of the machine's speed moves less than a ratio of
    two separate medians."""
    ts_s, mp_s = [], []
    for _ in range(pairs):
        ts_s.append(_first_result_once(FIRST_RESULT_TS, storage))
        mp_s.append(_first_result_once(FIRST_RESULT_MP, storage))
    return {"tunesmith_s": statistics.median(ts_s), "floor_s": statistics.median(mp_s),
            "ratio": statistics.median(a / b for a, b in zip(ts_s, mp_s)), "pairs": pairs}


def repeat_a(times: int, n_trials: int) -> None:
    """(a) again and again: how much the per-trial files cost, and how much the disk under them varies."""
    roots = [("disk", tempfile.mkdtemp(prefix="tunesmith_bench_"))]
    if os.path.isdir("/dev/shm"):
        roots.append(("tmpfs", tempfile.mkdtemp(prefix="tunesmith_bench_", dir="/dev/shm")))
    try:
        ts_run(noop, {}, 1, roots[0][1])  # one-time imports
        for where, root in roots:
            for loggers in (True, False):
                rates = []
                for _ in range(times):
                    t = time.perf_counter()
                    ts_run(noop, {}, n_trials, root, file_loggers=loggers)
                    rates.append(n_trials / (time.perf_counter() - t))
                print(f"(a) {n_trials} no-op trials, {where}, file_loggers={loggers}: median "
                      f"{statistics.median(rates):,.0f} trials/s; runs: {', '.join(f'{r:,.0f}' for r in rates)}")
    finally:
        for _, root in roots:
            discard(root)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller workloads")
    ap.add_argument("--backend", choices=("local", "ray"), default="local",
                    help="ray: the same workloads on Ray, beside Ray Tune (benchmarks/overhead_ray.py)")
    ap.add_argument("--address", default=None, help="with --backend ray: a Ray cluster to join (default: local)")
    ap.add_argument("--repeat-a", type=int, default=0, metavar="N",
                    help="only (a), N times each with and without the file loggers, on disk and on tmpfs")
    args = ap.parse_args()
    if args.repeat_a:
        repeat_a(args.repeat_a, 100 if args.quick else 500)
        return
    if args.backend == "ray":
        import overhead_ray

        overhead_ray.main(args, PeakRSS)
        return
    n_trials = 100 if args.quick else 500
    n_reports = 1000 if args.quick else 5000
    n_sleepy = 8 if args.quick else 40
    storage = tempfile.mkdtemp(prefix="tunesmith_bench_")
    rows = []
    try:
        # (a), then (e) on a second run of (a): the RSS sampler takes CPU from the run it watches.
        # A one-trial run first, so the driver's one-time imports count in (d), not in (a); every run
        # still starts its own workers, as the floor starts its pool.
        ts_run(noop, {}, 1, storage)
        t = time.perf_counter()
        res = ts_run(noop, {}, n_trials, storage)
        dt = time.perf_counter() - t
        assert len(res.trials) == n_trials
        ts_a = n_trials / dt
        with PeakRSS() as rss:
            ts_run(noop, {}, n_trials, storage)
        ts_e = rss.peak / 2**20
        # the same with every worker a fresh interpreter (what a process's first run pays without the
        # fork server the warm-up run started, and what runs get where there is no fork server)
        t = time.perf_counter()
        ts_run(noop, {}, n_trials, storage, backend=LocalBackend(start_method="spawn"))
        ts_a_spawn = n_trials / (time.perf_counter() - t)
        t = time.perf_counter()
        _mp_noops(n_trials)
        mp_a = n_trials / (time.perf_counter() - t)
        with PeakRSS() as rss:
            _mp_noops(n_trials)
        mp_e = rss.peak / 2**20

        # (b)
        t = time.perf_counter()
        res = ts_run(tight, {"n": n_reports}, 4, storage)
        dt = time.perf_counter() - t
        stored = res._store.count_results()
        assert stored == 4 * n_reports, stored
        ts_b = stored / dt
        t = time.perf_counter()
        ts_run(tight, {"n": n_reports}, 4, storage, backend=LocalBackend(start_method="spawn"))
        ts_b_spawn = 4 * n_reports / (time.perf_counter() - t)
        # floor: 4 processes send their results in batches of 1,000 over pipes; nothing is stored
        t = time.perf_counter()
        ctx = mp.get_context("spawn")
        got = 0
        for _ in range(2):  # two at a time, like tunesmith on 2 cores
            pipes = [ctx.Pipe(duplex=False) for _ in range(2)]
            procs = [ctx.Process(target=_mp_tight, args=(n_reports, w)) for _r, w in pipes]
            for p in procs:
                p.start()
            for _r, w in pipes:
                w.close()  # the child holds the write end now: its exit is the reader's EOF
            for (r, _w), p in zip(pipes, procs):
                while True:
                    try:
                        got += len(r.recv())
                    except EOFError:
                        break
                p.join()
        mp_b = got / (time.perf_counter() - t)

        # (c)
        ideal = n_sleepy * 10 * 0.05 / 2
        t = time.perf_counter()
        ts_run(sleepy, {}, n_sleepy, storage, max_concurrent=2)
        ts_c = time.perf_counter() - t
        t = time.perf_counter()
        with mp.get_context("spawn").Pool(2) as pool:
            pool.map(_mp_sleepy, range(n_sleepy), chunksize=1)
        mp_c = time.perf_counter() - t

        # (d)
        ts_d = first_result_latency(FIRST_RESULT_TS, storage)
        mp_d = first_result_latency(FIRST_RESULT_MP, storage)
    finally:
        discard(storage)

    rows = [
        (f"(a) {n_trials} no-op trials", "trials/s", f"{ts_a:,.0f}", f"{mp_a:,.0f}", ">= 1,000"),
        ("    the same, start_method='spawn'", "trials/s", f"{ts_a_spawn:,.0f}", "", ""),
        (f"(b) 4 x {n_reports} reports", "results/s", f"{ts_b:,.0f}", f"{mp_b:,.0f}", ">= 50,000"),
        ("    the same, start_method='spawn'", "results/s", f"{ts_b_spawn:,.0f}", "", ""),
        (f"(c) {n_sleepy} x 10 x sleep(0.05), conc 2", "wall s", f"{ts_c:.2f} ({ideal / ts_c:.1%} of ideal)",
         f"{mp_c:.2f} ({ideal / mp_c:.1%})", f"<= {ideal * 1.05:.2f}"),
        ("(d) start to first stored result", "s", f"{ts_d:.3f}", f"{mp_d:.3f}", "< 0.5"),
        ("(e) peak RSS during (a), process tree", "MB", f"{ts_e:.0f}", f"{mp_e:.0f}", "< 200"),
    ]
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"tunesmith overhead on {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    for col in ("workload", "unit", "tunesmith", "multiprocessing floor", "target"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
