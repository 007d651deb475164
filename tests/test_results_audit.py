"""An audit of the results API off the happy path (ts.load, the ResultSet, its plots): trial ids as the dataframe
gives them, ranking by the automatic keys over every result, the plots of a multi-objective experiment, and the
plot arguments a plot cannot draw."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

import tunesmith as ts
from tunesmith._secrets import MASK
from tunesmith.results import ResultSet

pytestmark = pytest.mark.timeout(120)


def steps(config: dict[str, Any]) -> None:
    for i in range(config["n"]):
        ts.report({"loss": config["n"] - i + 0.5})


@pytest.fixture(scope="module")
def counted(tmp_path_factory: Any) -> ResultSet:
    """Three trials of 1, 3 and 2 results."""
    return ts.run(steps, {"n": ts.grid([1, 3, 2])}, metric="loss", mode="min", name="counted", verbose=0,
                  storage_path=str(tmp_path_factory.mktemp("audit")))


def two_metrics(config: dict[str, Any]) -> None:
    x = config["x"]
    for i in range(3):
        # "size" comes first: no metric of the experiment's, but the first number of each result
        ts.report({"size": 10 - x, "lat": x + i, "acc": x * x - i})


@pytest.fixture(scope="module")
def multi(tmp_path_factory: Any) -> ResultSet:
    return ts.run(two_metrics, {"x": ts.grid([0.5, 1.0, 2.0, 3.0])}, metric=["lat", "acc"], mode=["min", "max"],
                  name="multi", verbose=0, storage_path=str(tmp_path_factory.mktemp("audit")))


# -- trial ids ------------------------------------------------------------------------------------------------------


def test_trial_ids_from_the_dataframe_find_their_trials(counted: ResultSet) -> None:
    """``rs.trial(df.trial_id[i])`` (a numpy int64) is the trial of that id, read lazily or from the trials."""
    np = pytest.importorskip("numpy")
    for fresh in (ts.load(counted.path), counted):
        assert fresh.trial(np.int64(2)).id == 2
        assert fresh.history(np.int64(2)) == counted.history(2)
    frame = counted.dataframe()
    assert [counted.trial(tid).config["n"] for tid in frame["trial_id"]] == list(frame["config/n"])


@pytest.mark.parametrize("bad", [True, 2.0, None])
def test_a_trial_id_of_a_wrong_type_is_a_config_error_naming_it_and_what_was_expected(counted: ResultSet,
                                                                                      bad: Any) -> None:
    expected = rf"trial: expected an id \(3\), a name \('3', 'trial_00003'\) or a TrialResult; got {bad!r}"
    readers = (counted.trial, ts.load(counted.path).history, *([counted.lineage] if bad is not None else []))
    for read in readers:  # lineage(None): every trial's
        with pytest.raises(ts.ConfigError, match=expected):
            read(bad)


def test_a_name_that_is_no_trial_name_is_no_such_trial(counted: ResultSet) -> None:
    with pytest.raises(KeyError, match="not a trial id or name: 'best'"):
        counted.trial("best")


def test_a_trial_result_stands_for_its_id(counted: ResultSet) -> None:
    """``rs.history(rs.best)`` raised a KeyError printing the trial's whole record."""
    for rs in (ts.load(counted.path), counted):
        two = rs.trial(2)
        assert rs.trial(two).id == 2
        assert rs.history(two) == rs.history(2) != []
        assert rs.history(two, all_generations=True) == rs.history(2, all_generations=True)
        assert rs.lineage(two) == rs.lineage(2)
        assert rs.history(rs.best) == rs.history(rs.best.id)
        elsewhere = dataclasses.replace(two, id=99)  # a trial of another experiment: named by its id alone
        with pytest.raises(KeyError, match=r"^'no trial 99 in experiment counted'$"):
            rs.history(elsewhere)


