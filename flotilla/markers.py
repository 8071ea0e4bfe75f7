"""Fleet's image-scan markers: read and rewrite the YAML values marked ``# {"$imagescan": ...}``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import NamedTuple

from flotilla.errors import FlotillaError
from flotilla.imagepolicy import ImageUpdate, parse_image_ref

_MARKER = re.compile(
    r"(?P<gap>[ \t]+)(?P<comment>#[ \t]*\{[^{}]*\"\$imagescan\"[^{}]*\})(?P<trail>[ \t]*)"
)
_YAML_LINE = re.compile(
    r"(?P<lead>[ \t]*(?:-[ \t]+)?(?:(?:\"[^\"]*\"|'[^']*'|[^\s#'\"][^#]*?):[ \t]+)?)(?P<value>.*)"
)


class MarkedImage(NamedTuple):
    """What a scan's markers hold now: the tag (and digest), and whether a ``:digest`` marker
    asks for digests."""

    tag: str | None
    digest: str | None
    wants_digest: bool


def _marked_lines(text: str) -> Iterator[tuple[str, re.Match[str], re.Match[str]]]:
    """Each marked line: (setter, e.g. ``app:tag``; the marker; the YAML line before it)."""
    for line in text.splitlines():
        marker = _MARKER.search(line)
        if not marker or marker.end() != len(line):
            continue
        setter = _setter(marker["comment"])
        content = _YAML_LINE.fullmatch(line[: marker.start()])
        if setter is not None and content is not None:
            yield setter, marker, content


def read_markers(text: str, scan: str) -> MarkedImage:
    """The tag (and digest) the markers of ``scan`` hold now: the values ``rewrite_markers``
    would rewrite, read the same way."""
    tag: str | None = None
    digest: str | None = None
    wants_digest = False
    for setter, _, content in _marked_lines(text):
        name, _, part = setter.partition(":")
        value = content["value"].strip().strip("\"'")
        if name != scan or not value:
            continue
        if part == "tag":
            tag = tag or value
        elif part in ("", "digest"):
            try:
                ref = parse_image_ref(value)
            except FlotillaError:
                continue
            tag = tag or ref.tag
            if part == "digest":
                wants_digest = True
                digest = digest or ref.digest
    return MarkedImage(tag, digest if tag else None, wants_digest)


def rewrite_markers(text: str, updates: Mapping[str, ImageUpdate]) -> tuple[str, int]:
    """Rewrite the values on lines marked ``# {"$imagescan": "NAME"}``; return text and count.

    As in Fleet: ``NAME`` takes ``image:tag``, ``NAME:tag`` the tag, ``NAME:name`` the image,
    ``NAME:digest`` ``image:tag@digest``. Every other byte, quotes and comments stay as they were.
    """
    lines = text.splitlines(keepends=True)
    changed = 0
    for number, line in enumerate(lines):
        body = line.rstrip("\r\n")
        marker = _MARKER.search(body)
        if not marker or marker.end() != len(body):
            continue
        value = _marker_value(marker["comment"], updates)
        if value is None:
            continue
        content = _YAML_LINE.fullmatch(body[: marker.start()])
        if content is None:
            continue
        old = content["value"]
        quote = old[0] if len(old) >= 2 and old[0] == old[-1] and old[0] in "\"'" else ""
        new = f"{quote}{value}{quote}"
        if new != old:
            lines[number] = content["lead"] + new + body[marker.start() :] + line[len(body) :]
            changed += 1
    return "".join(lines), changed


def _setter(comment: str) -> str | None:
    """The ``$imagescan`` value of a marker comment (``NAME`` or ``NAME:part``)."""
    try:
        marker = json.loads(comment.lstrip("#").strip())
    except json.JSONDecodeError:
        return None
    setter = marker.get("$imagescan") if isinstance(marker, dict) else None
    return setter if isinstance(setter, str) else None


def _marker_value(comment: str, updates: Mapping[str, ImageUpdate]) -> str | None:
    setter = _setter(comment)
    if setter is None:
        return None
    name, _, part = setter.partition(":")
    update = updates.get(name)
    if update is None:
        return None
    if part == "":
        return f"{update.image}:{update.tag}"
    if part == "tag":
        return update.tag
    if part == "name":
        return update.image
    if part == "digest" and update.digest:
        return f"{update.image}:{update.tag}@{update.digest}"
    return None
