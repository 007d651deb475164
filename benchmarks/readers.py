"""What reading an experiment costs: `tunesmith show`, `dataframe(all_results=True)`, lookups, and a reader
polling beside a running experiment (issue 19 rows 6-9).

    .venv/bin/python benchmarks/readers.py [--trials N] [--params P] [--results R] [--writer-trials W]

Prints one table. Each measurement is a function returning a dict, so ``benchmarks/scale.py`` can import
them; the stores are written as the driver writes them (``build_store``), in a temporary folder. Every
timing runs in a fresh Python process (what a user's command pays, imports included); memory is the
process's peak resident size above what it held before the call. Numbers are noisy on a shared machine:
compare before/after interleaved in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Any

if not os.environ.get("PYTHONPATH"):  # this checkout's tunesmith, unless PYTHONPATH names one (before/after runs)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


def measure_show(folder: str, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """`tunesmith show` of the experiment in ``folder`` as a command (a fresh process): seconds from start to
    exit and bytes printed."""
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", "from tunesmith.cli import main; main()", "show", folder, *extra],
                         capture_output=True, timeout=600, env=_env())
    seconds = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"tunesmith show failed: {out.stderr.decode()[-2000:]}")
    return {"seconds": seconds, "bytes": len(out.stdout)}


def measure_dataframe(folder: str) -> dict[str, Any]:
    """``load(folder).dataframe(all_results=True)``: seconds, the process's peak memory above what it held
    before the call (MB), and the frame's own size (MB, ``memory_usage(deep=True)``)."""
    return _child(f"""
        import json, resource, time
        import pandas
        import tunesmith as ts
        rs = ts.load({folder!r})
        rs.trials
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        df = rs.dataframe(all_results=True)
        seconds = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print(json.dumps({{"seconds": seconds, "peak_mb": peak / 1024, "rows": len(df),
                          "frame_mb": df.memory_usage(deep=True).sum() / 2**20}}))
    """)


def measure_lookups(folder: str) -> dict[str, Any]:
    """Lookups of a freshly loaded experiment: ``trial(id)`` (before and after the trials are read),
    ``get_best()`` and ``get_best(scope="all")``, seconds each (a fresh ``load`` per call; the load itself
    is ``load_s``)."""
    return _child(f"""
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
    """)


def measure_ls(root: str) -> dict[str, Any]:
    """`tunesmith ls --storage-path root` as a command: seconds."""
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", "from tunesmith.cli import main; main()", "ls", "--storage-path",
                          root], capture_output=True, timeout=600, env=_env())
    if out.returncode != 0:
        raise RuntimeError(f"tunesmith ls failed: {out.stderr.decode()[-2000:]}")
    return {"seconds": time.perf_counter() - t}


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


