"""Plots of an experiment's results: pure plot-data functions (``data``) and a self-contained HTML report.

    from tunesmith.plots import write_report
    write_report(ts.load("mnist-asha"), "report.html")

``write_report`` is imported on first access: the report reads experiments (``tunesmith.results``), which
draw these plots for a notebook (``result.plot``), so importing ``tunesmith.plots.data`` must not run it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # type checkers see the function itself
    from tunesmith.plots.report import write_report

__all__ = ["write_report"]


def __getattr__(name: str) -> Any:
    if name == "write_report":
        from tunesmith.plots.report import write_report

        return write_report
    raise AttributeError(f"module 'tunesmith.plots' has no attribute {name!r}")
