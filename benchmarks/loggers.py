"""What the file loggers cost, and how the driver's memory grows with the trials.

    .venv/bin/python benchmarks/loggers.py [--results N] [--repeat K]      # us per result, in the loop
    .venv/bin/python benchmarks/loggers.py --trials 10000                  # whole runs, and driver memory

The first table: microseconds per result for ``CSVLogger`` and ``JSONLLogger`` in the calling thread
(``background=False``), on tmpfs when there is one (the CPU a result costs the driver's interpreter, apart
from the disk), each for results that carry the trial's JSON text (every result a trial reports) and for
results that do not (rebuilt ones); medians of K runs over N results of one trial, in batches of 500.

``--trials N``: ``measure_loggers(N)`` runs N short trials (3 results each, random search, 2 at once) on the
local backend as ``run`` does by default, with ``file_loggers=False`` and with ``file_loggers=True``, in
the temporary folder (a disk, not tmpfs: the loggers' cost is the kernel's, creating a folder and three files
per trial), and times ``tunesmith export`` of the result; ``measure_driver_memory(N)`` runs N such trials
under ``tracemalloc`` and reports what the driver holds after warm-up, per 1,000 trials. Both return dicts
(``benchmarks/scale.py`` imports them). The machine's other load makes every number noisy: compare runs
interleaved, as ratios.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from types import SimpleNamespace
from typing import Any

from rich.console import Console
from rich.table import Table

if not os.environ.get("PYTHONPATH"):  # with PYTHONPATH set, its tunesmith (scale.py's before/after runs)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import overhead  # noqa: E402  (discard: stores are deleted when the process exits)

from tunesmith._layout import STORE_FILE  # noqa: E402
from tunesmith.callbacks.csv_json import CSVLogger, JSONLLogger  # noqa: E402
from tunesmith.trial import Result, TrialView  # noqa: E402


def results(n: int, carry_text: bool) -> list[Result]:
    out = []
    for i in range(1, n + 1):
        text = json.dumps({"loss": 1.0 / i, "acc": 1 - 1.0 / i})
        metrics = {**json.loads(text), "training_iteration": i, "time_total_s": 0.001 * i + 1e-7,
                   "timestamp": 1.79e9 + i * 1e-4}
        out.append(Result(1, i, metrics, None, text if carry_text else None))
    return out


def per_result_us(cls: type, rows: list[Result], root: str) -> float:
    logger = cls(background=False)
    logger.on_experiment_start(SimpleNamespace(path=tempfile.mkdtemp(dir=root), name="bench", trials={}))
    trial = TrialView(id=1, config={})
    start = time.perf_counter()
    for k in range(0, len(rows), 500):
        logger.on_trial_results(trial, rows[k:k + 500])
    return (time.perf_counter() - start) / len(rows) * 1e6


def _short_trial(config: dict[str, Any]) -> None:
    import tunesmith as ts

    for i in range(1, 4):
        ts.report({"loss": config["x"] / i, "acc": 1 - config["x"] / i})


def _disk(path: str) -> tuple[int, int, int]:
    """(entries, bytes of data, bytes on disk) under ``path``."""
    entries = data = used = 0
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            st = os.lstat(os.path.join(folder, name))
            entries += 1
            data += st.st_size if name in files else 0
            used += st.st_blocks * 512
    return entries, data, used


def _one_run(n_trials: int, root: str, file_loggers: bool | None, **extra: Any) -> dict[str, Any]:
    import tunesmith as ts

    kw: dict[str, Any] = {} if file_loggers is None else {"file_loggers": file_loggers}
    name = f"bench_{'default' if file_loggers is None else file_loggers}"
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    rs = ts.run(_short_trial, {"x": ts.uniform(0.1, 1)}, metric="loss", mode="min", num_samples=n_trials,
                max_concurrent=2, storage_path=root, name=name, verbose=0, seed=0, **kw, **extra)
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    trials_dir = os.path.join(rs.path, "trials")
    entries, data, used = _disk(trials_dir) if os.path.isdir(trials_dir) else (0, 0, 0)
    store = os.path.join(rs.path, STORE_FILE)
    return {"wall_s": wall, "driver_cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
            "driver_sys_s": cpu1.ru_stime - cpu0.ru_stime, "trial_entries": entries, "trial_data_mb": data / 1e6,
            "trial_disk_mb": used / 1e6, "store_mb": os.path.getsize(store) / 1e6 if os.path.exists(store) else 0.0,
            "path": rs.path}


def measure_loggers(n_trials: int, root: str | None = None) -> dict[str, Any]:
    """Runs of ``n_trials`` short trials: ``"default"`` (what ``run`` does unless told), ``"off"``
    (``file_loggers=False``), ``"on"`` (``file_loggers=True``); each a dict of wall and driver CPU seconds and
    what the trial folders hold (entries, MB of data, MB on disk). ``"export_s"``: ``tunesmith export`` of the
    default run's results (None where the installed tunesmith has no export)."""
    own = root is None
    root = root or tempfile.mkdtemp(prefix="tunesmith_loggers_")
    try:
        out: dict[str, Any] = {"n_trials": n_trials}
        for label, flag in (("default", None), ("off", False), ("on", True)):
            out[label] = _one_run(n_trials, os.path.join(root, label), flag)
        try:
            from tunesmith._export import export
        except ImportError:
            out["export_s"] = None
        else:
            t0 = time.perf_counter()
            export(out["default"]["path"], to=os.path.join(root, "exported"))
            out["export_s"] = time.perf_counter() - t0
        for run in ("default", "off", "on"):
            del out[run]["path"]
        return out
    finally:
        if own:
            overhead.discard(root)


