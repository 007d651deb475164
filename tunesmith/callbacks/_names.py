"""Names a tracking tool must change: kept apart by a hash of the original name."""

from __future__ import annotations

import hashlib
from typing import Any


def hashed(name: str, clean: str, digits: int = 8, limit: int | None = None) -> str:
    """``clean`` (``name`` as a tool would take it, or changed so that it does) with ``-`` and the first ``digits``
    hex digits of ``name``'s SHA-256 at its end: two names that clean to the same one (``acc top1``, ``acc,top1``)
    stay two, and a name gets the same one every time, in every trial and run. With ``limit``, ``clean`` is cut so
    that the whole fits in ``limit`` characters."""
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:digits]
    if limit is not None:
        clean = clean[:max(0, limit - digits - 1)]
    return f"{clean}-{digest}" if clean else digest


def experiment_key(path: str) -> str:
    """A name for the experiment in ``path`` that a resume of it gives again, also after the folder was moved, and
    no other experiment gives (one made again at the same path included): a hash of the folder's name and the time
    its store was created; of the whole path when the store cannot tell (a logger used outside ``run``)."""
    import json
    import os
    import sqlite3

    from tunesmith import _layout

    created: Any = None
    store = _layout.store_path(path)
    if os.path.exists(store):
        try:
            db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
            try:
                row = db.execute("SELECT value FROM experiment WHERE key = 'created'").fetchone()
            finally:
                db.close()
            created = json.loads(row[0]) if row else None
        except (sqlite3.Error, ValueError):
            created = None
    text = f"{os.path.basename(os.path.abspath(path))}\0{created!r}" if created is not None else os.path.abspath(path)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
