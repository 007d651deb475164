"""Whether tunesmith is importing the user's code now: a worker loading the training function (its module is
imported by name), the command line loading ``FILE.py:FN``. A ``run()`` called then is a script's top level without
``if __name__ == "__main__":``, which would run a whole experiment at import, in every worker, whose own workers
would import it again (processes without end): ``run`` refuses it (``check``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tunesmith._errors import ConfigError

_what: str | None = None  # what is being imported, while it is


@contextlib.contextmanager
def importing(what: str) -> Iterator[None]:
    """While the body runs, ``run()`` is refused, naming ``what`` (the file or function being loaded)."""
    global _what
    before, _what = _what, what
    try:
        yield
    finally:
        _what = before


def check() -> None:
    """Raise a ConfigError if tunesmith is importing the user's code (``importing``)."""
    if _what is not None:
        raise ConfigError(f"run() was called while {_what} was being imported: a script's experiment goes under "
                          f'`if __name__ == "__main__":`, or each process that imports the script to load the '
                          f"training function (the command line, every worker) runs another experiment")
