"""Writing files in folders that someone else may have made (a shared or downloaded experiment folder).

A name such as ``report.html.tmp`` or ``params.json`` in such a folder may already be a symbolic link to a file
elsewhere (``~/.bashrc``); opening it for writing would write there. So a file is replaced through a fresh
name created with ``O_EXCL | O_NOFOLLOW`` (never an existing file or link) and renamed over the final name
(which replaces a link, not its target), and a file appended to is opened with ``O_NOFOLLOW``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from typing import IO, Any


@contextlib.contextmanager
def replacing(path: str, mode: str = "w", **open_args: Any) -> Iterator[IO[Any]]:
    """A new file to write ``path``'s next content into; renamed over ``path`` when the block ends without an
    error (a reader never sees half a file), removed otherwise."""
    folder, base = os.path.split(path)
    while True:
        tmp = os.path.join(folder, f".{base}.{os.urandom(6).hex()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, mode, **open_args) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def open_nofollow(path: str, flags: int, mode: int = 0o644) -> int:
    """``os.open(path, flags | O_NOFOLLOW)``; a symbolic link found at ``path`` is removed (the link, not what
    it points to) and the file created in its place."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW, mode)
    except OSError as e:
        if e.errno != errno.ELOOP or not os.path.islink(path):
            raise
    os.unlink(path)
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CREAT | os.O_EXCL, mode)


def open_log(path: str) -> int:
    """A trial's ``output.log`` opened to append, never through what is in its place: a symbolic link (a folder
    someone else made may link it to any file of the user's, there or not yet) or a FIFO is removed (the link,
    never its target) and a new file made there. A FIFO is opened without blocking, so no reader is waited for
    (one nobody reads would block the writer for good). The local worker writes its trial's log with it, and the
    Ray driver its copy of what a trial on another node printed."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.ENXIO):  # ENXIO: a FIFO nobody reads
            raise
    else:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
        os.close(fd)  # a FIFO someone reads, a device
    os.unlink(path)
    return os.open(path, flags | os.O_EXCL, 0o644)
