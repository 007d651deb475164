"""A trial's epochs between PBT exploits, from the store's exploit events: which config produced each of its
stored results. An exploit moves the trial's rows up to the cloned checkpoint's iteration into its new generation
though its old config produced them; the resume's replay (``_replay``) and ``dataframe(all_results=True)`` tell
them apart here."""

from __future__ import annotations

from typing import Any, NamedTuple


class Epoch(NamedTuple):
    """A stretch of a trial's life between two PBT exploits: the exploit that began it (its generation, the
    cloned checkpoint's iteration), the config the trial had through it, and the iterations of its own
    checkpoints the *next* exploit dropped from the index (their results stayed in this generation)."""

    generation: int
    cloned: int
    config: dict[str, Any]
    dropped: frozenset[int]


def exploits(events: list[tuple[int, float, str, int | None, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Each trial's exploit events' data, in the order they happened."""
    out: dict[int, list[dict[str, Any]]] = {}
    for _seq, _when, kind, tid, data in events:
        if kind == "exploit" and tid is not None and isinstance(data, dict):
            out.setdefault(tid, []).append(data)
    return out


def epochs(config: dict[str, Any], exploits: list[dict[str, Any]]) -> list[Epoch]:
    """A trial's epochs: the suggested config first (the first exploit's ``old_config``), then each exploit's. A
    store that did not record them (schema 1: no ``old_config`` nor ``generation``) gives the latest config
    throughout."""
    if not exploits or any(not isinstance(e.get("generation"), int) or not isinstance(e.get("old_config"), dict)
                           or not isinstance(e.get("config"), dict) or not isinstance(e.get("iteration"), int)
                           for e in exploits):
        return [Epoch(0, 0, config, frozenset())]
    begins = [(0, 0, exploits[0]["old_config"])] + [(e["generation"], e["iteration"], e["config"]) for e in exploits]
    ends = [frozenset(i for i in e.get("dropped_checkpoints") or () if isinstance(i, int)) for e in exploits]
    ends.append(frozenset())
    return [Epoch(g, it, c, d) for (g, it, c), d in zip(begins, ends)]


def epoch_of(generation: int, iteration: int, epochs: list[Epoch]) -> int:
    """The epoch a row (of this generation, at this iteration) was reported in. Reported after exploit k (which
    started generation g_k from iteration it_k), a row is past it_k and its generation is g_k or later (an exploit
    moves the rows up to its cloned iteration into its generation); a row from before exploit k is at or below
    it_k, or kept an older generation."""
    for index in range(len(epochs) - 1, 0, -1):
        if generation >= epochs[index].generation and iteration > epochs[index].cloned:
            return index
    return 0
