"""``python -m tunesmith``: the ``tunesmith`` command (as ``python -m tunesmith.cli``), for where the console script
is not on PATH."""

from tunesmith.cli import main

if __name__ == "__main__":
    main()
