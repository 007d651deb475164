"""One ranking rule for the results API, `tunesmith show` and the report's Pareto plot: with ``run(constraints=...)``
the feasible trials rank first (``result.best``, ``top()``, ``pareto_front()``), and ``load(metric=, mode=)`` is
checked as ``run()`` checks them."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from click.testing import CliRunner

import tunesmith as ts
from tunesmith.cli import cli
from tunesmith.plots import data as plot_data
from tunesmith.results import ResultSet

pytestmark = pytest.mark.timeout(120)

# (a, b, memory_gb) per trial (config i); the constraint is memory_gb <= 8, so trial 1 (i=0) is infeasible, and it
# alone would dominate every other trial in (a, b)
MO = [(0.1, 0.1, 16.0), (1.0, 3.0, 4.0), (3.0, 1.0, 2.0), (4.0, 4.0, 1.0)]
A, B = 'lo"ss', "<i>lat</i>ency"  # metric names are data: quoted and HTML-looking


def mo_train(config: dict[str, Any]) -> None:
    a, b, mem = MO[config["i"]]
    ts.report({A: a, B: b, "memory_gb": mem})


def memory(result: dict[str, Any]) -> list[float]:
    return [result["memory_gb"] - 8]


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def figures_of(page: str) -> list[dict[str, Any]]:
    found = re.search(r'<script type="application/json" id="tunesmith-figures">(.*?)</script>', page, re.S)
    assert found is not None
    figures: list[dict[str, Any]] = json.loads(found.group(1))
    return figures


def trace(figure: dict[str, Any], kind: str) -> dict[str, Any] | None:
    found = [t for t in figure["data"] if t.get("meta", {}).get("kind") == kind]
    return found[0] if found else None


def front_figure(figures: list[dict[str, Any]]) -> dict[str, Any]:
    (figure,) = [f for f in figures if trace(f, "front") is not None]
    return figure


# -- the report's Pareto plot ----------------------------------------------------------------------------------


def test_report_pareto_plot_fronts_the_feasible_trials_as_pareto_front_does(results_dir: Any, tmp_path: Any) -> None:
    rs = ts.run(mo_train, {"i": ts.grid(list(range(len(MO))))}, metric=[A, B], mode=["min", "min"], name="mo",
                verbose=0, max_concurrent=1, constraints=memory)
    by_i = {t.config["i"]: t.id for t in rs.trials}
    want = [t.id for t in rs.pareto_front()]
    assert want == sorted([by_i[1], by_i[2]])  # the infeasible trial 0 is not ranked
    out = tmp_path / "report.html"
    res = invoke("report", "mo", "--storage-path", str(results_dir), "-o", str(out))
    assert res.exit_code == 0, res.output
    page = out.read_text(encoding="utf-8")
    figure = front_figure(figures_of(page))
    front = trace(figure, "front")
    assert front is not None and sorted(front["meta"]["trial_ids"]) == want
    assert sorted(zip(front["x"], front["y"])) == [(1.0, 3.0), (3.0, 1.0)]
    infeasible = trace(figure, "infeasible")
    assert infeasible is not None and infeasible["meta"]["trial_ids"] == [by_i[0]]
    assert infeasible["name"] == "infeasible" and (infeasible["x"], infeasible["y"]) == ([0.1], [0.1])
    assert infeasible["marker"] != trace(figure, "trials")["marker"]  # type: ignore[index]  # told apart
    ranked = trace(figure, "trials")
    assert ranked is not None and sorted(ranked["meta"]["trial_ids"]) == sorted(by_i[i] for i in (1, 2, 3))
    # the names stay text: no element of them reaches the page
    assert "<i>lat" not in page and 'lo"ss' not in page
    assert figure["layout"]["xaxis"]["title"]["text"] == A
    assert figure["layout"]["yaxis"]["title"]["text"] == "&lt;i&gt;lat&lt;/i&gt;ency"


def test_pareto_plot_of_a_run_with_no_feasible_trial_fronts_every_trial_as_pareto_front(tmp_path: Any) -> None:
    rs = ts.run(mo_train, {"i": ts.grid(list(range(len(MO))))}, metric=[A, B], mode=["min", "min"], name="none",
                storage_path=str(tmp_path), verbose=0, max_concurrent=1, constraints=lambda r: [1.0])
    figure = plot_data.pareto_front(ts.load(rs.path), [A, B], ["min", "min"])
    front = trace(figure, "front")
    assert front is not None and front["meta"]["trial_ids"] == [t.id for t in rs.pareto_front()]
    assert [t.config["i"] for t in rs.pareto_front()] == [0]  # nothing feasible: every trial ranks
    infeasible = trace(figure, "infeasible")  # and every one is drawn as infeasible
    assert infeasible is not None and sorted(infeasible["meta"]["trial_ids"]) == sorted(t.id for t in rs.trials)


def test_pareto_plot_of_metrics_given_by_hand_uses_pareto_front_of_those(tmp_path: Any) -> None:
    rs = ts.run(mo_train, {"i": ts.grid(list(range(len(MO))))}, metric=A, mode="min", name="one",
                storage_path=str(tmp_path), verbose=0, max_concurrent=1, constraints=memory)
    for modes in (["min", "min"], ["max", "min"], ["max", "max"]):
        figure = plot_data.pareto_front(ts.load(rs.path), [A, B], modes)
        front = trace(figure, "front")
        assert front is not None
        assert sorted(front["meta"]["trial_ids"]) == [t.id for t in rs.pareto_front([A, B], modes)], modes


def test_pareto_plot_without_constraints_has_no_infeasible_trace(tmp_path: Any) -> None:
    rs = ts.run(mo_train, {"i": ts.grid(list(range(len(MO))))}, metric=[A, B], mode=["min", "min"], name="free",
                storage_path=str(tmp_path), verbose=0, max_concurrent=1)
    figure = plot_data.pareto_front(rs, [A, B], ["min", "min"])
    assert trace(figure, "infeasible") is None
    front = trace(figure, "front")
    assert front is not None and front["meta"]["trial_ids"] == [t.id for t in rs.pareto_front()] == [1]


# -- tunesmith show's default order ------------------------------------------------------------------------------

LOSS_MEM = [(0.1, 16.0), (0.5, 4.0), (0.9, 2.0), (0.5, 3.0), (0.05, 30.0)]  # (loss, memory_gb); memory_gb <= 8


def loss_train(config: dict[str, Any]) -> None:
    loss, mem = LOSS_MEM[config["i"]]
    ts.report({"loss": loss, "acc": -loss, "memory_gb": mem})


def shown_ids(name: str, *options: str) -> list[int]:
    """The trial ids `tunesmith show` lists, in its order: from the table (ranked from the store's light rows)
    and from --json (ranked from every trial read)."""
    table = invoke("show", name, *options)
    assert table.exit_code == 0, table.output
    rows = [int(m) for m in re.findall(r"^\s*trial_(\d{5})\s", table.output, re.M)]
    listed = invoke("show", name, "--json", *options)
    assert listed.exit_code == 0, listed.output
    assert [t["id"] for t in json.loads(listed.output)["trials"]] == rows
    return rows


@pytest.mark.parametrize(("metric", "mode"), [("loss", "min"), ("acc", "max")])
def test_show_lists_trials_in_result_best_order_feasible_first(metric: str, mode: str) -> None:
    rs = ts.run(loss_train, {"i": ts.grid(list(range(len(LOSS_MEM))))}, metric=metric, mode=mode,
                name=f"cons_{metric}", verbose=0, max_concurrent=1, constraints=memory)
    by_i = {t.config["i"]: t.id for t in rs.trials}
    ranked = [t.id for t in rs.top(len(rs.trials))]
    # feasible first (loss 0.5 twice: the lower id first, as top() breaks ties, in either mode), then the
    # infeasible trials, best first among them
    assert ranked == [by_i[1], by_i[3], by_i[2]] and rs.best.id == by_i[1]
    assert shown_ids(rs.name) == ranked + [by_i[4], by_i[0]]
    # --sort is the order asked for, feasibility aside
    assert shown_ids(rs.name, "--sort", "loss") == [by_i[4], by_i[0], by_i[1], by_i[3], by_i[2]]
    assert shown_ids(rs.name, "--sort", "-loss") == [by_i[2], by_i[3], by_i[1], by_i[0], by_i[4]]
    assert shown_ids(rs.name, "--sort", "id") == sorted(by_i.values())


def test_show_of_a_multi_objective_constrained_run_ranks_by_its_first_metric_feasible_first() -> None:
    rs = ts.run(mo_train, {"i": ts.grid(list(range(len(MO))))}, metric=[B, A], mode=["min", "min"], name="mo_show",
                verbose=0, max_concurrent=1, constraints=memory)
    by_i = {t.config["i"]: t.id for t in rs.trials}
    ranked = [t.id for t in rs.top(len(rs.trials), metric=B)]
    assert ranked == [by_i[2], by_i[1], by_i[3]]
    assert shown_ids(rs.name) == ranked + [by_i[0]]


def test_show_of_a_run_without_constraints_breaks_ties_as_top(results_dir: Any) -> None:
    rs = ts.run(loss_train, {"i": ts.grid(list(range(len(LOSS_MEM))))}, metric="acc", mode="max", name="ties",
                verbose=0, max_concurrent=1)
    assert shown_ids(rs.name) == [t.id for t in rs.top(len(rs.trials))]


# -- load(metric=, mode=) ------------------------------------------------------------------------------------------


def two_train(config: dict[str, Any]) -> None:
    ts.report({"loss": config["x"], "acc": config["x"] * 2, "latency": 1 - config["x"]})


@pytest.fixture
def two(tmp_path: Any) -> str:
    rs = ts.run(two_train, {"x": ts.grid([0.2, 0.5, 0.8])}, metric=["loss", "acc"], mode=["min", "max"], name="two",
                storage_path=str(tmp_path), verbose=0, max_concurrent=1)
    return rs.path


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"metric": ["loss", "acc"], "mode": "min"}, r"mode must be a list of 2 'min'/'max' values.*got 'min'"),
    ({"mode": "max"}, r"mode must be a list of 2 'min'/'max' values, one per metric in \['loss', 'acc'\]"),
    ({"mode": ["max"]}, r"mode must be a list of 2"),
    ({"metric": ["loss", "acc"], "mode": ["min"]}, r"mode must be a list of 2"),
    ({"metric": "latency"}, r"mode: 'latency' is not one of the experiment's metrics \['loss', 'acc'\]"),
    ({"metric": ["loss", "latency"]}, r"mode: 'latency' is not one of the experiment's metrics"),
    ({"metric": "loss", "mode": "up"}, r"mode must be 'min' or 'max'"),
    ({"metric": ["loss", "acc"], "mode": ["min", "up"]}, r"mode\[1\] \(for metric 'acc'\)"),
    ({"metric": 3}, r"metric must be the name"),
    ({"metric": ["loss", "loss"], "mode": ["min", "min"]}, r"metric\[1\]: 'loss' is listed twice"),
])
def test_load_checks_metric_and_mode_as_run_does(two: str, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ts.ConfigError, match=match):
        ts.load(two, **kwargs)
    with pytest.raises(ts.ConfigError, match=match):
        ResultSet(two, **kwargs)


def test_load_of_a_single_objective_run_refuses_a_list_of_modes(tmp_path: Any) -> None:
    rs = ts.run(two_train, {"x": ts.grid([0.2, 0.8])}, metric="loss", mode="min", name="single",
                storage_path=str(tmp_path), verbose=0)
    with pytest.raises(ts.ConfigError, match="mode must be 'min' or 'max' when metric is given, got"):
        ts.load(rs.path, mode=["max"])
    with pytest.raises(ts.ConfigError, match=r"mode: 'acc' is not one of the experiment's metrics \['loss'\]"):
        ts.load(rs.path, metric=["loss", "acc"])  # acc's mode is unknown
    # a consistent override re-ranks, as the docstring says
    assert ts.load(rs.path, mode="max").best.config["x"] == 0.8
    assert ts.load(rs.path, metric="latency").best.config["x"] == 0.8  # the experiment's mode, for latency
    assert ts.load(rs.path, metric="acc", mode="max").best.config["x"] == 0.8


def test_load_takes_each_listed_metric_s_own_mode(two: str) -> None:
    swapped = ts.load(two, metric=["acc", "loss"])
    assert swapped.modes == ["max", "min"]  # not the experiment's modes in its own order
    assert ts.load(two, metric="acc").best.config["x"] == 0.8
    assert ts.load(two, metric=["acc", "loss"], mode=["min", "min"]).modes == ["min", "min"]  # given: kept
    assert [t.id for t in ts.load(two, mode=["min", "min"]).pareto_front()] == [1]  # loss and acc both low
    assert [t.id for t in swapped.pareto_front()] == [t.id for t in ts.load(two).pareto_front()] == [1, 2, 3]


def test_one_metric_in_a_list_is_the_single_metric(two: str, tmp_path: Any) -> None:
    """``load(metric=["acc"])`` ranks by acc as ``metric="acc"`` does: ``best`` is its best, not refused as a
    multi-objective result set."""
    one = ts.load(two, metric=["acc"])  # acc's mode from the experiment
    assert (one.metric, one.mode, one.best.config["x"]) == ("acc", "max", 0.8)
    assert ts.load(two, metric=["loss"], mode=["max"]).best.config["x"] == 0.8
    rs = ts.run(two_train, {"x": ts.grid([0.2, 0.8])}, metric="loss", mode="min", name="single",
                storage_path=str(tmp_path), verbose=0)
    assert ts.load(rs.path, metric=["loss"]).best.config["x"] == 0.2
    assert ts.load(rs.path, metric=("latency",), mode="min").best.config["x"] == 0.8


@pytest.mark.parametrize(("metric", "mode"), [(["loss"], ["min"]), (("loss",), "min")], ids=["lists", "tuple"])
def test_run_with_one_metric_in_a_list_is_the_single_metric(tmp_path: Any, metric: Any, mode: Any) -> None:
    """``run(metric=["loss"], mode=["min"])`` optimises loss as ``metric="loss"`` does, as ``load`` reads one
    metric in a list: ``best`` answers, not refused as a multi-objective experiment of one metric."""
    space = {"x": ts.grid([0.8, 0.2])}
    rs = ts.run(two_train, space, metric=metric, mode=mode, name="one", storage_path=str(tmp_path), verbose=0)
    assert (rs.metric, rs.mode, rs.best.config["x"], rs.get_best().config["x"]) == ("loss", "min", 0.2, 0.2)
    assert ts.load(rs.path).best.config["x"] == 0.2
    # stored as the single metric: it resumes with either spelling
    again = ts.run(two_train, space, metric="loss", mode="min", name="one", storage_path=str(tmp_path), verbose=0,
                   resume=True)
    assert again.best.config["x"] == 0.2


def test_an_experiment_stored_with_one_metric_in_a_list_reads_and_resumes_as_the_single_metric(tmp_path: Any) -> None:
    """An experiment an earlier tunesmith stored with ``metric=["loss"]`` (its spec keeps the lists) loads with a
    ``best`` and resumes with either spelling."""
    from tunesmith.store.sqlite import STORE_FILE, Store

    space = {"x": ts.grid([0.8, 0.2])}
    rs = ts.run(two_train, space, metric="loss", mode="min", name="old", storage_path=str(tmp_path), verbose=0)
    store = Store(str(tmp_path / "old" / STORE_FILE))
    with store.transaction() as db:  # as the earlier version stored it
        store.set_meta(db, "spec", {**store.meta()["spec"], "metric": ["loss"], "mode": ["min"]})
    store.close()
    assert ts.load(rs.path).best.config["x"] == 0.2
    for metric, mode in ((["loss"], ["min"]), ("loss", "min")):
        again = ts.run(two_train, space, metric=metric, mode=mode, name="old", storage_path=str(tmp_path),
                       verbose=0, resume=True)
        assert (again.metric, again.best.config["x"]) == ("loss", 0.2)
