"""A run for the browser test: trials that report for a while, served by run(dashboard=True) with control on.

Usage: live_run.py STORAGE_PATH
"""

from __future__ import annotations

import sys
import time

import tunesmith as ts


def train(config: dict) -> None:
    for i in range(1500):
        ts.report({"loss": config["lr"] / (i + 1), "acc": i / 1500})
        time.sleep(0.02)


if __name__ == "__main__":
    ts.run(train, space={"lr": ts.grid([0.5, 1.0, 2.0, 4.0]), "note": "<script>window.pwned=1</script>",
                         "api_key": "hunter2-secret"},
           metric="loss", mode="min", max_concurrent=2, storage_path=sys.argv[1], name="live", verbose=0,
           time_budget_s=60, dashboard={"port": 0, "allow_control": True})
