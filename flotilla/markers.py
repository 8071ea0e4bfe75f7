"""Fleet's image-scan markers: rewrite the YAML values marked ``# {"$imagescan": ...}``."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from flotilla.imagepolicy import ImageUpdate

_MARKER = re.compile(
    r"(?P<gap>[ \t]+)(?P<comment>#[ \t]*\{[^{}]*\"\$imagescan\"[^{}]*\})(?P<trail>[ \t]*)"
)
_YAML_LINE = re.compile(
    r"(?P<lead>[ \t]*(?:-[ \t]+)?(?:(?:\"[^\"]*\"|'[^']*'|[^\s#'\"][^#]*?):[ \t]+)?)(?P<value>.*)"
)


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


def _marker_value(comment: str, updates: Mapping[str, ImageUpdate]) -> str | None:
    try:
        marker = json.loads(comment.lstrip("#").strip())
    except json.JSONDecodeError:
        return None
    setter = marker.get("$imagescan") if isinstance(marker, dict) else None
    if not isinstance(setter, str):
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
