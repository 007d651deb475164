"""Scheduler quality: what each trial scheduler costs and finds, in virtual time and on real workers.

    .venv/bin/python benchmarks/schedulers.py              # simulated executor only (about a minute)
    .venv/bin/python benchmarks/schedulers.py --real       # + the same on real local worker processes
    .venv/bin/python benchmarks/schedulers.py --seeds 3    # fewer seeds (default 5)
    .venv/bin/python benchmarks/schedulers.py --pb2        # only PB2 vs PBT on problem B (simulated)
    .venv/bin/python benchmarks/schedulers.py --pb2 --cartpole   # + CartPole-v1, population 4 (a few minutes)

Everything is seeded: the same command prints the same simulated tables.

Problem A, "curves" (FIFO, ASHA, HyperBand, median stopping, Deadline). A config is
``lr ~ loguniform(1e-3, 1)`` and ``reg ~ uniform(0, 1)``; with ``u = log10(lr / 1e-3) / 3`` in [0, 1]::

    floor(x)   = 0.05 + 0.4 * (u - 0.5) ** 2 + 0.2 * (reg - 0.3) ** 2     # the loss it converges to
    speed(x)   = 0.05 * 20 ** u                                           # a large lr learns fast early
    loss(x, t) = floor + (1 - floor) / (1 + speed * t)  +  N(0, 0.002)    # reported at iteration t

So the final loss depends on the config and the curves cross: large learning rates lead early and end
worse. The Spearman rank correlation between the loss at iteration t and at 81 over the sampled configs
is printed with the table (about 0.45-0.66 at t=1, 0.85-0.9 at t=27): early results are informative but
far from exact. The noise is a deterministic function of (seed, config, t), so every scheduler sees the
same curve for the same config. Each seed draws 81 configs with ``Random(seed)``: every scheduler gets the
same 81 configs. Budget: ``max_t = 81`` iterations, 1 virtual second each, 8 simulated CPUs, one per trial.

Problem B, "schedule" (PBT). The best learning rate decays 100x over training, as in the common
step schedule 0.1 -> 0.001: ``lr*(t) = 0.1 * 0.01 ** ((t - 1) / 80)``. Each iteration multiplies the
loss (1.0 at the start) by ``1 - 0.1 * exp(-ln(lr / lr*(t)) ** 2 / 2)``: a step at the right lr cuts 10%,
one e times off cuts 6%. A population of 16 configs with ``lr ~ loguniform(1e-4, 1)``, 81 iterations,
PBT with its defaults (quantile 0.25, resample probability 0.25, perturbation every 5 iterations,
mutating lr over ``loguniform(1e-4, 1)``). "Every fixed config" is a dense grid of 2001 learning rates
over [1e-4, 1] computed exactly (no noise), i.e. the best constant lr there is.

Columns: ``iters`` total iterations trained (results reported, all trials), ``% FIFO`` that as a share
of FIFO's 81 * 81, ``time`` virtual seconds until the experiment ended (real seconds on workers), ``best``
the best trial's final reported loss, ``gap`` that relative to FIFO's best, ``regret`` the true
(noise-free) loss at ``max_t`` of the recommended config minus the best true loss at ``max_t`` among the
81 sampled configs. Simulated rows are medians over the seeds, with [min, max] where useful.

Deadline comparison: ``Deadline(deadline_s=D, scheduler=ASHA(...))`` against the same ``ASHA`` alone, both
with ``time_budget_s=D``, at deadlines of a quarter and a half of the time ASHA needs on its own. The
simulated speed-up with more CPUs is linear by default; an Amdahl (90% parallel) block and a 2-CPU block
show how the result depends on how much of the machine the best trial can absorb.

Real workers (``--real``): one seed, on the local executor's worker processes. Problem A: each iteration
a ``sleep(--sleep)`` on ``--workers`` (default 2) workers. PBT: ``sleep(--pbt-sleep)`` (50 ms: iterations
must be long next to the workers' start-up skew, ~0.2 s on 2 cores, or the asynchronous population
compares trials many iterations apart), 8 workers. Deadline: ``sleep(--deadline-sleep) / cpus held``, on
2 and on 8 CPUs. Iterations are sleeps, so 8 workers fit on 2 cores. Wall time is real.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tunesmith as ts  # noqa: E402
from tunesmith.executors.local import LocalBackend  # noqa: E402
from tunesmith.executors.simulated import SimulatedBackend  # noqa: E402

MAX_T = 81
N_TRIALS = 81
NOISE = 0.002
SIM_CPUS = 8
PBT_POPULATION = 16  # trained side by side (one CPU each), as PBT assumes
REAL_PBT_POPULATION = 8

# ------------------------------------------------------------------------------------- problem A: curves


def true_loss(lr: float, reg: float, t: float) -> float:
    """The noise-free learning curve of problem A (see the module docstring)."""
    u = math.log10(lr / 1e-3) / 3
    floor = 0.05 + 0.4 * (u - 0.5) ** 2 + 0.2 * (reg - 0.3) ** 2
    speed = 0.05 * 20 ** u
    return floor + (1 - floor) / (1 + speed * t)


def noisy_loss(config: dict[str, Any], t: int) -> float:
    noise = random.Random(f"{config['noise_seed']}:{config['lr']!r}:{config['reg']!r}:{t}").gauss(0.0, NOISE)
    return true_loss(config["lr"], config["reg"], t) + noise


CURVES_SPACE = {"lr": ts.loguniform(1e-3, 1.0), "reg": ts.uniform(0.0, 1.0)}


def sim_curves(config, ctx):
    """Problem A in virtual time: 1 s per iteration (faster with more CPUs); checkpoints its step."""
    step = ctx.checkpoint["step"] if ctx.checkpoint else 0
    while True:
        step += 1
        yield ({"loss": noisy_loss(config, step)}, 1.0, {"step": step})


def real_curves(config):
    """Problem A on a worker: ``sleep_s`` per iteration (divided by the CPUs it holds now)."""
    ckpt = ts.get_checkpoint()
    step = ckpt.load()["step"] if ckpt is not None else 0
    while True:
        time.sleep(config["sleep_s"] / max(1.0, ts.get_resources()["cpu"]))
        step += 1
        ts.report({"loss": noisy_loss(config, step)}, checkpoint=ts.Checkpoint.from_state({"step": step}))


# ----------------------------------------------------------------------------------- problem B: schedule


def best_lr_at(t: int) -> float:
    return 0.1 * 0.01 ** ((t - 1) / 80)


def schedule_step(loss: float, lr: float, t: int) -> float:
    return loss * (1 - 0.1 * math.exp(-math.log(lr / best_lr_at(t)) ** 2 / 2))


def fixed_lr_loss(lr: float, t_end: int = MAX_T) -> float:
    loss = 1.0
    for t in range(1, t_end + 1):
        loss = schedule_step(loss, lr, t)
    return loss


def best_fixed_lr() -> tuple[float, float]:
    """(loss, lr) of the best constant learning rate on a 2001-point log grid over [1e-4, 1], exactly."""
    return min((fixed_lr_loss(lr), lr) for lr in (10 ** (-4 + 4 * i / 2000) for i in range(2001)))


def sim_schedule(config, ctx):
    state = dict(ctx.checkpoint) if ctx.checkpoint else {"step": 0, "loss": 1.0}
    while state["step"] < MAX_T:
        state["step"] += 1
        state["loss"] = schedule_step(state["loss"], config["lr"], state["step"])
        yield ({"loss": state["loss"], "lr": config["lr"]}, 1.0, dict(state))


def real_schedule(config):
    ckpt = ts.get_checkpoint()
    cfg = ts.get_config()  # after an exploit: the new config
    state = ckpt.load() if ckpt is not None else {"step": 0, "loss": 1.0}
    while state["step"] < MAX_T:
        time.sleep(cfg["sleep_s"])
        state["step"] += 1
        state["loss"] = schedule_step(state["loss"], cfg["lr"], state["step"])
        ts.report({"loss": state["loss"], "lr": cfg["lr"]}, checkpoint=ts.Checkpoint.from_state(dict(state)))


SCHEDULE_SPACE = {"lr": ts.loguniform(1e-4, 1.0)}


def make_pbt(seed: int) -> ts.PBT:
    return ts.PBT(perturbation_interval=5, hyperparam_mutations={"lr": ts.loguniform(1e-4, 1.0)}, seed=seed)


def make_pb2(seed: int) -> ts.PB2:
    return ts.PB2(perturbation_interval=5, hyperparam_bounds={"lr": ts.loguniform(1e-4, 1.0)}, seed=seed)


# ---------------------------------------------------------------------------------- problem C: CartPole (RL)

CP_POPULATION = 4
CP_EPISODES = 8  # episodes per iteration (one vectorised env)
CP_HIDDEN = 32
CP_BOUNDS = {"lr": ts.loguniform(1e-5, 1e-1), "gamma": ts.uniform(0.9, 0.999)}
CP_WINDOW = 5  # the reward at a budget: a trial's mean over its last CP_WINDOW iterations (one is 8 episodes)


def sim_cartpole(config, ctx):
    """The REINFORCE agent of examples/cartpole.py (numpy MLP policy, Adam), checkpointing its whole state each
    iteration so that PBT/PB2 can clone it; run in-process by the simulated executor (one virtual second per
    iteration: budgets are iterations, the reward is CartPole-v1's). Environments and action draws are seeded
    by (trial seed, iteration), so a run is a function of its configs and the scheduler's decisions."""
    import gymnasium as gym
    import numpy as np

    lr, gamma, seed = float(config["lr"]), float(config["gamma"]), int(config["seed"])
    n = CP_EPISODES
    env = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="vector_entry_point")
    obs_dim, n_actions, max_steps = 4, 2, 500
    if ctx.checkpoint:
        state = {k: (np.array(v) if isinstance(v, list) else v) for k, v in ctx.checkpoint.items()}
    else:
        rng = np.random.default_rng([seed, 0])
        state = {"W1": rng.normal(0.0, 1.0 / np.sqrt(obs_dim), (obs_dim, CP_HIDDEN)), "b1": np.zeros(CP_HIDDEN),
                 "W2": rng.normal(0.0, 0.01, (CP_HIDDEN, n_actions)), "b2": np.zeros(n_actions), "it": 0}
        for k in ("W1", "b1", "W2", "b2"):
            state["m_" + k], state["v_" + k] = np.zeros_like(state[k]), np.zeros_like(state[k])

    def probs(x):
        h = np.tanh(x @ state["W1"] + state["b1"])
        logits = h @ state["W2"] + state["b2"]
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        return h, p / p.sum(axis=1, keepdims=True)

    while True:
        state["it"] += 1
        it = state["it"]
        rng = np.random.default_rng([seed, it, 1])
        obs, _ = env.reset(seed=seed * 100_003 + it)
        obs_buf, act_buf = np.zeros((max_steps, n, obs_dim)), np.zeros((max_steps, n), dtype=np.int64)
        rew_buf, mask = np.zeros((max_steps, n)), np.zeros((max_steps, n), dtype=bool)
        alive, t = np.ones(n, dtype=bool), 0
        while alive.any() and t < max_steps:
            _, p = probs(obs)
            action = np.minimum((rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1), n_actions - 1)
            obs_buf[t], act_buf[t], mask[t] = obs, action, alive
            obs, reward, terminated, truncated, _ = env.step(action)
            rew_buf[t] = reward * alive
            alive &= ~(terminated | truncated)
            t += 1
        rew, m = rew_buf[:t], mask[:t]
        returns, running = np.zeros_like(rew), np.zeros(n)
        for k in range(t - 1, -1, -1):
            running = rew[k] + gamma * running
            returns[k] = running
        g = returns[m]
        adv = (g - g.mean()) / (g.std() + 1e-8)
        x, a = obs_buf[:t][m], act_buf[:t][m]
        h, d_logits = probs(x)
        d_logits[np.arange(len(a)), a] -= 1.0
        d_logits *= adv[:, None] / len(a)
        d_h = (d_logits @ state["W2"].T) * (1.0 - h * h)
        grads = {"W2": h.T @ d_logits, "b2": d_logits.sum(axis=0), "W1": x.T @ d_h, "b1": d_h.sum(axis=0)}
        for k, grad in grads.items():  # Adam, with its step count continuing across clones
            state["m_" + k] = 0.9 * state["m_" + k] + 0.1 * grad
            state["v_" + k] = 0.999 * state["v_" + k] + 0.001 * grad * grad
            m_hat, v_hat = state["m_" + k] / (1 - 0.9**it), state["v_" + k] / (1 - 0.999**it)
            state[k] = state[k] - lr * m_hat / (np.sqrt(v_hat) + 1e-8)
        saved = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in state.items()}
        yield ({"mean_reward": float(rew.sum(axis=0).mean()), "lr": lr, "gamma": gamma}, 1.0, saved)


