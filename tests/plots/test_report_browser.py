"""The HTML report in a real headless Chromium: every plot drawn, no console errors, no network."""

from __future__ import annotations

import json
from typing import Any

import pytest
from browser_helpers import ARGS, CHROMIUM, require_chromium, watched_page

from tunesmith.plots.report import write_report

pytestmark = [pytest.mark.timeout(90)]


@pytest.fixture(autouse=True)
def _chromium() -> None:
    require_chromium()


def _report(tmp_path: Any) -> tuple[str, list[str]]:
    """A report with every kind of plot: grid sweep with seeds, two metrics, a PBT exploit, a failure."""
    from test_plot_data import curve, make_experiment  # same folder; tests have no packages

    from tunesmith.space import choice, grid, loguniform

    trials = []
    n = 0
    for lr in (0.1, 0.01, 0.001):
        for seed in (0, 1):
            n += 1
            width = 32 if n % 2 else 64
            trials.append({"id": n, "config": {"lr": lr, "seed": seed, "width": width, "wd": 10 ** -(n % 4 + 1)},
                           "status": "TERMINATED", "end": 6.0 + n,
                           "results": [{**r, "latency": width / 10 + seed} for r in
                                       curve([lr * 100 / i + seed for i in range(1, 6)], dt=1.0 + n / 10)]})
    trials[1]["status"] = "ERROR"
    trials.append({"id": 7, "config": {"lr": 0.1, "seed": 2, "width": 32, "wd": 0.01}, "status": "TERMINATED",
                   "parent": (3, 2), "end": 9.0,
                   "results": curve([9.0, 8.0]) + curve([0.5, 0.4, 0.3], start=3, t0=3.0)})
    space = {"lr": grid([0.1, 0.01, 0.001]), "seed": grid([0, 1, 2]), "width": choice([32, 64]),
             "wd": loguniform(1e-4, 1e-1)}
    rs = make_experiment(tmp_path, "browser", trials, space=space)
    path = str(tmp_path / "report.html")
    titles = write_report(rs, path, pareto=[("loss", "min"), ("latency", "min")])
    return path, titles


def test_report_draws_every_plot_offline_without_errors(tmp_path: Any) -> None:
    path, titles = _report(tmp_path)
    assert len(titles) == 9  # every kind of plot is in this report
    _check_drawn(path, titles)


def test_a_big_report_draws_its_many_points_with_webgl(tmp_path: Any) -> None:
    from test_report_scale import build  # same folder; tests have no packages

    rs = build(tmp_path, "big", 30, 1_000)  # 30,000 results: best so far's points go WebGL
    path = str(tmp_path / "report.html")
    titles = write_report(rs, path)
    drawn = _check_drawn(path, titles)
    webgl = {titles[int(d["id"].split("-")[1])] for d in drawn if d["canvases"]}
    assert "Best so far" in webgl
    assert "Learning curves" not in webgl  # as many points, but lines: SVG, simplified by plotly.js


def _check_drawn(path: str, titles: list[str]) -> list[dict[str, Any]]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    problems: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=30_000)
        try:
            page = watched_page(browser, problems, requests, viewport={"width": 1280, "height": 900})
            page.goto("file://" + path, wait_until="load", timeout=30_000)
            # plotly.js marks each drawn div js-plotly-plot and gives it its main SVG layers
            page.wait_for_function(
                "n => document.querySelectorAll('.plot.js-plotly-plot').length === n &&"
                " [...document.querySelectorAll('.plot')].every(d => d.querySelector('.main-svg'))",
                arg=len(titles), timeout=30_000)
            drawn = page.evaluate("""() => [...document.querySelectorAll('.plot')].map(d => ({
                id: d.id, svgs: d.querySelectorAll('.main-svg').length,
                traces: (d._fullData || []).length, given: (d.data || []).length,
                marks: d.querySelectorAll('.scatterlayer .trace, .barlayer .trace, .gl-container canvas').length,
                canvases: d.querySelectorAll('.gl-container canvas').length}))""")
            headings = page.eval_on_selector_all("section h2", "els => els.map(e => e.textContent)")
            text = page.inner_text("body")
        finally:
            browser.close()

    assert problems == []
    assert "WebGL is not supported" not in text  # plotly's message where a WebGL plot could not draw
    assert [r for r in requests if not r.startswith("file://")] == []
    assert headings == titles
    assert page_count(drawn) == len(titles)
    for plot in drawn:
        assert plot["svgs"] >= 1, plot
        assert plot["traces"] == plot["given"] > 0, plot  # every trace of the figure reached plotly
        assert plot["marks"] > 0, plot  # something was drawn: SVG traces or the WebGL canvas
    return drawn


