"""What the default file loggers cost per result, in the calling thread (``background=False``), on tmpfs
when there is one: the CPU a result costs the driver's interpreter, apart from the disk.

    .venv/bin/python benchmarks/loggers.py [--results N] [--repeat K]

Prints one table: microseconds per result for ``CSVLogger`` and ``JSONLLogger``, each for results that
carry the trial's JSON text (every result a trial reports) and for results that do not (rebuilt ones);
medians of K runs over N results of one trial, written in batches of 500 as the controller does.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from types import SimpleNamespace

from rich.console import Console
from rich.table import Table

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
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