def cartpole_schedulers(seed: int, interval: int) -> dict[str, Any]:
    bounds = CP_BOUNDS
    return {"PBT": ts.PBT(perturbation_interval=interval, hyperparam_mutations=bounds, quantile_fraction=0.25,
                          seed=seed),
            "PB2": ts.PB2(perturbation_interval=interval, hyperparam_bounds=bounds, quantile_fraction=0.25,
                          seed=seed)}


def run_cartpole(seeds: list[int], root: str, iterations: int, interval: int,
                 budgets: list[int]) -> dict[str, list[list[float]]]:
    """Per scheduler, per seed: the population's best mean reward at each budget (iterations per trial). Both
    schedulers of a seed start from the same 4 configs and the same agent seeds."""
    out: dict[str, list[list[float]]] = {"PBT": [], "PB2": []}
    for seed in seeds:
        for kind, sched in cartpole_schedulers(seed, interval).items():
            ex = SimulatedBackend({"cpu": CP_POPULATION}, seed=seed)
            space = {**CP_BOUNDS, "seed": seed}
            result = ts.run(sim_cartpole, space=space, metric="mean_reward", mode="max", num_samples=CP_POPULATION,
                            scheduler=sched, searcher=ts.Random(seed=seed), stop={"training_iteration": iterations},
                            backend=ex, storage_path=root, name=f"cartpole-{kind}-{seed}", verbose=0, keep=2)
            curves = [{r["training_iteration"]: r["mean_reward"] for r in result.history(t.id)} for t in result.trials]
            out[kind].append([max(statistics.fmean(c.get(i, 0.0) for i in range(b - CP_WINDOW + 1, b + 1))
                                  for c in curves) for b in budgets])
            print(f"  cartpole {kind} seed {seed}: " + ", ".join(f"{b}: {v:.0f}" for b, v in
                                                                  zip(budgets, out[kind][-1])), flush=True)
    return out


