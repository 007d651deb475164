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

import functools
import os
from typing import Any

from tunesmith._launches import EXPERIMENT_ENV
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
    key = _experiment_key()
    if key is not None:  # every start of the trial (a retry, a pause, an exploit, a resume) continues its run
        kwargs["id"], kwargs["resume"] = f"{key}-t{int(s.trial_id)}", "allow"
    kwargs.update(init_kwargs)
    run = wandb.init(**kwargs)
    # the worker ends what the trial started when it ends, W&B's service process too: finish the run (a later start
    # of the trial, on any worker, continues it: its id must be free) and shut W&B down first, so that the next
    # trial on this worker starts a service of its own (it found the old one dead: MailboxClosedError)
    session.at_trial_end(functools.partial(_finish, run))
    return run


def _experiment_key() -> str | None:
    """The experiment's key (``callbacks._names.experiment_key``, 16 hex digits: no user text in a run id) from what
    the driver put in the trial's environment, or None outside a run of this tunesmith."""
    import json

    from tunesmith.callbacks._names import experiment_key

    try:
        name, created = json.loads(os.environ.get(EXPERIMENT_ENV, ""))
    except (ValueError, TypeError):
        return None
    if not isinstance(name, str) or not name or (created is not None and not isinstance(created, float)):
        return None
    return experiment_key(name, created)


def _finish(run: Any) -> None:
    """The trial is over: its run finished (a no-op if the trial did), W&B shut down in this process."""
    run.finish()
    wandb.teardown()
