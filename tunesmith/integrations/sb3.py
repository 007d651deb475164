"""Stable-Baselines3: report evaluations from ``model.learn`` and restore a trial's model with its current config.

    from stable_baselines3 import PPO
    from tunesmith.integrations.sb3 import ReportCallback, load_or_create

    def train(config):
        env = make_vec_env("CartPole-v1", n_envs=8)
        model = load_or_create(PPO, env, config, policy="MlpPolicy")  # restored after a retry or PBT exploit
        callback = ReportCallback(make_vec_env("CartPole-v1", n_envs=4), eval_freq=10_000)
        model.learn(100_000 - model.num_timesteps, callback=callback, reset_num_timesteps=False)

Needs ``pip install 'tunesmith[sb3]'``.
"""

from __future__ import annotations

import copy
import inspect
import logging
import os
import tempfile
from typing import Any

from tunesmith._errors import ConfigError
from tunesmith._optional import require
from tunesmith.checkpoint import Checkpoint
from tunesmith.integrations import _common

require("stable_baselines3", "sb3", "tunesmith.integrations.sb3")

from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402
from stable_baselines3.common.evaluation import evaluate_policy  # noqa: E402
from stable_baselines3.common.vec_env import VecNormalize  # noqa: E402

__all__ = ["MODEL_FILE", "NORMALIZE_FILE", "REPLAY_BUFFER_FILE", "ReportCallback", "load_or_create"]

MODEL_FILE = "model.zip"  # the file ``model.save`` writes in a checkpoint folder
NORMALIZE_FILE = "vec_normalize.pkl"  # a VecNormalize training env's statistics (``VecNormalize.save``)
REPLAY_BUFFER_FILE = "replay_buffer.pkl"  # ``model.save_replay_buffer``'s, with ReportCallback(replay_buffer=True)
log = logging.getLogger("tunesmith")
_DEFAULT: Any = object()


