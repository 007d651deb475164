"""The live dashboard in a notebook cell: what :func:`tunesmith.dashboard.show` returns."""

from __future__ import annotations

import html


class DashboardFrame:
    """The live dashboard in a notebook cell: an ``<iframe>`` of ``url`` (escaped)."""

    def __init__(self, url: str, height: int = 600) -> None:
        self.url = url
        self.height = height

    def _repr_html_(self) -> str:
        # the link too: a dashboard that refuses to be framed (its CSP) is still one click away
        url = html.escape(self.url, quote=True)
        return (f'<iframe src="{url}" width="100%" height="{int(self.height)}" style="border:1px solid #ddd">'
                f'</iframe><div><a href="{url}" target="_blank" rel="noopener">open the dashboard: {url}</a></div>')

    def __repr__(self) -> str:
        return f"tunesmith dashboard: {self.url}"