def print_cartpole(out: dict[str, list[list[float]]], budgets: list[int], title: str) -> str:
    rows = []
    for kind, runs in out.items():
        cells = []
        for j in range(len(budgets)):
            values = [r[j] for r in runs]
            mean = statistics.fmean(values)
            se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
            cells.append(f"{mean:.1f} +- {se:.1f}")
        rows.append([kind, *cells])
    table(title, ["scheduler", *[f"reward @ {b} it" for b in budgets]], rows)
    last = [statistics.fmean(r[-1] for r in runs) for runs in out.values()]
    return f"CartPole: PB2 {last[1]:.1f} vs PBT {last[0]:.1f} mean best reward at {budgets[-1]} iterations"


# ------------------------------------------------------------------------------------------------ running


def schedulers(extra: bool = True) -> dict[str, Callable[[], ts.FIFO]]:
    """The schedulers compared on problem A; ``extra``: two more ASHA settings, to show the sensitivity to
    the first rung (they are not the settings the targets are judged on)."""
    out: dict[str, Callable[[], ts.FIFO]] = {
        "FIFO": lambda: ts.FIFO(),
        "ASHA": lambda: ts.ASHA(max_t=MAX_T, grace_period=1, reduction_factor=3),
        "HyperBand": lambda: ts.HyperBand(max_t=MAX_T, reduction_factor=3),
        "Median": lambda: ts.MedianStopping(grace_period=1, min_samples=3),
    }
    if extra:
        out["ASHA brackets=3"] = lambda: ts.ASHA(max_t=MAX_T, grace_period=1, reduction_factor=3, brackets=3)
        out["ASHA grace=9"] = lambda: ts.ASHA(max_t=MAX_T, grace_period=9, reduction_factor=3)
    return out


