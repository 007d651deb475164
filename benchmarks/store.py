"""What storing a result costs the driver, alone and beside a busy thread of the same process.

    .venv/bin/python benchmarks/store.py [--results N] [--batch B] [--repeat K]

Prints one table: microseconds per result row for ``Store.append_results`` (rows in multi-row INSERT
statements) and for ``executemany`` (one step per row), N rows in transactions of B rows, medians of K
runs, each with nothing else running and with a thread that computes in Python beside it (what the file
loggers' writer or a user's callback thread can be). ``executemany`` gives up the interpreter lock around
every row, and the busy thread keeps it for up to the switch interval (5 ms) each time.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time

from rich.console import Console
from rich.table import Table

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tunesmith.store.sqlite import Store  # noqa: E402


def executemany(db: sqlite3.Connection, rows: list) -> None:
    db.executemany("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def per_row_us(insert, n: int, batch: int, flag: object = 0) -> float:
    """``flag``: the row's checkpoint flag, an int as the driver writes it (a bool binds through sqlite3's adapter
    lookup: the table's "flag as a bool" row)."""
    with tempfile.TemporaryDirectory() as d:
        store = Store(os.path.join(d, "e.db"))
        t0 = time.time()
        rows = [(1 + i % 2, i // 2 + 1, 0.001 * i, t0 + i, '{"loss": %r}' % (1 / (i + 1)), 0, flag)
                for i in range(n)]
        with store.transaction() as db:
            store.insert_trial(db, 1, {}, {}, "RUNNING")
            store.insert_trial(db, 2, {}, {}, "RUNNING")
        t = time.perf_counter()
        for k in range(0, n, batch):
            with store.transaction() as db:
                insert(db, rows[k:k + batch])
        dt = time.perf_counter() - t
        assert store.count_results() == n
        store.close()
    return dt / n * 1e6


class Busy:
    """A thread that computes in Python until stopped."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        x = 0
        while not self._stop.is_set():
            for i in range(1000):
                x += i

    def __enter__(self) -> Busy:
        self._t.start()
        return self

    def __exit__(self, *a) -> None:
        self._stop.set()
        self._t.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=2_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    table = Table(title=f"storing {args.results:,} results in transactions of {args.batch:,}, us per row "
                        f"(median of {args.repeat})")
    for col in ("insert", "alone", "beside a busy thread"):
        table.add_column(col)
    for name, fn, flag in (("Store.append_results", Store.append_results, 0), ("executemany", executemany, 0),
                           ("Store.append_results, flag as a bool", Store.append_results, False)):
        # executemany beside a busy thread takes milliseconds a row: fewer rows for it
        n_busy = args.results if fn is Store.append_results else max(args.batch, args.results // 100)
        alone = statistics.median(per_row_us(fn, args.results, args.batch, flag) for _ in range(args.repeat))
        with Busy():
            busy = statistics.median(per_row_us(fn, n_busy, min(args.batch, n_busy), flag)
                                     for _ in range(args.repeat))
        table.add_row(name, f"{alone:,.2f}", f"{busy:,.2f}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
