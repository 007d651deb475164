"""A worker that could not load the training function once (its module failed to import: a file being edited, a
transient error) loads it again for the next trial it is handed: the driver sends the function once per worker."""

from __future__ import annotations

import os

import pytest

import tunesmith as ts

pytestmark = pytest.mark.timeout(120)


def _load_second_time(marker: str) -> ToLoad:
    """Unpickling fails in a process the first time (the marker is not there yet), then works."""
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        raise ImportError("the training function's module failed to import (once)")
    return ToLoad(marker)


class ToLoad:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return _load_second_time, (self.marker,)

    def __call__(self, config: dict) -> None:
        ts.report({"loss": config["x"]})


def test_a_function_that_failed_to_load_once_is_loaded_again_for_the_next_trial(results_dir, tmp_path) -> None:
    """Before: the next trial on that worker got no function bytes (sent once per worker) and failed with
    "TypeError: a bytes-like object is required, not 'NoneType'", and so did every later one."""
    marker = str(tmp_path / "loaded-once")
    result = ts.run(ToLoad(marker), space={"x": ts.grid([1, 2, 3])}, metric="loss", mode="min", verbose=0,
                    backend=ts.LocalBackend(total_resources={"cpu": 1}))
    first, *rest = sorted(result.trials, key=lambda t: t.id)
    assert first.status is ts.TrialStatus.ERROR
    assert "could not load the training function" in first.error and "failed to import (once)" in first.error
    assert [t.status for t in rest] == [ts.TrialStatus.TERMINATED] * 2, [t.error for t in rest]
