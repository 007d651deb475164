"""`tunesmith report` over a big experiment: the write's wall time and peak memory, the page's size, and how
long headless Chromium takes to draw every plot.

    .venv/bin/python benchmarks/report_scale.py [--trials 100] [--results 10000] [--no-browser] [--keep DIR]

Builds the experiment directly through the Store API (no runs; 100 x 10,000 = 1,000,000 results by default),
writes the report in a fresh subprocess (so its peak RSS is the report's alone; the subprocess imports
whichever tunesmith ``PYTHONPATH`` names, which is how before/after are compared), then opens the page in
Debian's Chromium through Playwright and waits until every plot div holds a drawn plotly figure.

``measure_report(n_trials, n_results)`` returns the numbers as a dict (``benchmarks/scale.py`` imports it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

if not os.environ.get("PYTHONPATH"):  # with PYTHONPATH set, its tunesmith (scale.py's before/after runs)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tunesmith.store.sqlite import Store, dumps  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # as tests/browser_helpers.py

_WRITE = """
import json, resource, sys, time
t0 = time.perf_counter()
from tunesmith.plots.report import write_report
titles = write_report(sys.argv[1], sys.argv[2])
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
import tunesmith
print(json.dumps({"wall_s": wall, "peak_rss_mb": peak, "titles": titles, "from": tunesmith.__file__}))
"""


def build(folder: str, trials: int, per_trial: int, seed: int = 0) -> None:
    """An ASHA-like finished experiment: ``trials`` trials of ``per_trial`` results each (loss, acc), an lr
    and width from a few values and 3 seeds (so the seed-averaged curves apply), 8 trials at a time."""
    store = Store(os.path.join(folder, "experiment.db"), create=True)
    rng = random.Random(seed)
    now = time.time()
    start = now - 3600
    with store.transaction() as db:
        store.set_meta(db, "spec", {"name": "big", "metric": "loss", "mode": "min", "num_samples": trials,
                                    "scheduler": {"type": "FIFO"}})
        store.set_meta(db, "status", "finished")
        store.set_meta(db, "created", start)
    store.publish()
    slots = [start] * 8  # when each of 8 workers is next free
    for tid in range(1, trials + 1):
        config = {"lr": rng.choice([1e-4, 1e-3, 1e-2, 1e-1]), "width": rng.choice([32, 64, 128]), "seed": tid % 3}
        slot = min(range(len(slots)), key=slots.__getitem__)
        begin = slots[slot]
        step = 0.01
        batch = []
        loss = 1.0
        for it in range(1, per_trial + 1):
            loss *= 0.9995 + 0.001 * (rng.random() - 0.5)
            batch.append((tid, it, it * step, begin + it * step, dumps({"loss": loss, "acc": 1 - loss})))
        end = begin + per_trial * step
        slots[slot] = end
        with store.transaction() as db:
            store.insert_trial(db, tid, config, {"cpu": 1.0}, "TERMINATED", created=begin, start_time=begin)
            store.append_results(db, batch)
            last = {"loss": loss, "acc": 1 - loss, "training_iteration": per_trial}
            store.update_trial(db, tid, iteration=per_trial, last_result=dumps(last), end_time=end)
    store.close()


def write(folder: str, out: str, pythonpath: str | None = None) -> dict[str, Any]:
    """Write the report of ``folder`` to ``out`` in a fresh interpreter: wall, peak RSS, plot titles."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    # run from the output's folder: ``-c`` puts the working directory first on the path, and a checkout
    # there would shadow PYTHONPATH's tunesmith
    proc = subprocess.run([sys.executable, "-c", _WRITE, folder, out], env=env, capture_output=True, text=True,
                          timeout=1800, check=False, cwd=os.path.dirname(out))
    if proc.returncode != 0:
        raise RuntimeError(f"the report's write failed:\n{proc.stderr[-3000:]}")
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    answer["html_mb"] = os.path.getsize(out) / 1e6
    return answer


def draw(path: str, n_plots: int, timeout_s: float = 300) -> float:
    """Seconds from navigating to the page until every plot div holds a drawn plotly figure."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            t0 = time.perf_counter()
            page.goto("file://" + path, wait_until="load", timeout=timeout_s * 1000)
            page.wait_for_function(
                "n => document.querySelectorAll('.plot.js-plotly-plot').length === n &&"
                " [...document.querySelectorAll('.plot')].every(d => d.querySelector('.main-svg'))",
                arg=n_plots, timeout=timeout_s * 1000, polling=50)
            return time.perf_counter() - t0
        finally:
            browser.close()


def measure_report(n_trials: int = 100, n_results: int = 10_000, *, browser: bool = True,
                   folder: str | None = None, pythonpath: str | None = None) -> dict[str, Any]:
    """Build (or reuse, with ``folder``) an experiment of ``n_trials`` x ``n_results`` results and measure its
    report: ``write_s``, ``peak_rss_mb``, ``html_mb``, ``draw_s`` (None without ``browser`` or Chromium),
    ``plots`` and ``build_s``."""
    root = tempfile.mkdtemp(prefix="tunesmith-report-bench-")
    try:
        exp = folder or os.path.join(root, "big")
        build_s = 0.0
        if not os.path.exists(os.path.join(exp, "experiment.db")):
            t0 = time.perf_counter()
            build(exp, n_trials, n_results)
            build_s = time.perf_counter() - t0
        out = os.path.join(root, "report.html")
        written = write(exp, out, pythonpath)
        drawn = draw(out, len(written["titles"])) if browser and os.path.exists(CHROMIUM) else None
        return {"tunesmith": written["from"], "trials": n_trials, "results": n_trials * n_results, "build_s": build_s,
                "write_s": written["wall_s"], "peak_rss_mb": written["peak_rss_mb"], "html_mb": written["html_mb"],
                "draw_s": drawn, "plots": len(written["titles"])}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--results", type=int, default=10_000, help="results per trial")
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--keep", default=None, help="build (or reuse) the experiment in this folder")
    ap.add_argument("--compare", nargs="*", default=None, metavar="PYTHONPATH",
                    help="tunesmith trees to compare, interleaved (A B A B ...), over the same store")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    keep = args.keep or tempfile.mkdtemp(prefix="tunesmith-report-store-")
    try:
        folder = os.path.join(keep, "big")
        if not os.path.exists(os.path.join(folder, "experiment.db")):
            t0 = time.perf_counter()
            build(folder, args.trials, args.results)
            print(f"built {args.trials} trials x {args.results} results in {time.perf_counter() - t0:.1f} s")
        trees = args.compare or [None]
        print(f"{'tree':40} {'write s':>8} {'peak MB':>8} {'HTML MB':>8} {'draw s':>8} {'plots':>6}")
        for _ in range(args.rounds):
            for tree in trees:
                m = measure_report(args.trials, args.results, browser=not args.no_browser, folder=folder,
                                   pythonpath=tree)
                draw_s = "-" if m["draw_s"] is None else f"{m['draw_s']:8.2f}"
                print(f"{tree or 'this tree':40} {m['write_s']:8.2f} {m['peak_rss_mb']:8.0f} {m['html_mb']:8.2f} "
                      f"{draw_s:>8} {m['plots']:6d}", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(keep, ignore_errors=True)


if __name__ == "__main__":
    main()
