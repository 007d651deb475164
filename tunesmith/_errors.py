"""Errors that users see."""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad input to tunesmith (a space, a stop rule, an argument, a reported metric).

    The message names the offending key or argument and says what was expected. Raised before any
    trial starts wherever the input can be checked up front.
    """


class TrialError(RuntimeError):
    """Raised by ``run(..., raise_on_failed_trial=True)`` when trials ended in ERROR."""
