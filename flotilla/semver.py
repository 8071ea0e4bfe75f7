"""Semantic versions and version ranges, read and compared as Masterminds/semver v3 does."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict

from flotilla.errors import SpecError, short_repr

_VERSION = re.compile(
    r"(?P<prefix>v?)(?P<major>\d+)(?:\.(?P<minor>\d+))?(?:\.(?P<patch>\d+))?"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)


class Version(BaseModel):
    """A semantic version read loosely, as Masterminds/semver does: ``v`` and ``1.2`` allowed."""

    model_config = ConfigDict(frozen=True)

    original: str
    major: int
    minor: int
    patch: int
    prerelease: str = ""
    build: str = ""
    # How many of major.minor.patch were written: Keel ignores tags with fewer than two.
    parts: int = 3

    @property
    def has_v_prefix(self) -> bool:
        return self.original.startswith("v")

    def key(self) -> tuple[Any, ...]:
        """Precedence per semver 2.0: build metadata ignored, a pre-release sorts before release."""
        if not self.prerelease:
            return (self.major, self.minor, self.patch, 1, ())
        identifiers = tuple(
            (0, int(i), "") if i.isdigit() else (1, 0, i) for i in self.prerelease.split(".")
        )
        return (self.major, self.minor, self.patch, 0, identifiers)


def parse_version(text: str) -> Version | None:
    """Read ``text`` as a version, or return None when it is not one (``latest``, ``main-3f2a``)."""
    match = _VERSION.fullmatch(text)
    if not match:
        return None
    given = [g for g in (match["major"], match["minor"], match["patch"]) if g is not None]
    numbers = [int(g) for g in given] + [0] * (3 - len(given))
    return Version(
        original=text,
        major=numbers[0],
        minor=numbers[1],
        patch=numbers[2],
        prerelease=match["pre"] or "",
        build=match["build"] or "",
        parts=len(given),
    )


_COMPARATOR = re.compile(
    r"(?P<op>!=|>=|=>|<=|=<|~>|>|<|=|~|\^)?\s*"
    r"(?P<version>v?(?:[0-9]+|[xX*])(?:\.(?:[0-9]+|[xX*])){0,2}"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)"
)
_HYPHEN_RANGE = re.compile(r"(\S+)\s+-\s+(\S+)")
_WILDCARDS = frozenset("xX*")


class _Bound(BaseModel):
    """A constraint's version with wildcards and missing parts recorded (``1.x`` -> 1, dirty)."""

    model_config = ConfigDict(frozen=True)

    major: int
    minor: int
    patch: int
    prerelease: str
    minor_dirty: bool
    patch_dirty: bool
    any: bool = False

    @property
    def dirty(self) -> bool:
        return self.minor_dirty or self.patch_dirty

    def key(self) -> tuple[Any, ...]:
        base = Version(
            original="",
            major=self.major,
            minor=self.minor,
            patch=self.patch,
            prerelease=self.prerelease,
        )
        return base.key()


def _bound(text: str) -> _Bound:
    body = text[1:] if text.startswith("v") else text
    core, _, _build = body.partition("+")
    core, _, prerelease = core.partition("-")
    fields = core.split(".")
    if fields[0] in _WILDCARDS:
        return _Bound(
            major=0, minor=0, patch=0, prerelease="", minor_dirty=True, patch_dirty=True, any=True
        )
    padded = fields + ["x"] * (3 - len(fields))
    # Once a part is a wildcard, everything after it is too (1.x.5 means 1.x).
    minor_dirty = padded[1] in _WILDCARDS
    patch_dirty = minor_dirty or padded[2] in _WILDCARDS
    return _Bound(
        major=int(padded[0]),
        minor=0 if minor_dirty else int(padded[1]),
        patch=0 if patch_dirty else int(padded[2]),
        prerelease=prerelease,
        minor_dirty=minor_dirty,
        patch_dirty=patch_dirty,
    )


