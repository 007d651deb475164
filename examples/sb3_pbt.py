"""Population Based Training over Stable-Baselines3's PPO on CartPole-v1.

Each trial trains PPO with rl-zoo's CartPole-v1 settings (8 environments, n_steps 32, batch_size 256,
gae_lambda 0.8, gamma 0.98, n_epochs 20, ent_coef 0, a learning rate and clip range decaying linearly from
0.001 and 0.2, 100 000 timesteps). ``tunesmith.integrations.sb3.ReportCallback`` evaluates the policy every
``--eval-freq`` timesteps and reports ``mean_reward`` with the model as a checkpoint; PBT copies the best
trials' checkpoints into the worst and mutates their learning rate and clip range, and ``load_or_create``
restores a copied model WITH the mutated values (a plain ``PPO.load`` would keep the old ones). The
population is larger than the cores: trials take turns.

    python examples/sb3_pbt.py                          # population 6, one trial per core
    python examples/sb3_pbt.py --population 4 --timesteps 2000 --eval-freq 1000 --target 0   # a smoke run

Exits non-zero if no trial reached ``--target`` (CartPole-v1's 475 by default).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from typing import Any

import tunesmith as ts

N_ENVS = 8
FIXED = {"n_steps": 32, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98, "n_epochs": 20, "ent_coef": 0.0}


def linear(start: float) -> Any:
    """rl-zoo's ``lin_<start>``: ``start`` times the fraction of training left."""
    return lambda progress_remaining: progress_remaining * start


def train(config: dict[str, Any]) -> None:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    from tunesmith.integrations.sb3 import ReportCallback, load_or_create

    torch.set_num_threads(1)  # one core per trial: the population shares the machine
    seed = int(config.get("seed", 0))
    env = make_vec_env("CartPole-v1", n_envs=N_ENVS, seed=seed)
    hyper = {**FIXED, "learning_rate": linear(config["learning_rate"]), "clip_range": linear(config["clip_range"])}
    # a new model, or the checkpoint this trial was given (a retry, or PBT's copy of a better trial) with the
    # current, possibly mutated, learning rate and clip range applied
    model = load_or_create(PPO, env, hyper, policy="MlpPolicy", seed=seed, device="cpu")
    callback = ReportCallback(make_vec_env("CartPole-v1", n_envs=4, seed=seed + 1000),
                              eval_freq=config["eval_freq"], n_eval_episodes=10)
    model.learn(config["timesteps"] - model.num_timesteps, callback=callback, reset_num_timesteps=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=6)
    parser.add_argument("--timesteps", type=int, default=100_000)
    parser.add_argument("--eval-freq", type=int, default=10_000)
    parser.add_argument("--perturbation-interval", type=int, default=20_000, help="in timesteps")
    parser.add_argument("--target", type=float, default=475.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--storage-path", default=None)
    parser.add_argument("--name", default=None, help="experiment name (default sb3-pbt-<date>-<time>)")
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args(argv)

    pbt = ts.PBT(perturbation_interval=args.perturbation_interval, time_attr="timesteps",
                 hyperparam_mutations={"learning_rate": ts.loguniform(1e-4, 3e-3),
                                       "clip_range": [0.1, 0.2, 0.3]},
                 seed=args.seed)
    space = {"learning_rate": ts.loguniform(3e-4, 3e-3), "clip_range": 0.2, "timesteps": args.timesteps,
             "eval_freq": args.eval_freq, "seed": ts.randint(0, 10_000)}
    start = time.monotonic()
    result = ts.run(train, space=space, metric="mean_reward", mode="max", num_samples=args.population,
                    scheduler=pbt, seed=args.seed, storage_path=args.storage_path, verbose=args.verbose,
                    name=args.name or "sb3-pbt-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f"))
    elapsed = time.monotonic() - start
    best = max((row for t in result.trials for row in result.history(t.id)), key=lambda r: r["mean_reward"])
    print(f"best mean_reward {best['mean_reward']:.1f} at {best['timesteps']} timesteps; "
          f"{len(result.trials)} trials in {elapsed:.0f} s")
    return 0 if best["mean_reward"] >= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