def page_count(drawn: list[dict[str, Any]]) -> int:
    return len({d["id"] for d in drawn})


# Records, from the page's start, when the browser first painted content and when each plot got its first SVG.
_TIMES = """
window.__drawn = {};
window.__paint = null;
new PerformanceObserver(list => {
  for (const e of list.getEntries()) if (e.name === 'first-contentful-paint') window.__paint = e.startTime;
}).observe({type: 'paint', buffered: true});
new MutationObserver(() => {
  for (const d of document.querySelectorAll('.plot')) {
    if (!(d.id in window.__drawn) && d.querySelector('.main-svg')) window.__drawn[d.id] = performance.now();
  }
}).observe(document, {childList: true, subtree: true});
"""


def test_the_report_paints_before_its_plots_are_all_drawn_and_draws_those_in_view_first(tmp_path: Any) -> None:
    """The page is painted (its heading, facts and the sections' titles) before every plot is drawn, and the
    plots in the window are drawn before those below it: a report whose plots take seconds (WebGL in a
    browser without a GPU) is not a blank page meanwhile."""
    path, titles = _report(tmp_path)
    drawn, paint, in_view = _timed(
        path, _TIMES, f"() => Object.keys(window.__drawn).length === {len(titles)} && window.__paint !== null",
        """() => [window.__drawn, window.__paint, [...document.querySelectorAll('.plot')].filter(d => {
            const r = d.getBoundingClientRect(); return r.top < window.innerHeight && r.bottom > 0;
        }).map(d => d.id)]""")
    assert paint < max(drawn.values()), (paint, drawn)
    below = [i for i in drawn if i not in in_view]
    assert in_view and below
    assert max(drawn[i] for i in in_view) < min(drawn[i] for i in below), drawn


def test_the_report_paints_its_text_before_plotly_js_is_evaluated(tmp_path: Any) -> None:
    """plotly.js (megabytes of script, a second or more to evaluate on a slow machine) comes after the page's
    text, so the heading and the facts show while it is evaluated."""
    path, _titles = _report(tmp_path)
    paint, plotly = _timed(path, _TIMES + """
        let plotly;
        Object.defineProperty(window, 'Plotly', {configurable: true, get: () => plotly,
            set: v => { plotly = v; window.__plotly = performance.now(); }});""",
        "() => window.__paint !== null && window.__plotly", "() => [window.__paint, window.__plotly]")
    assert paint < plotly, (paint, plotly)


def _timed(path: str, init: str, until: str, read: str) -> Any:
    """Open the report with ``init`` run before its scripts, wait until ``until`` holds, return ``read``."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=30_000)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.add_init_script(init)
            page.goto("file://" + path, wait_until="load", timeout=30_000)
            page.wait_for_function(until, timeout=30_000)
            return page.evaluate(read)
        finally:
            browser.close()


def test_user_strings_are_drawn_as_text_never_as_links_or_markup(tmp_path: Any) -> None:
    """Config keys and values, metric names holding plotly's markup (a link, italics) or a placeholder
    (``%{z}``) are drawn as they are: in the axes, legends, titles and on hover; no link on the page."""
    from test_plot_data import EVIL, KEY, METRIC, OTHER, PLAIN, markup_experiment

    rs = markup_experiment(tmp_path)
    path = str(tmp_path / "report.html")
    titles = write_report(rs, path, pareto=[(METRIC, "min"), (OTHER, "min")])
    assert "Metric against each parameter" in titles and "PBT lineage" in titles
    scatter = titles.index("Metric against each parameter")
    links, texts, hover = _timed(path, f"window.__hover = {json.dumps([f'plot-{scatter}', KEY])};", (
        f"() => document.querySelectorAll('.plot.js-plotly-plot').length === {len(titles)} &&"
        " [...document.querySelectorAll('.plot')].every(d => d.querySelector('.main-svg'))"),
        """() => {
            const d = document.getElementById(window.__hover[0]);  // hover the text parameter's first point
            const i = d.data.findIndex(t => t.meta.param === window.__hover[1]);
            Plotly.Fx.hover(d, [{curveNumber: i, pointNumber: 0}], d.data[i].xaxis + d.data[i].yaxis);
            return [document.querySelectorAll('svg a').length,
                    [...document.querySelectorAll('svg text')].map(t => t.textContent),
                    d.querySelector('.hoverlayer').textContent];
        }""")
    assert links == 0
    for user in (PLAIN, EVIL, KEY, METRIC, OTHER):
        assert any(user in t for t in texts), user
    assert not [t for t in texts if "&lt;" in t or "&quot;" in t or "&#37;" in t]  # decoded, once
    assert f"{KEY}={EVIL}" in hover and f"{METRIC}=" in hover
