"""How long one process waits for another's answer on this machine, apart from any work: the floor under the
round trip a worker makes between two trials (issue 19 row 4).

    .venv/bin/python benchmarks/roundtrip.py [--messages N] [--rounds K]

Two processes (a fork) pass one byte back and forth over a socketpair, N times, the answering side either
blocked in ``recv`` (the kernel wakes it: what tunesmith's worker and driver do) or spinning on a non-blocking
socket (no wake-up at all). K rounds, the two ways interleaved. Prints one table: the median and 90th
percentile of a round trip in microseconds, per way and round. Compare it with the driver's CPU per trial that
``benchmarks/scale.py --rows 4`` prints: when a trial's wait is much longer than this round trip, it is the
driver's work that the worker waits for, not the wake-ups.
"""

from __future__ import annotations

import argparse
import os
import socket
import time


def _answer(sock: socket.socket, spin: bool) -> None:
    """The child: answer every byte until ``q``; never returns."""
    sock.setblocking(not spin)
    while True:
        while True:
            try:
                data = sock.recv(64)
                break
            except BlockingIOError:
                continue  # spinning: ask again at once
        if data == b"q" or not data:
            os._exit(0)
        sock.send(b"p")


def round_trips(messages: int, spin: bool) -> list[float]:
    """``messages`` round trips to a forked child, each in microseconds."""
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the child answers, and exits without running anything of the parent's
        ours.close()
        _answer(theirs, spin)
    theirs.close()
    out = []
    try:
        for _ in range(messages):
            t = time.perf_counter_ns()
            ours.send(b"x")
            ours.recv(64)
            out.append((time.perf_counter_ns() - t) / 1000)
        ours.send(b"q")
    finally:
        ours.close()
        os.waitpid(pid, 0)
    return out


def _count(text: str) -> int:
    """A command-line count: a whole number of at least 1 (a median of no round trips is not a figure)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> list[tuple[str, int, float, float]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=_count, default=5000, help="round trips per way and round (default 5000)")
    ap.add_argument("--rounds", type=_count, default=3, help="rounds, the two ways interleaved (default 3)")
    args = ap.parse_args(argv)
    rows = []
    for r in range(1, args.rounds + 1):
        for spin in (False, True):
            times = sorted(round_trips(args.messages, spin))
            rows.append(("spinning" if spin else "blocked in recv", r, times[len(times) // 2],
                         times[int(len(times) * 0.9)]))
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"socketpair round trip between two processes, {os.cpu_count()} cores, "
                        f"{args.messages:,} messages a way and round")
    for col in ("answering side", "round", "median us", "p90 us"):
        table.add_column(col)
    for way, r, median, p90 in rows:
        table.add_row(way, str(r), f"{median:.1f}", f"{p90:.1f}")
    Console(width=120).print(table)
    return rows


if __name__ == "__main__":
    main()
