"""First paint of the dashboard's experiment page over a large experiment: 10,000 trials, 1,000,000 results.

Builds the experiment directly through the Store API (no runs), serves it on a free port and times each data
endpoint the experiment page asks for on first paint, server-side (urllib, cold then warm), and prints a table.
Then, in Debian's headless Chromium (Playwright, the flags of tests/browser_helpers.py; skipped without it):
the experiment page's first paint as a user sees it (navigation start until the trial table has its rows and
the learning curves are drawn), and the live latency (a result committed to the store by a writer, until the
page's curve shows it, without reload).

    .venv/bin/python benchmarks/dashboard.py [--trials 10000] [--results 100] [--keep DIR] [--no-browser]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tunesmith.dashboard import start  # noqa: E402
from tunesmith.store.sqlite import Store, dumps  # noqa: E402


def build(folder: str, trials: int, per_trial: int) -> None:
    store = Store(os.path.join(folder, "experiment.db"), create=True)
    rng = random.Random(0)
    now = time.time()
    with store.transaction() as db:
        store.set_meta(db, "spec", {"name": "big", "metric": "loss", "mode": "min", "num_samples": trials,
                                    "scheduler": {"type": "ASHA"}})
        store.set_meta(db, "status", "finished")
        store.set_meta(db, "created", now - 3600)
    store.publish()
    batch = []
    for tid in range(1, trials + 1):
        config = {"lr": 10 ** rng.uniform(-4, -1), "width": rng.choice([32, 64, 128]), "seed": tid % 3}
        with store.transaction() as db:
            store.insert_trial(db, tid, config, {"cpu": 1.0}, "TERMINATED", created=now - 3600 + tid * 0.3,
                               start_time=now - 3600 + tid * 0.3)
            loss = 1.0
            for it in range(1, per_trial + 1):
                loss *= 0.97 + 0.02 * rng.random()
                t = now - 3600 + tid * 0.3 + it * 0.1
                batch.append((tid, it, it * 0.1, t, dumps({"loss": loss, "acc": 1 - loss})))
            store.append_results(db, batch)
            last = {"loss": loss, "acc": 1 - loss, "training_iteration": per_trial}
            store.update_trial(db, tid, iteration=per_trial, last_result=dumps(last), end_time=now - 3000 + tid * 0.3)
            batch.clear()
    store.close()


def timed(url: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as f:
        body = f.read()
    return time.perf_counter() - t0, len(body)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--results", type=int, default=100, help="results per trial")
    ap.add_argument("--keep", default=None, help="build (or reuse) the experiment under this folder")
    ap.add_argument("--no-browser", action="store_true", help="skip the Chromium timings")
    ap.add_argument("--repeats", type=int, default=3, help="page loads and live updates timed in the browser")
    args = ap.parse_args()
    root = args.keep or tempfile.mkdtemp(prefix="tunesmith-dash-bench-")
    folder = os.path.join(root, "big")
    try:
        if not os.path.exists(os.path.join(folder, "experiment.db")):
            t0 = time.perf_counter()
            build(folder, args.trials, args.results)
            print(f"built {args.trials} trials x {args.results} results in {time.perf_counter() - t0:.1f} s")
        board = start(root)
        base = board.url.rstrip("/")
        page = json.loads(urllib.request.urlopen(base + "/api/e/big/trials?limit=50").read())
        ids = ",".join(str(r["id"]) for r in page["rows"])
        steps = [("page shell", "/e/big"), ("summary", "/api/e/big/summary"),
                 ("trial table (50 of 10k, by id)", "/api/e/big/trials?limit=50"),
                 ("trial table sorted by loss", "/api/e/big/trials?limit=50&sort=m:loss"),
                 ("learning curves (50 trials)", f"/api/e/big/curves?metric=loss&t={ids}"),
                 ("why / lineage", "/api/e/big/events"), ("experiment list", "/api/experiments"),
                 ("other plots (report's functions)", "/api/e/big/plots?metric=loss")]
        rows = []
        for label, path in steps:
            cold, size = timed(base + path)
            warm, _ = timed(base + path)
            rows.append((label, cold, warm, size))
        first_paint = sum(rows[i][1] for i in (0, 1, 2, 4))  # what the page asks first (not the sorted table)
        print(f"{'endpoint':36} {'cold s':>8} {'warm s':>8} {'bytes':>10}")
        for label, cold, warm, size in rows:
            print(f"{label:36} {cold:8.3f} {warm:8.3f} {size:10d}")
        print(f"first paint (shell + summary + table + curves, in sequence, cold): {first_paint:.3f} s")
        # a live poll: every curve of the page up to date (nothing new): what the page asks every 0.5 s
        cursors = json.loads(urllib.request.urlopen(base + f"/api/e/big/curves?metric=loss&t={ids}").read())
        t = ",".join(f"{k}:{v['cursor'][0]}:{v['cursor'][1]}" for k, v in cursors["trials"].items())
        poll, size = timed(base + f"/api/e/big/curves?metric=loss&t={t}")
        print(f"{'live poll (50 cursors, nothing new)':36} {poll:8.3f} {'':>8} {size:10d}")
        if not args.no_browser:
            browser_timings(board.url, folder, args.results, args.repeats)
        board.stop()
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]  # as tests/browser_helpers.py
# the page is painted: the trial table has its rows and the learning curves are drawn
_PAINTED = ("() => document.querySelectorAll('#trials tbody tr[data-trial]').length > 0 && window.__ts.points > 0"
            " && document.querySelector('#plot-curves .main-svg') !== null")


def browser_timings(url: str, folder: str, per_trial: int, repeats: int) -> None:
    """First paint and live latency of the experiment page in headless Chromium."""
    if not os.path.exists(CHROMIUM):
        print(f"browser timings skipped: no {CHROMIUM}")
        return
    from playwright.sync_api import sync_playwright

    paints: list[float] = []
    floors: list[float] = []  # plotly.js parsed: the part of first paint that is the browser's, not the page's
    lags: list[float] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for _ in range(repeats):  # a fresh context each time: no cached plotly.js, a cold page
                context = browser.new_context(viewport={"width": 1280, "height": 1000})
                page = context.new_page()
                page.goto(url + "e/big", wait_until="commit")
                page.wait_for_function("() => window.Plotly !== undefined", timeout=60_000, polling="raf")
                floors.append(page.evaluate("() => performance.now()") / 1000)
                page.wait_for_function(_PAINTED, timeout=60_000, polling="raf")
                paints.append(page.evaluate("() => performance.now()") / 1000)
                context.close()
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url + "e/big", wait_until="commit")
            page.wait_for_function(_PAINTED, timeout=60_000, polling="raf")
            store = Store(os.path.join(folder, "experiment.db"))
            try:
                iteration = store.trials()[0]["iteration"]
                for _ in range(repeats):
                    iteration += 1
                    with store.transaction() as db:
                        store.append_results(db, [(1, iteration, iteration * 0.1, time.time(),
                                                   dumps({"loss": 0.01, "acc": 0.99}))])
                        store.update_trial(db, 1, iteration=iteration)
                    written = time.time()
                    page.wait_for_function(
                        "n => { var d = document.getElementById('plot-curves').data || [];"
                        " var t = d.find(x => x.name === 'trial_00001');"
                        " if (t && Math.max.apply(null, t.x) >= n) { window.__seen = Date.now(); return true; }"
                        " return false; }", arg=iteration, timeout=30_000, polling="raf")
                    lags.append(page.evaluate("() => window.__seen") / 1000 - written)
            finally:
                store.close()
        finally:
            browser.close()
    print(f"Chromium first paint of the experiment page (table + curves drawn), {repeats} cold loads: "
          f"median {sorted(paints)[len(paints) // 2]:.2f} s, max {max(paints):.2f} s; of which plotly.js parsed "
          f"(the floor, not the page's work) at median {sorted(floors)[len(floors) // 2]:.2f} s")
    print(f"Chromium live latency (result committed -> on the page's curve), {repeats} results: "
          f"median {sorted(lags)[len(lags) // 2]:.2f} s, max {max(lags):.2f} s (the page polls every 0.5 s)")


if __name__ == "__main__":
    main()
