"""benchmarks/scale.py, issue 19's table: a quick run prints every asked row with its floor, goal and verdict
(its shape, never its numbers), and the per-row benchmark modules are called when present and reported as
not measured when missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCALE = os.path.join(ROOT, "benchmarks", "scale.py")


@pytest.fixture
def scale(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    import scale

    return scale


def test_quick_rows_print_floor_ratio_goal_and_verdict(tmp_path):
    out = tmp_path / "lines.json"
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.run([sys.executable, SCALE, "--quick", "--rows", "4,6", "--source", "scale", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=110)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    lines = data["lines"]
    assert {ln["row"] for ln in lines} == {4, 6}
    assert data["quick"] is True and "cores" in data["machine"]
    for ln in lines:
        assert "failed" not in ln["what"], ln
        assert isinstance(ln["measured"], float) and ln["measured"] > 0, ln
        assert isinstance(ln["floor"], float) and ln["floor"] > 0 and ln["floor_what"], ln
        assert ln["ratio"] == pytest.approx(ln["measured"] / ln["floor"]), ln
        assert isinstance(ln["met"], bool) == bool(ln["goal"]), ln  # a verdict wherever there is a goal
    whats = [ln["what"] for ln in lines]
    assert "short trials, default loggers: wall" in whats
    [short] = [ln for ln in lines if ln["what"] == "short trials, default loggers: wall"]
    assert float(short["note"].removeprefix("driver CPU ").removesuffix(" ms a trial")) > 0
    noop, started_in_time = [ln for ln in lines if ln["what"] == "no-op trials"]
    assert noop["goal"] == "ratio >= 0.250" and "started" in noop["floor_what"]
    assert not started_in_time["goal"] and started_in_time["floor"] != noop["floor"]
    [folderless] = [ln for ln in lines if "no trial folder" in ln["what"]]  # the split of row 4's remainder
    assert not folderless["goal"] and "pool" in folderless["floor_what"]
    [behind] = [ln for ln in lines if "queue_ahead=False" in ln["what"]]  # what handing trials ahead buys
    assert not behind["goal"] and "pool" in behind["floor_what"]
    assert all(ln["goal"] for ln in lines
               if ln not in (folderless, behind) and (ln["what"] != "no-op trials" or ln is noop))
    assert [w for w in whats if w == "tunesmith show"] == ["tunesmith show", "tunesmith show"]
    # the printed table has the same rows, under its column heads
    for head in ("measured", "floor", "ratio", "goal", "met?"):
        assert head in proc.stdout
    assert proc.stdout.count("tunesmith show") == 2


def test_rows_option_rejects_a_row_that_is_not_in_the_table():
    proc = subprocess.run([sys.executable, SCALE, "--rows", "4,13"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode != 0 and "row 13 is not one of 1-12" in proc.stderr


def test_a_missing_module_or_function_is_not_measured(scale, tmp_path, monkeypatch):
    (tmp_path / "scale_probe_empty.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    [missing] = scale.call_helper(4, "scale_probe_absent", "measure_noop", {}, {"n": 5})
    assert missing.what == "not measured (module missing)" and missing.by == "scale_probe_absent.measure_noop"
    [nofunc] = scale.call_helper(4, "scale_probe_empty", "measure_noop", {}, {"n": 5})
    assert nofunc.what == "not measured (function missing)"


def test_a_helper_is_called_with_this_runs_sizes_and_its_dict_fills_the_columns(scale, tmp_path, monkeypatch):
    (tmp_path / "scale_probe_helper.py").write_text(textwrap.dedent("""
        def measure_noop(n, scheduler="fifo", extra=3):
            return {"what": "no-op", "size": f"{n} trials", "measured": 2.0 * n, "unit": "trials/s",
                    "floor": 4.0 * n, "goal": "ratio >= 0.25", "met": True, "scheduler": scheduler, "extra": extra}

        def measure_lines(n_trials):
            return {"lines": [{"what": "a", "measured": 1.0, "floor": 2.0}, {"what": "b", "measured": 3.0}]}

        def measure_plain(n_trials):
            return {"wall_s": 1.5, "floor_s": 0.5}

        def measure_needs(size_nobody_gives):
            return {}

        def measure_fails(n_trials):
            raise ValueError("boom")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    [line] = scale.call_helper(5, "scale_probe_helper", "measure_noop", {"scheduler": "asha"}, {"n": 7, "quick": True})
    assert (line.row, line.what, line.size, line.measured, line.unit, line.floor) == (5, "no-op", "7 trials", 14.0,
                                                                                      "trials/s", 28.0)
    assert line.ratio == pytest.approx(0.5) and line.met is True and line.goal == "ratio >= 0.25"
    assert "scheduler=asha" in line.note and "extra=3" in line.note  # the extra argument, and the default kept
    [sized] = scale.call_helper(4, "scale_probe_helper", "measure_noop", {"n": "@short"}, {"n": 7}, {"short": 99})
    assert sized.size == "99 trials"  # "@short": the run's size of that name, not the row's default n
    a, b = scale.call_helper(1, "scale_probe_helper", "measure_lines", {}, {"n_trials": 3})
    assert (a.what, a.ratio, b.what, b.ratio) == ("a", 0.5, "b", None)
    [plain] = scale.call_helper(1, "scale_probe_helper", "measure_plain", {}, {"n_trials": 3})
    assert plain.measured == "wall_s=1.50, floor_s=0.500" and plain.size == "n_trials=3"
    [needs] = scale.call_helper(1, "scale_probe_helper", "measure_needs", {}, {"n_trials": 3})
    assert needs.what == "not measured (no size for size_nobody_gives)"
    [fails] = scale.call_helper(1, "scale_probe_helper", "measure_fails", {}, {"n_trials": 3})
    assert fails.what == "failed: ValueError: boom"


def test_every_row_names_its_helper_functions(scale):
    assert sorted(scale.ROWS) == list(range(1, 13)) == sorted(scale.HELPERS)
    named = {f"{m}.{f}" for calls in scale.HELPERS.values() for m, f, _ in calls}
    assert {"report_scale.measure_report", "loggers.measure_loggers", "loggers.measure_driver_memory",
            "pertrial.measure_noop", "pertrial.measure_short_trials", "pertrial.measure_first_result",
            "pertrial.measure_threads", "readers.measure_show", "readers.measure_dataframe",
            "readers.measure_lookups", "readers.measure_reader_beside_writer"} <= named


def test_row_3_names_the_page_cache_and_runs_again_with_another(scale, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", ROOT)
    default = scale.in_child("driver_memory", n=30, warmup=10, root=str(tmp_path))
    assert default["cache_mb"] > 0 and default["rss_end_mb"] > 0  # SQLite's own default (2 MB unless built otherwise)
    small = scale.in_child("driver_memory", n=30, warmup=10, root=str(tmp_path), cache_kib=100)
    assert small["cache_mb"] == pytest.approx(100 / 1024) and small["rss_warm_mb"] > 0
    lines = scale.row3(scale.Context(scale.QUICK | {"memory_trials": 30, "memory_warmup": 10}, 1, str(tmp_path),
                                     page_cache=(100,)))
    assert [ln.what for ln in lines] == ["driver memory growth after warm-up", "  the same, page cache 100 KiB"]
    assert "SQLite page cache up to" in lines[0].note and lines[0].goal
    assert lines[1].note.endswith("the writer's cache as SQLite reports it 100 KiB")  # the variant ran with it