class ReportCallback(BaseCallback):  # type: ignore[misc]
    """Evaluates the policy every ``eval_freq`` timesteps, and once more when ``learn`` ends past the last
    evaluation, and reports it; ends ``learn`` when the trial is stopped.

    Each evaluation runs ``evaluate_policy`` on ``eval_env`` for ``n_eval_episodes`` episodes and reports
    ``mean_reward``, ``std_reward`` and ``timesteps`` (the model's ``num_timesteps``), with the model saved
    as a checkpoint (``model.save`` into ``model.zip`` of a folder; :func:`load_or_create` restores it). When
    the driver stops the trial (a scheduler, a stop rule, a time limit), ``_on_step`` returns False, so SB3
    ends ``learn`` at once; :attr:`stopped` then says so (a later ``ts.report`` raises again). A ``learn`` that
    counts a model which has already trained from 0 again (``reset_num_timesteps=True``, SB3's default) is a
    ``ConfigError`` when it starts: the reported ``timesteps`` would go back.

    Args:
        eval_env: the environment (or vectorised environment) to evaluate on, apart from the training one
            (the training environment itself is a ``ConfigError`` when ``learn`` starts: ``evaluate_policy``
            resets it). With a ``VecNormalize`` training environment, wrap it in ``VecNormalize(...,
            training=False, norm_reward=False)``: it gets the training statistics before each evaluation.
        eval_freq: timesteps between evaluations, counted over all training environments together
            (``model.num_timesteps``; SB3's own ``EvalCallback`` counts calls instead).
        n_eval_episodes: episodes per evaluation.
        deterministic: evaluate the deterministic policy (SB3's default).
        checkpoint: save the model with each report.
        replay_buffer: also save an off-policy model's replay buffer (DQN, SAC, TD3...) with each checkpoint,
            which ``model.save`` leaves out; :func:`load_or_create` restores it. Without it a restored model
            starts with an empty buffer and, past ``learning_starts``, trains at once on the few transitions
            collected since. The file is as large as the buffer (``buffer_size`` transitions).
        final_eval: when ``learn`` ends (not stopped) with steps trained since the last evaluation, evaluate
            and report that model once more, with its checkpoint, so that the model ``learn`` ended with is the
            trial's last result and checkpoint (otherwise the steps after the last multiple of ``eval_freq`` are
            neither reported nor saved). ``False``: only every ``eval_freq`` steps (e.g. a loop that calls
            ``learn`` in pieces shorter than ``eval_freq``).
    """

    def __init__(self, eval_env: Any, eval_freq: int, n_eval_episodes: int = 5, deterministic: bool = True,
                 checkpoint: bool = True, replay_buffer: bool = False, verbose: int = 0,
                 final_eval: bool = True) -> None:
        for name, value in (("eval_freq", eval_freq), ("n_eval_episodes", n_eval_episodes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"ReportCallback: {name} must be a positive integer, got {value!r}")
        if replay_buffer and not checkpoint:
            raise ConfigError("ReportCallback: replay_buffer=True saves the buffer with each checkpoint, and "
                              "checkpoint is False; pass checkpoint=True too")
        super().__init__(verbose)
        self.eval_env = eval_env
        self.eval_freq = eval_freq
        self.n_eval_episodes = n_eval_episodes
        self.deterministic = deterministic
        self.checkpoint = checkpoint
        self.replay_buffer = replay_buffer
        self.final_eval = final_eval
        self.stopped = False
        self._next_eval: int | None = None
        self._evaluated_at: int | None = None  # the model's num_timesteps at its last evaluation (or start)

    def _on_training_start(self) -> None:
        if _is_training_env(self.eval_env, self.training_env):
            raise ConfigError("ReportCallback(eval_env=...): the evaluation environment is the training one; "
                              "evaluate_policy resets it, and training would go on from observations that no "
                              "longer hold: give a separate environment (e.g. another make_vec_env(...))")
        if self.replay_buffer and not hasattr(self.model, "save_replay_buffer"):
            raise ConfigError(f"ReportCallback(replay_buffer=True): {type(self.model).__name__} has no replay "
                              f"buffer (only off-policy algorithms such as DQN, SAC, TD3 have one)")
        if self.num_timesteps == 0 and getattr(self.model, "_n_updates", 0) > 0:
            raise ConfigError(f"ReportCallback: learn() counts the timesteps of a model that has already trained "
                              f"({self.model._n_updates} updates) from 0 again (reset_num_timesteps=True, SB3's "
                              f"default): the reported 'timesteps' would go back and linear schedules start over; "
                              f"continue the count with model.learn(total - model.num_timesteps, "
                              f"reset_num_timesteps=False)")
        # a restored model continues its count: the next evaluation is eval_freq after where it is now
        self._next_eval = self.num_timesteps + self.eval_freq
        self._evaluated_at = self.num_timesteps  # (a restored model was reported where it was saved)

    def _on_step(self) -> bool:
        if self.stopped:
            return False
        if self._next_eval is None:
            self._next_eval = self.num_timesteps + self.eval_freq
        if self.num_timesteps < self._next_eval:
            return True
        while self._next_eval <= self.num_timesteps:
            self._next_eval += self.eval_freq
        return self.evaluate()

    def _on_training_end(self) -> None:
        if (self.final_eval and not self.stopped and self._evaluated_at is not None
                and self.num_timesteps > self._evaluated_at):
            self.evaluate()  # the model learn ended with: the trial's last result and checkpoint

    def _on_rollout_end(self) -> None:
        if _common.should_stop():  # told between evaluations: _on_step ends learn at its next call
            self.stopped = True

    def evaluate(self) -> bool:
        """Evaluate, report (with a checkpoint) now; False when the trial was stopped."""
        _sync_normalization(self.training_env, self.eval_env)
        out: Any = evaluate_policy(self.model, self.eval_env, n_eval_episodes=self.n_eval_episodes,
                                   deterministic=self.deterministic)
        mean, std = out  # (mean, std): return_episode_rewards is False
        self._evaluated_at = int(self.num_timesteps)
        metrics = {"mean_reward": float(mean), "std_reward": float(std), "timesteps": int(self.num_timesteps)}
        if self.checkpoint:
            with tempfile.TemporaryDirectory(prefix="sb3-") as folder:
                self.model.save(os.path.join(folder, MODEL_FILE))
                normalize = _vec_normalize(self.training_env)
                if normalize is not None:  # its running mean and variance, which model.save leaves out
                    normalize.save(os.path.join(folder, NORMALIZE_FILE))
                if self.replay_buffer:  # an OffPolicyAlgorithm: _on_training_start checked
                    off_policy: Any = self.model
                    off_policy.save_replay_buffer(os.path.join(folder, REPLAY_BUFFER_FILE))
                ok = _common.report(metrics, Checkpoint.from_dir(folder))  # copied before the folder goes
        else:
            ok = _common.report(metrics)
        self.stopped = not ok
        return ok


def _vec_normalize(env: Any) -> Any:
    """The ``VecNormalize`` among ``env``'s vectorised-env wrappers, or None."""
    while env is not None and not isinstance(env, VecNormalize):
        env = getattr(env, "venv", None)
    return env


def _sync_normalization(training_env: Any, eval_env: Any) -> None:
    """As SB3's ``EvalCallback`` (``sync_envs_normalization``): a ``VecNormalize`` evaluation environment
    normalises with the training environment's current statistics. Only the ``VecNormalize`` wrappers are
    matched, not the whole chain (SB3 adds ``VecTransposeImage`` to an image env for training alone)."""
    training = _vec_normalize(training_env)
    if training is None:
        return
    evaluation = _vec_normalize(eval_env)
    if evaluation is None:
        if not training.norm_obs:  # rewards alone normalised: the policy sees raw observations in training too
            return
        raise ConfigError("ReportCallback(eval_env=...): the training environment is wrapped in VecNormalize and "
                          "eval_env is not: the policy would be evaluated on raw observations; wrap it too, "
                          "e.g. VecNormalize(make_vec_env(...), training=False, norm_reward=False)")
    evaluation.obs_rms = copy.deepcopy(training.obs_rms)
    evaluation.ret_rms = copy.deepcopy(training.ret_rms)


def _restore_normalization(path: str, env: Any) -> None:
    """Give ``env``'s ``VecNormalize`` the statistics saved at ``path`` (in a folder checked_dir verified: the
    file is a pickle), if the checkpoint holds them."""
    if not os.path.isfile(path):
        return
    target = _vec_normalize(env)
    if target is None:
        raise ConfigError("load_or_create: the checkpoint holds VecNormalize statistics and env has no "
                          "VecNormalize: wrap env as it was for training, e.g. VecNormalize(make_vec_env(...))")
    saved = VecNormalize.load(path, target.venv)  # checks that the observation spaces match
    target.obs_rms, target.ret_rms = saved.obs_rms, saved.ret_rms


def _is_training_env(eval_env: Any, training_env: Any) -> bool:
    """Whether ``eval_env`` is ``training_env``, a vectorised env it wraps (``VecTransposeImage``, which SB3
    adds for images) or, for a gym environment, one of those SB3 wrapped (``Monitor``, ``DummyVecEnv``) to
    train on."""
    while getattr(training_env, "venv", None) is not None and training_env is not eval_env:
        training_env = training_env.venv
    if eval_env is training_env:
        return True
    unwrapped = getattr(eval_env, "unwrapped", None)
    return unwrapped is not None and any(getattr(env, "unwrapped", None) is unwrapped
                                         for env in getattr(training_env, "envs", ()))


def load_or_create(algo_class: Any, env: Any, config: dict[str, Any], *, checkpoint: Any = _DEFAULT,
                   **fixed: Any) -> Any:
    """The trial's model: restored from its checkpoint with ``config`` applied, or new.

    A plain ``PPO.load(path, env=env)`` brings back the saved ``learning_rate``, ``gamma``, ``ent_coef``...,
    so after a PBT exploit the new config would silently do nothing; setting attributes after loading only
    half-applies (the learning-rate schedule, the clip range's schedule and the rollout buffer keep the old
    values). Here the config's values replace the saved ones before SB3 builds the schedules and buffers, and
    the weights and optimiser state are then restored: training continues from the checkpoint with the new
    hyperparameters.

    Args:
        algo_class: the algorithm, e.g. ``PPO``, ``SAC``.
        env: the training environment.
        config: the trial's config; its keys that are parameters of ``algo_class`` (``learning_rate``,
            ``gamma``, ``ent_coef``, ``n_steps``...) are applied, the others are left to your code.
        checkpoint: the checkpoint to restore; default ``ts.get_checkpoint()`` (None: a new model).
        **fixed: the other arguments of ``algo_class`` (``policy="MlpPolicy"``, ``verbose``, ``seed``,
            ``policy_kwargs``...). ``policy`` and ``policy_kwargs`` are only used for a new model (a restored
            one keeps its network).

    Returns:
        The model, with its replay buffer when the checkpoint holds one (``ReportCallback(replay_buffer=True)``),
        and ``env``'s ``VecNormalize`` given the saved statistics when training used one;
        continue its count with ``model.learn(total - model.num_timesteps, reset_num_timesteps=False)``.

    Raises:
        ConfigError: a key is both in ``config`` and ``fixed``; the checkpoint holds ``VecNormalize``
            statistics and ``env`` has no ``VecNormalize``.
        CheckpointError: the checkpoint is not one this user's tunesmith wrote, or is damaged.
    """
    params = set(inspect.signature(algo_class.__init__).parameters) - {"self", "env", "_init_setup_model"}
    hyper = {k: v for k, v in config.items() if k in params}
    both = sorted(set(hyper) & set(fixed))
    if both:
        raise ConfigError(f"load_or_create: {both} given both in config and as fixed arguments; give each once")
    if checkpoint is _DEFAULT:
        from tunesmith import session

        checkpoint = session.get_checkpoint()
    if checkpoint is None:
        return algo_class(env=env, **hyper, **fixed)
    folder = _common.checked_dir(checkpoint, f"load_or_create({algo_class.__name__})")
    path = os.path.join(folder, MODEL_FILE)
    if not os.path.isfile(path):
        raise ConfigError(f"load_or_create: the checkpoint {checkpoint.path} holds no {MODEL_FILE}: it was not "
                          f"written by tunesmith.integrations.sb3.ReportCallback")
    rest = {k: v for k, v in fixed.items() if k not in ("policy", "policy_kwargs", "device")}
    # custom_objects: the saved values are not even deserialised (an old schedule may be a closure that no
    # longer unpickles); the keyword arguments are set before SB3's _setup_model builds the learning-rate and
    # clip-range schedules and the rollout buffer from them
    model = algo_class.load(path, env=env, device=fixed.get("device", "auto"), custom_objects=dict(hyper),
                            **hyper, **rest)
    _restore_normalization(os.path.join(folder, NORMALIZE_FILE), env)
    buffer = os.path.join(folder, REPLAY_BUFFER_FILE)
    if os.path.isfile(buffer):  # saved by ReportCallback(replay_buffer=True); checked with the folder above
        _load_replay_buffer(model, buffer)
    return model


def _load_replay_buffer(model: Any, path: str) -> None:
    """``model.load_replay_buffer(path)``, then the buffer at the size the model was built with (a config's new
    ``buffer_size``: SB3 puts the saved buffer in place of the model's own, at its saved size): the newest
    transitions it holds, oldest first. A buffer that cannot be resized so (HER's episodes, SB3's
    ``optimize_memory_usage``, a class of the user's) keeps its saved size, with a warning saying so."""
    model.load_replay_buffer(path)
    saved = model.replay_buffer
    size = max(int(model.buffer_size) // saved.n_envs, 1)  # per environment, as SB3's buffers count it
    if saved.buffer_size == size:
        return
    resized = _resized(saved, size)
    if resized is None:
        log.warning(
            "load_or_create: the restored %s keeps its saved buffer_size=%d; buffer_size=%d is not applied to it",
            type(saved).__name__, saved.buffer_size, size)
        return
    model.replay_buffer = resized


def _resized(buffer: Any, size: int) -> Any:
    """A copy of a ``ReplayBuffer`` or ``DictReplayBuffer`` holding ``size`` transitions (per environment), the
    newest of ``buffer``'s, oldest first; None for another kind."""
    import numpy as np
    from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer

    if type(buffer) not in (ReplayBuffer, DictReplayBuffer) or getattr(buffer, "optimize_memory_usage", False):
        return None
    old = buffer.buffer_size
    order = np.arange(buffer.pos, buffer.pos + old) % old if buffer.full else np.arange(buffer.pos)
    keep = order[-size:]

    def cut(array: Any) -> Any:
        out = np.zeros((size, *array.shape[1:]), dtype=array.dtype)
        out[:len(keep)] = array[keep]
        return out

    new = copy.copy(buffer)
    for name, value in vars(buffer).items():  # every per-transition array (a dict of them: DictReplayBuffer's)
        if isinstance(value, np.ndarray) and value.ndim and value.shape[0] == old:
            setattr(new, name, cut(value))
        elif isinstance(value, dict) and value and all(isinstance(v, np.ndarray) and v.ndim and v.shape[0] == old
                                                       for v in value.values()):
            setattr(new, name, {k: cut(v) for k, v in value.items()})
    new.buffer_size = size
    new.pos = len(keep) % size
    new.full = len(keep) == size
    return new