@pytest.mark.parametrize("tid", [2**70, -(2**70)])
def test_an_id_past_any_store_is_no_such_trial(counted: ResultSet, tid: int) -> None:
    """An id SQLite cannot hold is a trial that is not there (as when the trials were read), not an OverflowError."""
    for rs in (ts.load(counted.path), counted):
        with pytest.raises(KeyError, match=f"no trial {tid} in experiment counted"):
            rs.trial(tid)
        with pytest.raises(KeyError, match=f"no trial {tid} in experiment counted"):
            rs.history(tid)


# -- ranking by the automatic keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode, expected", [("max", 2), ("min", 1)])
def test_best_by_training_iteration_over_every_result(counted: ResultSet, mode: str, expected: int) -> None:
    """Every result has a training_iteration (kept beside the metrics in the store): ranked over every result as
    over the last ones."""
    for scope in ("last", "all"):
        for rs in (ts.load(counted.path), counted):
            best = rs.get_best("training_iteration", mode, scope=scope)
            assert best.id == expected, (scope, mode)
            assert best.metrics["training_iteration"] == {"max": 3, "min": 1}[mode]
    assert [t.id for t in counted.top(3, "training_iteration", "max", scope="all")] == [2, 3, 1]
    assert [t.id for t in counted.top(3, "time_total_s", "max", scope="all")] == [
        t.id for t in counted.top(3, "time_total_s", "max", scope="last")]


# -- plots of a multi-objective experiment --------------------------------------------------------------------------


def test_plots_of_a_multi_objective_experiment_take_its_metrics_and_modes(multi: ResultSet) -> None:
    """The plots' default metric is the experiment's first (not the first number a result holds), and a metric of
    the experiment's is ranked in its own mode: best so far and importance are drawn, the best trial marked."""
    from tunesmith.plots.report import build_panels

    assert "Learning curves: lat" in multi.plot.learning_curves().figure["layout"]["title"]["text"]
    for metric, mode in (("lat", "min"), (None, "min"), ("acc", "max")):
        figure = multi.plot.best_so_far(metric).figure
        best = figure["data"][1]["y"]
        assert best == sorted(best, reverse=mode == "min"), metric
        assert best[-1] == {"min": 0.5, "max": 9.0}[mode], metric
    panels, notes = build_panels(multi)
    assert "Best so far" in [p.title for p in panels], notes
    assert not [n for n in notes if "no mode" in n]
    panels, notes = build_panels(multi, "acc")
    assert "Best so far" in [p.title for p in panels], notes


# -- plot arguments a plot cannot draw ------------------------------------------------------------------------------


@pytest.mark.parametrize("plot", ["best_so_far", "parallel_coordinates"])
def test_a_plot_mode_that_is_not_min_or_max_is_refused_naming_it(counted: ResultSet, plot: str) -> None:
    with pytest.raises(ts.ConfigError, match="mode: expected 'min' or 'max', got 'sideways'"):
        getattr(counted.plot, plot)(mode="sideways")


@pytest.mark.parametrize("plot", ["learning_curves", "best_so_far", "scatter", "parallel_coordinates", "sensitivity"])
def test_a_plot_of_a_metric_no_result_reported_names_it_and_the_reported_ones(counted: ResultSet, plot: str) -> None:
    """A typo is an error naming it and what the results hold, not an empty figure (or None, "does not apply")."""
    with pytest.raises(ts.ConfigError, match=r"metric: no result reported a number for 'lose'; expected one of "
                                             r"the reported keys \['loss', 'time_total_s', 'timestamp', "
                                             r"'training_iteration'\]"):
        getattr(counted.plot, plot)(metric="lose")
    with pytest.raises(ts.ConfigError, match="metric: expected a metric's name, got 3"):
        getattr(counted.plot, plot)(metric=3)


def _reports_an_error_text(config):
    ts.report({"loss": 1.0, "error": f"auth failed for key {config['api_key']}", "note": f"key {config['api_key']}"})


