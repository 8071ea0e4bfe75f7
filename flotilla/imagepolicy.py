"""Image scans: Fleet and Keel tag policies, image references and ``imageScans`` entries."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from flotilla.durations import parse_duration
from flotilla.errors import SpecError, short_repr
from flotilla.schedule import PollSchedule, parse_poll_schedule
from flotilla.semver import Version, parse_constraint, parse_version

# --- policies -------------------------------------------------------------------------------

KEEL_SEMVER_POLICIES = ("all", "major", "minor", "patch")
KEEL_POLICIES = (*KEEL_SEMVER_POLICIES, "force", "never", "glob:<pattern>", "regexp:<pattern>")


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class SemverPolicy(_Model):
    """Fleet ``policy.semver``: the newest tag inside ``range``."""

    range: str

    @field_validator("range")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            parse_constraint(value)
        except SpecError as error:
            raise ValueError(error.problem) from None
        return value


class AlphabeticalPolicy(_Model):
    """Fleet ``policy.alphabetical``: ``asc`` picks the last tag in byte order, ``desc`` first."""

    order: Literal["asc", "desc"] = "asc"


class FleetPolicy(_Model):
    """Fleet's ``policy:`` object; exactly one of its fields is set."""

    semver: SemverPolicy | None = None
    alphabetical: AlphabeticalPolicy | None = None


class KeelPolicy(_Model):
    """A Keel policy string, read: ``minor``, ``force``, ``glob:release-*``, ``regexp:^v\\d+``."""

    kind: Literal["all", "major", "minor", "patch", "force", "never", "glob", "regexp"]
    pattern: str = ""


Policy = FleetPolicy | KeelPolicy


def parse_policy(value: object) -> Policy:
    """Read a policy: Fleet's ``{semver: {range}}`` / ``{alphabetical: {order}}`` or a Keel string.

    Raises ValueError with a one-line reason; ``parse_image_scans`` adds file and field.
    """
    if isinstance(value, Mapping):
        policy = FleetPolicy.model_validate(value)
        if (policy.semver is None) == (policy.alphabetical is None):
            raise ValueError("set exactly one of 'semver' and 'alphabetical'")
        return policy
    if not isinstance(value, str):
        raise ValueError(
            f"must be a Keel policy string or a Fleet policy object ({short_repr(value)})"
        )
    kind, colon, pattern = value.partition(":")
    if colon and kind in ("glob", "regexp"):
        if not pattern:
            raise ValueError(f"'{kind}:' needs a pattern ({short_repr(value)})")
        if kind == "regexp":
            _compile_regexp(pattern)
        return KeelPolicy(kind=kind, pattern=pattern)
    if value in KEEL_SEMVER_POLICIES or value in ("force", "never"):
        return KeelPolicy.model_validate({"kind": value})
    close = difflib.get_close_matches(value, [p.split(":")[0] for p in KEEL_POLICIES], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        f"unknown policy, use one of {', '.join(KEEL_POLICIES)}{hint} ({short_repr(value)})"
    )


def _compile_regexp(pattern: str) -> re.Pattern[str]:
    # Keel's patterns are Go RE2; Go also spells a named group (?<name>...), Python does not.
    python_pattern = re.sub(r"\(\?<(?=[A-Za-z_])", "(?P<", pattern)
    try:
        return re.compile(python_pattern)
    except re.error as error:
        raise ValueError(f"bad regexp: {error} ({short_repr(pattern)})") from None


# --- decisions ------------------------------------------------------------------------------


class ImageDecision(BaseModel):
    """What a scan decided: the tag to run (None: nothing suitable), and why, in one line.

    For digest-following policies ``tag`` stays the current tag and ``digest`` is the new one.
    """

    model_config = ConfigDict(frozen=True)

    tag: str | None
    digest: str | None = None
    update: bool
    reason: str


def follows_digest(policy: Policy, current_tag: str, match_tag: bool = False) -> bool:
    """Whether ``choose_tag`` decides on the current tag's digest rather than the tag list, so
    a poll needs one manifest HEAD instead of the tag list.

    Keel's ``force`` follows the digest of a tag that is not a version (or of any tag with
    ``matchTag``); every Keel semver policy follows the digest of ``latest``.
    """
    if not isinstance(policy, KeelPolicy) or policy.kind in ("never", "glob", "regexp"):
        return False
    if current_tag == "latest":
        return True
    return policy.kind == "force" and (match_tag or parse_version(current_tag) is None)


