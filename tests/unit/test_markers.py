"""Marker write-back: only the marked value changes, every other byte stays."""

from __future__ import annotations

import pytest

from flotilla.imagepolicy import ImageUpdate
from flotilla.markers import rewrite_markers

SHA_A = "sha256:" + "a" * 64
SHA_B = "sha256:" + "b" * 64

UPDATES = {
    "app": ImageUpdate(image="ghcr.io/org/app", tag="1.1.0", digest=SHA_B),
    "side": ImageUpdate(image="ghcr.io/org/side", tag="2.0.0"),
}


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (
            'image: ghcr.io/org/app:1.0.0 # {"$imagescan": "app"}',
            'image: ghcr.io/org/app:1.1.0 # {"$imagescan": "app"}',
        ),
        (
            '      image: "ghcr.io/org/side:1.0.0"  # {"$imagescan": "side"}',
            '      image: "ghcr.io/org/side:2.0.0"  # {"$imagescan": "side"}',
        ),
        ('  tag: 1.0.0 # {"$imagescan": "app:tag"}', '  tag: 1.1.0 # {"$imagescan": "app:tag"}'),
        (
            '  tag: \'1.0.0\' # {"$imagescan": "app:tag"}',
            '  tag: \'1.1.0\' # {"$imagescan": "app:tag"}',
        ),
        (
            'repo: old/name # {"$imagescan": "app:name"}',
            'repo: ghcr.io/org/app # {"$imagescan": "app:name"}',
        ),
        (
            f'pinned: ghcr.io/org/app:1.0.0@{SHA_A} # {{"$imagescan": "app:digest"}}',
            f'pinned: ghcr.io/org/app:1.1.0@{SHA_B} # {{"$imagescan": "app:digest"}}',
        ),
        (
            '  - ghcr.io/org/app:1.0.0 # {"$imagescan": "app"}',
            '  - ghcr.io/org/app:1.1.0 # {"$imagescan": "app"}',
        ),
        (
            '- image: ghcr.io/org/app:1.0.0 # {"$imagescan": "app"}',
            '- image: ghcr.io/org/app:1.1.0 # {"$imagescan": "app"}',
        ),
        (
            'image: x:1 #  { "$imagescan" : "app" }  ',
            'image: ghcr.io/org/app:1.1.0 #  { "$imagescan" : "app" }  ',
        ),
        (
            'image: x:1 #{"$imagescan": "app"}',
            'image: ghcr.io/org/app:1.1.0 #{"$imagescan": "app"}',
        ),
        (
            '"image": x:1 # {"$imagescan": "app"}',
            '"image": ghcr.io/org/app:1.1.0 # {"$imagescan": "app"}',
        ),
    ],
)
def test_rewrite_markers_changes_only_the_value(before: str, after: str) -> None:
    assert rewrite_markers(before + "\n", UPDATES) == (after + "\n", 1)


@pytest.mark.parametrize(
    "line",
    [
        'image: ghcr.io/org/app:1.1.0 # {"$imagescan": "app"}',
        'other: 1.0.0 # {"$imagescan": "unknown"}',
        'digest: x:1 # {"$imagescan": "side:digest"}',
        'image: x:1 # {"$imagescan": app}',
        'image: x:1 # {"$imagescan": "app"} trailing',
        'image: x:1 # {"$imagescan": "app:bogus"}',
        'image: x:1 # {"$imagescan": 5}',
        'image: x:1 # ["$imagescan"]',
        "comment: keep # not a marker",
        '# {"$imagescan": "app"}',
    ],
)
def test_rewrite_markers_leaves_other_lines_alone(line: str) -> None:
    assert rewrite_markers(line + "\n", UPDATES) == (line + "\n", 0)


def test_rewrite_markers_keeps_every_other_byte() -> None:
    text = (
        "# header\r\n"
        "spec:\r\n"
        '  image: ghcr.io/org/app:1.0.0 # {"$imagescan": "app"}\r\n'
        "  \tweird:   spacing  \r\n"
        '  tag: "1.0.0"   # {"$imagescan": "app:tag"}'
    )
    new, count = rewrite_markers(text, UPDATES)
    assert count == 2
    assert new == (
        "# header\r\n"
        "spec:\r\n"
        '  image: ghcr.io/org/app:1.1.0 # {"$imagescan": "app"}\r\n'
        "  \tweird:   spacing  \r\n"
        '  tag: "1.1.0"   # {"$imagescan": "app:tag"}'
    )
    assert rewrite_markers(new, UPDATES) == (new, 0)


def test_rewrite_markers_without_updates_changes_nothing() -> None:
    text = 'image: x:1 # {"$imagescan": "app"}\n'
    assert rewrite_markers(text, {}) == (text, 0)
