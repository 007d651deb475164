"""Value classes without ``@dataclass``: ``Record`` (mutable) and ``FrozenRecord`` (immutable, hashable).

``@dataclass`` writes each class's methods as source text and compiles it when the class is created, in every
process that imports it: for the score of classes a run imports before its first result (the domains, the
scheduler's decisions, ``Result``, ``TrialView``, ``Launch``, ``Objective``), the largest share of tunesmith's
own import time (issue 19 row 11, start to first result). Those classes derive from these instead: ``repr``,
``==`` and, frozen, immutability and ``hash`` read the class's ``_fields`` (what a dataclass compares and
shows); each class writes its own ``__init__``, so its signature stays what users read and mypy checks.
Classes off that path (``TrialResult``, the plots', the searchers') stay dataclasses.
"""

from __future__ import annotations

from typing import Any, ClassVar


class Record:
    """A class whose ``_fields`` make its ``repr`` and ``==`` (as a dataclass's): equal when of the same class
    with equal fields; unhashable, as it can change."""

    _fields: ClassVar[tuple[str, ...]] = ()

    def _set(self, **values: Any) -> None:
        """What ``__init__`` sets: one update of the instance's dict (not through ``__setattr__``, which a
        frozen record refuses)."""
        self.__dict__.update(values)

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__qualname__}({shown})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]  # same class

    def __replace__(self, **changes: Any) -> Any:
        """A copy with ``changes`` to its attributes (``copy.replace`` from Python 3.13, as a dataclass's).

        Raises:
            TypeError: naming a name that is not one of its attributes.
        """
        unknown = sorted(set(changes) - set(vars(self)))
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {unknown[0]!r}; it has {list(vars(self))}")
        new = object.__new__(type(self))
        vars(new).update(vars(self), **changes)
        return new

    # defining __eq__ without __hash__ makes the class unhashable (its __hash__ is None), as it can change


class FrozenRecord(Record):
    """A ``Record`` that cannot change once made (``__init__`` sets its fields with ``_set``), hashed by its
    fields (a field that is a list or dict makes it unhashable, as in a frozen dataclass)."""

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} cannot be changed: cannot assign to {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} cannot be changed: cannot delete {name!r}")

    def __hash__(self) -> int:
        return hash(self._values())
