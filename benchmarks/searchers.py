"""Searcher quality: the best value each searcher finds with the same budget, on three problems.

    .venv/bin/python benchmarks/searchers.py                      # 60 trials x 10 seeds, all 6 searchers
    .venv/bin/python benchmarks/searchers.py --seeds 3 --trials 30  # a quick look
    .venv/bin/python benchmarks/searchers.py --problems hartmann6 --searchers random,tpe

How it runs: every (problem, searcher, seed) is one ``tunesmith.run`` on the simulated executor with one
simulated CPU, so trials run one after another in virtual time and a model-based searcher sees every
result before its next suggestion. The real controller, store and searcher code run (``suggest`` /
``observe`` through the controller, SQLite writes included); only the clock is virtual. The sklearn
problem trains real models in this process. ``--jobs`` runs that many of these experiments at once in
separate processes (default 2), each with one BLAS/torch thread. Measured: 787 s wall for the default run
on 2 cores that other jobs were also using (less on an idle machine); ``gp`` takes about half of it
(Optuna's GP sampler refits at every suggestion): leave it out with ``--searchers`` for a quick look.

Searchers: ``Random``, ``QuasiRandom`` (scrambled Sobol), ``OptunaSearch`` with ``tpe``, ``cmaes`` and
``gp`` (Optuna's defaults, seeded), and ``BOHB`` with the ``ASHA`` scheduler. Every searcher but BOHB
gets ``--trials`` trials evaluated at full fidelity, each taking 9 virtual seconds. BOHB+ASHA gets the
same compute: ``--trials * 9`` virtual seconds of iterations (1 s each, ``max_t=9``, grace period 1,
reduction factor 3), as many trials as fit; its best value is the best among trials that reached
``max_t`` (a value seen only at a low budget does not count).

Problems (all minimised):

- ``branin``: Branin-Hoo on [-5, 10] x [0, 15], minimum 0.397887.
- ``hartmann6``: Hartmann 6-D on [0, 1]^6, minimum -3.32237.
- ``svm``: an RBF SVM (standardised features) on scikit-learn's bundled breast-cancer data set (569
  samples), ``C ~ loguniform(1e-2, 1e3)``, ``gamma ~ loguniform(1e-5, 10)``,
  ``class_weight ~ choice([None, "balanced"])``; the value is the 3-fold stratified cross-validated
  error (1 - accuracy). Its optimum is unknown: "regret" is then against the best value any run found.

Fidelity for BOHB+ASHA: at iteration ``t`` of 9, a synthetic problem reports
``f(x) + (1 - t / 9) * s * (1 + sin(7 * sum(u))) / 2`` (``u`` the config on the unit cube; ``s`` = 5 for
Branin, 1 for Hartmann-6): an x-dependent offset that vanishes at full budget, so early rungs rank
configs roughly but not exactly. The SVM trains on the first ``t / 9`` of each (shuffled) training fold.

Columns: ``median`` and ``[q1, q3]`` of the best value over seeds, ``min``/``max`` over seeds,
``regret`` the median simple regret (best value minus the optimum), ``vs random`` that regret divided by
Random's, ``trials`` the median number of trials run, ``s/run`` real seconds per experiment.
The target checked at the end: TPE's median simple regret on Hartmann-6 is at most half of Random's.
"""

from __future__ import annotations

import argparse
import functools
import math
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FIDELITY = 9  # max_t for BOHB+ASHA; every other searcher's trial takes this many virtual seconds
SEARCHERS = ("random", "quasi", "tpe", "cmaes", "gp", "bohb")
LABELS = {"random": "Random", "quasi": "QuasiRandom (Sobol)", "tpe": "OptunaSearch tpe",
          "cmaes": "OptunaSearch cmaes", "gp": "OptunaSearch gp", "bohb": "BOHB + ASHA"}
PROBLEMS = ("branin", "hartmann6", "svm")
OPTIMUM = {"branin": 0.397887, "hartmann6": -3.32237}
OFFSET_SCALE = {"branin": 5.0, "hartmann6": 1.0}

