"""Plots of an experiment's results: pure plot-data functions (``data``) and a self-contained HTML report.

    from tunesmith.plots import write_report
    write_report(ts.load("mnist-asha"), "report.html")
"""

from __future__ import annotations

from tunesmith.plots.report import write_report

__all__ = ["write_report"]