def choose_tag(
    policy: Policy,
    *,
    current_tag: str,
    tags: Sequence[str],
    current_digest: str | None = None,
    registry_digest: str | None = None,
    match_tag: bool = False,
) -> ImageDecision:
    """Decide which tag the image should run, from the registry's ``tags``, as Fleet or Keel would.

    ``registry_digest`` is the registry's digest of ``current_tag`` now; digest-following
    policies (Keel ``force``, or any Keel semver policy on ``latest``) compare it to
    ``current_digest``.
    """
    if isinstance(policy, FleetPolicy):
        return _choose_fleet(policy, current_tag, tags)
    if policy.kind == "never":
        return ImageDecision(tag=current_tag, update=False, reason="policy 'never': no updates")
    if policy.kind in ("glob", "regexp"):
        return _choose_pattern(policy, current_tag, tags)
    if follows_digest(policy, current_tag, match_tag):
        return _follow_digest(current_tag, current_digest, registry_digest)
    current = parse_version(current_tag)
    if current is None:
        return ImageDecision(
            tag=current_tag,
            update=False,
            reason=f"current tag {current_tag!r} is not a version; policy {policy.kind!r} "
            "needs one (use 'force' to follow its digest)",
        )
    return _choose_keel_semver(policy.kind, current, tags)


def _follow_digest(tag: str, current: str | None, latest: str | None) -> ImageDecision:
    if latest is None:
        return ImageDecision(tag=tag, update=False, reason=f"registry has no digest for {tag!r}")
    if latest == current:
        return ImageDecision(tag=tag, digest=latest, update=False, reason=f"{tag!r} is unchanged")
    return ImageDecision(
        tag=tag, digest=latest, update=True, reason=f"{tag!r} now points to {latest}"
    )


def _choose_fleet(policy: FleetPolicy, current_tag: str, tags: Sequence[str]) -> ImageDecision:
    if policy.semver is not None:
        allowed = parse_constraint(policy.semver.range)
        versions = [v for v in map(parse_version, tags) if v is not None and allowed(v)]
        what = f"in range {policy.semver.range!r}"
        best = _newest(versions, prefer_v=current_tag.startswith("v"))
        chosen = best.original if best else None
    else:
        order = policy.alphabetical.order if policy.alphabetical else "asc"
        what = f"in {order} alphabetical order"
        ordered = sorted(tags)
        chosen = (ordered[-1] if order == "asc" else ordered[0]) if ordered else None
    if chosen is None:
        return ImageDecision(tag=None, update=False, reason=f"no tag {what}")
    if chosen == current_tag:
        return ImageDecision(
            tag=chosen, update=False, reason=f"{chosen!r} is already the newest {what}"
        )
    return ImageDecision(tag=chosen, update=True, reason=f"{chosen!r} is the newest tag {what}")


def _newest(versions: Sequence[Version], *, prefer_v: bool) -> Version | None:
    """Highest precedence; among equals, the one written like the current tag, then by text."""
    if not versions:
        return None
    return max(versions, key=lambda v: (v.key(), v.has_v_prefix == prefer_v, v.original))


def _choose_keel_semver(kind: str, current: Version, tags: Sequence[str]) -> ImageDecision:
    candidates = []
    for version in map(parse_version, tags):
        # Keel only looks at tags with at least major.minor, and compares pre-release suffixes
        # exactly (1.2.3-rc1 may go to 1.2.4-rc1) except under 'all'.
        if version is None or version.parts < 2 or version.key() <= current.key():
            continue
        if kind != "all" and version.prerelease != current.prerelease:
            continue
        if kind == "minor" and version.major != current.major:
            continue
        if kind == "patch" and (version.major, version.minor) != (current.major, current.minor):
            continue
        candidates.append(version)
    best = _newest(candidates, prefer_v=current.has_v_prefix)
    if best is None:
        return ImageDecision(
            tag=current.original,
            update=False,
            reason=f"no tag newer than {current.original!r} allowed by policy {kind!r}",
        )
    return ImageDecision(
        tag=best.original,
        update=True,
        reason=f"{best.original!r} is the newest tag allowed by policy {kind!r} "
        f"(current {current.original!r})",
    )