Check = Callable[[Version], bool]


def _comparator(op: str, bound: _Bound) -> Check:
    """One Masterminds/semver v3 comparison; wildcards and short versions mean ranges."""

    def same_range(v: Version) -> bool:
        return (
            (bound.any or v.major == bound.major)
            and (bound.minor_dirty or v.minor == bound.minor)
            and (bound.patch_dirty or v.patch == bound.patch)
        )

    def at_least(v: Version) -> bool:
        return v.key() >= bound.key()

    def above_range(v: Version) -> bool:
        if not bound.dirty:
            return v.key() > bound.key()
        if v.major != bound.major:
            return v.major > bound.major
        return not bound.minor_dirty and v.minor > bound.minor

    def caret(v: Version) -> bool:
        if not at_least(v):
            return False
        if bound.major > 0 or bound.minor_dirty:
            return v.major == bound.major
        if bound.minor > 0 or bound.patch_dirty:
            return v.major == 0 and v.minor == bound.minor
        return v.major == 0 and v.minor == 0 and v.patch == bound.patch

    def tilde(v: Version) -> bool:
        if not at_least(v):
            return False
        if (bound.major, bound.minor, bound.patch) == (0, 0, 0) and not bound.dirty:
            return True
        return v.major == bound.major and (bound.minor_dirty or v.minor == bound.minor)

    checks: dict[str, Check] = {
        "=": lambda v: same_range(v) if bound.dirty else v.key() == bound.key(),
        "!=": lambda v: not (same_range(v) if bound.dirty else v.key() == bound.key()),
        ">": above_range,
        ">=": at_least,
        "<": lambda v: v.key() < bound.key(),
        "<=": lambda v: (not above_range(v)) if bound.dirty else v.key() <= bound.key(),
        "~": tilde,
        "^": caret,
    }
    check = checks[op]
    if bound.any:
        # '*' (or 'x') alone is any release; nothing is outside it.
        return lambda v: not v.prerelease and op in {"=", ">=", "<=", "~", "^"}

    # A pre-release only satisfies a comparator that names a pre-release itself, so '>=1.0'
    # never picks 2.0.0-rc1 (Masterminds/semver v3, which Fleet's image scan uses).
    def guarded(v: Version) -> bool:
        return (not v.prerelease or bool(bound.prerelease)) and check(v)

    return guarded


_OP_ALIASES = {"": "=", "=>": ">=", "=<": "<=", "~>": "~"}


def parse_constraint(text: str, *, field: str = "policy.semver.range", file: str = "") -> Check:
    """Compile a semver range (``>=1.0.0 <2.0.0``, ``^1.2``, ``~1.2.3``, ``1.x``, ``a || b``)."""
    alternatives: list[list[Check]] = []
    for alternative in text.split("||"):
        group = _HYPHEN_RANGE.sub(r">=\1 <=\2", alternative.strip())
        checks: list[Check] = []
        for token in _tokens(group):
            found = _COMPARATOR.fullmatch(token)
            if not found:
                raise SpecError(
                    f"{token!r} is not a version comparison ({short_repr(text)})",
                    file=file,
                    field=field,
                )
            op = found["op"] or ""
            checks.append(_comparator(_OP_ALIASES.get(op, op), _bound(found["version"])))
        if not checks:
            raise SpecError(f"empty semver range ({short_repr(text)})", file=file, field=field)
        alternatives.append(checks)
    return lambda v: any(all(c(v) for c in group) for group in alternatives)


def _tokens(group: str) -> list[str]:
    """Split on commas and spaces, keeping an operator with a version written after a space."""
    tokens: list[str] = []
    for word in re.split(r"[\s,]+", group):
        if not word:
            continue
        if tokens and re.fullmatch(r"!=|>=|=>|<=|=<|~>|>|<|=|~|\^", tokens[-1]):
            tokens[-1] += word
        else:
            tokens.append(word)
    return tokens
