"""The run path's value classes (``tunesmith._record``): what they had as dataclasses, kept."""

from __future__ import annotations

import pickle

import pytest

from tunesmith._objective import Objective
from tunesmith.executors._base import Launch
from tunesmith.schedulers._base import CONTINUE, Continue, Exploit, Pause, SchedulerView, Stop
from tunesmith.trial import Result, TrialStatus, TrialView


def test_a_trial_view_changes_in_place_compares_by_its_fields_and_is_not_hashable():
    a, b = TrialView(3, {"x": 1}), TrialView(3, {"x": 1})
    assert a == b and a.resources == {} and a.status is TrialStatus.PENDING
    assert a.resources is not b.resources  # a fresh dict each, as field(default_factory=dict)
    a.status = TrialStatus.RUNNING
    assert a != b
    with pytest.raises(TypeError, match="unhashable"):
        hash(a)
    assert repr(b).startswith("TrialView(id=3, config={'x': 1}, status=<TrialStatus.PENDING")


def test_replace_copies_with_changes_and_names_an_unknown_field():
    view = TrialView(1, {"key": "v"}, error="boom")
    copied = view.__replace__(config={}, error=None)
    assert (copied.config, copied.error, copied.id) == ({}, None, 1) and (view.config, view.error) == ({"key": "v"},
                                                                                                      "boom")
    with pytest.raises(TypeError, match="TrialView has no field 'cofnig'"):
        view.__replace__(cofnig={})
    result = Result(1, 2, {"x": 1.0}, _json='{"x": 1.0}')
    assert result.__replace__(iteration=3) == Result(1, 3, {"x": 1.0})  # _json is neither compared...
    assert "_json" not in repr(result) and result.__replace__(iteration=3)._json == '{"x": 1.0}'  # ...nor shown


def test_decisions_and_objectives_are_immutable_values_that_survive_pickling():
    assert Continue() == CONTINUE and Stop() != CONTINUE and hash(Continue()) == hash(CONTINUE)
    exploit = Exploit(2, {"lr": 0.1}, source_checkpoint="c", pause=True)
    with pytest.raises(AttributeError, match="Exploit cannot be changed"):
        exploit.pause = False  # type: ignore[misc]
    objective = Objective(("loss",), ("min",))
    for value in (exploit, objective, Pause(), Result(1, 1, {"x": 1}), TrialView(1, {}),
                  Launch(1, {}, "/t", {"cpu": 1}), SchedulerView({})):
        assert pickle.loads(pickle.dumps(value)) == value
    assert hash(objective) == hash(Objective(("loss",), ("min",))) and not Objective().names