def _choose_pattern(policy: KeelPolicy, current_tag: str, tags: Sequence[str]) -> ImageDecision:
    if policy.kind == "glob":
        glob = re.compile(".*".join(re.escape(part) for part in policy.pattern.split("*")))
        matching = [t for t in tags if glob.fullmatch(t)]
        ranked = sorted(matching, reverse=True)
    else:
        regexp = _compile_regexp(policy.pattern)
        matching = [t for t in tags if regexp.search(t)]
        # Keel ranks by a group named 'compare' when there is one, else by the whole tag.
        ranked = sorted(matching, key=lambda t: _compare_key(regexp, t), reverse=True)
    what = f"{policy.kind}:{policy.pattern}"
    if not ranked:
        return ImageDecision(tag=None, update=False, reason=f"no tag matches {what!r}")
    chosen = ranked[0]
    if chosen == current_tag:
        return ImageDecision(
            tag=chosen, update=False, reason=f"{chosen!r} is already the newest match"
        )
    return ImageDecision(
        tag=chosen, update=True, reason=f"{chosen!r} is the newest tag matching {what!r}"
    )


def _compare_key(regexp: re.Pattern[str], tag: str) -> tuple[str, str]:
    match = regexp.search(tag)
    compared = match["compare"] if match and "compare" in regexp.groupindex else None
    return (compared or tag, tag)


# --- image references -----------------------------------------------------------------------

DEFAULT_REGISTRY = "docker.io"

_REGISTRY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::\d+)?")
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"\w[\w.-]{0,127}")
_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}")


class ImageRef(_Model):
    """An image reference split the way registries see it, with Docker Hub's defaults filled in."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None


def parse_image_ref(text: str, *, field: str = "image", file: str = "") -> ImageRef:
    """Split ``registry:5000/ns/app:tag@sha256:...``; ``nginx`` is ``docker.io/library/nginx``."""

    def fail(problem: str) -> SpecError:
        return SpecError(f"{problem} ({short_repr(text)})", file=file, field=field)

    name, at, digest = text.partition("@")
    if at and not _DIGEST.fullmatch(digest):
        raise fail(f"digest {digest!r} is not <algorithm>:<hex>")
    if digest.startswith("sha256:") and not re.fullmatch(r"[0-9a-f]{64}", digest[7:]):
        raise fail("a sha256 digest has 64 lowercase hex characters")
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    tag = None
    if colon > last_slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise fail(f"tag {tag!r} is not valid")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
        if not _REGISTRY.fullmatch(registry):
            raise fail(f"registry {registry!r} is not a host[:port]")
    else:
        registry, path = DEFAULT_REGISTRY, name
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    bad = [c for c in path.split("/") if not _PATH_COMPONENT.fullmatch(c)]
    if bad:
        raise fail(f"repository part {bad[0]!r} must be lowercase letters, digits and . _ -")
    return ImageRef(registry=registry, repository=path, tag=tag, digest=digest or None)


# --- imageScans entries ---------------------------------------------------------------------

DEFAULT_APPROVAL_DEADLINE_HOURS = 24


class SecretRef(_Model):
    """A registry credential, by name; resolved inside an activity, never read here."""

    name: str


class ImageScan(_Model):
    """One ``imageScans`` entry of a fleet.yaml, Fleet's fields plus Keel's."""

    image: str
    ref: ImageRef
    tag_name: str
    policy: Policy
    schedule: PollSchedule
    secret_ref: SecretRef | None = None
    approvals: int = 0
    approval_deadline_seconds: float = DEFAULT_APPROVAL_DEADLINE_HOURS * 3600.0
    match_tag: bool = False
    suspend: bool = False


_SCAN_KEYS = (
    "image",
    "tagName",
    "policy",
    "interval",
    "pollSchedule",
    "secretRef",
    "approvals",
    "approvalDeadline",
    "matchTag",
    "suspend",
)
_TAG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def parse_image_scans(raw: object, *, file: str) -> list[ImageScan]:
    """Read and check ``imageScans``; any invalid entry is one SpecError line naming its field."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise SpecError(f"must be a list ({short_repr(raw)})", file=file, field="imageScans")
    scans = [_parse_image_scan(entry, f"imageScans[{i}]", file) for i, entry in enumerate(raw)]
    seen: dict[str, int] = {}
    for index, scan in enumerate(scans):
        if scan.tag_name in seen:
            raise SpecError(
                f"already used by imageScans[{seen[scan.tag_name]}]; markers would be ambiguous "
                f"({short_repr(scan.tag_name)})",
                file=file,
                field=f"imageScans[{index}].tagName",
            )
        seen[scan.tag_name] = index
    return scans


