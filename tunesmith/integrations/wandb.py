"""Weights & Biases from inside a trial: ``setup()`` starts the trial's W&B run, so your code logs with
``wandb.log`` (or the run it returns) as usual.

    from tunesmith.integrations.wandb import setup

    def train(config):
        run = setup(project="my-project")     # named after the trial, grouped by experiment, config logged
        for step in range(100):
            ...
            run.log({"loss": loss})
            ts.report({"loss": loss})
        run.finish()

To log every reported result from the driver instead (no W&B code in the trial), use ``ts.WandbLogger``.
Needs ``pip install 'tunesmith[wandb]'`` and a W&B login (or ``WANDB_MODE=offline``).
"""

from __future__ import annotations

import os
from typing import Any

from tunesmith._optional import require
from tunesmith._secrets import mask

wandb = require("wandb", "wandb", "tunesmith.integrations.wandb")

__all__ = ["setup"]


def setup(**init_kwargs: Any) -> Any:
    """``wandb.init`` for the current trial: the run is named after the trial (``trial_00001``), grouped by
    the experiment's name, and given the trial's config (secret-looking values masked as ``***``, as every
    tunesmith output does). Any ``wandb.init`` argument can be given and overrides these (``project``,
    ``entity``, ``name``, ``group``, ``tags``, ``mode``...).

    Returns:
        The ``wandb`` run (also ``wandb.run``); call ``finish()`` on it when training ends (W&B also finishes
        it when the trial's process exits).

    Raises:
        RuntimeError: called outside a trial.
    """
    from tunesmith import session
    from tunesmith.trial import trial_name

    s = session._current("integrations.wandb.setup")
    # a trial's folder is <experiment>/<trials>/<trial_name> (tunesmith._layout.trial_dir)
    experiment = os.path.basename(os.path.dirname(os.path.dirname(os.path.normpath(s.trial_dir))))
    kwargs: dict[str, Any] = {"name": trial_name(s.trial_id), "group": experiment,
                              "config": mask(dict(s.config)), "reinit": "finish_previous"}
    kwargs.update(init_kwargs)
    return wandb.init(**kwargs)
