"""``benchmarks/overhead.py --backend ray``: the overhead table on a Ray cluster, beside Ray Tune.

    .venv/bin/python benchmarks/overhead.py --backend ray [--quick] [--address auto]

The same workloads as the local table, with tunesmith's Ray executor (a Ray actor per trial, reused
between trials) and, when ``ray.tune`` imports, Ray Tune (function trainables, default settings) on the
same Ray instance:
  (a) N no-op trials reporting once: trials/s
  (b) 4 trials x M reports each in a tight loop: results/s, end to end
  (c) N trials x 10 iterations of sleep(0.05) at concurrency 2: wall time vs the ideal
  (d) time from interpreter start to the first stored result, Ray start included
  (e) peak RSS of the driver's process tree during (a) (a local Ray's processes are its children)
Target: tunesmith at least 3x better than Ray Tune on (a), (b) and the overhead part of (c).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import tunesmith as ts


def _ts_noop(config):
    ts.report({"x": 1})


def _ts_tight(config):
    for i in range(config["n"]):
        ts.report({"loss": 1.0 / (i + 1)})


def _ts_sleepy(config):
    for _ in range(10):
        time.sleep(0.05)
        ts.report({"v": 1})


def _tune_noop(config):
    from ray import tune

    tune.report({"x": 1})


def _tune_tight(config):
    from ray import tune

    for i in range(config["n"]):
        tune.report({"loss": 1.0 / (i + 1)})


def _tune_sleepy(config):
    from ray import tune

    for _ in range(10):
        time.sleep(0.05)
        tune.report({"v": 1})


def _ts(fn: Any, space: dict[str, Any], num: int, storage: str, max_concurrent: int | None = None) -> Any:
    from tunesmith.executors.ray import RayBackend

    return ts.run(fn, space=space, num_samples=num, storage_path=storage, verbose=0, backend=RayBackend(),
                  max_concurrent=max_concurrent)


def _tune(fn: Any, space: dict[str, Any], num: int, storage: str, max_concurrent: int | None = None) -> Any:
    from ray import tune

    tuner = tune.Tuner(tune.with_resources(fn, {"cpu": 1}), param_space=space,
                       tune_config=tune.TuneConfig(num_samples=num, max_concurrent_trials=max_concurrent),
                       run_config=tune.RunConfig(storage_path=storage, verbose=0))
    return tuner.fit()


FIRST_TS = r"""
import sys, time, ray
import tunesmith as ts
from tunesmith.executors.ray import RayBackend
class First(ts.Callback):
    def on_trial_results(self, trial, results):
        print(repr(time.time()), flush=True); import os; os._exit(0)
def f(config):
    ts.report({"x": 1})
ts.run(f, storage_path=sys.argv[1], verbose=0, callbacks=[First()], backend=RayBackend())
"""

FIRST_TUNE = r"""
import sys, time, ray
from ray import tune
class First(tune.Callback):
    def on_trial_result(self, iteration, trials, trial, result, **info):
        print(repr(time.time()), flush=True); import os; os._exit(0)
def f(config):
    tune.report({"x": 1})
tune.Tuner(f, run_config=tune.RunConfig(storage_path=sys.argv[1], verbose=0, callbacks=[First()])).fit()
"""


def _first(code: str, storage: str, repeats: int) -> float:
    times = []
    path = os.path.join(storage, "first.py")
    with open(path, "w") as f:
        f.write(code)
    for _ in range(repeats):
        t0 = time.time()
        out = subprocess.run([sys.executable, path, tempfile.mkdtemp(dir=storage)], capture_output=True,
                             text=True, timeout=300)
        times.append(float(out.stdout.strip().splitlines()[-1]) - t0)
    times.sort()
    return times[len(times) // 2]


def main(args: Any, peak_rss: Any) -> None:
    import ray

    try:
        import ray.tune  # noqa: F401

        have_tune = True
    except ImportError:
        have_tune = False
    n_trials = 50 if args.quick else 200
    n_reports = 1000 if args.quick else 5000
    n_sleepy = 8 if args.quick else 40
    storage = tempfile.mkdtemp(prefix="tunesmith_bench_ray_")
    if args.address:
        ray.init(address=args.address)
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    cpus = int(ray.cluster_resources().get("CPU", 0))
    out: dict[str, dict[str, float]] = {"ts": {}, "tune": {}}
    sides = [("ts", _ts)] + ([("tune", _tune)] if have_tune else [])
    for key, run in sides:
        with peak_rss() as rss:
            t = time.perf_counter()
            run(_ts_noop if key == "ts" else _tune_noop, {}, n_trials, storage)
            out[key]["a"] = n_trials / (time.perf_counter() - t)
        out[key]["e"] = rss.peak / 2**20
        t = time.perf_counter()
        run(_ts_tight if key == "ts" else _tune_tight, {"n": n_reports}, 4, storage)
        out[key]["b"] = 4 * n_reports / (time.perf_counter() - t)
        t = time.perf_counter()
        run(_ts_sleepy if key == "ts" else _tune_sleepy, {}, n_sleepy, storage, 2)
        out[key]["c"] = time.perf_counter() - t
    if not args.address:
        ray.shutdown()  # (d) starts its own Ray, as a user's script would
        out["ts"]["d"] = _first(FIRST_TS, storage, 3)
        if have_tune:
            out["tune"]["d"] = _first(FIRST_TUNE, storage, 3)

    shutil.rmtree(storage, ignore_errors=True)
    ideal = n_sleepy * 10 * 0.05 / 2

    def cell(key: str, w: str, fmt: str) -> str:
        v = out[key].get(w)
        return "-" if v is None else format(v, fmt)

    def ratio(w: str, higher_better: bool) -> str:
        a, b = out["ts"].get(w), out["tune"].get(w)
        if a is None or b is None:
            return "-"
        if w == "c":  # compare the overhead above the ideal wall time
            a, b = a - ideal, b - ideal
        r = (a / b) if higher_better else (b / a if a > 0 else float("inf"))
        return f"{r:.1f}x"

    rows = [
        (f"(a) {n_trials} no-op trials", "trials/s", cell("ts", "a", ",.1f"), cell("tune", "a", ",.1f"),
         ratio("a", True)),
        (f"(b) 4 x {n_reports} reports", "results/s", cell("ts", "b", ",.0f"), cell("tune", "b", ",.0f"),
         ratio("b", True)),
        (f"(c) {n_sleepy} x 10 x sleep(0.05), conc 2 (ideal {ideal:.1f} s)", "wall s", cell("ts", "c", ".2f"),
         cell("tune", "c", ".2f"), ratio("c", False) + " (overhead)"),
        ("(d) start to first stored result (Ray start included)", "s", cell("ts", "d", ".2f"),
         cell("tune", "d", ".2f"), ratio("d", False)),
        ("(e) peak RSS during (a), process tree", "MB", cell("ts", "e", ".0f"), cell("tune", "e", ".0f"),
         ratio("e", False)),
    ]
    from rich.console import Console
    from rich.table import Table

    where = f"cluster {args.address}" if args.address else "local"
    title = (f"tunesmith on Ray {ray.__version__} ({cpus} CPUs, {where}), Python {sys.version.split()[0]}"
             + ("" if have_tune else " -- ray.tune not importable: no Ray Tune"))
    table = Table(title=title)
    for col in ("workload", "unit", "tunesmith (ray)", "Ray Tune", "tunesmith vs Ray Tune (target >= 3x)"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    Console(width=160).print(table)
