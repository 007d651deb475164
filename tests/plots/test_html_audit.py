"""The HTML outputs (the report, the notebook tables and inline figures) of a hostile experiment, in a real
headless Chromium: no script of the experiment's runs, every plot is drawn, and its strings show as they are."""

from __future__ import annotations

import os
from typing import Any

import pytest
from browser_helpers import ARGS, CHROMIUM, require_chromium, watched_page
from test_plot_data import curve, make_experiment  # same folder; tests have no packages

import tunesmith as ts
from tunesmith import _notebook
from tunesmith.plots.report import write_report
from tunesmith.store.sqlite import STORE_FILE, Store

pytestmark = [pytest.mark.timeout(120)]

# every way out of a text, a script, a comment, CDATA or an attribute; a JavaScript line break; a link
HOSTILE = ('</script><script>window.__pwned=1</script><!--]]>\u2028\u2029</textarea>"\'\\ javascript:alert(1) '
           '<img src=x onerror="window.__pwned=2;alert(2)"> <a href="javascript:window.__pwned=3">l</a> %{x}')
HOSTILE_KEY = '<img src=x onerror="window.__pwned=4">k'  # a key holds no "/" (it nests)
HOSTILE_METRIC = "</script><script>window.__pwned=5</script>loss"
# a folder renamed by hand: ts.load takes it, and its name is the experiment's
HOSTILE_NAME = "\"><img src=x onerror=\"window.__pwned=6;alert(6)\"><!--\u2028]]>\\'"


def _open(path: str, until: str) -> tuple[list[str], Any]:
    """Open ``path`` in Chromium (no network), wait until ``until`` holds; return the problems seen (console
    errors, page errors, dialogs) and what the page says: its ``__pwned`` flag, its images and javascript:
    links, and its text."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=30_000)
        try:
            page = watched_page(browser, problems, viewport={"width": 1280, "height": 900})
            page.goto("file://" + path, wait_until="load", timeout=30_000)
            page.wait_for_function(until, timeout=30_000)
            seen = page.evaluate("""() => ({
                pwned: window.__pwned === undefined ? null : window.__pwned,
                images: document.querySelectorAll('img').length,
                links: document.querySelectorAll('a').length,
                title: document.title,
                cells: [...document.querySelectorAll('td, th, caption, pre, h1, li')].map(e => e.textContent)})""")
        finally:
            browser.close()
    return problems, seen


@pytest.fixture(autouse=True)
def _chromium() -> None:
    require_chromium()


def test_a_trials_error_is_shown_by_its_newline_separated_lines_in_the_notebook_tables(tmp_path: Any) -> None:
    """A traceback's lines are separated by newlines only: an exception message holding a line or paragraph
    separator (U+2028, U+2029), a form feed or U+0085 is one line. The ResultSet table's error cell (the last
    line) showed only what came after the message's last such character, without the exception's type; the
    trial's table broke its lines there and dropped the characters."""
    message = "first\u2028second\x85third\x0cfourth\u2029fifth"

    def fails(config: dict[str, Any]) -> None:
        raise RuntimeError(message)

    rs = ts.run(fails, {"x": 1}, verbose=0)
    cells = [_notebook.result_set_html(rs), rs.trial(1)._repr_html_()]
    page = tmp_path / "cells.html"
    page.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>"
                    + "".join(f"<div class='cell'>{c}</div>" for c in cells) + "</body></html>", encoding="utf-8")
    problems, seen = _open(str(page), "() => document.querySelectorAll('.tunesmith-table').length === 2")
    assert problems == []
    shown = "RuntimeError: first\u2028second\\x85third\\x0cfourth\u2029fifth"  # controls as their escapes
    assert shown in seen["cells"]  # the ResultSet table's error cell: the whole last line
    traceback = next(c for c in seen["cells"] if c.startswith("Traceback"))
    assert traceback.split("\n")[-1] == shown


def test_a_report_and_a_notebook_table_of_no_trials_say_0_trials(tmp_path: Any) -> None:
    """An experiment without trials: "0 trials", not "0 ()" or "0 trials ()" (the counts by status, of none)."""
    rs = make_experiment(tmp_path, "empty", [])
    report = str(tmp_path / "report.html")
    assert write_report(rs, report) == []
    problems, seen = _open(report, "() => document.querySelector('table.facts') !== null")
    assert problems == []
    assert seen["cells"][seen["cells"].index("trials") + 1] == "0"
    assert "the experiment has no trials yet" in seen["cells"]
    assert "0 trials" in rs._repr_html_() and "()" not in rs._repr_html_()


