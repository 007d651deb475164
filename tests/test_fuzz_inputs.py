"""Hypothesis fuzzing of what users hand us: reported metrics and stop rules."""

from __future__ import annotations

import json
import math

from hypothesis import example, given
from hypothesis import strategies as st

from tunesmith import ConfigError
from tunesmith._objective import Objective
from tunesmith._stop import StopRules
from tunesmith.session import encode_metrics

anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(),
    st.binary(), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(), st.integers(), max_size=2),
    st.tuples(st.integers()), st.sets(st.integers(), max_size=2))
keys = st.one_of(st.text(), st.integers(), st.none(), st.floats())


AUTO = ("training_iteration", "time_total_s", "timestamp")
FRAME = ("trial_id", "status")  # dataframe()'s own columns, beside the config's ("config/...")
scalars = st.one_of(st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text())
nested = st.recursive(st.one_of(scalars, anything), lambda inner: st.dictionaries(
    st.one_of(st.sampled_from(["a", "b", "a/b", ""]), keys), inner, max_size=3), max_leaves=8)


def _flattened(metrics, prefix=""):
    """What report() stores: nested dicts flattened to 'a/b' names, or None where it must refuse."""
    out = {}
    for k, v in metrics.items():
        if not isinstance(k, str) or (not prefix and k in AUTO + FRAME) or (prefix + k).startswith("config/") \
                or "\0" in k:  # progress.csv would hold it raw
            return None
        if isinstance(v, dict):
            inner = _flattened(v, prefix + k + "/")
            if inner is None or set(inner) & set(out):
                return None
            out.update(inner)
        elif isinstance(v, (bool, int, float, str)) and prefix + k not in out:
            out[prefix + k] = v
        else:
            return None
    return out


@given(st.one_of(st.dictionaries(keys, anything, max_size=6), st.dictionaries(keys, nested, max_size=4)))
@example({"opt": {"lr": 0.1, "m": {"b": True}}, "loss": 1.0})
@example({"opt/lr": 1, "opt": {"lr": 2}})
@example({"a": {}})
@example({"trial_id": 9, "loss": 1.0})
@example({"status": "diverged"})
@example({"config/x": 5})
@example({"lo\x00ss": 1.0})
@example({"opt": {"l\nr": 0.1}})
@example({"config": {"x": 5}})
@example({"cfg": {"config/x": 5}, "configx": 1})
def test_report_accepts_json_scalars_and_nested_dicts_and_rejects_the_rest_with_configerror(metrics):
    expected = _flattened(metrics)
    try:
        text = encode_metrics(metrics)
    except ConfigError:
        assert expected is None
        return
    assert expected is not None
    # the same text as json.dumps of the flat dict (the JSONL logger writes it as it is)
    assert text == json.dumps(expected)
    back = json.loads(text)
    assert list(back) == list(expected)
    for k, v in expected.items():
        if isinstance(v, float) and math.isnan(v):
            assert math.isnan(back[k])
        else:
            assert back[k] == v and type(back[k]) is type(v)


@given(anything)
def test_report_rejects_non_dicts(value):
    try:
        encode_metrics(value)
    except ConfigError:
        return
    assert isinstance(value, dict)


@given(st.one_of(anything, st.dictionaries(keys, anything, max_size=4)), st.sampled_from(["min", "max"]))
@example({"training_iteration": math.inf}, "min")
@example({"loss": math.inf}, "min")
@example({"x": -math.inf}, "max")
def test_stop_rules_are_valid_or_one_configerror(stop, mode):
    try:
        rules = StopRules(stop, Objective.from_args("loss", mode))
    except ConfigError:
        return
    # a valid rule set has finite iteration limits and no threshold that every result meets
    assert rules.max_iteration is None or rules.max_iteration >= 1
    for _key, threshold, below in rules.rules:
        assert threshold != (math.inf if below else -math.inf)
    # a valid rule set answers for any result without raising
    for value in (0.0, 1e9, -1e9, float("nan"), "text"):
        rules.should_stop(1, 5, {"loss": value, "x": value})
