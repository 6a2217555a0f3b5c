"""A training run's label ids stored in little space: id ranges, and each run as a change from an earlier one.

A run trains on every label of its project at that moment (less any held back), and while training
is cheap one run follows each label. Storing each run's ids whole grows with the square of the
labels: 10,000 labels make 10,000 runs of up to 10,000 ids, some 50 million numbers. Here a run is
stored as the ids added and removed since a base run, as ranges of consecutive ids, and a run is
stored whole (a keyframe, no base) when it has no earlier run, when its chain of bases is already
``MAX_CHAIN`` long, or when its change is no smaller than its whole. Reading a run's ids then
reads at most ``MAX_CHAIN`` + 1 stored runs, and the stored numbers grow about linearly with the labels.

The stored form is ``{"base": run id or None, "added": ranges, "removed": ranges, "count": ids}``,
each range ``[first, last]`` inclusive, sorted and apart.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

# The most runs a reader walks back through before a keyframe.
MAX_CHAIN = 100


def ranges(ids: Iterable[int]) -> list[list[int]]:
    """Sorted distinct ids as ``[first, last]`` ranges of consecutive ids."""
    out: list[list[int]] = []
    for i in sorted(set(ids)):
        if out and i == out[-1][1] + 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return out


def expanded(id_ranges: Sequence[Sequence[int]]) -> list[int]:
    """The ids of ``ranges``, sorted."""
    return [i for first, last in id_ranges for i in range(first, last + 1)]


def stored(ids: Iterable[int], *, base_id: int | None = None, base_ids: Iterable[int] = (), chain: int = 0) -> dict:
    """The stored form of a run's ``ids``: the change from its base (``base_ids``, a chain of ``chain``
    runs down to a keyframe) or, when that saves nothing or the chain is long enough, the ids whole."""
    current = set(ids)
    whole = {"base": None, "added": ranges(current), "removed": [], "count": len(current)}
    if base_id is None or chain >= MAX_CHAIN:
        return whole
    previous = set(base_ids)
    change = {"base": base_id, "added": ranges(current - previous), "removed": ranges(previous - current),
              "count": len(current)}
    if len(change["added"]) + len(change["removed"]) >= len(whole["added"]):
        return whole
    return change


def replayed(chain: Sequence[dict]) -> list[int]:
    """A run's ids from its stored form and its bases': ``chain`` from the keyframe up to the run."""
    if not chain or chain[0]["base"] is not None:
        raise ValueError("a chain of stored label ids starts with a keyframe")
    ids: set[int] = set()
    for link in chain:
        ids.difference_update(expanded(link["removed"]))
        ids.update(expanded(link["added"]))
    return sorted(ids)