def measure_driver_memory(n_trials: int, warmup: int | None = None, file_loggers: bool | None = None
                          ) -> dict[str, Any]:
    """Python memory the driver holds (``tracemalloc``) after ``warmup`` finished trials (default: a fifth, at
    most 2,000) and after ``n_trials``, in a run of short trials as ``run`` does by default (random search, no
    scheduler state); ``mb_per_1000_trials`` is the growth between the two per 1,000 trials."""
    import tunesmith as ts

    warmup = warmup if warmup is not None else min(2000, n_trials // 5)
    marks: dict[int, int] = {}

    class Mark(ts.Callback):
        done = 0

        def on_trial_complete(self, trial: Any) -> None:
            self.done += 1
            if self.done in (warmup, n_trials):
                gc.collect()
                marks[self.done] = tracemalloc.get_traced_memory()[0]

    root = tempfile.mkdtemp(prefix="tunesmith_memory_")
    tracemalloc.start()
    try:
        kw: dict[str, Any] = {} if file_loggers is None else {"file_loggers": file_loggers}
        ts.run(_short_trial, {"x": ts.uniform(0.1, 1)}, metric="loss", mode="min", num_samples=n_trials,
               max_concurrent=2, storage_path=root, name="memory", verbose=0, seed=0, callbacks=[Mark()], **kw)
    finally:
        tracemalloc.stop()
        overhead.discard(root)
    grown = marks[n_trials] - marks[warmup]
    return {"n_trials": n_trials, "warmup": warmup, "mb_at_warmup": marks[warmup] / 1e6,
            "mb_at_end": marks[n_trials] / 1e6, "mb_per_1000_trials": grown / 1e6 / ((n_trials - warmup) / 1000)}


def _whole_runs(n_trials: int) -> None:
    import tunesmith

    loggers = measure_loggers(n_trials)
    table = Table(title=f"{n_trials:,} short trials (3 results each), {tunesmith.__file__}")
    for col in ("run", "wall s", "driver CPU s", "of which kernel", "trial entries", "data MB", "on disk MB",
                "store MB"):
        table.add_column(col)
    for label in ("default", "off", "on"):
        r = loggers[label]
        table.add_row(label if label == "default" else f"loggers {label}", f"{r['wall_s']:.2f}",
                      f"{r['driver_cpu_s']:.2f}", f"{r['driver_sys_s']:.2f}", f"{r['trial_entries']:,}",
                      f"{r['trial_data_mb']:.1f}", f"{r['trial_disk_mb']:.1f}", f"{r['store_mb']:.1f}")
    Console(width=150).print(table)
    if loggers["export_s"] is not None:
        print(f"tunesmith export of the default run: {loggers['export_s']:.2f} s")
    memory = measure_driver_memory(n_trials)
    print(f"driver memory (tracemalloc): {memory['mb_at_warmup']:.2f} MB after {memory['warmup']:,} trials, "
          f"{memory['mb_at_end']:.2f} MB after {n_trials:,}: {memory['mb_per_1000_trials']:.3f} MB per 1,000 trials")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--trials", type=int, default=0, help="whole runs of this many trials, and driver memory")
    args = ap.parse_args()
    if args.trials:
        _whole_runs(args.trials)
        return
    root = tempfile.mkdtemp(prefix="tunesmith_loggers_", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    cases = [("CSVLogger, reported results", CSVLogger, True), ("CSVLogger, rebuilt results", CSVLogger, False),
             ("JSONLLogger, trial's JSON text", JSONLLogger, True), ("JSONLLogger, encoded again", JSONLLogger, False)]
    table = Table(title=f"file loggers, us per result ({args.results:,} results, median of {args.repeat}, "
                        f"{os.cpu_count()} cores, Python {sys.version.split()[0]})")
    for col in ("logger", "us/result", "runs"):
        table.add_column(col)
    for label, cls, carry in cases:
        rows = results(args.results, carry)
        runs = [per_result_us(cls, rows, root) for _ in range(args.repeat)]
        table.add_row(label, f"{statistics.median(runs):.2f}", ", ".join(f"{r:.2f}" for r in runs))
    Console().print(table)


if __name__ == "__main__":
    main()
