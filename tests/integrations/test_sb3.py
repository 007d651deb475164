"""Stable-Baselines3 bridge: real PPO on CartPole-v1 for a few thousand steps."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

import tunesmith as ts
from tunesmith import checkpoint as _ckpt
from tunesmith.checkpoint import Checkpoint, CheckpointError

pytest.importorskip("stable_baselines3")
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402

from tunesmith.integrations.sb3 import (  # noqa: E402
    MODEL_FILE,
    NORMALIZE_FILE,
    REPLAY_BUFFER_FILE,
    ReportCallback,
    load_or_create,
)

pytestmark = pytest.mark.timeout(120)

SMALL = {"n_steps": 64, "batch_size": 64, "n_epochs": 1, "policy_kwargs": {"net_arch": [16]}}


def _env(n: int = 1) -> Any:
    return make_vec_env("CartPole-v1", n_envs=n, seed=0)


def _train(config: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(1)
    restored = ts.get_checkpoint() is not None
    model = load_or_create(PPO, _env(), config, policy="MlpPolicy", seed=0, **SMALL)
    callback = ReportCallback(_env(), eval_freq=config["eval_freq"], n_eval_episodes=2,
                              final_eval=config.get("final_eval", True))
    with open(os.path.join(ts.get_trial_dir(), "starts.jsonl"), "a") as f:
        f.write(json.dumps({"restored": restored, "timesteps": model.num_timesteps}) + "\n")
    if config.get("reset"):  # SB3's default: learn counts from 0 again
        model.learn(config["total"], callback=callback)
    else:
        model.learn(config["total"] - model.num_timesteps, callback=callback, reset_num_timesteps=False)
    with open(os.path.join(ts.get_trial_dir(), "end.json"), "w") as f:
        json.dump({"timesteps": model.num_timesteps, "stopped": callback.stopped}, f)
    if not restored and config.get("fail_once"):
        raise RuntimeError("first attempt fails after learning")


def _lines(path: str) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_evaluations_arrive_in_the_store_and_a_stop_ends_learn_within_one_evaluation() -> None:
    result = ts.run(_train, space={"eval_freq": 256, "total": 20_000, "learning_rate": 3e-4},
                    stop={"training_iteration": 2}, verbose=0, name="sb3-stop")
    trial = result.trials[0]
    history = result.history(trial.id)
    assert [h["training_iteration"] for h in history] == [1, 2]
    assert [h["timesteps"] for h in history] == [256, 512]
    for h in history:
        assert h["mean_reward"] > 0 and h["std_reward"] >= 0
    with open(os.path.join(trial.path, "end.json")) as f:
        end = json.load(f)
    # learn returned right after the second evaluation (the step it was made at), not at 20 000 steps
    assert end == {"timesteps": 512, "stopped": True}
    assert trial.checkpoint is not None and os.path.isfile(os.path.join(trial.checkpoint.as_dir(), MODEL_FILE))


def test_a_retry_continues_from_the_checkpoint() -> None:
    result = ts.run(_train, space={"eval_freq": 256, "total": 1024, "fail_once": True}, max_failures=1,
                    verbose=0, name="sb3-retry")
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED
    starts = _lines(os.path.join(trial.path, "starts.jsonl"))
    # the first attempt reported at 256, 512, 768 and 1024 steps, then failed: the retry restarted at 1024
    assert starts == [{"restored": False, "timesteps": 0}, {"restored": True, "timesteps": 1024}]
    assert [h["timesteps"] for h in result.history(trial.id)] == [256, 512, 768, 1024]


def _dqn(config: dict[str, Any]) -> None:
    import torch
    from stable_baselines3 import DQN

    torch.set_num_threads(1)
    restored = ts.get_checkpoint() is not None
    model = load_or_create(DQN, _env(), {}, policy="MlpPolicy", seed=0, learning_starts=100, buffer_size=5000,
                           policy_kwargs={"net_arch": [16]})
    with open(os.path.join(ts.get_trial_dir(), "starts.jsonl"), "a") as f:
        f.write(json.dumps({"timesteps": model.num_timesteps, "buffer": model.replay_buffer.size()}) + "\n")
    callback = ReportCallback(_env(), eval_freq=200, n_eval_episodes=1, **config["callback"])
    model.learn(600 - model.num_timesteps, callback=callback, reset_num_timesteps=False)
    if not restored:
        raise RuntimeError("first attempt fails after learning")


@pytest.mark.parametrize("final_eval", [True, False])
def test_the_steps_after_the_last_evaluation_are_evaluated_and_checkpointed_when_learn_ends(final_eval) -> None:
    """``learn(640)`` with ``eval_freq=256``: the model trained 128 steps past its last evaluation, and those were
    neither reported nor saved (the trial's last checkpoint was the model of 512 steps, not the one learn ended
    with). ``learn`` ending now evaluates and reports that model once more, with its checkpoint; ``final_eval=False``
    keeps the plain cadence."""
    result = ts.run(_train, space={"eval_freq": 256, "total": 640, "final_eval": final_eval}, verbose=0,
                    name="sb3-end")
    trial = result.trials[0]
    end = 640 if final_eval else 512
    assert [h["timesteps"] for h in result.history(trial.id)] == [256, 512, 640][:3 if final_eval else 2]
    assert trial.checkpoint is not None
    model = PPO.load(os.path.join(trial.checkpoint.as_dir(), MODEL_FILE))
    assert model.num_timesteps == end


def test_the_arguments_before_final_eval_keep_their_places() -> None:
    """``final_eval`` came after ``verbose``: a callback made with every argument by position is made as before."""
    callback = ReportCallback(_env(), 256, 2, True, True, False, 1)
    assert (callback.verbose, callback.replay_buffer, callback.final_eval) == (1, False, True)


def test_an_off_policy_model_can_be_restored_with_its_replay_buffer() -> None:
    """model.save leaves the replay buffer out: a restored DQN started with an empty one and, past
    learning_starts, trained at once on the few transitions it had collected since."""
    result = ts.run(_dqn, space={"callback": ts.grid([{}, {"replay_buffer": True}])}, max_failures=1, verbose=0,
                    name="sb3-replay")
    without, with_buffer = sorted(result.trials, key=lambda t: bool(t.config["callback"]))
    for trial in result.trials:
        assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    assert _lines(os.path.join(without.path, "starts.jsonl"))[1] == {"timesteps": 600, "buffer": 0}
    # saved at step 600's evaluation, which SB3 runs before it stores that step's transition
    assert _lines(os.path.join(with_buffer.path, "starts.jsonl"))[1] == {"timesteps": 600, "buffer": 599}
    with pytest.raises(ts.ConfigError, match="replay_buffer"):
        PPO("MlpPolicy", _env(), **SMALL).learn(64, callback=ReportCallback(_env(), eval_freq=64, replay_buffer=True))


def test_restarting_the_count_of_a_restored_model_is_one_error() -> None:
    """learn(reset_num_timesteps=True), SB3's default, counts a restored model's timesteps from 0 again: the
    trial reported 256 and 512 after 512 (PBT with time_attr='timesteps' then ran each exploited trial for
    its whole budget again) and its linear schedules started over."""
    result = ts.run(_train, space={"eval_freq": 256, "total": 512, "fail_once": True, "reset": True},
                    max_failures=1, verbose=0, name="sb3-reset")
    trial = result.trials[0]
    assert [h["timesteps"] for h in result.history(trial.id)] == [256, 512]
    assert trial.status == ts.TrialStatus.ERROR
    assert "ConfigError" in trial.error and "reset_num_timesteps=False" in trial.error, trial.error[-500:]


def _saved(tmp_path: Any, model: Any) -> Checkpoint:
    folder = tmp_path / "model"
    folder.mkdir()
    model.save(str(folder / MODEL_FILE))
    if model.get_vec_normalize_env() is not None:
        model.get_vec_normalize_env().save(str(folder / NORMALIZE_FILE))
    if hasattr(model, "save_replay_buffer"):  # an off-policy model: as ReportCallback(replay_buffer=True) saves it
        model.save_replay_buffer(str(folder / REPLAY_BUFFER_FILE))
    return Checkpoint(_ckpt.write(Checkpoint.from_dir(folder), str(tmp_path / "ckpts"), 1))


def test_restoring_applies_the_new_config_to_what_training_uses(tmp_path: Any) -> None:
    old = {"learning_rate": 1e-3, "gamma": 0.9, "ent_coef": 0.0, "gae_lambda": 0.8, "clip_range": 0.3}
    model = PPO("MlpPolicy", _env(), seed=0, **old, **SMALL)
    model.learn(128)
    weights = {k: v.clone() for k, v in model.policy.state_dict().items()}
    ckpt = _saved(tmp_path, model)

    # what the bridge fixes: a plain load brings the old values back
    plain = PPO.load(os.path.join(ckpt.as_dir(), MODEL_FILE), env=_env())
    assert (plain.learning_rate, plain.gamma, plain.rollout_buffer.gamma) == (1e-3, 0.9, 0.9)

    new = {"learning_rate": 2.5e-4, "gamma": 0.97, "ent_coef": 0.02, "gae_lambda": 0.95, "clip_range": 0.1,
           "unrelated": "left to the user's code"}
    restored = load_or_create(PPO, _env(), new, checkpoint=ckpt, policy="MlpPolicy", seed=0, **SMALL)
    # the weights are the checkpoint's, the count continues
    assert restored.num_timesteps == 128
    for key, value in restored.policy.state_dict().items():
        assert (value == weights[key]).all(), key
    restored.learn(64, reset_num_timesteps=False)  # one rollout and one update with the restored model
    assert restored.num_timesteps == 192
    assert [g["lr"] for g in restored.policy.optimizer.param_groups] == [2.5e-4]  # the lr the update used
    assert restored.lr_schedule(1.0) == 2.5e-4
    assert restored.gamma == restored.rollout_buffer.gamma == 0.97
    assert restored.gae_lambda == restored.rollout_buffer.gae_lambda == 0.95
    assert restored.ent_coef == 0.02
    assert restored.clip_range(1.0) == 0.1


def _ordered(buffer: Any, name: str, key: str | None = None) -> Any:
    """A replay buffer's transitions of one field (of one observation ``key``: a DictReplayBuffer's), oldest first."""
    import numpy as np

    array = getattr(buffer, name) if key is None else getattr(buffer, name)[key]
    if not buffer.full:
        return array[:buffer.pos]
    return np.concatenate([array[buffer.pos:], array[:buffer.pos]])


@pytest.mark.parametrize(("n_envs", "new_size"), [(1, 40), (1, 500), (2, 100)])
def test_a_restored_replay_buffer_takes_the_configs_buffer_size(tmp_path: Any, n_envs: int, new_size: int) -> None:
    """PBT (or a retry with a changed config) giving buffer_size a new value: the model was built with it, then the
    saved buffer replaced its own, and the new size was silently not applied (the saved buffer kept its 100). The
    restored buffer now has the config's size and the newest transitions the saved one held, oldest first."""
    import numpy as np
    from stable_baselines3 import DQN

    fixed = {"policy": "MlpPolicy", "seed": 0, "learning_starts": 50, "policy_kwargs": {"net_arch": [16]}}
    model = DQN(env=_env(n_envs), buffer_size=100, **fixed)  # SB3 counts transitions per environment: 100 / n_envs
    model.learn(130 * n_envs)  # the buffer went round once: its oldest transition is not at 0
    assert model.replay_buffer.full and model.replay_buffer.pos > 0
    ckpt, saved = _saved(tmp_path, model), model.replay_buffer  # (it trains no more: its buffer is the saved one)

    restored = load_or_create(DQN, _env(n_envs), {"buffer_size": new_size}, checkpoint=ckpt, **fixed)
    buffer = restored.replay_buffer
    per_env = new_size // n_envs
    assert (restored.buffer_size, buffer.buffer_size) == (new_size, per_env)
    kept = min(per_env, 100 // n_envs)
    assert buffer.size() == kept and buffer.full == (kept == per_env)
    if per_env != 100 // n_envs:  # resized: oldest first from 0 (the same size: the saved buffer as it was)
        assert buffer.pos == kept % per_env
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
        assert np.array_equal(_ordered(buffer, name), _ordered(saved, name)[-kept:]), name
        assert getattr(buffer, name).shape[0] == per_env, name
    restored.learn(20 * n_envs, reset_num_timesteps=False)  # trains on it (samples) and adds to it
    assert buffer is restored.replay_buffer and buffer.size() == min(per_env, kept + 20)


def test_a_restored_dict_replay_buffer_takes_the_configs_buffer_size(tmp_path: Any) -> None:
    """The same for observations that are a dict (SB3's DictReplayBuffer keeps one array per key)."""
    import gymnasium as gym
    import numpy as np
    from stable_baselines3 import DQN

    class Two(gym.Env):  # observations {"a": 2 numbers, "b": 1}, an episode of 5 steps
        observation_space = gym.spaces.Dict({"a": gym.spaces.Box(-1, 1, (2,)), "b": gym.spaces.Box(-1, 1, (1,))})
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.t = 0
            return self.observation_space.sample(), {}

        def step(self, action):
            self.t += 1
            return self.observation_space.sample(), float(action), self.t >= 5, False, {}

    fixed = {"policy": "MultiInputPolicy", "seed": 0, "learning_starts": 20, "policy_kwargs": {"net_arch": [8]}}
    model = DQN(env=Two(), buffer_size=50, **fixed)
    model.learn(70)
    ckpt, saved = _saved(tmp_path, model), model.replay_buffer  # (it trains no more: its buffer is the saved one)
    restored = load_or_create(DQN, Two(), {"buffer_size": 30}, checkpoint=ckpt, **fixed)
    buffer = restored.replay_buffer
    assert type(buffer).__name__ == "DictReplayBuffer" and buffer.buffer_size == 30 and buffer.full
    for name in ("observations", "next_observations"):
        for key in ("a", "b"):
            assert np.array_equal(_ordered(buffer, name, key), _ordered(saved, name, key)[-30:]), (name, key)
    assert np.array_equal(buffer.actions, _ordered(saved, "actions")[-30:])
    restored.learn(10, reset_num_timesteps=False)


def test_a_replay_buffer_that_cannot_be_resized_keeps_its_size_with_a_warning(tmp_path: Any, caplog: Any) -> None:
    """SB3's memory-saving buffer keeps each next observation as the following slot's observation: a cut copy
    would pair transitions wrongly, so it is restored as saved, and the warning names both sizes."""
    from stable_baselines3 import DQN

    fixed = {"policy": "MlpPolicy", "seed": 0, "learning_starts": 50, "policy_kwargs": {"net_arch": [16]},
             "optimize_memory_usage": True, "replay_buffer_kwargs": {"handle_timeout_termination": False}}
    model = DQN(env=_env(), buffer_size=100, **fixed)
    model.learn(60)
    ckpt = _saved(tmp_path, model)
    restored = load_or_create(DQN, _env(), {"buffer_size": 40}, checkpoint=ckpt, **fixed)
    assert restored.replay_buffer.buffer_size == 100 and restored.replay_buffer.size() == model.replay_buffer.size()
    assert "keeps its saved buffer_size=100; buffer_size=40 is not applied" in caplog.text


def test_a_new_model_gets_the_config_and_bad_input_is_named(tmp_path: Any) -> None:
    model = load_or_create(PPO, _env(), {"gamma": 0.95, "lr": 1}, checkpoint=None, policy="MlpPolicy", **SMALL)
    assert model.gamma == model.rollout_buffer.gamma == 0.95
    with pytest.raises(ts.ConfigError, match=r"\['gamma'\] given both in config and as fixed"):
        load_or_create(PPO, _env(), {"gamma": 0.95}, checkpoint=None, policy="MlpPolicy", gamma=0.9)
    with pytest.raises(ts.ConfigError, match="eval_freq must be a positive integer"):
        ReportCallback(_env(), eval_freq=0)
    with pytest.raises(ts.ConfigError, match="pass checkpoint=True too"):
        ReportCallback(_env(), eval_freq=1, checkpoint=False, replay_buffer=True)


def _evaluating_on_the_training_env(config: dict[str, Any]) -> None:
    import gymnasium as gym

    env = _env(2) if config["vec"] else gym.make("CartPole-v1")
    model = PPO("MlpPolicy", env, seed=0, **SMALL)
    model.learn(256, callback=ReportCallback(env, eval_freq=64, n_eval_episodes=1))


def test_evaluating_on_the_training_environment_is_one_error() -> None:
    """evaluate_policy resets the environment it is given: were it the training one (a vectorised env, or the
    gym env SB3 wrapped for training), training would go on from observations that no longer hold, with the
    evaluation's episodes in its episode statistics, silently."""
    result = ts.run(_evaluating_on_the_training_env, space={"vec": ts.grid([True, False])}, max_failures=1,
                    verbose=0, name="sb3-same-env")
    for trial in result.trials:
        assert trial.status == ts.TrialStatus.ERROR, trial.config
        assert trial.num_failures == 1  # a ConfigError: not retried
        assert result.history(trial.id) == []
        assert "ConfigError" in trial.error and "eval_env" in trial.error, trial.error[-500:]


def _normalized(config: dict[str, Any]) -> None:
    from stable_baselines3.common.vec_env import VecNormalize

    env = VecNormalize(_env())
    restored = ts.get_checkpoint() is not None
    model = load_or_create(PPO, env, {}, policy="MlpPolicy", seed=0, **SMALL)
    with open(os.path.join(ts.get_trial_dir(), "starts.jsonl"), "a") as f:
        f.write(json.dumps({"timesteps": model.num_timesteps, "count": env.obs_rms.count}) + "\n")
    eval_env = VecNormalize(make_vec_env("CartPole-v1", n_envs=1, seed=1), training=False, norm_reward=False)
    model.learn(config["total"] - model.num_timesteps, reset_num_timesteps=False,
                callback=ReportCallback(eval_env, eval_freq=256, n_eval_episodes=1))
    with open(os.path.join(ts.get_trial_dir(), "end.json"), "w") as f:
        json.dump({"training": env.obs_rms.count, "evaluation": eval_env.obs_rms.count}, f)
    if config.get("fail_once") and not restored:
        raise RuntimeError("first attempt fails after learning")


def test_a_normalized_evaluation_uses_the_training_statistics() -> None:
    """As SB3's EvalCallback does (sync_envs_normalization): a VecNormalize evaluation environment gets the
    training environment's running mean and variance before each evaluation; it evaluated the policy on
    observations normalised with its own, never-updated statistics."""
    result = ts.run(_normalized, {"total": 1024}, stop={"training_iteration": 1}, verbose=0, name="sb3-normalize")
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    with open(os.path.join(trial.path, "end.json")) as f:
        end = json.load(f)
    assert end["evaluation"] == end["training"] > 256  # copied at the evaluation at step 256, where learn ended
    from stable_baselines3.common.vec_env import VecNormalize

    model = PPO("MlpPolicy", VecNormalize(_env()), seed=0, **SMALL)
    with pytest.raises(ts.ConfigError, match="eval_env is not"):  # at the first evaluation, before any report
        model.learn(128, callback=ReportCallback(_env(), eval_freq=64, n_eval_episodes=1))


def test_a_restored_model_gets_its_normalization_statistics_back() -> None:
    """model.save leaves VecNormalize's running mean and variance out: a restored model's env started from
    none, so the policy saw observations normalised unlike those it was trained on."""
    result = ts.run(_normalized, {"total": 512, "fail_once": True}, max_failures=1, verbose=0,
                    name="sb3-normalize-restore")
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    # saved at the evaluation at step 512: 512 steps and the first reset's observation (and VecNormalize's 1e-4)
    assert _lines(os.path.join(trial.path, "starts.jsonl")) == [{"timesteps": 0, "count": 0.0001},
                                                               {"timesteps": 512, "count": 513.0001}]


def test_normalization_statistics_need_a_vec_normalize_env(tmp_path: Any) -> None:
    from stable_baselines3.common.vec_env import VecNormalize

    checkpoint = _saved(tmp_path, PPO("MlpPolicy", VecNormalize(_env()), seed=0, **SMALL))
    with pytest.raises(ts.ConfigError, match="holds VecNormalize statistics and env has no VecNormalize"):
        load_or_create(PPO, _env(), {}, checkpoint=checkpoint, policy="MlpPolicy")


def test_a_checkpoint_this_user_did_not_write_is_not_loaded(tmp_path: Any) -> None:
    model = PPO("MlpPolicy", _env(), seed=0, **SMALL)
    ckpt = _saved(tmp_path, model)
    manifest = os.path.join(ckpt.as_dir(), _ckpt.MANIFEST)
    with open(manifest) as f:
        data = json.load(f)
    data.pop("signature", None)
    for key in [k for k in data if "sig" in k]:
        data.pop(key)
    with open(manifest, "w") as f:
        json.dump(data, f)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_or_create(PPO, _env(), {}, checkpoint=ckpt, policy="MlpPolicy")


def test_the_pbt_example_runs_with_tiny_settings(tmp_path: Any) -> None:
    import subprocess
    import sys

    example = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "sb3_pbt.py")
    out = subprocess.run([sys.executable, example, "--population", "3", "--timesteps", "768", "--eval-freq", "256",
                          "--perturbation-interval", "512", "--target", "0", "--verbose", "0",
                          "--storage-path", str(tmp_path)], capture_output=True, text=True, timeout=100)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 trials" in out.stdout
    # a name of its own each run (a fixed one made a second run in the same folder fail)
    (name,) = [n for n in os.listdir(tmp_path) if n.startswith("sb3-pbt-")]
    result = ts.load(str(tmp_path / name))
    assert all(t.status == ts.TrialStatus.TERMINATED for t in result.trials)
    assert {row["timesteps"] for t in result.trials for row in result.history(t.id)} <= {256, 512, 768}
