"""An ML user's checkpoint and Trainable mistakes off the happy path: each is an error naming the bad input and what
was expected (not a deep traceback, not a retry of what every retry meets again), and nothing of theirs is lost."""

from __future__ import annotations

import json

import pytest

import tunesmith as ts
from tunesmith import checkpoint as ck


def test_from_dir_names_a_manifest_json_of_the_users_never_drops_it(tmp_path):
    """A data set's manifest.json with a "files" table ({"files": {"train": [...]}}) is the user's file: refused
    by name as any manifest.json of theirs is, never dropped from the checkpoint without a word."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "manifest.json").write_text(json.dumps({"files": {"train": ["a.tar", "b.tar"]}, "version": 2}))
    (src / "w.bin").write_bytes(b"w")
    with pytest.raises(ck.CheckpointError, match="manifest.json is a file of yours"):
        ck.write(ts.Checkpoint.from_dir(str(src)), str(tmp_path / "ckpts"), 1)


def test_from_dir_still_rebuilds_the_manifest_of_a_restored_checkpoint(tmp_path):
    first = ck.write(ts.Checkpoint.from_state({"step": 3}), str(tmp_path / "a"), 3)
    again = ck.write(ts.Checkpoint.from_dir(first), str(tmp_path / "b"), 4)
    assert ck.verify(again)["iteration"] == 4
    assert ts.Checkpoint(again).load() == {"step": 3}


def huge_loss(config):
    for i in range(3):
        loss = 10 ** 400 if i == 1 else float(i)
        ts.report({"loss": loss}, checkpoint=ts.Checkpoint.from_state({"i": i}))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("keep", [None, {"keep": 2, "keep_by": "loss"}])
def test_an_integer_metric_beyond_float_range_fails_its_trial_naming_it_not_the_driver(results_dir, keep):
    # was: the driver died with OverflowError: int too large to convert to float (keep_by, or the objective)
    result = ts.run(huge_loss, metric="loss", mode="min", verbose=0, **(keep or {}))
    t = result.trials[0]
    assert t.status == ts.TrialStatus.ERROR and "ConfigError" in t.error, t.error
    assert "'loss'" in t.error and "float" in t.error, t.error
    assert [h["loss"] for h in result.history(t.id)] == [0.0]  # the good result and its checkpoint are kept
    assert t.checkpoint.load() == {"i": 0}
