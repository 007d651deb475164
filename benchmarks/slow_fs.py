"""(a) with the file loggers on a latency-bound filesystem, simulated: every file write and folder the
loggers make first waits L milliseconds (as on NFS, or a network or virtual disk in a slow phase; the wait
releases the interpreter lock, as waiting on a device does). Run on tmpfs so that only the simulated
latency counts.

    .venv/bin/python benchmarks/slow_fs.py [--latency-ms 1 0.3] [--trials 500] [--repeat 3]

Prints one table: trials/s (median of the runs) with the writer held to one thread, and as shipped
(more threads start while every write of a batch takes over 0.5 ms).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

from rich.console import Console
from rich.table import Table

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import tunesmith as ts  # noqa: E402
from tunesmith.callbacks import _writer, csv_json  # noqa: E402


def noop(config):
    ts.report({"x": 1})


def slowed(latency_s: float) -> None:
    """Every file the loggers write, and every trial folder they make, waits ``latency_s`` first."""
    append, mkdir = csv_json._append, os.mkdir

    def slow_append(*a, **k):
        time.sleep(latency_s)
        return append(*a, **k)

    def slow_mkdir(*a, **k):
        time.sleep(latency_s)
        return mkdir(*a, **k)

    fake_os = type(sys)("os")
    fake_os.__dict__.update(os.__dict__)
    fake_os.mkdir = slow_mkdir
    csv_json._append, csv_json.os = slow_append, fake_os


def rate(storage: str, n: int, repeat: int) -> float:
    rates = []
    for _ in range(repeat):
        t = time.perf_counter()
        ts.run(noop, num_samples=n, storage_path=storage, verbose=0)
        rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency-ms", type=float, nargs="+", default=[1.0, 0.3])
    ap.add_argument("--trials", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    storage = tempfile.mkdtemp(prefix="tunesmith_slowfs_", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    ts.run(noop, num_samples=1, storage_path=storage, verbose=0)  # one-time imports, the fork server
    real = (csv_json._append, csv_json.os)
    shipped = _writer.Writer.MAX_THREADS
    table = Table(title=f"(a) {args.trials} no-op trials, file loggers on a simulated slow filesystem, trials/s")
    for col in ("latency per write", "one writer thread", "as shipped"):
        table.add_column(col)
    for ms in args.latency_ms:
        slowed(ms / 1000)
        try:
            _writer.Writer.MAX_THREADS = 1
            one = rate(storage, args.trials, args.repeat)
            _writer.Writer.MAX_THREADS = shipped
            many = rate(storage, args.trials, args.repeat)
        finally:
            csv_json._append, csv_json.os = real
            _writer.Writer.MAX_THREADS = shipped
        table.add_row(f"{ms:g} ms", f"{one:,.0f}", f"{many:,.0f}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
