"""benchmarks/roundtrip.py: both ways answer every message, the child is reaped, and the table prints."""

from __future__ import annotations

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def roundtrip(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    import roundtrip

    return roundtrip


@pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/task"), reason="children are read from /proc")
@pytest.mark.parametrize("spin", [False, True])
def test_every_message_is_answered_and_the_child_is_reaped(roundtrip, spin):
    from tunesmith.executors._procs import _children

    before = set(_children())
    times = roundtrip.round_trips(200, spin)
    assert len(times) == 200 and all(t > 0 for t in times)
    assert set(_children()) <= before  # the answering child was waited for: no new child is left, not even a zombie


def test_the_table_has_both_ways_in_every_round(roundtrip, capsys):
    rows = roundtrip.main(["--messages", "50", "--rounds", "2"])
    assert [(way, r) for way, r, _m, _p in rows] == [("blocked in recv", 1), ("spinning", 1),
                                                     ("blocked in recv", 2), ("spinning", 2)]
    assert all(0 < median <= p90 for _w, _r, median, p90 in rows)
    assert "median us" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["0", "-3", "many"])
def test_a_count_below_one_is_refused_with_the_value(roundtrip, capsys, bad):
    with pytest.raises(SystemExit) as exit_:
        roundtrip.main(["--messages", bad])
    assert exit_.value.code == 2
    assert f"--messages: expected a whole number of at least 1, got '{bad}'" in capsys.readouterr().err