def _parse_image_scan(entry: object, path: str, file: str) -> ImageScan:
    def fail(key: str, problem: str, value: object) -> SpecError:
        return SpecError(f"{problem} ({short_repr(value)})", file=file, field=f"{path}.{key}")

    if not isinstance(entry, Mapping):
        raise SpecError(f"must be a mapping ({short_repr(entry)})", file=file, field=path)
    for key in entry:
        if key not in _SCAN_KEYS:
            close = difflib.get_close_matches(str(key), _SCAN_KEYS, n=1)
            hint = f", did you mean {close[0]!r}?" if close else ""
            raise fail(str(key), f"unknown field{hint}", key)
    for key in ("image", "tagName", "policy"):
        if entry.get(key) in (None, ""):
            raise SpecError("is required", file=file, field=f"{path}.{key}")
    image, tag_name = entry["image"], entry["tagName"]
    if not isinstance(image, str):
        raise fail("image", "must be an image name such as 'ghcr.io/org/app'", image)
    if not isinstance(tag_name, str) or not _TAG_NAME.fullmatch(tag_name):
        raise fail("tagName", "must be letters, digits and . _ - (it names the markers)", tag_name)
    ref = parse_image_ref(image, field=f"{path}.image", file=file)
    if ref.tag or ref.digest:
        raise fail(
            "image", "name the repository without a tag or digest; markers hold the tag", image
        )
    try:
        policy = parse_policy(entry["policy"])
    except ValueError as error:
        raise SpecError(_first_problem(error), file=file, field=f"{path}.policy") from None
    return ImageScan(
        image=image,
        ref=ref,
        tag_name=tag_name,
        policy=policy,
        schedule=_parse_scan_schedule(entry, path, file),
        secret_ref=_parse_secret_ref(entry.get("secretRef"), f"{path}.secretRef", file),
        approvals=_parse_count(entry.get("approvals", 0), f"{path}.approvals", file),
        approval_deadline_seconds=_parse_deadline(
            entry.get("approvalDeadline"), f"{path}.approvalDeadline", file
        ),
        match_tag=_parse_flag(entry.get("matchTag", False), f"{path}.matchTag", file),
        suspend=_parse_flag(entry.get("suspend", False), f"{path}.suspend", file),
    )


def _first_problem(error: ValueError) -> str:
    """pydantic's multi-line report cut to its first error, with where and what."""
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        if first["type"] == "value_error":
            # Our own validators already name the value.
            return f"{where}: {first['msg'].removeprefix('Value error, ')}"
        return f"{where}: {first['msg']} ({short_repr(first['input'])})"
    return str(error)


def _parse_scan_schedule(entry: Mapping[str, Any], path: str, file: str) -> PollSchedule:
    # Fleet says 'interval', Keel says 'pollSchedule'; one scan polls on one schedule.
    if entry.get("interval") is not None and entry.get("pollSchedule") is not None:
        raise SpecError(
            "set 'interval' (Fleet) or 'pollSchedule' (Keel), not both",
            file=file,
            field=f"{path}.pollSchedule",
        )
    if entry.get("interval") is not None:
        seconds = parse_duration(entry["interval"], field=f"{path}.interval", file=file)
        if seconds <= 0:
            raise SpecError(
                f"must be longer than 0s ({short_repr(entry['interval'])})",
                file=file,
                field=f"{path}.interval",
            )
        return PollSchedule(interval_seconds=seconds)
    return parse_poll_schedule(entry.get("pollSchedule"), field=f"{path}.pollSchedule", file=file)


def _parse_secret_ref(value: object, field: str, file: str) -> SecretRef | None:
    if value is None:
        return None
    if isinstance(value, Mapping) and isinstance(value.get("name"), str) and value["name"]:
        return SecretRef(name=value["name"])
    raise SpecError(f"must be {{name: <secret>}} ({short_repr(value)})", file=file, field=field)


def _parse_count(value: object, field: str, file: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise SpecError(
        f"must be a whole number, 0 or more ({short_repr(value)})", file=file, field=field
    )


def _parse_flag(value: object, field: str, file: str) -> bool:
    if isinstance(value, bool):
        return value
    raise SpecError(f"must be true or false ({short_repr(value)})", file=file, field=field)


def _parse_deadline(value: object, field: str, file: str) -> float:
    """Keel writes the approval deadline in whole hours; a Go duration string is accepted too."""
    if value is None:
        return DEFAULT_APPROVAL_DEADLINE_HOURS * 3600.0
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise SpecError(
                f"must be at least 1 hour ({short_repr(value)})", file=file, field=field
            )
        return value * 3600.0
    seconds = parse_duration(value, field=field, file=file)
    if seconds <= 0:
        raise SpecError(f"must be longer than 0s ({short_repr(value)})", file=file, field=field)
    return seconds


# --- write-back -----------------------------------------------------------------------------


class ImageUpdate(_Model):
    """What a scan found: the image as the scan names it, the chosen tag and its digest."""

    image: str
    tag: str
    digest: str | None = None
