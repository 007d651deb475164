"""The experiment page's newer views in a real headless Chromium, over a finished PBT run served by a real
dashboard: the lineage graph, parameter importance, the timeline with CPUs in use, and the Ray node view (the
placement events written as the driver writes them on the Ray backend); no console error, markup never run."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pytest
from browser_helpers import ARGS, CHROMIUM, require_chromium

import tunesmith as ts
from tunesmith import dashboard
from tunesmith.executors.simulated import SimulatedBackend
from tunesmith.store.sqlite import Store

pytestmark = [pytest.mark.timeout(120)]
XSS = "<img src=x onerror=window.pwned=1>"


def pbt_train(config: dict[str, Any], ctx: Any) -> Any:
    state = ctx.checkpoint or {"step": 0, "loss": 1.0}
    while state["step"] < 12:
        state["step"] += 1
        state["loss"] *= 1 - 0.05 * config["lr"]
        yield ({"loss": state["loss"]}, 1.0, dict(state) if state["step"] % 3 == 0 else None)


def test_lineage_graph_importance_resources_and_nodes_are_drawn(results_dir: Any) -> None:
    require_chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    # every 5 s, not 3: an exploit at 12 s (the function's last step) clones a finished trial's last checkpoint and
    # leaves the exploited trial no result of its new config (docs/schedulers.md, "PBT history and generations"),
    # and the importance panel needs four trials with one
    pbt = ts.PBT(perturbation_interval=5, hyperparam_mutations={"lr": [0.5, 1.0, 2.0, 4.0], "note": [XSS, "b"]},
                 seed=0, time_attr="time_total_s", quantile_fraction=0.25)
    ts.run(pbt_train, space={"lr": ts.grid([0.5, 1.0, 2.0, 4.0]), "note": "a"}, metric="loss", mode="min",
           scheduler=pbt, backend=SimulatedBackend({"cpu": 4}), resources={"cpu": 1}, verbose=0, name="pbt")
    store = Store(os.path.join(str(results_dir), "pbt", "experiment.db"))
    with store.transaction() as db:  # what the controller logs on the Ray backend (tests/dashboard/test_ray_placement)
        for tid in (1, 2, 3, 4):
            store.log_event(db, "placement", tid, {"node": f"{tid % 2:056x}", "address": f"10.0.0.{tid % 2 + 1}",
                                                   "pid": 4000 + tid})
    store.close()
    board = dashboard.start(str(results_dir), port=0)
    problems: list[str] = []
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=30_000)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1600})
                page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
                page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
                page.goto(board.url + "e/pbt", wait_until="load", timeout=20_000)
                page.wait_for_selector("#plot-lineage .main-svg", timeout=15_000)
                traces = page.evaluate("() => document.getElementById('plot-lineage')._fullData.map(t => "
                                       "t.meta && t.meta.kind)")
                assert traces.count("lineage-segments") == 4 and "lineage-exploits" in traces
                page.wait_for_selector('section[data-title="Parameter importance"] .main-svg', timeout=15_000)
                kinds = page.evaluate("""() => document.querySelector('section[data-title="Trial timeline"] .plot')
                    ._fullData.map(t => t.meta && t.meta.kind)""")
                assert "resources" in kinds
                # the x axis: any reported counter (here the only other number the trials report)
                page.select_option("#x-axis", "loss")
                page.wait_for_function("() => { var d = document.getElementById('plot-curves');"
                                       " return d.layout && d.layout.xaxis.title.text === 'loss' && d.data.length"
                                       " && d.data[0].x.every(v => v < 1.01); }", timeout=10_000)
                page.select_option("#final", "best")
                page.wait_for_selector("#node-table tbody tr", timeout=10_000)
                assert page.locator("#node-table tbody tr").count() == 2
                assert page.locator("#node-table", has_text="10.0.0.2").count() == 1
                page.wait_for_selector("#trials td.node", timeout=10_000)
                assert page.locator('#trials tr[data-trial="3"] td.node').inner_text() == "10.0.0.2 pid 4003"
                page.goto(board.url + "e/pbt/t/3", wait_until="load", timeout=20_000)
                page.wait_for_selector("#config", timeout=10_000)
                assert "10.0.0.2 pid 4003" in page.inner_text("main")
                assert page.evaluate("() => typeof window.pwned") == "undefined"
            finally:
                browser.close()
    finally:
        board.stop()
    assert problems == []


MARKED = '<a href="https://evil.example/">m</a>%{y}'


def marked_train(config: dict[str, Any], ctx: Any) -> Any:
    for step in range(3):
        yield ({MARKED: config["lr"] * step, "steps<b>": step}, 1.0, None)


def test_the_live_curves_draw_metric_and_counter_names_as_text(results_dir: Any) -> None:
    """The experiment page's live learning curves put the metric and the x counter in their axis titles: shown as
    written, never read by plotly.js as a link, a tag or a placeholder."""
    ts.run(marked_train, space={"lr": ts.grid([0.5, 1.0])}, metric=MARKED, mode="max",
           backend=SimulatedBackend({"cpu": 2}), verbose=0, name="marked")
    with _served_page(results_dir) as (board, page):
        page.goto(board.url + "e/marked", wait_until="load", timeout=20_000)
        page.wait_for_selector("#plot-curves .main-svg .ytitle", timeout=15_000)
        title = page.evaluate("() => document.querySelector('#plot-curves .ytitle').textContent")
        assert title == MARKED
        assert page.evaluate("() => document.querySelectorAll('#plot-curves a').length") == 0


@contextlib.contextmanager
def _served_page(results_dir: Any) -> Iterator[tuple[Any, Any]]:
    """(the dashboard serving ``results_dir``, a page of a headless Chromium): both closed after."""
    require_chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    board = dashboard.start(str(results_dir), port=0)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=30_000)
            try:
                yield board, browser.new_page(viewport={"width": 1280, "height": 1200})
            finally:
                browser.close()
    finally:
        board.stop()


ODD = "odd\x1b[31mname\nx\ry"  # a folder renamed by hand: ESC, newline, carriage return
ODD_SHOWN = "odd\\x1b[31mname\\nx\\x0dy"  # as printable(one_line=True) writes it


def one_loss(config: dict[str, Any]) -> None:
    ts.report({"loss": config["x"]})


def test_an_experiment_name_with_control_characters_is_shown_escaped_and_its_pages_still_work(
        results_dir: Any) -> None:
    """Its pages' title and the name the page shows are escaped as the report writes them (``\\x1b``, ``\\n``),
    no raw control character in the page's HTML, and the page still asks the API under the name itself (its
    trials are listed, the trial page shows the trial)."""
    from urllib.parse import quote

    ts.run(one_loss, space={"x": ts.grid([0.1, 0.2])}, metric="loss", mode="min", verbose=0, name="plain")
    os.rename(os.path.join(str(results_dir), "plain"), os.path.join(str(results_dir), ODD))
    with _served_page(results_dir) as (board, page):
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        address = board.url + "e/" + quote(ODD, safe="")
        page.goto(address, wait_until="load", timeout=20_000)
        page.wait_for_selector('#trials tr[data-trial="2"]', timeout=15_000)  # its API asked by its name
        assert page.title() == f"{ODD_SHOWN} - tunesmith"
        assert page.inner_text("h1") == ODD_SHOWN
        assert page.evaluate("() => document.querySelector('#crumb a').getAttribute('href')") == (
            "/e/" + quote(ODD, safe=""))
        page.goto(address + "/t/1", wait_until="load", timeout=20_000)
        page.wait_for_selector("#log", timeout=10_000)
        assert page.title() == f"{ODD_SHOWN} trial 1 - tunesmith"
        assert page.inner_text("h1") == f"{ODD_SHOWN} / trial_00001"
        served = [page.request.get(u).text() for u in (address, address + "/t/1")]  # the HTML as sent
        assert not problems, problems
    for text in served:  # the page's head and body attributes (the scripts fill the rest)
        head = text.split("<main", 1)[0]
        assert "<title>" in head and 'data-experiment="' in head, head
        assert "\x1b" not in head and "\r" not in head and "name\nx" not in head, head


ODD_METRIC = "loss\x1b[2J\t<b>x</b>"  # a metric's name, a config value and a text result with control characters
ODD_VALUE = "v\x07\u202e<img src=x onerror=window.pwned=1>"
RAW_CONTROLS = "() => [...document.body.textContent].filter(c => /[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f\\u202a-\\u202e" \
               "\\u2066-\\u2069]/.test(c)).map(c => c.charCodeAt(0))"


def odd_train(config: dict[str, Any]) -> None:
    ts.report({ODD_METRIC: config["x"], "note": config["note"]})


def test_every_page_shows_the_control_characters_of_names_metrics_and_values_escaped(results_dir: Any) -> None:
    """The list, experiment and trial pages draw user strings from the API as text with their control
    characters written as escapes (``\\x1b``, as ``_display.printable`` writes them): none reaches the page raw,
    and markup in them is never run."""
    from urllib.parse import quote

    from tunesmith._display import printable

    ts.run(odd_train, space={"x": ts.grid([0.1, 0.2]), "note": ODD_VALUE}, metric=ODD_METRIC, mode="min",
           verbose=0, name="plain")
    os.rename(os.path.join(str(results_dir), "plain"), os.path.join(str(results_dir), ODD))
    metric_shown, value_shown = printable(ODD_METRIC, one_line=True), printable(ODD_VALUE, one_line=True)
    with _served_page(results_dir) as (board, page):
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.goto(board.url, wait_until="load", timeout=20_000)
        page.wait_for_selector("#experiments tr[data-name] a", timeout=15_000)
        cells = page.evaluate("() => [...document.querySelectorAll('#experiments tr[data-name] td')]"
                              ".map(td => td.textContent)")
        assert cells[0] == ODD_SHOWN and cells[4].startswith(f"{metric_shown} = 0.1 "), cells
        assert page.evaluate(RAW_CONTROLS) == []
        page.goto(board.url + "e/" + quote(ODD, safe=""), wait_until="load", timeout=20_000)
        page.wait_for_selector('#trials tr[data-trial="2"]', timeout=15_000)
        table = page.inner_text("#trials")
        assert value_shown in table, table
        assert page.evaluate(RAW_CONTROLS) == []
        page.goto(board.url + "e/" + quote(ODD, safe="") + "/t/1", wait_until="load", timeout=20_000)
        page.wait_for_selector("#log", timeout=10_000)
        text = page.evaluate("() => document.getElementById('main').textContent")
        assert value_shown in text and metric_shown in text, text
        assert page.evaluate(RAW_CONTROLS) == []
        assert page.evaluate("() => window.pwned") is None
        assert not problems, problems


def test_the_dashboard_script_writes_no_markup() -> None:
    """API data reaches the page as text (textContent, text nodes): the script never parses a string as HTML."""
    from importlib import resources

    script = (resources.files("tunesmith.dashboard") / "static" / "dashboard.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "DOMParser",
                 "createContextualFragment", "srcdoc"):
        assert sink not in script, sink