def _hostile(tmp_path: Any) -> ts.ResultSet:
    """A grid over hostile values under a hostile key and metric, two seeds, a failed trial whose error is
    hostile, in a folder renamed by hand to a hostile name."""
    trials = []
    for n, (value, seed) in enumerate([(v, s) for v in (HOSTILE, "plain") for s in (0, 1)], start=1):
        trials.append({"id": n, "config": {HOSTILE_KEY: value, "seed": seed, "lr": 0.1 if value == HOSTILE else 0.01},
                       "status": "ERROR" if n == 4 else "TERMINATED",
                       "results": [{**r, HOSTILE_METRIC: r["loss"], "note": HOSTILE}
                                   for r in curve([n / i for i in range(1, 4)])]})
    rs = make_experiment(tmp_path, "hostile", trials, space={HOSTILE_KEY: ts.grid([HOSTILE, "plain"]),
                                                             "seed": ts.grid([0, 1]), "lr": ts.loguniform(1e-5, 1)},
                         metric=HOSTILE_METRIC)
    store = Store(os.path.join(rs.path, STORE_FILE))
    with store.transaction() as db:
        store.update_trial(db, 4, error=f"Traceback (most recent call last):\nValueError: {HOSTILE}")
    store.close()
    renamed = tmp_path / HOSTILE_NAME
    os.rename(rs.path, renamed)
    return ts.load(str(renamed))


def test_a_hostile_experiments_report_runs_none_of_its_scripts_and_shows_its_strings(tmp_path: Any) -> None:
    rs = _hostile(tmp_path)
    assert rs.name == HOSTILE_NAME
    report = str(tmp_path / "report.html")
    titles = write_report(rs, report)
    assert {"Learning curves", "Parameter sensitivity", "Parallel coordinates"} <= set(titles)
    problems, seen = _open(report, f"() => document.querySelectorAll('.plot .main-svg').length >= {len(titles)}")
    assert problems == []
    assert seen["pwned"] is None and seen["images"] == 0 and seen["links"] == 0
    assert seen["title"] == f"tunesmith report: {HOSTILE_NAME}"
    assert f"tunesmith report: {HOSTILE_NAME}" in seen["cells"] and HOSTILE_NAME in seen["cells"]
    assert f"{HOSTILE_METRIC} (min)" in seen["cells"]


def test_a_hostile_experiments_notebook_outputs_run_none_of_its_scripts(tmp_path: Any, monkeypatch: Any) -> None:
    rs = _hostile(tmp_path)
    monkeypatch.setattr(_notebook, "_plotly_sent", False)
    figures = [rs.plot.learning_curves(), rs.plot.sensitivity(), rs.plot.parallel_coordinates(), rs.plot.scatter(),
               rs.plot.seed_curves(), rs.plot.timeline()]
    cells = [rs._repr_html_(), rs.trial(4)._repr_html_(), *(f.to_html() for f in figures if f is not None)]
    drawn = len(cells) - 2
    assert drawn == 6
    page = tmp_path / "cells.html"
    page.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>"
                    + "".join(f"<div class='cell'>{c}</div>" for c in cells) + "</body></html>", encoding="utf-8")
    problems, seen = _open(str(page), f"() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= {drawn}")
    assert problems == []
    assert seen["pwned"] is None and seen["images"] == 0 and seen["links"] == 0
    assert HOSTILE in seen["cells"] and HOSTILE_KEY in seen["cells"] and HOSTILE_METRIC in seen["cells"]
    assert any(c.endswith(f"ValueError: {HOSTILE}") for c in seen["cells"])  # the failed trial's error cell


def test_an_all_errored_experiments_report_leaves_out_the_plots_it_has_no_point_for(tmp_path: Any) -> None:
    """Every trial failed before reporting: the sensitivity plot of its grid, the learning curves and the best so
    far were drawn as empty axes; now each is left out with the reason, as parallel coordinates are."""
    rs = make_experiment(tmp_path, "failed", [
        {"id": n, "config": {"x": x}, "status": "ERROR", "results": []} for n, x in enumerate((HOSTILE, 2), 1)],
        space={"x": ts.grid([HOSTILE, 2])})
    report = str(tmp_path / "report.html")
    titles = write_report(rs, report)
    assert titles == ["Trial timeline"]
    problems, seen = _open(report, f"() => document.querySelectorAll('.plot .main-svg').length >= {len(titles)}")
    assert problems == [] and seen["pwned"] is None
    assert "Parameter sensitivity: left out (no grid dimension besides seeds in the search space, or no trial " \
           "reported the metric)" in seen["cells"]
    for title in ("Learning curves", "Best so far"):
        assert f"{title}: left out (no trial reported the metric)" in seen["cells"], seen["cells"]
