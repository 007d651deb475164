"""What a Ray actor of tunesmith's (a trial's, a rank's) sets up in its process before running user code; its own
module so that both ``_ray_actor`` and ``_ray_ranks`` import it without importing each other."""

from __future__ import annotations

import sys
from typing import Any


def keep_ray_up() -> None:
    """Make ``ray.shutdown()`` a no-op in this actor's process (a trial's actor, a rank's), with a note on stderr (the
    trial's ``output.log``): the user's code (or a library it calls) ending Ray here would leave the actor without
    its connection, and Ray kills it at its next call, its trial's last results with it (on the local backend the
    same call does nothing: a worker process has no Ray). Ray's own exit uses ``ray._private.worker.shutdown``."""
    import ray

    if getattr(ray.shutdown, "_tunesmith_kept", False):
        return

    def shutdown(*args: Any, **kwargs: Any) -> None:
        print("tunesmith: ray.shutdown() in a trial is ignored: the trial runs in a Ray actor, which needs its "
              "connection to Ray", file=sys.stderr, flush=True)

    shutdown._tunesmith_kept = True  # type: ignore[attr-defined]
    ray.shutdown = shutdown
