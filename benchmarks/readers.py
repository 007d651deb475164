"""What reading an experiment costs: `tunesmith show`, `dataframe(all_results=True)`, lookups, and a reader
polling beside a running experiment (issue 19 rows 6-9).

    .venv/bin/python benchmarks/readers.py [--trials N] [--params P] [--results R] [--writer-trials W]
        [--rounds R] [--only-writer]

Prints one table. Each measurement is a function returning a dict, so ``benchmarks/scale.py`` can import
them; the stores are written as the driver writes them (``build_store``), in a temporary folder. Every
timing runs in a fresh Python process (what a user's command pays, imports included); memory is the
process's peak resident size above what it held before the call. Numbers are noisy on a shared machine:
compare before/after interleaved in one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from typing import Any

if not os.environ.get("PYTHONPATH"):  # this checkout's tunesmith, unless PYTHONPATH names one (before/after runs)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import overhead  # noqa: E402  (discard: stores are deleted when the process exits)


@contextlib.contextmanager
def _scratch() -> Iterator[str]:
    """A folder for one measurement's stores, deleted when the process exits (``overhead.discard``)."""
    root = tempfile.mkdtemp(prefix="tunesmith_readers_")
    try:
        yield root
    finally:
        overhead.discard(root)


def _env() -> dict[str, str]:
    """The environment of the measured commands: the tunesmith this process imports, first on their path."""
    import tunesmith

    return {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(tunesmith.__file__)))}


def build_store(folder: str, trials: int, results_per_trial: int, params: int = 3, seed: int = 0) -> str:
    """An experiment folder whose store holds ``trials`` finished trials of ``params`` parameters (two of them
    nested) and ``results_per_trial`` results each ({"loss", "acc"}), metric loss (min), finished (its metric
    indexed, as the driver leaves it)."""
    from tunesmith._layout import STORE_FILE
    from tunesmith.store.sqlite import Store, dumps

    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    store = Store(os.path.join(folder, STORE_FILE))
    t0 = 1.7e9
    with store.transaction() as db:
        store.set_meta(db, "spec", {"name": os.path.basename(folder), "metric": "loss", "mode": "min", "space": {}})
        store.set_meta(db, "status", "finished")
        store.set_meta(db, "created", t0)
    batch: list[tuple[Any, ...]] = []
    for tid in range(1, trials + 1):
        config: dict[str, Any] = {f"p{i}": rng.random() for i in range(max(params - 2, 0))}
        if params >= 2:
            config["opt"] = {"name": rng.choice(["adam", "sgd"]), "beta": rng.random()}
        base = rng.random()
        last = None
        for it in range(1, results_per_trial + 1):
            metrics = {"loss": base + 1.0 / it + rng.random() * 0.01, "acc": rng.random()}
            batch.append((tid, it, it * 0.01, t0 + tid + it * 0.01, dumps(metrics), 0))
            last = {**metrics, "training_iteration": it}
        with store.transaction() as db:
            store.insert_trial(db, tid, config, {"cpu": 1.0}, "TERMINATED", created=t0 + tid)
            store.update_trial(db, tid, iteration=results_per_trial, last_result=dumps(last) if last else None,
                               start_time=t0 + tid, end_time=t0 + tid + 1)
            if len(batch) >= 50_000 or tid == trials:
                store.append_results(db, batch)
                batch = []
    if hasattr(store, "index_results"):
        store.index_results()  # what the driver does once an experiment finished
    store.close()
    return folder


def _child(code: str, env: dict[str, str] | None = None, timeout: float = 600) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter (the same PYTHONPATH); its last stdout line is a JSON dict."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         timeout=timeout, env={**_env(), **(env or {})})
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _lines(*parts: dict[str, Any], **raw: Any) -> dict[str, Any]:
    """What ``benchmarks/scale.py`` shows: one dict per line (what, size, measured, unit, floor, ratio, goal,
    met), and the raw numbers beside them."""
    for part in parts:
        if isinstance(part.get("floor"), (int, float)) and part["floor"] and "ratio" not in part:
            part["ratio"] = part["measured"] / part["floor"]
    return {"lines": list(parts), **raw}


def _cli_s(*args: str) -> tuple[float, int]:
    """A tunesmith command in a fresh process: (seconds from start to exit, bytes printed)."""
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", "from tunesmith.cli import main; main()", *args],
                         capture_output=True, timeout=1200, env=_env())
    seconds = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"tunesmith {' '.join(args)} failed: {out.stderr.decode()[-2000:]}")
    return seconds, len(out.stdout)


