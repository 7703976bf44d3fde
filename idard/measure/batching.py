"""How the SR samples of one image are grouped into model calls: the one rule that both
the evaluator (which makes the calls) and the planner (which splits work units along
them) follow, so a planned unit is always exactly one call."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

T = TypeVar("T")


def model_calls(items: Sequence[T], seeds_of: Callable[[T], Sequence[Hashable]], max_batch: int) -> list[list[T]]:
    """``items`` (one LR image each) grouped as model calls: LR images that share their
    seeds go through one call together, ``max_batch // len(seeds)`` of them at most (at
    least one), so a call never holds more than ``max_batch`` samples unless one LR image's
    seeds alone do."""
    by_seeds: dict[tuple, list[T]] = {}
    for item in items:
        by_seeds.setdefault(tuple(seeds_of(item)), []).append(item)
    calls: list[list[T]] = []
    for seeds, group in by_seeds.items():
        per_call = max(1, max_batch // max(len(seeds), 1))
        calls += [group[start : start + per_call] for start in range(0, len(group), per_call)]
    return calls
