"""Hypothesis fuzzing of what users hand us: reported metrics and stop rules."""

from __future__ import annotations

import json
import math

from hypothesis import given
from hypothesis import strategies as st

from tunesmith import ConfigError
from tunesmith._stop import StopRules
from tunesmith.session import encode_metrics

anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(),
    st.binary(), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(), st.integers(), max_size=2),
    st.tuples(st.integers()), st.sets(st.integers(), max_size=2))
keys = st.one_of(st.text(), st.integers(), st.none(), st.floats())


@given(st.dictionaries(keys, anything, max_size=6))
def test_report_accepts_json_scalars_and_rejects_the_rest_with_configerror(metrics):
    scalars = all(isinstance(k, str) and k not in ("training_iteration", "time_total_s", "timestamp")
                  and isinstance(v, (bool, int, float, str)) for k, v in metrics.items())
    try:
        text = encode_metrics(metrics)
    except ConfigError:
        assert not scalars
        return
    assert scalars
    # the same text as json.dumps (the JSONL logger writes it as it is; see session._scalar_dict_encoder)
    assert text == json.dumps(metrics)
    back = json.loads(text)
    for k, v in metrics.items():
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
def test_stop_rules_are_valid_or_one_configerror(stop, mode):
    try:
        rules = StopRules(stop, "loss", mode)
    except ConfigError:
        return
    # a valid rule set answers for any result without raising
    for value in (0.0, 1e9, -1e9, float("nan"), "text"):
        rules.should_stop(1, 5, {"loss": value, "x": value})