def _floor_s() -> float:
    """The floor of any command: ``tunesmith --version`` (the interpreter, click and tunesmith's import)."""
    return min(_cli_s("--version")[0] for _ in range(3))


def measure_show(n_trials: int = 10_000, params: int = 20, folder: str | None = None) -> dict[str, Any]:
    """`tunesmith show` as a command (a fresh process) of ``n_trials`` trials of ``params`` parameters (or of the
    experiment in ``folder``): its default (a page) and ``--all`` (every trial), seconds and bytes printed,
    beside the floor of any command."""
    with _scratch() as root:
        folder = folder or build_store(os.path.join(root, "wide"), n_trials, 5, params)
        size = f"{n_trials:,} trials x {params} params"
        floor = _floor_s()
        seconds, printed = _cli_s("show", folder)
        parts = [{"what": "tunesmith show (default)", "size": size, "measured": seconds, "unit": "s",
                  "floor": floor, "goal": "<= 1 s", "met": seconds <= 1.0, "printed_kb": printed / 1e3}]
        raw = {"seconds": seconds, "bytes": printed}
        if "--all" in _show_help():
            all_s, all_printed = _cli_s("show", folder, "--all")
            parts.append({"what": "tunesmith show --all", "size": size, "measured": all_s, "unit": "s",
                          "floor": floor, "printed_kb": all_printed / 1e3})
            raw.update(all_seconds=all_s, all_bytes=all_printed)
        return _lines(*parts, **raw)


def measure_dataframe(n_trials: int = 100, n_results: int = 10_000, folder: str | None = None) -> dict[str, Any]:
    """``load(...).dataframe(all_results=True)`` of ``n_trials`` trials x ``n_results`` results each (or of the
    experiment in ``folder``), in a fresh process: seconds, the process's peak memory above what it held
    before the call (MB), and the frame's own size (MB, ``memory_usage(deep=True)``), the floor of the time
    being SQLite reading the same rows."""
    with _scratch() as root:
        folder = folder or build_store(os.path.join(root, "deep"), n_trials, n_results, 3)
        m = _child(f"""
            import json, resource, sqlite3, time
            import pandas
            import tunesmith as ts
            rs = ts.load({folder!r})
            rs.trials
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t = time.perf_counter()
            df = rs.dataframe(all_results=True)
            seconds = time.perf_counter() - t
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
            # the floor after the peak is read: its million rows would raise the high-water mark before the call
            # (the peak then read 0 MB)
            db = sqlite3.connect("file:" + {os.path.join(folder, "experiment.db")!r} + "?mode=ro", uri=True)
            t = time.perf_counter()
            db.execute("SELECT trial_id, iteration, time_total, timestamp, metrics FROM results").fetchall()
            floor = time.perf_counter() - t
            print(json.dumps({{"seconds": seconds, "peak_mb": peak / 1024, "rows": len(df), "floor_s": floor,
                              "frame_mb": df.memory_usage(deep=True).sum() / 2**20}}))
        """)
    size = f"{m['rows']:,} results"
    return _lines({"what": "dataframe(all_results=True): wall", "size": size, "measured": m["seconds"], "unit": "s",
                   "floor": m["floor_s"], "goal": "<= 3 s", "met": m["seconds"] <= 3},
                  {"what": "dataframe(all_results=True): peak above load", "size": size, "measured": m["peak_mb"],
                   "unit": "MB", "floor": m["frame_mb"], "goal": "<= 3x the frame",
                   "met": m["peak_mb"] <= 3 * m["frame_mb"]}, **m)