_H6_A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
_H6_P = [[0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886], [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
         [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650], [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381]]
_H6_ALPHA = [1.0, 1.2, 3.0, 3.2]


# --- problems -------------------------------------------------------------------------------------------
def branin(x1: float, x2: float) -> float:
    b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def hartmann6(x: list[float]) -> float:
    return -sum(alpha * math.exp(-sum(a * (xi - p) ** 2 for a, xi, p in zip(row, x, prow)))
                for alpha, row, prow in zip(_H6_ALPHA, _H6_A, _H6_P))


def space_of(problem: str) -> dict[str, Any]:
    import tunesmith as ts

    if problem == "branin":
        return {"x1": ts.uniform(-5, 10), "x2": ts.uniform(0, 15)}
    if problem == "hartmann6":
        return {f"x{i}": ts.uniform(0, 1) for i in range(6)}
    return {"C": ts.loguniform(1e-2, 1e3), "gamma": ts.loguniform(1e-5, 10),
            "class_weight": ts.choice([None, "balanced"])}


def unit(problem: str, config: dict[str, Any]) -> list[float]:
    if problem == "branin":
        return [(config["x1"] + 5) / 15, config["x2"] / 15]
    return [config[f"x{i}"] for i in range(6)]


def synthetic(problem: str, config: dict[str, Any]) -> float:
    if problem == "branin":
        return branin(config["x1"], config["x2"])
    return hartmann6(unit(problem, config))


@functools.lru_cache(maxsize=1)
def _svm_data() -> Any:
    import numpy as np
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import StratifiedKFold

    X, y = load_breast_cancer(return_X_y=True)
    folds = []
    rng = np.random.default_rng(0)
    for train, test in StratifiedKFold(3, shuffle=True, random_state=0).split(X, y):
        folds.append((rng.permutation(train), test))  # shuffled: a prefix is a random subset
    return X, y, folds


def svm_error(config: dict[str, Any], fraction: float = 1.0) -> float:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    X, y, folds = _svm_data()
    errors = []
    for train, test in folds:
        part = train[:max(20, int(len(train) * fraction))]
        model = make_pipeline(StandardScaler(), SVC(C=config["C"], gamma=config["gamma"],
                                                    class_weight=config["class_weight"]))
        model.fit(X[part], y[part])
        errors.append(1.0 - float(model.score(X[test], y[test])))
    return statistics.fmean(errors)


def trial_fn(problem: str, multi_fidelity: bool) -> Any:
    """The simulated executor's generator trial for one problem."""

    def train(config: dict[str, Any]) -> Any:
        if not multi_fidelity:
            value = svm_error(config) if problem == "svm" else synthetic(problem, config)
            yield ({"value": value}, float(FIDELITY))
            return
        for t in range(1, FIDELITY + 1):
            if problem == "svm":
                value = svm_error(config, t / FIDELITY)
            else:
                u = unit(problem, config)
                offset = OFFSET_SCALE[problem] * (1 + math.sin(7 * sum(u))) / 2
                value = synthetic(problem, config) + (1 - t / FIDELITY) * offset
            yield ({"value": value}, 1.0)

    return train


# --- one experiment -------------------------------------------------------------------------------------
def run_one(task: tuple[str, str, int, int]) -> tuple[str, str, int, float, int, float]:
    """``(problem, searcher, seed, trials)`` -> ``(problem, searcher, seed, best, n_trials, seconds)``."""
    problem, searcher_name, seed, trials = task
    import tunesmith as ts
    from tunesmith.executors.simulated import SimulatedBackend
    from tunesmith.schedulers.asha import ASHA
    from tunesmith.searchers.bohb import BOHB
    from tunesmith.searchers.optuna import OptunaSearch
    from tunesmith.searchers.sobol import QuasiRandom

    bohb = searcher_name == "bohb"
    if searcher_name == "random":
        searcher: Any = ts.Random(seed=seed)
    elif searcher_name == "quasi":
        searcher = QuasiRandom(seed=seed)
    elif bohb:
        searcher = BOHB(seed=seed)
    else:
        searcher = OptunaSearch(sampler=searcher_name, seed=seed)
    root = tempfile.mkdtemp(prefix="ts-bench-searchers-")
    start = time.perf_counter()
    try:
        result = ts.run(
            trial_fn(problem, bohb), space=space_of(problem), metric="value", mode="min",
            num_samples=-1 if bohb else trials, searcher=searcher,
            scheduler=ASHA(max_t=FIDELITY, grace_period=1, reduction_factor=3) if bohb else None,
            time_budget_s=float(trials * FIDELITY) if bohb else None,
            backend=SimulatedBackend({"cpu": 1}, seed=seed), storage_path=root, name="bench", verbose=0)
        finals = [t.last_result["value"] for t in result.trials
                  if "value" in t.last_result and (not bohb or t.iteration >= FIDELITY)]
        best = min(finals) if finals else math.nan
        n = len(result.trials)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return problem, searcher_name, seed, best, n, time.perf_counter() - start


def _init_worker() -> None:
    # One thread per process: --jobs processes share the cores; GP's torch would oversubscribe them.
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    import logging

    logging.getLogger("tunesmith").setLevel(logging.ERROR)  # the time budget's "stopping" notes


# --- table ----------------------------------------------------------------------------------------------
def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def fmt(x: float) -> str:
    if math.isnan(x):
        return "nan"
    return f"{x:.4g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def table(runs: list[tuple[str, str, int, float, int, float]], problems: list[str], searchers: list[str]
          ) -> tuple[str, dict[tuple[str, str], float]]:
    lines: list[str] = []
    regrets: dict[tuple[str, str], float] = {}
    head = f"{'searcher':<22} {'median':>10} {'[q1, q3]':>22} {'min':>10} {'max':>10} {'regret':>10} " \
           f"{'vs random':>9} {'trials':>6} {'s/run':>6}"
    for problem in problems:
        mine = [r for r in runs if r[0] == problem]
        if not mine:
            continue
        finite = [r[3] for r in mine if not math.isnan(r[3])]
        optimum = OPTIMUM.get(problem, min(finite) if finite else math.nan)
        what = f"optimum {optimum:g}" if problem in OPTIMUM else f"best found {optimum:.4g} (regret against it)"
        lines += ["", f"{problem} ({what})", head, "-" * len(head)]
        for name in searchers:
            rs = [r for r in mine if r[1] == name]
            if not rs:
                continue
            bests = sorted(r[3] for r in rs)
            q1, med, q3 = quartiles(bests)
            regret = med - optimum
            regrets[(problem, name)] = regret
            base = regrets.get((problem, "random"))
            ratio = regret / base if base not in (None, 0) and name != "random" else math.nan
            lines.append(f"{LABELS[name]:<22} {fmt(med):>10} {'[' + fmt(q1) + ', ' + fmt(q3) + ']':>22} "
                         f"{fmt(bests[0]):>10} {fmt(bests[-1]):>10} {fmt(regret):>10} "
                         f"{'' if math.isnan(ratio) else f'{ratio:.2f}':>9} "
                         f"{statistics.median(r[4] for r in rs):>6g} {statistics.fmean(r[5] for r in rs):>6.2f}")
    return "\n".join(lines), regrets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds per searcher and problem (default 10)")
    parser.add_argument("--trials", type=int, default=60, help="trials per experiment (default 60)")
    parser.add_argument("--jobs", type=int, default=2, help="experiments run at once (processes, default 2)")
    parser.add_argument("--problems", default=",".join(PROBLEMS), help=f"comma-separated, of {PROBLEMS}")
    parser.add_argument("--searchers", default=",".join(SEARCHERS), help=f"comma-separated, of {SEARCHERS}")
    args = parser.parse_args()
    problems = [p for p in args.problems.split(",") if p]
    searchers = [s for s in args.searchers.split(",") if s]
    for p in problems:
        if p not in PROBLEMS:
            parser.error(f"--problems: unknown problem {p!r}; expected some of {PROBLEMS}")
    for s in searchers:
        if s not in SEARCHERS:
            parser.error(f"--searchers: unknown searcher {s!r}; expected some of {SEARCHERS}")
    if args.seeds < 1 or args.trials < 2 or args.jobs < 1:
        parser.error("--seeds and --jobs must be >= 1, --trials >= 2")
    # random first: every other row is compared with it
    searchers = sorted(searchers, key=lambda s: s != "random")
    # the slow ones (gp, svm) first, so the pool does not end on one long task
    tasks = [(p, s, seed, args.trials) for p in problems for s in searchers for seed in range(args.seeds)]
    tasks.sort(key=lambda t: (t[1] != "gp", t[0] != "svm"))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    start = time.perf_counter()
    if args.jobs == 1:
        _init_worker()
        runs = [run_one(t) for t in tasks]
    else:
        with mp.get_context("spawn").Pool(args.jobs, initializer=_init_worker) as pool:
            runs = pool.map(run_one, tasks, chunksize=1)
    wall = time.perf_counter() - start
    text, regrets = table(runs, problems, searchers)
    print(f"tunesmith searcher benchmark: {args.trials} trials (BOHB+ASHA: {args.trials * FIDELITY} "
          f"iterations), {args.seeds} seeds, {args.jobs} jobs; {wall:.0f} s wall")
    print(text)
    tpe, rnd = regrets.get(("hartmann6", "tpe")), regrets.get(("hartmann6", "random"))
    if tpe is not None and rnd is not None:
        ok = tpe <= 0.5 * rnd
        print(f"\ntarget: TPE median regret on Hartmann-6 {tpe:.4g} <= half of Random's {rnd:.4g} "
              f"({0.5 * rnd:.4g}): {'met' if ok else 'MISSED'} (ratio {tpe / rnd:.2f})")


if __name__ == "__main__":
    main()
