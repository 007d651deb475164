"""Names a tracking tool must change: kept apart by a hash of the original name."""

from __future__ import annotations

import hashlib


def hashed(name: str, clean: str, digits: int = 8, limit: int | None = None) -> str:
    """``clean`` (``name`` as a tool would take it, or changed so that it does) with ``-`` and the first ``digits``
    hex digits of ``name``'s SHA-256 at its end: two names that clean to the same one (``acc top1``, ``acc,top1``)
    stay two, and a name gets the same one every time, in every trial and run. With ``limit``, ``clean`` is cut so
    that the whole fits in ``limit`` characters."""
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:digits]
    if limit is not None:
        clean = clean[:max(0, limit - digits - 1)]
    return f"{clean}-{digest}" if clean else digest


def experiment_key(path: str, created: float | None) -> str:
    """A name for the experiment in ``path`` that a resume of it gives again, also after the folder was moved, and
    no other experiment gives (one made again at the same path included): a hash of the folder's name and
    ``created`` (when its store was created: ``ExperimentInfo.created``); of the whole path without it (a logger
    used outside ``run``)."""
    import os

    text = f"{os.path.basename(os.path.abspath(path))}\0{created!r}" if created is not None else os.path.abspath(path)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