def measure_lookups(n_trials: int = 10_000, n_results: int = 5, folder: str | None = None,
                    quick: bool = False) -> dict[str, Any]:
    """Lookups of a freshly loaded experiment of ``n_trials`` trials x ``n_results`` results (or the one in
    ``folder``): ``trial(id)`` before and after the trials are read, ``get_best()`` and
    ``get_best(scope="all")`` (a fresh ``load`` each); and, unless ``quick``, ``get_best(scope="all")`` at a
    million results (100 trials x 10,000) and `tunesmith ls` over both experiments. Seconds; goal 10 ms."""
    code = """
        import json, time
        import tunesmith as ts
        out = {{}}
        t = time.perf_counter(); rs = ts.load({folder!r}); out["load_s"] = time.perf_counter() - t
        n = len(ts.load({folder!r}).trials)
        t = time.perf_counter(); rs.trial(n // 2); out["trial_fresh_s"] = time.perf_counter() - t
        rs.trials
        t = time.perf_counter()
        for i in range(1, 101):
            rs.trial(1 + i * (n - 1) // 100)
        out["trial_warm_s"] = (time.perf_counter() - t) / 100
        rs = ts.load({folder!r}); t = time.perf_counter(); rs.get_best(); out["best_last_s"] = time.perf_counter() - t
        rs = ts.load({folder!r}); t = time.perf_counter(); rs.get_best(scope="all")
        out["best_all_s"] = time.perf_counter() - t
        t = time.perf_counter(); rs.get_best(scope="all"); out["best_all_warm_s"] = time.perf_counter() - t
        print(json.dumps(out))
    """
    with _scratch() as root:
        wide = folder or build_store(os.path.join(root, "wide"), n_trials, n_results, 3)
        m = _child(code.format(folder=wide))
        size = f"{n_trials:,} trials x {n_results}" if folder is None else os.path.basename(folder)
        parts = [{"what": "trial(id), fresh load", "size": size, "measured": m["trial_fresh_s"], "unit": "s",
                  "goal": "<= 10 ms", "met": m["trial_fresh_s"] <= 0.01},
                 {"what": "trial(id), trials read", "size": size, "measured": m["trial_warm_s"], "unit": "s",
                  "goal": "<= 10 ms", "met": m["trial_warm_s"] <= 0.01},
                 {"what": "get_best(), fresh load", "size": size, "measured": m["best_last_s"], "unit": "s",
                  "goal": "<= 10 ms", "met": m["best_last_s"] <= 0.01},
                 {"what": "get_best(scope='all'), fresh load", "size": size, "measured": m["best_all_s"],
                  "unit": "s", "goal": "<= 10 ms", "met": m["best_all_s"] <= 0.01}]
        raw = {"wide": m}
        if not quick and folder is None:
            build_store(os.path.join(root, "deep"), 100, 10_000, 3)
            d = _child(code.format(folder=os.path.join(root, "deep")))
            parts.append({"what": "get_best(scope='all'), fresh load", "size": "100 trials x 10,000",
                          "measured": d["best_all_s"], "unit": "s", "goal": "<= 10 ms", "met": d["best_all_s"] <= 0.01})
            for name, label in (("wide", size), ("deep", "100 trials x 10,000")):  # as a running experiment's
                _drop_metric_indexes(os.path.join(root, name))  # store: no index yet, one pass over the results
                r = _child(code.format(folder=os.path.join(root, name)))
                parts.append({"what": "get_best(scope='all'), running (no index)", "size": label,
                              "measured": r["best_all_s"], "unit": "s", "goal": "<= 10 ms",
                              "met": r["best_all_s"] <= 0.01})
                raw[f"{name}_running"] = r
            ls_s = _cli_s("ls", "--storage-path", root)[0]
            parts.append({"what": "tunesmith ls", "size": f"{n_trials + 100:,} trials", "measured": ls_s, "unit": "s",
                          "floor": _floor_s(), "goal": "<= 10 ms above the floor"})
            raw.update(deep=d, ls_s=ls_s)
        return _lines(*parts, **raw)


def _drop_metric_indexes(folder: str) -> None:
    """The store as it is while its experiment runs: without the indexes its end builds (``index_metrics``)."""
    import sqlite3

    from tunesmith._layout import STORE_FILE

    db = sqlite3.connect(os.path.join(folder, STORE_FILE))
    try:
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND (name GLOB "
                                  "'results_metric_*' OR name = 'trials_status')").fetchall():
            db.execute(f"DROP INDEX {name}")
        db.commit()
    finally:
        db.close()


def measure_ls(root: str) -> dict[str, Any]:
    """`tunesmith ls --storage-path root` as a command: seconds."""
    return {"seconds": _cli_s("ls", "--storage-path", root)[0]}


_WRITER = """
import json, sys, time
import tunesmith as ts

def train(config):
    ts.report({"loss": config["x"]})

t = time.perf_counter()
ts.run(train, space={"x": ts.uniform(0, 1)}, metric="loss", mode="min", num_samples=%d, name=%r,
       storage_path=%r, verbose=0, max_concurrent=2)
print(json.dumps({"seconds": time.perf_counter() - t}))
"""


