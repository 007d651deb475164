"""The messages between the driver and the processes that run trials (local workers, Ray actors).

Pickled tuples whose first item is one of these tags: short strings, so a message costs what it did when the
tags were written inline, and one place names them for both ends. Results travel in batches (one message
per batch, not per result), as :class:`tunesmith.executors._base.Results` once they reach the controller;
a local worker's DONE carries the results it had not sent yet (one message for a short trial's whole life),
and a final True when the worker retires after it (it ran rank 0 of a trial run as several ranks; a Ray
actor's DONE has no rows, and the same flag fifth).

  driver -> worker: (RUN, spec)  (DECIDE, trial_id, continue, next_decision, plan)  (STOP, trial_id, on_result)
                    (EXIT,)  (a Ray actor's DECIDE has no plan: its backend takes none; on_result: the driver
                    decided the stop on one of the trial's results, ``Executor.stop_on_result``; a trial waiting at
                    a decision point is answered a stop so: a DECIDE not to continue is a pause or an exploit)
  worker -> driver: (READY, pid)  (RESULTS, trial_id, rows, waiting)  (DONE, trial_id, status, error, rows[, retire])
                    (HEARTBEAT,)  (CHUNK, trial_id, dest, relpath, offset, data) (Ray: a checkpoint's bytes)
                    (OUTPUT, trial_id, data) (Ray: what a trial on another node printed, for its output.log)
                    (FILE, trial_id, relpath, offset, data, last, mode) (Ray: a file a trial on another node wrote)
                    (ENDING, trial_id) (rank 0 of a trial run as several ranks returned: the others have
                    ``_ranks.END_GRACE_S`` to return, which a stop decided on one of its results leaves them)
"""

from __future__ import annotations

RUN = "run"  # start a trial from its spec (executors._base.trial_spec)
DECIDE = "d"  # answer a trial waiting at a decision point
STOP = "s"  # end the trial at its next report()
EXIT = "x"  # the worker exits
READY = "ready"  # the worker is up
RESULTS = "r"  # a batch of results
DONE = "done"  # the trial ended
HEARTBEAT = "hb"  # alive, nothing to send
CHUNK = "c"  # part of a checkpoint folder on its way to the driver
OUTPUT = "o"  # bytes a trial on another node printed, appended to its output.log by the driver
FILE = "f"  # part of a file a trial on another node wrote in its folder, on its way to the driver's
ENDING = "e"  # rank 0 returned: the trial's other ranks have their time to return (``_ranks.END_GRACE_S``)