def test_a_text_result_named_error_is_masked_in_the_frame_of_every_result(results_dir) -> None:
    """``dataframe(all_results=True)`` masks the config's secrets in text results, but skipped a column named
    ``error`` (the per-trial frame's column for a failed trial's error, which that frame does not have): a trial's
    own ``error`` text showed the key. The per-trial frame masked it already."""
    secret = "sk-AUDITSECRET-4242"
    rs = ts.run(_reports_an_error_text, {"api_key": secret}, metric="loss", mode="min", verbose=0)
    every = rs.dataframe(all_results=True)
    assert secret not in every.to_csv() and secret not in rs.dataframe().to_csv()
    assert every["error"][0] == f"auth failed for key {MASK}" and every["note"][0] == f"key {MASK}"


def _reports_error_then_fails(config):
    ts.report({"error": 0.25 + config["k"]})
    if config["k"]:
        raise RuntimeError("after reporting")


def test_a_metric_named_error_is_not_overwritten_by_a_failed_trials_error_in_the_frame(results_dir) -> None:
    """The per-trial frame put a failed trial's error (its last line) in a column ``error``, over the trial's own
    metric of that name: the metric read "RuntimeError: after reporting". The metric stays; the status column
    says the trial failed, and ``rs.errors`` holds the traceback."""
    rs = ts.run(_reports_error_then_fails, {"k": ts.grid([0, 1])}, metric="error", mode="min", verbose=0)
    frame = rs.dataframe().set_index("trial_id")
    assert frame.loc[2, "status"] == "ERROR" and frame.loc[2, "error"] == 1.25 and frame.loc[1, "error"] == 0.25
    assert "RuntimeError: after reporting" in rs.errors[0].error


def test_the_pareto_plot_names_a_metric_given_as_text_or_never_reported(multi: ResultSet) -> None:
    """``plot.pareto_front("loss", "min")`` complained about ``['l', 'o', 's', 's']``, a metric no result
    reported drew an empty front without a word, and one metric twice (``--pareto loss:min,loss:min`` too) drew a
    diagonal."""
    from click.testing import CliRunner

    from tunesmith._errors import ConfigError
    from tunesmith.cli import cli

    with pytest.raises(ConfigError, match=r"two metrics and two modes as lists .*got 'lat' and 'min'"):
        multi.plot.pareto_front("lat", "min")
    with pytest.raises(ConfigError, match=r"metric: no result reported a number for 'latency'.*'acc'"):
        multi.plot.pareto_front(["latency", "acc"], ["min", "max"])
    with pytest.raises(ConfigError, match=r"two different metrics, got 'lat' twice"):
        multi.plot.pareto_front(["lat", "lat"], ["min", "max"])
    res = CliRunner().invoke(cli, ["report", multi.path, "--pareto", "lat:min,lat:max"])
    assert res.exit_code == 2 and "--pareto: expected two different metrics, got 'lat:min,lat:max'" in res.output
    fig = multi.plot.pareto_front(["lat", "acc"], ["min", "max"])
    assert any(trace.get("name") == "Pareto front" for trace in fig.figure["data"]), fig.figure["data"]


def _raises_with_line_separators(config):
    ts.report({"loss": 1.0})
    raise RuntimeError("first\u2028second\x85third")


def test_a_failed_trials_error_line_keeps_its_exception_name_whatever_separators_its_message_holds(results_dir):
    """``str.splitlines`` also splits at U+2028, U+0085 and form feeds: the frame's ``error`` column, ``run``'s
    failure line and ``show``'s showed only the message's end, without the exception's name."""
    from click.testing import CliRunner

    from tunesmith.cli import cli

    rs = ts.run(_raises_with_line_separators, name="seps", verbose=0)
    whole = "RuntimeError: first\u2028second\x85third"
    assert rs.dataframe()["error"][0] == whole
    shown = CliRunner().invoke(cli, ["show", "seps"]).output
    assert "trial_00001 failed: RuntimeError: first" in shown, shown