def measure_reader_beside_writer(n_trials: int = 2000, poll_s: float = 1.0, rounds: int = 2) -> dict[str, Any]:
    """A run of ``n_trials`` one-result trials alone, with `tunesmith show` of it started every ``poll_s`` seconds
    (a new process each time), and with one `tunesmith show --watch poll_s` beside it (where this tunesmith has
    it), interleaved ``rounds`` times: the writer's wall seconds each way, their ratios to the run alone (medians),
    and the slowest show."""
    trials = n_trials
    watch = "--watch" in _show_help()
    modes = ("alone", "show", "watch") if watch else ("alone", "show")
    walls: dict[str, list[float]] = {m: [] for m in modes}
    shows: list[float] = []
    with _scratch() as root:
        for r in range(rounds):
            for mode in modes[r % len(modes):] + modes[:r % len(modes)]:  # rotated: the VM's drift spread evenly
                name = f"w{r}{mode}"
                writer = subprocess.Popen([sys.executable, "-c", _WRITER % (trials, name, root)],
                                          stdout=subprocess.PIPE, text=True, env=_env())
                folder = os.path.join(root, name)
                watcher = None
                while mode != "alone" and writer.poll() is None:
                    t = time.perf_counter()
                    if watcher is None and os.path.exists(os.path.join(folder, "experiment.db")):
                        if mode == "watch":  # one process, drawing every poll_s until the run ends
                            watcher = subprocess.Popen(
                                [sys.executable, "-c", "from tunesmith.cli import main; main()", "show", folder,
                                 "--watch", str(poll_s)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=_env())
                            break  # this process only waits from here
                        else:
                            try:
                                shows.append(_cli_s("show", folder)[0])
                            except RuntimeError:
                                pass  # the experiment was not published yet
                    time.sleep(max(0.0, (0.01 if mode == "watch" else poll_s) - (time.perf_counter() - t)))
                out, _ = writer.communicate(timeout=1200)
                if watcher is not None:
                    try:
                        watcher.wait(timeout=60)  # it ends itself once the experiment did
                    except subprocess.TimeoutExpired:
                        watcher.kill()
                        watcher.wait()
                walls[mode].append(json.loads(out.strip().splitlines()[-1])["seconds"])
    alone = statistics.median(walls["alone"])
    parts = []
    for mode, what in (("show", f"run with `show` started every {poll_s:g} s: wall"),
                       ("watch", f"run with one `show --watch {poll_s:g}`: wall")):
        if mode in walls:
            ratio = statistics.median(walls[mode]) / alone
            parts.append({"what": what, "size": f"{n_trials:,} trials", "measured": statistics.median(walls[mode]),
                          "unit": "s", "floor": alone, "ratio": ratio, "goal": "<= 1.1x", "met": ratio <= 1.1})
    beside = statistics.median(walls["show"])
    return _lines(*parts, alone_s=alone, with_reader_s=beside, ratio=beside / alone,
                  with_watch_s=statistics.median(walls["watch"]) if watch else None,
                  watch_ratio=statistics.median(walls["watch"]) / alone if watch else None,
                  slowest_show_s=max(shows) if shows else 0.0, shows=len(shows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000, help="trials of the show/lookup experiments")
    parser.add_argument("--params", type=int, default=20, help="parameters per trial of the show experiment")
    parser.add_argument("--results", type=int, default=1_000_000, help="results of the dataframe experiment "
                                                                           "(100 trials)")
    parser.add_argument("--writer-trials", type=int, default=2000, help="trials of the reader-beside-writer run "
                                                                         "(0: skip it)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the reader-beside-writer run")
    parser.add_argument("--only-writer", action="store_true", help="measure only the reader-beside-writer run")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON instead of a table")
    args = parser.parse_args()
    found = [] if args.only_writer else [measure_show(args.trials, args.params),
                                         measure_dataframe(100, max(args.results // 100, 1)),
                                         measure_lookups(args.trials)]
    if args.writer_trials:
        found.append(measure_reader_beside_writer(args.writer_trials, rounds=args.rounds))
    if args.json:
        print(json.dumps(found))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="readers (noisy on a shared machine)")
    for col in ("what", "size", "measured", "floor", "ratio", "goal", "met"):
        table.add_column(col)
    for part in (line for f in found for line in f["lines"]):
        unit = part.get("unit", "")
        table.add_row(part["what"], part.get("size", ""), f"{part['measured']:.4g} {unit}",
                      "" if part.get("floor") is None else f"{part['floor']:.4g} {unit}",
                      "" if part.get("ratio") is None else f"{part['ratio']:.2f}x", part.get("goal", ""),
                      {True: "yes", False: "no"}.get(part.get("met"), ""))  # type: ignore[arg-type]
    Console().print(table)


def _show_help() -> str:
    out = subprocess.run([sys.executable, "-c", "from tunesmith.cli import main; main()", "show", "--help"],
                         capture_output=True, text=True, timeout=120, env=_env())
    return out.stdout


if __name__ == "__main__":
    main()