def amdahl(parallel: float) -> Callable[[dict[str, float], dict[str, float]], float]:
    """Amdahl's law: with ``n`` times the CPUs an iteration runs ``1 / ((1 - p) + p / n)`` times faster."""
    def speedup(resources: dict[str, float], base: dict[str, float]) -> float:
        n = float(resources.get("cpu", 1.0)) / max(float(base.get("cpu", 1.0)), 1e-9)
        return 1.0 / ((1.0 - parallel) + parallel / n)
    return speedup


class Run:
    """One experiment's numbers."""

    def __init__(self, result: ts.ResultSet, elapsed: float, real_s: float, true_best: float | None) -> None:
        self.iters = sum(len(result.history(t.id)) for t in result.trials)
        self.elapsed = elapsed
        self.real_s = real_s
        best = result.best
        self.best = float(best.metrics["loss"])
        self.best_iteration = best.iteration
        self.config = best.config
        self.regret = None
        if true_best is not None:
            self.regret = true_loss(best.config["lr"], best.config["reg"], MAX_T) - true_best
        self.configs = sorted((t.config.get("lr"), t.config.get("reg")) for t in result.trials)
        self.n_trials = len(result.trials)

    def score_own_configs(self) -> float:
        """For a run that trained every sampled config (FIFO): the best true final loss among them, which
        the other schedulers' regret is measured against; sets this run's regret."""
        true_best = min(true_loss(lr, reg, MAX_T) for lr, reg in self.configs)
        self.regret = true_loss(self.config["lr"], self.config["reg"], MAX_T) - true_best
        return true_best


def run_one(fn: Any, space: dict[str, Any], scheduler: Any, *, seed: int, backend: Any, root: str, name: str,
            num_samples: int = N_TRIALS, time_budget_s: float | None = None, true_best: float | None = None,
            clock: Callable[[], float] | None = None) -> Run:
    start = time.perf_counter()
    result = ts.run(fn, space=space, metric="loss", mode="min", num_samples=num_samples, scheduler=scheduler,
                    searcher=ts.Random(seed=seed), stop={"training_iteration": MAX_T}, backend=backend,
                    storage_path=root, name=name, verbose=0, keep=1, time_budget_s=time_budget_s)
    real_s = time.perf_counter() - start
    elapsed = clock() if clock is not None else real_s
    return Run(result, elapsed, real_s, true_best)


