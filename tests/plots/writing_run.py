"""A run that writes results as fast as it can until ``STOP_FILE`` appears: the writer a report reads beside.

Each trial's loss falls at every iteration, so its last result is its best one: a report that reads one state
of the store names the same best value by last result and by any iteration.

Usage: writing_run.py STORAGE_PATH STOP_FILE
"""

from __future__ import annotations

import os
import sys

import tunesmith as ts


def train(config: dict) -> None:
    i = 0
    while not os.path.exists(config["stop_file"]):
        i += 1
        ts.report({"loss": config["lr"] / i})


if __name__ == "__main__":
    ts.run(train, space={"lr": ts.grid([1.0, 1.5]), "stop_file": sys.argv[2]}, metric="loss", mode="min",
           max_concurrent=2, storage_path=sys.argv[1], name="writing", verbose=0)
