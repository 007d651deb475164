"""Issue 19's table, every row beside its floor, measured in one run on this machine.

    .venv/bin/python benchmarks/scale.py                  # full sizes (the issue's workloads; many minutes)
    .venv/bin/python benchmarks/scale.py --quick          # small sizes, a smoke run (seconds per row)
    .venv/bin/python benchmarks/scale.py --rows 4,6 --json out.json
    PYTHONPATH=/work/main .venv/bin/python benchmarks/scale.py   # another tree's tunesmith (before/after)

Each row prints: what, size, measured, floor (measured in the same run: a ``multiprocessing`` pool, the
same run with ``file_loggers=False`` or without readers, one SQL pass over the store, ``python -c pass``,
...), the ratio measured/floor, the goal, and whether it is met. Ratios are what to compare across machines:
the absolute numbers move with the machine and its load (on a shared machine they are noisy; ``--rounds``
repeats the runs whose ratio is a comparison of two runs, interleaved A B A B).

Two sources per row:

* ``scale.py``: this file's own measurement, made through the public API and the CLI only (stores for the
  readers' rows are written with the Store's writer API, as ``benchmarks/dashboard.py`` does), so it runs
  against any version of tunesmith, before and after a change.
* the per-row benchmark modules beside this file, when present: ``report_scale.measure_report`` (row 1),
  ``loggers.measure_loggers`` / ``measure_driver_memory`` (2, 3),
  ``pertrial.measure_noop`` / ``measure_short_trials`` / ``measure_first_result`` / ``measure_threads``
  (4, 5, 11, 12), ``readers.measure_show`` / ``measure_dataframe`` / ``measure_lookups`` /
  ``measure_reader_beside_writer`` (6-9); row 10 has none. A missing module or function prints "not
  measured". A function returns a dict; the keys ``what, size, measured, unit, floor, ratio, goal, met``
  are shown in their columns when present (or a list of such dicts under ``lines``), any other scalar items
  as ``key=value``. Its parameters are filled by name from this run's sizes (``n_trials``, ``n_results``,
  ``n``, ``quick``, ``scheduler``, ``rounds``); a parameter with a default and no size of that name keeps
  its default.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import inspect
import json
import math
import os
import platform
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
if not os.environ.get("PYTHONPATH"):  # with PYTHONPATH set, its tunesmith (e.g. another tree, to compare)
    sys.path.insert(0, os.path.dirname(HERE))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import overhead  # noqa: E402  (the floors: a multiprocessing pool, first-result latency)

import tunesmith as ts  # noqa: E402

TS_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(ts.__file__)))
CHROMIUM = "/usr/bin/chromium"
FLOOR_PER_TRIAL = 10  # row 1's floor: the report of the million's trials with this many results each
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

# The sizes, and the quick ones (a smoke run: the table's shape, not its numbers).
FULL = {"million_trials": 100, "million_per_trial": 10_000, "many_trials": 10_000, "many_per_trial": 10,
        "wide_trials": 5_000, "wide_params": 20, "ls_trials": 25_000, "noop": 500, "short": 10_000,
        "memory_trials": 20_000, "memory_warmup": 10_000, "torch_n": 384, "torch_iters": 300, "draw_timeout": 300}
QUICK = {"million_trials": 10, "million_per_trial": 200, "many_trials": 200, "many_per_trial": 5,
         "wide_trials": 100, "wide_params": 20, "ls_trials": 400, "noop": 50, "short": 100,
         "memory_trials": 300, "memory_warmup": 100, "torch_n": 64, "torch_iters": 20, "draw_timeout": 60}


# ------------------------------------------------------------------------------------------------ lines
@dataclass
class Line:
    """One line of the table. ``ratio`` is measured / floor; ``goal`` is checked on the ratio (``on='ratio'``)
    or on the measured value (``on='value'``)."""

    row: int
    what: str
    size: str = ""
    measured: Any = None  # a number, or text
    unit: str = ""
    floor: float | None = None
    floor_what: str = ""
    goal: str = ""
    met: bool | None = None
    ratio: float | None = None
    by: str = "scale.py"
    note: str = ""

    def check(self, on: str, op: str, limit: float) -> Line:
        """Compute the ratio (unless given: e.g. the median of interleaved pairs' ratios) and whether the goal
        ``<on> <op> <limit>`` holds."""
        if self.ratio is None and isinstance(self.measured, (int, float)) and self.floor:
            self.ratio = self.measured / self.floor
        value = self.ratio if on == "ratio" else self.measured
        if not self.goal:
            unit = "" if on == "ratio" else " " + self.unit
            self.goal = f"{'ratio ' if on == 'ratio' else ''}{op} {_num(limit)}{unit}"
        if isinstance(value, (int, float)) and not math.isnan(value):
            self.met = value <= limit if op == "<=" else value >= limit
        return self

    def with_ratio(self) -> Line:
        if isinstance(self.measured, (int, float)) and self.floor:
            self.ratio = self.measured / self.floor
        return self


def _num(x: Any) -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 1:
        return f"{x:.2f}"
    if a >= 0.01:
        return f"{x:.3f}"
    return f"{x:.2e}"


# ------------------------------------------------------------------------------------------- mechanics
class Context:
    """Sizes, a scratch folder, and the stores several rows share (built once, on first use)."""

    def __init__(self, sizes: dict[str, int], rounds: int, root: str, page_cache: tuple[int, ...] = ()) -> None:
        self.s = sizes
        self.rounds = rounds
        self.root = root
        self.page_cache = page_cache  # row 3 again with these SQLite page caches (KiB)
        self._built: dict[str, str] = {}

    def store(self, key: str) -> str:
        """The folder of a shared experiment: 'million' (row 1, 7, 8), 'thousand' (1), 'many' (6, 8, 10),
        'wide' (6)."""
        if key not in self._built:
            s = self.s
            if key == "million":
                self._built[key] = build(os.path.join(self.root, "million"), "million", s["million_trials"],
                                         s["million_per_trial"])
            elif key == "thousand":  # the million's trials with a few results each: the same plots, little data
                self._built[key] = build(os.path.join(self.root, "million"), "thousand", s["million_trials"],
                                         FLOOR_PER_TRIAL)
            elif key == "many":
                self._built[key] = build(os.path.join(self.root, "readers"), "many", s["many_trials"],
                                         s["many_per_trial"])
            elif key == "wide":
                self._built[key] = build(os.path.join(self.root, "readers"), "wide", s["wide_trials"], 1,
                                         params=s["wide_params"])
            elif key == "ls":  # the readers' folder topped up to ls_trials trials in all
                self.store("many")
                self.store("wide")
                rest = s["ls_trials"] - s["many_trials"] - s["wide_trials"]
                if rest > 0:
                    build(os.path.join(self.root, "readers"), "rest", rest, 1)
                self._built[key] = os.path.join(self.root, "readers")
        return self._built[key]

    def fresh(self, prefix: str) -> str:
        return tempfile.mkdtemp(prefix=prefix, dir=self.root)


def build(root: str, name: str, trials: int, per_trial: int, params: int = 3, seed: int = 0) -> str:
    """An experiment of ``trials`` finished trials x ``per_trial`` results written straight into a store with
    the writer's API (no run: a million results in seconds), timed like a real run (one trial after another on
    2 slots), so the timeline and the learning curves have something to draw."""
    from tunesmith.store.sqlite import Store, dumps

    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    store = Store(os.path.join(folder, "experiment.db"), create=True)
    rng = random.Random(seed)
    now = time.time() - 3600
    with store.transaction() as db:
        store.set_meta(db, "spec", {"name": name, "metric": "loss", "mode": "min", "num_samples": trials})
        store.set_meta(db, "status", "finished")
        store.set_meta(db, "created", now)
    store.publish()
    step = 0.01
    for first in range(1, trials + 1, 100):
        with store.transaction() as db:
            for tid in range(first, min(first + 100, trials + 1)):
                if params == 3:
                    config = {"lr": 10 ** rng.uniform(-4, -1), "width": rng.choice([32, 64, 128]), "seed": tid % 3}
                else:
                    config = {f"p{i:02d}": rng.uniform(0, 1) for i in range(params)}
                start = now + (tid // 2) * per_trial * step
                store.insert_trial(db, tid, config, {"cpu": 1.0}, "TERMINATED", created=start, start_time=start)
                loss = 1.0
                rows = []
                for it in range(1, per_trial + 1):
                    loss *= 0.97 + 0.02 * rng.random()
                    rows.append((tid, it, it * step, start + it * step, dumps({"loss": loss, "acc": 1 - loss})))
                store.append_results(db, rows)
                last = {"loss": loss, "acc": 1 - loss, "training_iteration": per_trial}
                store.update_trial(db, tid, iteration=per_trial, last_result=dumps(last),
                                   end_time=start + per_trial * step)
    if hasattr(store, "index_results"):  # what the driver does once a run finished (older trees: nothing)
        store.index_results()
    store.close()
    return folder


def child_env() -> dict[str, str]:
    """Children (the CLI, a fresh driver) import the same tunesmith as this process."""
    return {**os.environ, "PYTHONPATH": TS_ROOT}


CLI = "import sys; from tunesmith.cli import main; sys.argv[0] = 'tunesmith'; sys.exit(main())"
# Runs its argv as a child and prints the child's wall time and peak RSS (its only child: ru_maxrss is its own).
MEASURED = r"""
import json, resource, subprocess, sys, time
t = time.perf_counter()
p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
wall = time.perf_counter() - t
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall": wall, "rss_mb": r.ru_maxrss / 1024, "cpu": r.ru_utime + r.ru_stime, "rc": p.returncode,
                  "out_bytes": len(p.stdout), "err": p.stderr.decode(errors="replace")[-2000:]}))
