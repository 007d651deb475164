"""Bytes per MIME type per inline figure, for every result.plot kind, at N trials (SimulatedBackend).

usage: .venv/bin/python benchmarks/notebook_figures.py 1000 20000   (from the repository root: tunesmith is imported
from the current folder; the experiments are made in a temporary folder, or kept in $KEEP to measure again)
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.getcwd())  # the tunesmith of the folder it runs from (not an installed one)
import tunesmith as ts  # noqa: E402
from tunesmith import _notebook  # noqa: E402

ROOT = os.environ.get("KEEP") or tempfile.mkdtemp(prefix="tunesmith-notebook-figures-")
OPTS = ["adam", "sgd", "rms", "lamb"]
SEEDS = 5
LRS = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
ITERS = 10


def train(config, ctx):
    rate = config["lr"] * (1 + OPTS.index(config["opt"])) * 10
    for i in range(ctx.iteration, ITERS):
        loss = 1.0 / (1.0 + rate * (i + 1)) + 0.01 * ((config["seed"] * 7919 + i * 104729) % 97) / 97
        yield ({"loss": loss, "latency": config["width"] / 64 + 0.001 * i}, 1.0 + (config["width"] % 3))


def experiment(n: int):
    name = f"sim{n}"
    path = os.path.join(ROOT, name)
    if os.path.exists(os.path.join(path)):
        return ts.load(path)
    t = time.time()
    rs = ts.run(train, {"opt": ts.grid(OPTS), "seed": ts.grid(list(range(SEEDS))),
                        "lr": ts.choice(LRS), "width": ts.choice([8, 16, 32, 64])},
                metric="loss", mode="min", num_samples=n // (len(OPTS) * SEEDS),
                backend=ts.SimulatedBackend({"cpu": 64}, seed=0), name=name, storage_path=ROOT, verbose=0, seed=0)
    print(f"# ran {n} trials in {time.time() - t:.1f} s", file=sys.stderr)
    return rs


def points(trace):
    if "dimensions" in trace:
        return len(trace["dimensions"][0]["values"]) if trace["dimensions"] else 0
    return len(trace.get("x") or trace.get("y") or ())


KINDS = {
    "learning_curves": lambda p: p.learning_curves(),
    "seed_curves": lambda p: p.seed_curves(),
    "best_so_far": lambda p: p.best_so_far(),
    "sensitivity": lambda p: p.sensitivity(),
    "parallel_coordinates": lambda p: p.parallel_coordinates(),
    "scatter": lambda p: p.scatter(),
    "timeline": lambda p: p.timeline(),
    "pareto_front": lambda p: p.pareto_front(["loss", "latency"], ["min", "min"]),
}


def main() -> None:
    out = {}
    for n in map(int, sys.argv[1:]):
        rs = experiment(n)
        _notebook._plotly_sent = True  # plotly.js reported on its own below
        print(f"\n## {len(rs.trials)} trials ({ts.__file__})")
        print(f"{'plot':22} {'traces':>6} {'points':>7} {'max/trace':>9} {'bundle total':>12}  per MIME type (bytes)")
        for kind, make in KINDS.items():
            t = time.time()
            fig = make(rs.plot)
            took = time.time() - t
            if fig is None:
                print(f"{kind:22} (none)")
                continue
            bundle = fig._repr_mimebundle_()
            sizes = {m: len(v.encode() if isinstance(v, str) else json.dumps(v).encode()) for m, v in bundle.items()}
            pts = [points(tr) for tr in fig.figure["data"]]
            total = sum(sizes.values())
            import nbformat  # what a saved notebook holds: nbformat writes the JSON indented, a value a line
            nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[
                nbformat.v4.new_output("display_data", data=bundle)])])
            sizes["saved .ipynb"] = len(nbformat.writes(nb).encode())
            print(f"{kind:22} {len(pts):6} {sum(pts):7} {max(pts, default=0):9} {total:12,}  "
                  + "  ".join(f"{m.split('/')[-1]}={s:,}" for m, s in sizes.items()) + f"  ({took:.2f} s)")
            out[f"{n}/{kind}"] = {"traces": len(pts), "points": sum(pts), "sizes": sizes}
        _notebook._plotly_sent = False
        first = rs.plot.timeline()._repr_mimebundle_()
        print(f"first figure of a kernel (carries plotly.js): text/html={len(first['text/html'].encode()):,}")
    if os.environ.get("MEASURE_JSON"):
        with open(os.environ["MEASURE_JSON"], "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