def spearman(xs: list[float], ys: list[float]) -> float:
    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=v.__getitem__)
        r = [0.0] * len(v)
        for rank, i in enumerate(order):
            r[i] = float(rank)
        return r

    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    return cov / math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))


# ----------------------------------------------------------------------------------------------- printing


def slug(label: str) -> str:
    """An experiment folder name for a row label."""
    return "".join(c if c.isalnum() or c in "=+-" else "_" for c in label)


def med(values: list[float]) -> float:
    return statistics.median(values)


def fmt_range(values: list[float], spec: str) -> str:
    if len(values) == 1:
        return format(values[0], spec)
    return f"{format(med(values), spec)} [{format(min(values), spec)}, {format(max(values), spec)}]"


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


# ----------------------------------------------------------------------------------------- the benchmark


def simulate_curves(seeds: list[int], root: str) -> dict[str, list[Run]]:
    runs: dict[str, list[Run]] = {name: [] for name in schedulers()}
    correlations: list[list[float]] = []
    first_rung: list[tuple[int, float]] = []  # (rank of the true best at t=1, best of the top third's gap %)
    for seed in seeds:
        space = dict(CURVES_SPACE, noise_seed=seed)
        fifo_ex = SimulatedBackend({"cpu": SIM_CPUS}, seed=seed)
        fifo = run_one(sim_curves, space, ts.FIFO(), seed=seed, backend=fifo_ex, root=root,
                       name=f"curves-FIFO-{seed}", clock=fifo_ex.clock)
        true_best = fifo.score_own_configs()
        runs["FIFO"].append(fifo)
        finals = [true_loss(lr, reg, MAX_T) for lr, reg in fifo.configs]
        correlations.append([spearman([true_loss(lr, reg, t) for lr, reg in fifo.configs], finals)
                             for t in (1, 3, 9, 27)])
        by_t1 = sorted(fifo.configs, key=lambda x: true_loss(x[0], x[1], 1))
        rank = by_t1.index(min(fifo.configs, key=lambda x: true_loss(x[0], x[1], MAX_T))) + 1
        top_third = min(true_loss(lr, reg, MAX_T) for lr, reg in by_t1[:N_TRIALS // 3])
        first_rung.append((rank, (top_third - true_best) / true_best * 100))
        for name, make in schedulers().items():
            if name == "FIFO":
                continue
            ex = SimulatedBackend({"cpu": SIM_CPUS}, seed=seed)
            run = run_one(sim_curves, space, make(), seed=seed, backend=ex, root=root,
                          name=f"curves-{slug(name)}-{seed}",
                          true_best=true_best, clock=ex.clock)
            assert run.configs == fifo.configs, "every scheduler must see the same 81 configs"
            runs[name].append(run)
    rho = [med([c[i] for c in correlations]) for i in range(4)]
    print(f"\nProblem A: Spearman rank correlation of the true loss at t with the loss at {MAX_T} (median over "
          f"seeds): t=1: {rho[0]:.2f}  t=3: {rho[1]:.2f}  t=9: {rho[2]:.2f}  t=27: {rho[3]:.2f}")
    print(f"Problem A, first rung at t=1 (noise-free): the best config's rank among the {N_TRIALS} at t=1, per seed: "
          f"{[r for r, _ in first_rung]} (a top third is {N_TRIALS // 3}); the best final loss among the top third "
          f"at t=1 is {fmt_range([g for _, g in first_rung], '+.1f')}% from the best")
    return runs


def print_curves(runs: dict[str, list[Run]], title: str, time_label: str) -> None:
    fifo = runs["FIFO"]
    rows = []
    for name, rs in runs.items():
        gaps = [(r.best - f.best) / f.best * 100 for r, f in zip(rs, fifo)]
        rows.append([name, fmt_range([r.iters for r in rs], ".0f"),
                     fmt_range([r.iters / f.iters * 100 for r, f in zip(rs, fifo)], ".1f"),
                     fmt_range([r.elapsed for r in rs], ".1f"),
                     fmt_range([r.best for r in rs], ".4f"), fmt_range(gaps, "+.1f"),
                     fmt_range([r.regret for r in rs], ".4f"),
                     f"{sum(r.real_s for r in rs):.1f}"])
    table(title, ["scheduler", "iters", "% FIFO", time_label, "best", "gap %", "regret", "real s (sum)"], rows)


def asha_target(runs: dict[str, list[Run]], name: str = "ASHA") -> str:
    pairs = list(zip(runs[name], runs["FIFO"]))
    ok = [(a.best - f.best) / f.best <= 0.05 and a.iters <= 0.25 * f.iters for a, f in pairs]
    gaps = [(a.best - f.best) / f.best * 100 for a, f in pairs]
    share = [a.iters / f.iters * 100 for a, f in pairs]
    return (f"target {name} within 5% of FIFO's best with <= 25% of its iterations: {sum(ok)}/{len(ok)} seeds; "
            f"median gap {med(gaps):+.1f}%, median share {med(share):.1f}% -> "
            f"{verdict(med(gaps) <= 5 and med(share) <= 25)}")


def simulate_pbt(seeds: list[int], root: str) -> tuple[list[Run], list[Run], float, float]:
    best_fixed, best_lr = best_fixed_lr()
    pbt_runs, fifo_runs = [], []
    for seed in seeds:
        for kind, sched, out in (("PBT", make_pbt(seed), pbt_runs), ("FIFO", ts.FIFO(), fifo_runs)):
            ex = SimulatedBackend({"cpu": PBT_POPULATION}, seed=seed)
            out.append(run_one(sim_schedule, SCHEDULE_SPACE, sched, seed=seed, backend=ex, root=root,
                               name=f"schedule-{kind}-{seed}", num_samples=PBT_POPULATION, clock=ex.clock))
    return pbt_runs, fifo_runs, best_fixed, best_lr


def print_pbt(pbt_runs: list[Run], fifo_runs: list[Run], best_fixed: float, best_fixed_lr: float,
              title: str, time_label: str) -> str:
    rows = [["best fixed lr (2001-point grid, exact)", "-", "-", f"{best_fixed:.4f}", f"lr={best_fixed_lr:.4g}"]]
    n = fifo_runs[0].n_trials
    for label, rs in ((f"FIFO: the {n} initial configs, fixed", fifo_runs), (f"PBT ({n} trials)", pbt_runs)):
        rows.append([label, fmt_range([r.iters for r in rs], ".0f"), fmt_range([r.elapsed for r in rs], ".1f"),
                     fmt_range([r.best for r in rs], ".4f"),
                     f"vs best fixed: {fmt_range([(r.best - best_fixed) / best_fixed * 100 for r in rs], '+.1f')}%"])
    table(title, ["run", "iters", time_label, "best", "note"], rows)
    wins = sum(r.best < best_fixed for r in pbt_runs)
    return (f"target PBT beats every fixed config: {wins}/{len(pbt_runs)} seeds -> "
            f"{verdict(med([r.best for r in pbt_runs]) < best_fixed)}")


def simulate_pb2(seeds: list[int], root: str) -> dict[str, list[Run]]:
    """Problem B with PB2 against PBT: the same 16 initial configs per seed, the same perturbation interval."""
    out: dict[str, list[Run]] = {"PBT": [], "PB2": []}
    for seed in seeds:
        for kind, sched in (("PBT", make_pbt(seed)), ("PB2", make_pb2(seed))):
            ex = SimulatedBackend({"cpu": PBT_POPULATION}, seed=seed)
            out[kind].append(run_one(sim_schedule, SCHEDULE_SPACE, sched, seed=seed, backend=ex, root=root,
                                     name=f"schedule-pb2-{kind}-{seed}", num_samples=PBT_POPULATION,
                                     clock=ex.clock))
    return out


def print_pb2(out: dict[str, list[Run]], best_fixed: float, title: str) -> str:
    rows = [["best fixed lr (2001-point grid, exact)", f"{best_fixed:.4f}", "-", "-"]]
    for kind, rs in out.items():
        rows.append([kind, fmt_range([r.best for r in rs], ".4f"),
                     f"{statistics.fmean(r.best for r in rs):.4f}",
                     f"{sum(r.best < best_fixed for r in rs)}/{len(rs)}"])
    table(title, ["scheduler", "best final loss", "mean", "beats best fixed"], rows)
    wins = sum(b.best < a.best for a, b in zip(out["PBT"], out["PB2"]))
    return (f"problem B: PB2 better than PBT on {wins}/{len(out['PB2'])} seeds (median "
            f"{med([r.best for r in out['PB2']]):.4f} vs {med([r.best for r in out['PBT']]):.4f})")


def asha_or_deadline(label: str, deadline: float) -> Any:
    """The two schedulers of the deadline comparison: ``"ASHA"`` or ``"Deadline(ASHA)"``."""
    asha = ts.ASHA(max_t=MAX_T, grace_period=1, reduction_factor=3)
    return asha if label == "ASHA" else ts.Deadline(deadline_s=deadline, scheduler=asha)


def simulate_deadline(seeds: list[int], root: str, deadlines: list[float], speedup: Any = None,
                      cpus: int = SIM_CPUS) -> dict[float, dict[str, list[Run]]]:
    out: dict[float, dict[str, list[Run]]] = {}
    for deadline in deadlines:
        out[deadline] = {"ASHA": [], "Deadline(ASHA)": []}
        for seed in seeds:
            space = dict(CURVES_SPACE, noise_seed=seed)
            for label in out[deadline]:
                sched = asha_or_deadline(label, deadline)
                ex = SimulatedBackend({"cpu": cpus}, seed=seed, speedup=speedup)
                out[deadline][label].append(run_one(
                    sim_curves, space, sched, seed=seed, backend=ex, root=root, time_budget_s=deadline,
                    name=f"deadline-{slug(label)}-{deadline:g}-{seed}-{cpus}-{id(speedup)}",
                    clock=ex.clock))
    return out


def print_deadline(results: dict[float, dict[str, list[Run]]], title: str, time_label: str) -> str:
    rows, wins, ties, total = [], 0, 0, 0
    for deadline, by in results.items():
        for label, rs in by.items():
            rows.append([f"{deadline:g}", label, fmt_range([r.iters for r in rs], ".0f"),
                         fmt_range([r.elapsed for r in rs], ".1f"), fmt_range([r.best for r in rs], ".4f"),
                         fmt_range([float(r.best_iteration) for r in rs], ".0f")])
        for a, d in zip(by["ASHA"], by["Deadline(ASHA)"]):
            wins += d.best < a.best
            ties += d.best == a.best
            total += 1
    table(title, ["deadline", "scheduler", "iters", time_label, "best", "best trial's iters"], rows)
    return (f"target Deadline beats ASHA alone at the same deadline: better in {wins}/{total} (deadline, seed) pairs, "
            f"equal in {ties}, worse in {total - wins - ties}")


def real_part(args: argparse.Namespace, root: str) -> list[str]:
    seed = 0
    notes = []
    space = dict(CURVES_SPACE, noise_seed=seed, sleep_s=args.sleep)
    runs: dict[str, list[Run]] = {}
    true_best = None
    for name, make in schedulers(extra=False).items():
        ex = LocalBackend(total_resources={"cpu": args.workers})
        run = run_one(real_curves, space, make(), seed=seed, backend=ex, root=root, name=f"real-{slug(name)}",
                      true_best=true_best)
        if name == "FIFO":
            true_best = run.score_own_configs()
        runs[name] = [run]
    print_curves(runs, f"Real local workers: problem A, seed {seed}, {N_TRIALS} trials x max_t={MAX_T}, "
                       f"{args.workers} workers, sleep {args.sleep * 1000:g} ms per iteration",
                 "wall s")
    notes.append("[real] " + asha_target(runs))

    pbt_space = dict(SCHEDULE_SPACE, sleep_s=args.pbt_sleep)
    pbt_runs, fifo_runs = [], []
    for kind, sched, out in (("PBT", make_pbt(seed), pbt_runs), ("FIFO", ts.FIFO(), fifo_runs)):
        # the population trains side by side: one worker process per member (they mostly sleep)
        out.append(run_one(real_schedule, pbt_space, sched, seed=seed,
                           backend=LocalBackend(total_resources={"cpu": REAL_PBT_POPULATION}), root=root,
                           name=f"real-schedule-{kind}", num_samples=REAL_PBT_POPULATION))
    notes.append("[real] " + print_pbt(pbt_runs, fifo_runs, *best_fixed_lr(),
                                       f"Real local workers: problem B (PBT), seed {seed}, {REAL_PBT_POPULATION} "
                                       f"workers, sleep {args.pbt_sleep * 1000:g} ms per iteration", "wall s"))

    deadline = args.real_deadline
    space = dict(space, sleep_s=args.deadline_sleep)
    # Sleeping iterations let a small machine stand in for more CPUs: with 8 "CPUs" (8 workers, mostly
    # asleep) the best trial can absorb 8x, as in the simulated table; with 2 it can absorb only 2x.
    for cpus in sorted({args.workers, SIM_CPUS}):
        by: dict[str, list[Run]] = {"ASHA": [], "Deadline(ASHA)": []}
        for label in by:
            sched = asha_or_deadline(label, deadline)
            by[label].append(run_one(real_curves, space, sched, seed=seed, time_budget_s=deadline,
                                     backend=LocalBackend(total_resources={"cpu": cpus}), root=root,
                                     name=f"real-deadline-{slug(label)}-{cpus}"))
        notes.append(f"[real, {cpus} CPUs] " + print_deadline(
            {deadline: by}, f"Real local workers: Deadline vs ASHA, {cpus} CPUs (one worker each), sleep "
                            f"{args.deadline_sleep * 1000:g} ms per iteration divided by the CPUs a trial holds, "
                            f"deadline {deadline:g} s", "wall s"))
    return notes


def pb2_part(args: argparse.Namespace, seeds: list[int], root: str) -> None:
    notes = []
    if args.pb2:
        start = time.perf_counter()
        best_fixed, _lr = best_fixed_lr()
        notes.append(print_pb2(simulate_pb2(seeds, root), best_fixed,
                               f"Simulated: problem B, PB2 vs PBT, {PBT_POPULATION} trials x {MAX_T} iterations, "
                               f"perturbation every 5, median [min, max] over {len(seeds)} seeds"))
        print(f"(problem B: {time.perf_counter() - start:.1f} s real)")
    if args.cartpole:
        start = time.perf_counter()
        n = args.cartpole_iters
        budgets = [n // 4, n // 2, 3 * n // 4, n]
        out = run_cartpole(list(range(args.cartpole_seeds)), root, n, args.cartpole_interval, budgets)
        notes.append(print_cartpole(out, budgets, f"CartPole-v1 (REINFORCE, {CP_EPISODES} episodes per iteration), "
                                                  f"population {CP_POPULATION}, perturbation every "
                                                  f"{args.cartpole_interval}: the population's best mean reward "
                                                  f"(its mean over the last {CP_WINDOW} iterations) at fixed "
                                                  f"budgets, mean +- s.e. over {args.cartpole_seeds} seeds"))
        print(f"(CartPole: {time.perf_counter() - start:.1f} s real)")
    print()
    for note in notes:
        print(note)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds for the simulated part (default 5)")
    parser.add_argument("--real", action="store_true", help="also run on real local worker processes")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for --real (default 2)")
    parser.add_argument("--sleep", type=float, default=0.005, help="seconds per iteration, --real problem A")
    parser.add_argument("--pbt-sleep", type=float, default=0.05, help="seconds per iteration, --real PBT")
    parser.add_argument("--deadline-sleep", type=float, default=0.05,
                        help="seconds per iteration on one CPU, --real deadline comparison")
    parser.add_argument("--real-deadline", type=float, default=3.0, help="deadline (s) for --real")
    parser.add_argument("--pb2", action="store_true",
                        help="only PB2 against PBT: problem B (simulated) and, with --cartpole, CartPole-v1")
    parser.add_argument("--cartpole", action="store_true",
                        help="PB2 against PBT on CartPole-v1, population 4 (real RL training, CPU-heavy)")
    parser.add_argument("--cartpole-seeds", type=int, default=5, help="seeds for --cartpole (default 5)")
    parser.add_argument("--cartpole-iters", type=int, default=40, help="iterations per trial (default 40)")
    parser.add_argument("--cartpole-interval", type=int, default=4, help="perturbation interval (default 4)")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # the agent's BLAS: one thread
        os.environ.setdefault(var, "1")
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    root = tempfile.mkdtemp(prefix="tunesmith_bench_sched_", dir=base)
    seeds = list(range(args.seeds))
    notes = []
    try:
        if args.pb2 or args.cartpole:
            pb2_part(args, seeds, root)
            if args.pb2:
                return
        start = time.perf_counter()
        runs = simulate_curves(seeds, root)
        print_curves(runs, f"Simulated: problem A, {N_TRIALS} trials x max_t={MAX_T}, {SIM_CPUS} CPUs, "
                           f"1 virtual s per iteration, median [min, max] over {len(seeds)} seeds", "virtual s")
        notes += [asha_target(runs, name) for name in runs if name.startswith("ASHA")]
        pbt = simulate_pbt(seeds, root)
        notes.append(print_pbt(*pbt, f"Simulated: problem B (PBT), {PBT_POPULATION} trials x {MAX_T} iterations, "
                                     f"{PBT_POPULATION} CPUs, "
                                     f"median [min, max] over {len(seeds)} seeds", "virtual s"))
        # deadlines shorter than ASHA needs on its own (a quarter and a half of its median time)
        asha_time = med([r.elapsed for r in runs["ASHA"]])
        deadlines = [round(asha_time / 4), round(asha_time / 2)]
        notes.append(print_deadline(simulate_deadline(seeds, root, deadlines),
                                    f"Simulated: Deadline vs ASHA alone at the same deadline (problem A, "
                                    f"{SIM_CPUS} CPUs, linear speed-up with CPUs), over {len(seeds)} seeds",
                                    "virtual s") + " (linear speed-up)")
        notes.append(print_deadline(simulate_deadline(seeds, root, deadlines, speedup=amdahl(0.9)),
                                    "Simulated: the same with Amdahl's law, 90% parallel (8 CPUs: 4.7x, not 8x)",
                                    "virtual s") + " (Amdahl 90%)")
        # on 2 CPUs ASHA alone needs about 4x longer; the deadlines scale with it
        notes.append(print_deadline(simulate_deadline(seeds, root, [d * 4 for d in deadlines], cpus=2),
                                    "Simulated: the same on 2 CPUs (linear speed-up): the best trial can absorb "
                                    "only 2x", "virtual s") + " (2 CPUs)")
        print(f"\n(simulated part: {time.perf_counter() - start:.1f} s real)")
        if args.real:
            notes += real_part(args, root)
        print()
        for note in notes:
            print(note)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