"""


def measured(argv: list[str], timeout: float = 1800) -> dict[str, Any]:
    """Wall, peak RSS, CPU and bytes printed of one command (a child of a small wrapper process)."""
    out = subprocess.run([sys.executable, "-c", MEASURED, *argv], capture_output=True, text=True, env=child_env(),
                         timeout=timeout, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def cli(*args: str, timeout: float = 1800) -> dict[str, Any]:
    res = measured([sys.executable, "-c", CLI, *args], timeout=timeout)
    if res["rc"] != 0:
        raise RuntimeError(f"tunesmith {' '.join(args)} exited {res['rc']}: {res['err']}")
    return res


def cli_floor(repeats: int = 3) -> float:
    """The CLI's own start: `tunesmith --version` (what any command pays before it reads anything)."""
    return statistics.median(cli("--version")["wall"] for _ in range(repeats))


def in_child(func: str, **kwargs: Any) -> dict[str, Any]:
    """Run ``func(**kwargs)`` of this file in a fresh interpreter (a clean heap for memory rows)."""
    code = (f"import json, sys; sys.path.insert(0, {HERE!r}); import scale; "
            f"print(json.dumps(scale.{func}(**json.loads(sys.argv[1]))))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs)], capture_output=True, text=True,
                         env=child_env(), timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"{func} in a child exited {out.returncode}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def disk_bytes(folder: str) -> int:
    total = 0
    for dirpath, dirs, files in os.walk(folder):
        for name in files + dirs:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


def raw_read_s(folder: str) -> float:
    """The floor of reading a store: one SQL pass over every result row, metrics decoded from JSON."""
    import sqlite3

    db = sqlite3.connect(f"file:{os.path.join(folder, 'experiment.db')}?mode=ro", uri=True)
    t = time.perf_counter()
    n = 0
    for (metrics,) in db.execute("SELECT metrics FROM results"):
        json.loads(metrics)
        n += 1
    dt = time.perf_counter() - t
    db.close()
    return dt


# ----------------------------------------------------------------------------------------- trial functions
def noop(config):
    ts.report({"x": 1})


def short(config):
    time.sleep(config["ms"] / 1000)
    ts.report({"loss": config["ms"]})


ITERS = 9  # ASHA's rungs at 1, 3, 9


def short_iters(config):
    per = config["ms"] / 1000 / ITERS
    for i in range(1, ITERS + 1):
        time.sleep(per)
        ts.report({"loss": config["q"] / i})


def torch_trial(config):
    import torch

    if config.get("by_hand"):
        torch.set_num_threads(1)
    n, iters = config["n"], config["iters"]
    a = torch.rand(n, n)
    t = time.perf_counter()
    for _ in range(iters):
        a = (a @ a).clamp_(0, 1)
    ts.report({"s": time.perf_counter() - t, "threads": torch.get_num_threads(),
               "omp": os.environ.get("OMP_NUM_THREADS", "")})


def _mp_sleep(ms):
    time.sleep(ms / 1000)
    return ms


def _mp_iters(task):
    """A pool's copy of one `short_iters` trial that ran ``its`` iterations: the same sleeps, one per iteration
    (an int: a warm-up task)."""
    ms, its = task if isinstance(task, tuple) else (0, 0)
    for _ in range(its):
        time.sleep(ms / 1000 / ITERS)
    return its


def run(fn, space, num, storage, **kw) -> tuple[Any, float]:
    """ts.run quietly, and its wall time as the caller saw it."""
    t = time.perf_counter()
    res = ts.run(fn, space=space, num_samples=num, storage_path=storage, verbose=0, **kw)
    return res, time.perf_counter() - t


def warm(storage: str) -> None:
    """One tiny run first: the driver's one-time imports and the fork server count in row 11, not here."""
    run(noop, {}, 1, storage)


# --------------------------------------------------------------------------------------------- the rows
def row1(c: Context) -> list[Line]:
    s = c.s
    folder = c.store("million")
    n = s["million_trials"] * s["million_per_trial"]
    size = f"{s['million_trials']:,} x {s['million_per_trial']:,} = {n:,} results"
    out = os.path.join(c.root, "million.html")
    res = cli("report", folder, "-o", out)
    floor = raw_read_s(folder)
    html_mb = os.path.getsize(out) / 2**20
    lines = [
        Line(1, "tunesmith report: write", size, res["wall"], "s", floor, "one SQL pass over the results").check(
            "value", "<=", 5.0),
        Line(1, "tunesmith report: peak RSS", size, res["rss_mb"], "MB").check("value", "<=", 200),
        Line(1, "tunesmith report: HTML", size, html_mb, "MB").check("value", "<=", 10),
    ]
    # the floor: the report of the same trials with 10 results each, the same six plots (what a browser pays for
    # plotly.js and for drawing the plots at all, WebGL in software here); the two drawn in turn, A B A B
    small = os.path.join(c.root, "thousand.html")
    cli("report", c.store("thousand"), "-o", small)
    draws: list[dict[str, float]] = []
    floors: list[dict[str, float]] = []
    for _ in range(c.rounds):
        for path, into in ((out, draws), (small, floors)):
            d = chromium_draw_s(path, s["draw_timeout"])
            if not isinstance(d, dict):
                lines.append(Line(1, "Chromium draws the report", size, d, goal="<= 3 s"))
                return lines
            into.append(d)

    def median(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    lines.append(Line(1, "Chromium draws the report", size, median(draws, "all"), "s", median(floors, "all"),
                      f"the same plots of {s['million_trials'] * FLOOR_PER_TRIAL:,} results").check("value", "<=", 3.0))
    # what a reader sees meanwhile: the page painted, then the plot in the window (each plot is drawn in a task of
    # its own, those in the window first)
    lines.append(Line(1, "  the same: the page first painted", size, median(draws, "paint"), "s"))
    lines.append(Line(1, "  the same: the first plot drawn", size, median(draws, "first"), "s"))
    return lines


DRAWN = """() => {
  const plots = Array.from(document.querySelectorAll('.plot'));
  return plots.length > 0 && plots.every(d => d.querySelector('.main-svg'));
}"""
# Milliseconds from the page's start to its first paint with content, and to the first plot with its SVG root.
FIRST = """
window.__first_plot = null;
window.__paint = null;
new PerformanceObserver(list => {
  for (const e of list.getEntries()) if (e.name === 'first-contentful-paint') window.__paint = e.startTime;
}).observe({type: 'paint', buffered: true});
new MutationObserver(() => {
  if (window.__first_plot === null && document.querySelector('.plot .main-svg'))
    window.__first_plot = performance.now();
}).observe(document, {childList: true, subtree: true});
"""


def chromium_draw_s(path: str, timeout_s: float) -> dict[str, float] | str:
    """Seconds from opening the report to every plot drawn (plotly's SVG root in each, two frames later): "all";
    and from the page's start to its first paint ("paint") and to its first plot drawn ("first")."""
    if not os.path.exists(CHROMIUM):
        return f"not measured ({CHROMIUM} missing)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return "not measured (playwright missing)"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
            try:
                page = browser.new_page()
                page.add_init_script(FIRST)
                t = time.perf_counter()
                page.goto("file://" + os.path.abspath(path), wait_until="load", timeout=timeout_s * 1000)
                page.wait_for_function(DRAWN, timeout=timeout_s * 1000)
                page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
                drawn = time.perf_counter() - t
                paint, first = page.evaluate("() => [window.__paint, window.__first_plot]")
                return {"all": drawn, "paint": (paint or math.nan) / 1000, "first": (first or math.nan) / 1000}
            finally:
                browser.close()
    except Exception as e:  # a timeout is a measurement too
        return f"not drawn in {timeout_s:.0f} s ({type(e).__name__})"


def run_loggers_pair(c: Context, n: int, loggers: bool | None) -> dict[str, float]:
    """One run of ``n`` no-op trials: ``loggers`` None is run()'s default, whatever it is in this tree."""
    storage = c.fresh("loggers_")
    warm(storage)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    res, wall = run(noop, {}, n, storage, **({} if loggers is None else {"file_loggers": loggers}))
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    assert len(res.trials) == n
    out = {"wall": wall, "cpu": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
           "disk_mb": disk_bytes(storage) / 2**20}
    overhead.discard(storage)
    return out


def row2(c: Context) -> list[Line]:
    n = c.s["short"]
    on, off = [], []
    for _ in range(c.rounds):  # interleaved: A B A B
        on.append(run_loggers_pair(c, n, None))  # the default (the loggers were on by default before issue 19)
        off.append(run_loggers_pair(c, n, False))
    med = {k: (statistics.median(r[k] for r in on), statistics.median(r[k] for r in off)) for k in on[0]}
    size = f"{n:,} no-op trials" + (f", median of {c.rounds}" if c.rounds > 1 else "")
    return [
        Line(2, "default file loggers: wall", size, med["wall"][0], "s", med["wall"][1],
             "file_loggers=False").check("ratio", "<=", 1.05),
        Line(2, "default file loggers: driver CPU", size, med["cpu"][0], "s", med["cpu"][1],
             "file_loggers=False").check("ratio", "<=", 1.05),
        Line(2, "default file loggers: on disk", size, med["disk_mb"][0], "MB", med["disk_mb"][1],
             "file_loggers=False").with_ratio(),
    ]


def driver_memory(n: int, warmup: int, root: str, cache_kib: int | None = None) -> dict[str, Any]:
    """In a fresh driver: RSS after ``warmup`` finished trials and after ``n`` (random search, FIFO), and the
    store's page cache, which is part of that RSS: SQLite keeps up to ``PRAGMA cache_size`` pages of the store
    file per connection (2 MB by default), so the driver's RSS grows until the store outgrows the cache (some
    10,000 tiny trials) and then stays. The warm-up is what fills it. ``cache_kib``: the store's writer
    connection gets that cache instead (``--page-cache``: the growth follows the cache, not the trials)."""
    import gc

    import psutil

    seen: list[int] = []  # the writer connection's cache_size as SQLite reports it after the change
    if cache_kib is not None:  # an experiment on a private method: the writer connection's cache, and nothing else
        from tunesmith.store.sqlite import Store

        opened = Store._writing_pragmas  # every connection the driver writes through (a new store's after publish)

        def with_cache(self: Any) -> None:
            opened(self)
            self._db.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
            seen.append(self._db.execute("PRAGMA cache_size").fetchone()[0])

        Store._writing_pragmas = with_cache  # type: ignore[method-assign]

    me = psutil.Process()
    marks: dict[int, float] = {}

    class Sample(ts.Callback):
        done = 0

        def on_trial_complete(self, trial):
            Sample.done += 1
            if Sample.done in (warmup, n):
                gc.collect()
                marks[Sample.done] = me.memory_info().rss / 2**20

    storage = tempfile.mkdtemp(dir=root)
    run(noop, {"a": ts.uniform(0, 1)}, n, storage, callbacks=[Sample()])
    import sqlite3

    default = sqlite3.connect(":memory:").execute("PRAGMA cache_size").fetchone()[0]  # negative: KiB
    cache = seen[-1] if seen else default
    overhead.discard(storage)
    return {"rss_warm_mb": marks.get(warmup), "rss_end_mb": marks.get(n), "trials": n, "warmup": warmup,
            "cache_mb": -cache / 1024 if cache < 0 else None}


def _growth_per_k(m: dict[str, Any]) -> float:
    """MB of RSS per 1,000 trials between ``driver_memory``'s two marks."""
    return (m["rss_end_mb"] - m["rss_warm_mb"]) / ((m["trials"] - m["warmup"]) / 1000)


def row3(c: Context) -> list[Line]:
    n, w = c.s["memory_trials"], c.s["memory_warmup"]
    m = in_child("driver_memory", n=n, warmup=w, root=c.root)
    cache = f"; SQLite page cache up to {m['cache_mb']:.1f} MB, filled in the warm-up" if m.get("cache_mb") else ""
    lines = [Line(3, "driver memory growth after warm-up", f"{w:,} -> {n:,} trials (RSS)", _growth_per_k(m),
                  "MB/1k trials", note=f"RSS {m['rss_warm_mb']:.0f} -> {m['rss_end_mb']:.0f} MB{cache}").check(
        "value", "<=", 0.1)]
    first = w // 5  # from early in the run: the default cache is still filling there
    for kib in c.page_cache:  # the same run with another page cache: the growth is the cache filling
        m = in_child("driver_memory", n=n, warmup=first, root=c.root, cache_kib=kib)
        lines.append(Line(3, f"  the same, page cache {kib:,} KiB", f"{first:,} -> {n:,} trials (RSS)",
                          _growth_per_k(m), "MB/1k trials",
                          note=f"RSS {m['rss_warm_mb']:.1f} -> {m['rss_end_mb']:.1f} MB; "
                               f"the writer's cache as SQLite reports it {m['cache_mb'] * 1024:,.0f} KiB"))
    return lines


def started_pool_s(fn: Callable[[Any], Any], items: Any) -> float:
    """Seconds a pool already started (one spawned process per core, each warmed by one task) takes to map
    ``fn`` over ``items``: the issue's floor for per-trial cost, nothing but the dispatch."""
    with overhead.mp.get_context("spawn").Pool(os.cpu_count()) as pool:
        pool.map(fn, range(os.cpu_count() or 1), chunksize=1)
        t = time.perf_counter()
        pool.map(fn, items, chunksize=1)
        return time.perf_counter() - t


def row4(c: Context) -> list[Line]:
    s = c.s
    storage = c.fresh("noop_")
    warm(storage)
    rates, floors, started = [], [], []
    for _ in range(c.rounds):
        rates.append(s["noop"] / run(noop, {}, s["noop"], storage)[1])
        t = time.perf_counter()
        overhead._mp_noops(s["noop"])
        floors.append(s["noop"] / (time.perf_counter() - t))
        started.append(s["noop"] / started_pool_s(overhead._mp_noop, range(s["noop"])))
    rate = statistics.median(rates)
    lines = [Line(4, "no-op trials", f"{s['noop']:,} trials", rate, "trials/s", statistics.median(started),
                  "a started multiprocessing pool, 1 per core").check("ratio", ">=", 0.25),
             Line(4, "no-op trials", f"{s['noop']:,} trials", rate, "trials/s", statistics.median(floors),
                  "the same, pool started in the time (overhead.py's)").with_ratio()]
    walls, folderless, behind, pool, driver_ms = [], [], [], [], []
    for _ in range(c.rounds):  # interleaved: the default, without trial folders, without queue_ahead, the pool
        before = resource.getrusage(resource.RUSAGE_SELF)
        res, wall = run(short, {"ms": ts.uniform(1, 5)}, s["short"], storage, seed=0)
        after = resource.getrusage(resource.RUSAGE_SELF)
        walls.append(wall)
        driver_ms.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / s["short"] * 1e3)
        folderless.append(run(short, {"ms": ts.uniform(1, 5)}, s["short"], storage, seed=0,
                              chdir_to_trial_dir=False)[1])
        behind.append(run(short, {"ms": ts.uniform(1, 5)}, s["short"], storage, seed=0,
                          backend=ts.LocalBackend(queue_ahead=False))[1])
        ms = [t.config["ms"] for t in res.trials]
        t = time.perf_counter()
        with overhead.mp.get_context("spawn").Pool(os.cpu_count()) as p:
            p.map(_mp_sleep, ms, chunksize=1)
        pool.append(time.perf_counter() - t)
    # the driver's CPU per trial (this process: the loop, the store, the searcher) is what a worker waits for
    # between two trials, while the pool's next task is already queued
    lines.append(Line(4, "short trials, default loggers: wall", f"{s['short']:,} trials of 1-5 ms",
                      statistics.median(walls), "s", statistics.median(pool), "the same sleeps on a pool",
                      note=f"driver CPU {statistics.median(driver_ms):.3f} ms a trial").check("ratio", "<=", 1.05))
    # what is left beside the pool, split: the trial folder (a mkdir and chdir in the worker) and the rest (the
    # driver's round trip: the result committed, the next trial chosen, stored and sent)
    lines.append(Line(4, "  the same, no trial folder (chdir_to_trial_dir=False)", f"{s['short']:,} trials of 1-5 ms",
                      statistics.median(folderless), "s", statistics.median(pool),
                      "the same sleeps on a pool").with_ratio())
    # what handing a worker its next trial early buys: without it, each worker waits for the driver's round trip
    lines.append(Line(4, "  the same, a worker given a trial only when free (queue_ahead=False)",
                      f"{s['short']:,} trials of 1-5 ms", statistics.median(behind), "s", statistics.median(pool),
                      "the same sleeps on a pool").with_ratio())
    overhead.discard(storage)
    return lines


def row5(c: Context) -> list[Line]:
    n = c.s["short"]
    storage = c.fresh("asha_")
    warm(storage)
    space = {"ms": ts.uniform(1, 5), "q": ts.uniform(0, 1)}
    over: dict[str, list[tuple[float, float]]] = {"FIFO": [], "ASHA": [], "pool": []}
    for _ in range(c.rounds):
        for name in ("FIFO", "ASHA"):
            sched = ts.ASHA(max_t=ITERS, grace_period=1, reduction_factor=3) if name == "ASHA" else None
            res, wall = run(short_iters, space, n, storage, metric="loss", mode="min", scheduler=sched, seed=0)
            ran = [(t.config["ms"], (t.last_result or {}).get("training_iteration", 0)) for t in res.trials]
            slept = sum(ms / 1000 / ITERS * its for ms, its in ran)
            over[name].append((wall, slept / (os.cpu_count() or 1)))
            if name == "ASHA":  # the same sleeps as ASHA's trials ran, on a started pool: the floor of its ratio
                over["pool"].append((started_pool_s(_mp_iters, ran), slept / (os.cpu_count() or 1)))
    lines, extra = [], {}
    size = f"{n:,} trials x {ITERS} its, 1-5 ms a trial"
    for name, goal in (("ASHA", 1.5), ("FIFO", None)):
        wall = statistics.median(w for w, _ in over[name])
        ideal = statistics.median(i for _, i in over[name])
        extra[name] = (wall - ideal) / n * 1000
        line = Line(5, f"{name}: wall over ideal", size, wall, "s", ideal, "ideal: time slept / cores")
        lines.append(line.check("ratio", "<=", goal) if goal else line.with_ratio())
    # what the rungs cost on top of the per-trial cost both pay (ASHA stops most trials at the first rung,
    # so its ideal is a fraction of FIFO's and its ratio to the ideal is mostly the per-trial cost)
    lines.append(Line(5, "ASHA: cost per trial above the ideal", size, extra["ASHA"], "ms", extra["FIFO"],
                      "FIFO's").with_ratio())
    # the pool pays no per-trial bookkeeping, but its tasks' sleeps and hand-offs are not free either
    wall, ideal = statistics.median(w for w, _ in over["pool"]), statistics.median(i for _, i in over["pool"])
    lines.append(Line(5, "  a started pool running the sleeps ASHA's trials ran", size, wall, "s", ideal,
                      "ideal: time slept / cores").with_ratio())
    overhead.discard(storage)
    return lines


def row6(c: Context) -> list[Line]:
    s = c.s
    floor = cli_floor()
    lines = []
    for key, size in (("many", f"{s['many_trials']:,} trials"),
                      ("wide", f"{s['wide_trials']:,} trials x {s['wide_params']} params")):
        res = cli("show", c.store(key))
        lines.append(Line(6, "tunesmith show", size, res["wall"], "s", floor, "tunesmith --version",
                          note=f"{res['out_bytes'] / 2**20:.2f} MB printed").check("value", "<=", 1.0))
    return lines


DATAFRAME = r"""
import json, os, resource, sys, time
import tunesmith as ts
rs = ts.load(sys.argv[1])
len(rs.trials)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
df = rs.dataframe(all_results=True)
wall = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"wall": wall, "peak_mb": peak - base, "frame_mb": float(df.memory_usage(deep=True).sum()) / 2**20,
                  "rows": len(df)}))
"""


def row7(c: Context) -> list[Line]:
    folder = c.store("million")
    out = subprocess.run([sys.executable, "-c", DATAFRAME, folder], capture_output=True, text=True,
                         env=child_env(), timeout=3600, check=True).stdout
    m = json.loads(out.strip().splitlines()[-1])
    size = f"{m['rows']:,} results"
    return [
        Line(7, "dataframe(all_results=True): wall", size, m["wall"], "s", raw_read_s(folder),
             "one SQL pass over the results").check("value", "<=", 3.0),
        Line(7, "dataframe(all_results=True): peak above load", size, m["peak_mb"], "MB", m["frame_mb"],
             "the frame's own size").check("ratio", "<=", 3.0),
    ]


def per_call(fn: Callable[[], Any], budget_s: float = 2.0, most: int = 1000) -> float:
    """Median seconds per call, calling until ``budget_s`` or ``most`` calls."""
    times = []
    end = time.perf_counter() + budget_s
    while len(times) < most and (not times or time.perf_counter() < end):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def row8(c: Context) -> list[Line]:
    s = c.s
    small = build(c.fresh("small_"), "small", 100, s["many_per_trial"])
    big = ts.load(c.store("many"))
    little = ts.load(small)
    rng = random.Random(1)
    nb = s["many_trials"]
    lines = [Line(8, "rs.trial(id)", f"{nb:,} trials", per_call(lambda: big.trial(rng.randint(1, nb))), "s",
                  per_call(lambda: little.trial(rng.randint(1, 100))), "the same at 100 trials").check(
        "value", "<=", 0.010)]
    for key, size in (("many", f"{nb:,} trials x {s['many_per_trial']}"),
                      ("million", f"{s['million_trials'] * s['million_per_trial']:,} results")):
        rs = ts.load(c.store(key))
        best = per_call(lambda rs=rs: rs.get_best(scope="all"), 5.0, 5)
        lines.append(Line(8, 'get_best(scope="all")', size, best, "s",
                          per_call(lambda: little.get_best(scope="all"), 1.0, 20), "the same at 100 trials").check(
            "value", "<=", 0.010))
    root = c.store("ls")
    res = cli("ls", "--storage-path", root)
    floor = cli_floor()
    ls = Line(8, "tunesmith ls", f"{s['ls_trials']:,} trials in 3 experiments", res["wall"], "s", floor,
              "tunesmith --version", goal="<= floor + 10 ms").with_ratio()
    ls.met = res["wall"] - floor <= 0.010
    lines.append(ls)
    return lines


def row9(c: Context) -> list[Line]:
    """The run alone, beside a `show` started every second (a new process each time), and beside one
    `show --watch 1` (where this tunesmith has it): interleaved, ratios to the run alone."""
    n = c.s["short"]
    has_watch = "--watch" in subprocess.run([sys.executable, "-c", CLI, "show", "--help"], capture_output=True,
                                            text=True, env=child_env()).stdout
    modes = ("alone", "show", "watch") if has_watch else ("alone", "show")
    walls: dict[str, list[float]] = {m: [] for m in modes}
    shows: list[float] = []
    for r in range(c.rounds):
        # each round starts with the next mode: this VM slows and speeds up over a run's seconds, and a fixed
        # order (the run alone always first) charged that drift to the readers
        for mode in modes[r % len(modes):] + modes[:r % len(modes)]:
            storage = c.fresh("reader_")
            warm(storage)
            stop = threading.Event()
            reader = None
            if mode == "show":
                def poll(storage: str = storage, stop: threading.Event = stop) -> None:
                    while not stop.is_set():
                        t = time.perf_counter()
                        subprocess.run([sys.executable, "-c", CLI, "show", "--storage-path", storage, "beside"],
                                       capture_output=True, env=child_env())
                        shows.append(time.perf_counter() - t)
                        stop.wait(1.0)
                reader = threading.Thread(target=poll, daemon=True)
            elif mode == "watch":
                def watch(storage: str = storage, stop: threading.Event = stop) -> None:
                    store = os.path.join(storage, "beside", "experiment.db")
                    while not os.path.exists(store):  # one process once the experiment exists, until it ends
                        if stop.wait(0.01):
                            return
                    proc = subprocess.Popen([sys.executable, "-c", CLI, "show", "--storage-path", storage, "beside",
                                             "--watch", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                            env=child_env())
                    stop.wait()
                    try:
                        proc.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                reader = threading.Thread(target=watch, daemon=True)
            if reader:
                reader.start()
            try:
                walls[mode].append(run(noop, {}, n, storage, name="beside")[1])
            finally:
                stop.set()
                if reader:
                    reader.join()
            overhead.discard(storage)
    lines = [Line(9, "run with `show` started every second: wall", f"{n:,} no-op trials",
                  statistics.median(walls["show"]), "s", statistics.median(walls["alone"]), "the same run, no reader",
                  note=f"{len(shows)} shows, longest {max(shows, default=0):.1f} s").check("ratio", "<=", 1.1)]
    if has_watch:
        lines.append(Line(9, "run with one `show --watch 1`: wall", f"{n:,} no-op trials",
                          statistics.median(walls["watch"]), "s", statistics.median(walls["alone"]),
                          "the same run, no reader").check("ratio", "<=", 1.1))
    return lines


def figures(path: str) -> list[tuple[str, dict[str, Any]]]:
    """(section title, plotly figure) of each plot in a report written by `tunesmith report`."""
    with open(path, encoding="utf-8") as f:
        page = f.read()
    titles = re.findall(r"<section><h2>(.*?)</h2>", page)
    m = re.search(r'<script type="application/json" id="tunesmith-figures">(.*?)</script>', page, re.S)
    figs = json.loads(m.group(1)) if m else []
    return list(zip(titles, figs))


def points(trace: dict[str, Any]) -> int:
    """How many points a trace draws (plain lists, or plotly's typed arrays {dtype, bdata})."""
    for key in ("x", "y"):
        v = trace.get(key)
        if isinstance(v, list):
            return len(v)
        if isinstance(v, dict) and "bdata" in v:
            width = int(re.sub(r"\D", "", v.get("dtype", "f8")) or 8)
            width = width // 8 if width >= 8 else width
            return len(base64.b64decode(v["bdata"])) // max(width, 1)
    return 0


def row10(c: Context) -> list[Line]:
    s = c.s
    folder = c.store("many")
    out = os.path.join(c.root, "many.html")
    cli("report", folder, "-o", out)
    size = f"{s['many_trials']:,} trials x {s['many_per_trial']}"
    lines = []
    for title, fig in figures(out):
        low = title.lower()
        if "learning curve" in low:
            traces = fig.get("data", [])
            lines.append(Line(10, f"{title}: lines drawn", size, len(traces), "traces").check("value", "<=", 500))
            lines.append(Line(10, f"{title}: points", size, sum(points(t) for t in traces), "points",
                              goal="(readability proxy)"))
        elif "timeline" in low:
            height = (fig.get("layout") or {}).get("height")
            lines.append(Line(10, f"{title}: height", size, height, "px").check("value", "<=", 2000))
    if not lines:
        lines.append(Line(10, "report plots", size, "no learning-curve or timeline plot found"))
    return lines


def row11(c: Context) -> list[Line]:
    storage = c.fresh("first_")
    first = overhead.first_result_pairs(storage, pairs=5 if c.s is QUICK else 15)  # interleaved, pair by pair
    bare = statistics.median(measured([sys.executable, "-c", "pass"])["wall"] for _ in range(5))
    imp = statistics.median(measured([sys.executable, "-c", "import tunesmith"])["wall"] for _ in range(5))
    overhead.discard(storage)
    return [
        Line(11, "start -> first stored result", f"1 trial, fresh interpreter, {first['pairs']} pairs",
             first["tunesmith_s"], "s", first["floor_s"], "multiprocessing pool's first result",
             ratio=first["ratio"], note="ratio: the median of the pairs' ratios").check("ratio", "<=", 2.0),
        Line(11, "`python -c 'import tunesmith'`", "", imp, "s", bare, "python -c pass").with_ratio(),
    ]


def row12(c: Context) -> list[Line]:
    try:
        import torch  # noqa: F401
    except ImportError:
        return [Line(12, "two 1-CPU torch trials", "", "not measured (torch missing)")]
    s = c.s
    storage = c.fresh("threads_")
    warm(storage)
    walls: dict[bool, list[float]] = {False: [], True: []}
    seen: dict[bool, Any] = {}
    for _ in range(c.rounds):
        for by_hand in (False, True):
            res, wall = run(torch_trial, {"n": s["torch_n"], "iters": s["torch_iters"], "by_hand": by_hand}, 2,
                            storage, resources={"cpu": 1}, max_concurrent=2)
            walls[by_hand].append(wall)
            seen[by_hand] = sorted({(t.last_result or {}).get("threads") for t in res.trials}, key=str)
    overhead.discard(storage)
    size = f"2 trials, cpu=1, {s['torch_iters']} matmuls {s['torch_n']}x{s['torch_n']}, {os.cpu_count()} cores"
    return [
        Line(12, "torch threads inside a 1-CPU trial", size, max(seen[False], key=lambda v: v or 0), "threads",
             1, "cpu=1").check("value", "<=", 1),
        Line(12, "two 1-CPU torch trials: wall", size, statistics.median(walls[False]), "s",
             statistics.median(walls[True]), "torch.set_num_threads(1) by hand").check("ratio", "<=", 1.05),
    ]


ROWS: dict[int, tuple[str, Callable[[Context], list[Line]]]] = {
    1: ("report at 1M results", row1), 2: ("default file loggers", row2), 3: ("driver memory", row3),
    4: ("per-trial cost, tiny trials", row4), 5: ("ASHA's wait at each rung", row5), 6: ("tunesmith show", row6),
    7: ("dataframe(all_results=True)", row7), 8: ("lookups", row8), 9: ("readers beside a writer", row9),
    10: ("plots at 5-10k trials", row10), 11: ("start -> first result", row11), 12: ("threads per trial", row12),
}

# Each row's measurement in the per-row modules (written with the fixes): (module, function, extra arguments;
# "@key": that size of this run, e.g. "@short" is 10,000 at full size).
HELPERS: dict[int, list[tuple[str, str, dict[str, Any]]]] = {
    1: [("report_scale", "measure_report", {})],
    2: [("loggers", "measure_loggers", {})],
    3: [("loggers", "measure_driver_memory", {})],
    4: [("pertrial", "measure_noop", {}),
        ("pertrial", "measure_short_trials", {"scheduler": "fifo", "n": "@short", "n_trials": "@short"})],
    5: [("pertrial", "measure_short_trials", {"scheduler": "asha"})],
    6: [("readers", "measure_show", {})],
    7: [("readers", "measure_dataframe", {})],
    8: [("readers", "measure_lookups", {})],
    9: [("readers", "measure_reader_beside_writer", {})],
    10: [],  # measured here only (row10: the report's figures, read back from its HTML)
    11: [("pertrial", "measure_first_result", {})],
    12: [("pertrial", "measure_threads", {})],
}


def helper_sizes(row: int, s: dict[str, int], quick: bool, rounds: int) -> dict[str, Any]:
    n_trials = {1: s["million_trials"], 2: s["short"], 3: s["memory_trials"], 4: s["noop"], 5: s["short"],
                6: s["many_trials"], 7: s["million_trials"], 8: s["many_trials"], 9: s["short"],
                10: s["many_trials"], 11: 1, 12: 2}[row]
    n_results = {1: s["million_per_trial"], 7: s["million_per_trial"]}.get(row, s["many_per_trial"])
    return {"n_trials": n_trials, "n": n_trials, "n_results": n_results, "quick": quick, "rounds": rounds}


def call_helper(row: int, module: str, func: str, extra: dict[str, Any], sizes: dict[str, Any],
                table: dict[str, int] | None = None) -> list[Line]:
    by = f"{module}.{func}"
    extra = {k: (table or {})[v[1:]] if isinstance(v, str) and v.startswith("@") else v for k, v in extra.items()}
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            return [Line(row, "not measured (module missing)", by=by)]
        raise
    fn = getattr(mod, func, None)
    if fn is None:
        return [Line(row, "not measured (function missing)", by=by)]
    given = {**sizes, **extra}
    kwargs, missing = {}, []
    for name, p in inspect.signature(fn).parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if name in given:
            kwargs[name] = given[name]
        elif p.default is p.empty:
            missing.append(name)
    if missing:
        return [Line(row, f"not measured (no size for {', '.join(missing)})", by=by)]
    try:
        out = fn(**kwargs)
    except Exception as e:  # one helper's failure is a line of the table, not the end of the run
        return [Line(row, f"failed: {type(e).__name__}: {e}"[:200], by=by)]
    return helper_lines(row, by, out, kwargs)


SHOWN = ("what", "size", "measured", "unit", "floor", "ratio", "goal", "met")


def helper_lines(row: int, by: str, out: Any, kwargs: dict[str, Any]) -> list[Line]:
    parts = out.get("lines") if isinstance(out, dict) and isinstance(out.get("lines"), list) else [out]
    lines = []
    for part in parts:
        if not isinstance(part, dict):
            lines.append(Line(row, "result", measured=str(part)[:200], by=by))
            continue
        rest = {k: v for k, v in part.items() if k not in SHOWN and isinstance(v, (int, float, str, bool))}
        text = ", ".join(f"{k}={_num(v)}" for k, v in rest.items())
        line = Line(row, str(part.get("what", by)), str(part.get("size", ", ".join(f"{k}={v}" for k, v in kwargs.items()
                                                                                   if k not in ("quick", "rounds")))),
                    part.get("measured", text if "measured" not in part else None), str(part.get("unit", "")),
                    part.get("floor") if isinstance(part.get("floor"), (int, float)) else None,
                    goal=str(part.get("goal", "")), met=part.get("met"), by=by,
                    note=text if "measured" in part else "")
        line.ratio = part.get("ratio") if isinstance(part.get("ratio"), (int, float)) else None
        if line.ratio is None:
            line.with_ratio()
        lines.append(line)
    return lines


# ----------------------------------------------------------------------------------------------- output
def show(lines: list[Line], title: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for col in ("#", "what", "size", "measured", "floor", "ratio", "goal", "met?"):
        table.add_column(col, overflow="fold")
    for ln in lines:
        measured = _num(ln.measured) + (f" {ln.unit}" if ln.unit and isinstance(ln.measured, (int, float)) else "")
        if ln.note:
            measured += f" ({ln.note})"
        floor = f"{_num(ln.floor)} {ln.unit} ({ln.floor_what})" if ln.floor is not None else ln.floor_what
        ratio = f"{ln.ratio:.3g}x" if isinstance(ln.ratio, (int, float)) else ""
        met = {True: "yes", False: "NO", None: ""}[ln.met]
        what = ln.what if ln.by == "scale.py" else f"[{ln.by}] {ln.what}"
        table.add_row(*(escape(str(v)) for v in (ln.row, what, ln.size, measured if ln.measured is not None else "",
                                                 floor, ratio, ln.goal, met)))
    Console(width=170).print(table)


def machine() -> str:
    return (f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
            f"tunesmith {ts.__version__} from {TS_ROOT}")


def parse_rows(text: str) -> list[int]:
    rows: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            rng = range(int(lo), int(hi or lo) + 1)
        except ValueError:
            raise SystemExit(f"--rows: expected numbers 1-12 like 4,6 or 1-3, got {text!r}") from None
        for r in rng:
            if r not in ROWS:
                raise SystemExit(f"--rows: row {r} is not one of 1-12")
            rows.append(r)
    return rows


def main(argv: list[str] | None = None) -> list[Line]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run (the table's shape)")
    ap.add_argument("--rows", default="1-12", help="rows to run, e.g. 4,6 or 1-3 (default: all)")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds of the two-run comparisons")
    ap.add_argument("--source", choices=("both", "scale", "helpers"), default="both",
                    help="this file's measurement, the per-row modules', or both")
    ap.add_argument("--page-cache", action="store_true",
                    help="row 3 also with a 100 KiB and an 8 MiB SQLite page cache, from early in the run")
    ap.add_argument("--json", metavar="OUT", help="also write the lines as JSON")
    ap.add_argument("--keep", metavar="DIR", help="build the stores under DIR and keep them (reused next time)")
    args = ap.parse_args(argv)
    rows = parse_rows(args.rows)
    sizes = QUICK if args.quick else FULL
    root = args.keep or tempfile.mkdtemp(prefix="tunesmith_scale_")
    os.makedirs(root, exist_ok=True)
    ctx = Context(sizes, max(1, args.rounds), root, (100, 8192) if args.page_cache else ())
    lines: list[Line] = []
    started = time.perf_counter()
    try:
        for r in rows:
            t = time.perf_counter()
            if args.source in ("both", "scale"):
                try:
                    lines += ROWS[r][1](ctx)
                except Exception as e:
                    lines.append(Line(r, f"{ROWS[r][0]}: failed: {type(e).__name__}: {e}"[:300]))
            if args.source in ("both", "helpers"):
                for module, func, extra in HELPERS[r]:
                    lines += call_helper(r, module, func, extra, helper_sizes(r, sizes, args.quick, ctx.rounds), sizes)
            print(f"row {r} ({ROWS[r][0]}): {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    title = (f"issue 19 at {'quick' if args.quick else 'full'} sizes on {machine()}; "
             f"{time.perf_counter() - started:.0f} s")
    show(lines, title)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"machine": machine(), "quick": args.quick, "rounds": ctx.rounds,
                       "lines": [asdict(ln) for ln in lines]}, f, indent=1, default=str)
    return lines


if __name__ == "__main__":
    main()
