"""Short trials, two source trees compared A B A B in fresh processes (issue 19 rows 4 and 5).

    .venv/bin/python benchmarks/short_ab.py BEFORE_TREE AFTER_TREE [--rounds 6]

e.g. ``git worktree add /tmp/before HEAD~1`` and then ``benchmarks/short_ab.py /tmp/before .``. Each round
runs one process per tree (their order alternating from round to round), each with its tree first on
``PYTHONPATH`` and doing, after one warm-up trial: 2,000 no-op trials (trials per second), 3,000 FIFO trials
sleeping 1-5 ms (wall over their sleeps spread on the cores) and 6,000 ASHA trials of 9 sleeps each (wall over
the sleeps the trials ran, spread on the cores). Prints every round and the medians. This machine's speed
moves within minutes: only the interleaved medians compare the trees.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

# The trials are scale.py's (rows 4 and 5), imported in the child: with PYTHONPATH set, scale.py leaves the tree
# on it first, so the child runs that tree's tunesmith.
CHILD = r'''
import json, os, shutil, sys, tempfile
sys.path.insert(0, sys.argv[1])
from scale import ITERS, noop, run, short, short_iters
import tunesmith as ts

CORES = os.cpu_count() or 1
root = tempfile.mkdtemp(prefix="tunesmith_short_ab_")
try:
    out = {}
    run(noop, {}, 1, root)
    out["noop_per_s"] = 2000 / run(noop, {}, 2000, root)[1]
    res, wall = run(short, {"ms": ts.uniform(1, 5)}, 3000, root, seed=0)
    out["fifo_over_sleeps"] = wall / (sum(t.config["ms"] for t in res.trials) / 1000 / CORES)
    res, wall = run(short_iters, {"ms": ts.uniform(1, 5), "q": ts.uniform(0, 1)}, 6000, root, seed=0,
                    metric="loss", mode="min", scheduler=ts.ASHA(max_t=ITERS, grace_period=1, reduction_factor=3))
    slept = sum(t.config["ms"] / 1000 / ITERS * (t.last_result or {}).get("training_iteration", 0) for t in res.trials)
    out["asha_over_sleeps"] = wall / (slept / CORES)
finally:
    shutil.rmtree(root, ignore_errors=True)
print(json.dumps(out))
'''

KEYS = ("noop_per_s", "fifo_over_sleeps", "asha_over_sleeps")


def measure(tree: str) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # both trees' bytecode compiled once, as a user's install has it
    here = os.path.dirname(os.path.abspath(__file__))
    done = subprocess.run([sys.executable, "-c", CHILD, here], env=env, capture_output=True, text=True, cwd=os.sep,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"the run with {tree} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, float]]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before", help="source tree A (a folder holding the tunesmith package)")
    ap.add_argument("after", help="source tree B")
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args(argv)
    for tree in (args.before, args.after):
        if not os.path.isfile(os.path.join(tree, "tunesmith", "__init__.py")):
            ap.error(f"{tree!r} holds no tunesmith/__init__.py")
    from rich.console import Console
    from rich.table import Table

    got: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    trees = [("A", args.before), ("B", args.after)]
    table = Table(title=f"short trials, A = {args.before}, B = {args.after}, {os.cpu_count()} cores")
    for col in ("round", "tree", "no-op trials/s", "FIFO 1-5 ms: wall / sleeps", "ASHA: wall / sleeps"):
        table.add_column(col)
    for r in range(args.rounds):
        for name, tree in trees if r % 2 == 0 else trees[::-1]:
            d = measure(tree)
            got[name].append(d)
            table.add_row(str(r), name, f"{d['noop_per_s']:,.0f}", f"{d['fifo_over_sleeps']:.3f}x",
                          f"{d['asha_over_sleeps']:.3f}x")
    for name, _tree in trees:
        med = {k: statistics.median(d[k] for d in got[name]) for k in KEYS}
        table.add_row("median", name, f"{med['noop_per_s']:,.0f}", f"{med['fifo_over_sleeps']:.3f}x",
                      f"{med['asha_over_sleeps']:.3f}x", style="bold")
    Console(width=120).print(table)
    return got


if __name__ == "__main__":
    main()
