"""Per-trial cost on the local backend, each beside its floor measured in the same call (issue 19 rows 4, 5, 11, 12).

    .venv/bin/python benchmarks/pertrial.py            # full sizes (the issue's)
    .venv/bin/python benchmarks/pertrial.py --quick    # smaller, for a smoke run

Each ``measure_*`` function returns a dict (``benchmarks/scale.py`` imports them); run as a script, this prints
one table. The floors are ``benchmarks/overhead.py``'s: a plain ``multiprocessing`` pool doing the same work.
The machine is shared and small: read the ratios, not the absolute numbers, and run it more than once.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
if not os.environ.get("PYTHONPATH"):  # with PYTHONPATH set, its tunesmith (scale.py's before/after runs)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import overhead  # noqa: E402

import tunesmith as ts  # noqa: E402
from tunesmith.executors.local import LocalBackend  # noqa: E402

ITERS = 10  # iterations per short trial (ASHA's rungs at 1, 3, 9)


def _durations(n: int) -> list[float]:
    """n trial lengths spread over 1-5 ms, the same for tunesmith and the floor."""
    return [0.001 + 0.004 * ((i * 0.6180339887) % 1.0) for i in range(n)]


def _short(config):
    step = config["s"] / ITERS
    for i in range(ITERS):
        time.sleep(step)
        ts.report({"loss": (i + 1) * config["s"]})


def _mp_short(s: float) -> float:
    step = s / ITERS
    for _ in range(ITERS):
        time.sleep(step)
    return s


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def measure_noop(n: int = 500) -> dict[str, float]:
    """Row 4: n no-op trials (one report each), with the default loggers and without, against a pool's n
    no-op tasks (``overhead._mp_noops``: a fresh pool, as every run starts its own workers). ``no_folder_per_s``:
    the default run with ``chdir_to_trial_dir=False`` (no folder made per trial: the largest per-trial cost on
    file systems where a ``mkdir`` is dear, e.g. ext4; a behaviour the user chooses, not the default)."""
    storage = tempfile.mkdtemp(prefix="tunesmith_bench_")
    try:
        overhead.ts_run(overhead.noop, {}, 1, storage)  # the driver's one-time imports, the fork server
        t = time.perf_counter()
        overhead.ts_run(overhead.noop, {}, n, storage)
        loggers = n / (time.perf_counter() - t)
        t = time.perf_counter()
        overhead.ts_run(overhead.noop, {}, n, storage, file_loggers=False)
        plain = n / (time.perf_counter() - t)
        t = time.perf_counter()
        overhead.ts_run(overhead.noop, {}, n, storage, chdir_to_trial_dir=False)
        no_folder = n / (time.perf_counter() - t)
        t = time.perf_counter()
        overhead._mp_noops(n)
        floor = n / (time.perf_counter() - t)
    finally:
        overhead.discard(storage)
    return {"trials": n, "tunesmith_per_s": loggers, "no_loggers_per_s": plain, "floor_per_s": floor,
            "ratio": loggers / floor, "ratio_no_loggers": plain / floor, "no_folder_per_s": no_folder,
            "ratio_no_folder": no_folder / floor}


def measure_short_trials(n: int = 10_000, scheduler: str = "fifo",
                         max_concurrent: int | None = None) -> dict[str, float]:
    """Rows 4 and 5: n trials of 1-5 ms (10 iterations of sleep) at one trial per core, default loggers.
    ``scheduler``: "fifo" or "asha" (ASHA(max_t=10, grace_period=1, reduction_factor=3): trials wait at
    each rung). ``over_ideal``: wall over the trials' own time (what they reported) spread on the cores;
    the floor is the same lengths on a pool (every trial to the end, so for ASHA compare over_ideal).
    ``max_concurrent``: None runs what a user's run does by default (a CPU a trial: one trial per core, and a
    worker of short trials handed its next one early); a number is passed to ``run()``, where a trial handed
    ahead counts as running, so ``max_concurrent`` equal to the cores hands none ahead."""
    cores = _cores()
    lengths = _durations(n)
    storage = tempfile.mkdtemp(prefix="tunesmith_bench_")
    try:
        kw = {}
        if scheduler == "asha":
            kw = {"scheduler": ts.ASHA(max_t=ITERS, grace_period=1, reduction_factor=3), "metric": "loss",
                  "mode": "min"}
        overhead.ts_run(_short, {"s": 0.001}, 1, storage)
        t = time.perf_counter()
        res = overhead.ts_run(_short, {"s": ts.grid(lengths)}, 1, storage, max_concurrent=max_concurrent, **kw)
        wall = time.perf_counter() - t
        work = sum(trial.last_result.get("time_total_s", 0.0) for trial in res.trials if trial.last_result)
        t = time.perf_counter()
        with mp.get_context("spawn").Pool(cores) as pool:
            pool.map(_mp_short, lengths, chunksize=1)
        floor = time.perf_counter() - t
    finally:
        overhead.discard(storage)
    ideal = work / cores
    floor_ideal = sum(lengths) / cores
    return {"trials": n, "scheduler": scheduler, "max_concurrent": max_concurrent, "wall_s": wall, "ideal_s": ideal,
            "over_ideal": wall / ideal - 1, "floor_wall_s": floor, "floor_over_ideal": floor / floor_ideal - 1,
            "ratio_to_floor": wall / floor}


def measure_first_result(repeats: int = 15) -> dict[str, float]:
    """Row 11: interpreter start to the first stored result against a pool's first answer, ``repeats`` pairs
    interleaved (``overhead.first_result_pairs``: the medians, and the median of the pairs' ratios)."""
    storage = tempfile.mkdtemp(prefix="tunesmith_bench_")
    try:
        return overhead.first_result_pairs(storage, repeats)
    finally:
        overhead.discard(storage)


def _matmul(config):
    import torch

    a = torch.randn(256, 256)
    t = time.perf_counter()
    for _ in range(config["n"]):
        a = torch.tanh(a @ a)
    ts.report({"s": time.perf_counter() - t, "threads": torch.get_num_threads()})


def measure_threads(n: int = 200) -> dict[str, float]:
    """Row 12: two 1-CPU torch trials (a matmul loop) side by side on 2 cores: with the thread variables
    tunesmith sets from each trial's CPUs, and without (every trial told to use every core, which is what a
    trial got before: torch starts a thread per core). ``*_compute_s``: the slower trial's loop, timed inside
    the trial (the wall also holds torch's import). Needs torch."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return {"skipped": 1.0}
    cores = _cores()
    storage = tempfile.mkdtemp(prefix="tunesmith_bench_")
    out: dict[str, float] = {}
    saved = {var: os.environ.get(var) for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    try:
        for label, env in (("per_cpu", None), ("every_core", str(cores))):
            for var in saved:
                if env is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = env  # the user's value wins: this is the old behaviour
            t = time.perf_counter()
            res = overhead.ts_run(_matmul, {"n": n, "k": ts.grid([0, 1])}, 1, storage,
                                  backend=LocalBackend(total_resources={"cpu": 2}), max_concurrent=2,
                                  resources={"cpu": 1})
            out[f"{label}_wall_s"] = time.perf_counter() - t  # with torch's import in each worker
            out[f"{label}_compute_s"] = max(trial.last_result["s"] for trial in res.trials)  # the loops alone
            out[f"{label}_threads"] = max(trial.last_result["threads"] for trial in res.trials)
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        overhead.discard(storage)
    out["speedup"] = out["every_core_compute_s"] / out["per_cpu_compute_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller workloads")
    args = ap.parse_args()
    short = 1000 if args.quick else 10_000
    a = measure_noop(100 if args.quick else 500)
    fifo = measure_short_trials(short, "fifo")
    asha = measure_short_trials(short, "asha")
    capped = measure_short_trials(short, "asha", max_concurrent=_cores())
    first = measure_first_result(3 if args.quick else 5)
    threads = measure_threads(50 if args.quick else 200)
    rows = [
        (f"4  {a['trials']} no-op trials", f"{a['tunesmith_per_s']:,.0f}/s (loggers off {a['no_loggers_per_s']:,.0f}, "
         f"no folder {a['no_folder_per_s']:,.0f})",
         f"{a['floor_per_s']:,.0f}/s", f"{a['ratio']:.3f} ({a['ratio_no_loggers']:.3f}, {a['ratio_no_folder']:.3f})",
         ">= 0.25"),
        (f"4  {short} trials of 1-5 ms, FIFO", f"{fifo['wall_s']:.2f} s (+{fifo['over_ideal']:.0%} over ideal)",
         f"{fifo['floor_wall_s']:.2f} s (+{fifo['floor_over_ideal']:.0%})", f"{fifo['ratio_to_floor']:.2f}x",
         "<= 1.05x"),
        (f"5  {short} trials of 1-5 ms, ASHA", f"{asha['wall_s']:.2f} s (+{asha['over_ideal']:.0%} over ideal)",
         f"+{asha['floor_over_ideal']:.0%} over ideal", f"+{asha['over_ideal']:.0%}", "<= +50%"),
        (f"5  the same, max_concurrent={_cores()} (no trial handed ahead)",
         f"{capped['wall_s']:.2f} s (+{capped['over_ideal']:.0%} over ideal)",
         f"+{capped['floor_over_ideal']:.0%} over ideal", f"+{capped['over_ideal']:.0%}", ""),
        ("11 start to first stored result", f"{first['tunesmith_s']:.3f} s", f"{first['floor_s']:.3f} s",
         f"{first['ratio']:.2f}x", "<= 2x"),
    ]
    if "skipped" not in threads:
        rows.append(("12 two 1-CPU torch trials, 2 cores",
                     f"{threads['per_cpu_compute_s']:.2f} s ({threads['per_cpu_threads']:.0f} thread each)",
                     f"{threads['every_core_compute_s']:.2f} s ({threads['every_core_threads']:.0f} threads each)",
                     f"{threads['speedup']:.2f}x faster", "no oversubscription"))
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"tunesmith per-trial cost on {_cores()} cores, Python {sys.version.split()[0]}")
    for col in ("row / workload", "tunesmith", "floor (same run)", "ratio", "goal"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
