"""Cutting a list of payloads into batches that stay below Temporal's payload limits."""

from __future__ import annotations

from collections.abc import Sequence


def split_by_size(sizes: Sequence[int], *, max_count: int, max_bytes: int) -> list[range]:
    """Consecutive index ranges over ``sizes``: each at most ``max_count`` items and, unless
    one item alone is bigger, at most ``max_bytes`` in total (such an item goes alone)."""
    if max_count < 1 or max_bytes < 1:
        raise ValueError(f"max_count {max_count} and max_bytes {max_bytes} must be positive")
    batches: list[range] = []
    start, total = 0, 0
    for index, size in enumerate(sizes):
        if index > start and (index - start >= max_count or total + size > max_bytes):
            batches.append(range(start, index))
            start, total = index, 0
        total += size
    if start < len(sizes):
        batches.append(range(start, len(sizes)))
    return batches