def measure_reader_beside_writer(trials: int = 2000, poll_s: float = 1.0, rounds: int = 2) -> dict[str, Any]:
    """A run of ``trials`` one-result trials alone and with `tunesmith show` of it every ``poll_s`` seconds,
    interleaved ``rounds`` times: the writer's wall seconds each way, their ratio (medians), and the slowest
    show."""
    alone: list[float] = []
    beside: list[float] = []
    shows: list[float] = []
    with tempfile.TemporaryDirectory() as root:
        for r in range(rounds):
            for with_reader in (False, True):
                name = f"w{r}{int(with_reader)}"
                writer = subprocess.Popen([sys.executable, "-c", _WRITER % (trials, name, root)],
                                          stdout=subprocess.PIPE, text=True, env=_env())
                folder = os.path.join(root, name)
                while with_reader and writer.poll() is None:
                    t = time.perf_counter()
                    if os.path.exists(os.path.join(folder, "experiment.db")):
                        try:
                            shows.append(measure_show(folder)["seconds"])
                        except RuntimeError:
                            pass  # the experiment was not published yet
                    time.sleep(max(0.0, poll_s - (time.perf_counter() - t)))  # a user polling every poll_s
                out, _ = writer.communicate(timeout=1200)
                seconds = json.loads(out.strip().splitlines()[-1])["seconds"]
                (beside if with_reader else alone).append(seconds)
    return {"alone_s": statistics.median(alone), "with_reader_s": statistics.median(beside),
            "ratio": statistics.median(beside) / statistics.median(alone),
            "slowest_show_s": max(shows) if shows else None, "shows": len(shows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000, help="trials of the show/lookup experiment")
    parser.add_argument("--params", type=int, default=20, help="parameters per trial")
    parser.add_argument("--results", type=int, default=1_000_000, help="results of the dataframe experiment "
                                                                           "(100 trials)")
    parser.add_argument("--writer-trials", type=int, default=2000, help="trials of the reader-beside-writer run "
                                                                         "(0: skip it)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON instead of a table")
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []
    numbers: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as root:
        wide = build_store(os.path.join(root, "wide"), args.trials, 5, args.params)
        deep = build_store(os.path.join(root, "deep"), 100, max(args.results // 100, 1), 3)
        numbers["show"] = measure_show(wide)
        numbers["show_all"] = measure_show(wide, ("--all",)) if "--all" in _show_help() else None
        numbers["lookups_wide"] = measure_lookups(wide)
        numbers["lookups_deep"] = measure_lookups(deep)
        numbers["ls"] = measure_ls(root)
        numbers["dataframe"] = measure_dataframe(deep)
    if args.writer_trials:
        numbers["beside_writer"] = measure_reader_beside_writer(args.writer_trials)
    if args.json:
        print(json.dumps(numbers))
        return
    s, lw, ld, df = numbers["show"], numbers["lookups_wide"], numbers["lookups_deep"], numbers["dataframe"]
    rows += [(f"show, {args.trials} trials x {args.params} params (default)", f"{s['seconds']:.2f} s, "
                                                                             f"{s['bytes'] / 1e3:.0f} kB"),
             ("show --all", "-" if numbers["show_all"] is None else
              f"{numbers['show_all']['seconds']:.2f} s, {numbers['show_all']['bytes'] / 1e3:.0f} kB"),
             (f"load, {args.trials} trials", f"{lw['load_s'] * 1e3:.1f} ms"),
             ("trial(id), fresh / trials read", f"{lw['trial_fresh_s'] * 1e3:.2f} ms / "
                                                f"{lw['trial_warm_s'] * 1e6:.1f} us"),
             ("get_best(), fresh", f"{lw['best_last_s'] * 1e3:.1f} ms"),
             (f"get_best(scope='all'), {args.trials} trials x 5", f"{lw['best_all_s'] * 1e3:.1f} ms (again: "
                                                                  f"{lw['best_all_warm_s'] * 1e3:.1f} ms)"),
             (f"get_best(scope='all'), 100 trials x {args.results // 100}",
              f"{ld['best_all_s'] * 1e3:.1f} ms (again: {ld['best_all_warm_s'] * 1e3:.1f} ms)"),
             (f"ls, {args.trials + 100} trials", f"{numbers['ls']['seconds']:.2f} s"),
             (f"dataframe(all_results=True), {df['rows']} rows", f"{df['seconds']:.2f} s, peak +{df['peak_mb']:.0f} MB "
                                                                 f"for a {df['frame_mb']:.0f} MB frame")]
    if "beside_writer" in numbers:
        b = numbers["beside_writer"]
        rows.append((f"writer with show every 1 s, {args.writer_trials} trials",
                     f"{b['ratio']:.2f}x alone ({b['alone_s']:.1f} s -> {b['with_reader_s']:.1f} s), slowest show "
                     f"{b['slowest_show_s'] or 0:.2f} s"))
    from rich.console import Console
    from rich.table import Table

    table = Table(title="readers (noisy on a shared machine)")
    table.add_column("what")
    table.add_column("measured")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def _show_help() -> str:
    out = subprocess.run([sys.executable, "-c", "from tunesmith.cli import main; main()", "show", "--help"],
                         capture_output=True, text=True, timeout=120, env=_env())
    return out.stdout


if __name__ == "__main__":
    main()
