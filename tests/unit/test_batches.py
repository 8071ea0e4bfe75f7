"""flotilla.batches: batches by count and by bytes."""

from __future__ import annotations

import pytest

from flotilla.batches import split_by_size


def test_small_items_are_cut_by_count() -> None:
    assert split_by_size([1] * 5, max_count=2, max_bytes=100) == [
        range(0, 2),
        range(2, 4),
        range(4, 5),
    ]


def test_large_items_are_cut_by_bytes_and_one_too_big_goes_alone() -> None:
    sizes = [30, 30, 50, 200, 10]
    batches = split_by_size(sizes, max_count=200, max_bytes=100)
    assert batches == [range(0, 2), range(2, 3), range(3, 4), range(4, 5)]
    assert [i for b in batches for i in b] == list(range(len(sizes)))


def test_nothing_makes_no_batch_and_bounds_must_be_positive() -> None:
    assert split_by_size([], max_count=1, max_bytes=1) == []
    with pytest.raises(ValueError, match="must be positive"):
        split_by_size([1], max_count=0, max_bytes=1)
