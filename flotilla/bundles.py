"""Checkout file listing -> bundles: discovery, content, style, naming, digest (Fleet's rules)."""

from __future__ import annotations

import functools
import hashlib
import json
import posixpath
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flotilla.errors import FlotillaError, SpecError, short_repr
from flotilla.kubenames import MAX_LABEL, is_dns1123
from flotilla.manifests import FLEET_YAML_NAMES
from flotilla.models import (
    MAX_RELEASE_NAME_LEN,
    BundleDeploymentOptions,
    FleetYaml,
    HelmOptions,
    load_fleet_yaml,
)
from flotilla.overlays import check_overlays
from flotilla.sops import encrypted_documents, is_encrypted
from flotilla.values import merge_values
from flotilla.yamlload import load_yaml_mapping

FLEETIGNORE = ".fleetignore"
CHART_YAML = "Chart.yaml"
KUSTOMIZATION_YAML = "kustomization.yaml"
# One file bigger than this is refused: content travels through the content store and into
# `helm template`, and a repository holding such a file is almost certainly a mistake.
MAX_FILE_BYTES = 10 * 1024 * 1024
_MAX_LINK_HOPS = 40

_DISALLOWED = re.compile(r"[^a-zA-Z0-9-]+")
_LOWER_DISALLOWED = re.compile(r"[^a-z0-9-]+")
_MULTI_DASH = re.compile(r"-+")
_REMOTE_TGZ = re.compile(r"^https?://.+\.tgz(\?.*)?$")


class BundleStyle(StrEnum):
    """How a bundle becomes manifests; the first that applies wins."""

    HELM = "helm"
    KUSTOMIZE = "kustomize"
    RAW = "raw"


class FileListing(BaseModel):
    """A checkout in memory: regular files by repo-relative POSIX path, and symlinks with their
    targets exactly as ``readlink`` gave them (absolute targets are outside the checkout)."""

    files: dict[str, bytes] = Field(default_factory=dict)
    symlinks: dict[str, str] = Field(default_factory=dict)
    too_large: dict[str, int] = Field(default_factory=dict)  # path -> size, left unread


class Bundle(BaseModel):
    """One deployable unit found in a checkout, with its content and the digest of both."""

    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    name: str
    path: str
    style: BundleStyle
    options: FleetYaml
    resources: dict[str, bytes]
    digest: str
    warnings: list[str] = Field(default_factory=list)
    # SOPS-encrypted helm values files by path relative to the bundle: their tokens are folded
    # into helm.values like any values file's values, and they are decrypted at render time.
    sealed_values: dict[str, bytes] = Field(default_factory=dict)


class InvalidBundle(BaseModel):
    """A bundle directory that could not be read; ``error`` is the one-line reason."""

    path: str
    error: str


class ReadResult(BaseModel):
    """Everything ``read_bundles`` found: good bundles, bad ones, and warnings for a person."""

    bundles: list[Bundle] = Field(default_factory=list)
    invalid: list[InvalidBundle] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    # ``paths`` entries that matched no directory of the checkout.
    unmatched_paths: list[str] = Field(default_factory=list)

    def matches_nothing(self, paths: Sequence[str]) -> bool:
        """Every ``paths`` entry matched no directory, so nothing at all was read: a GitRepo
        error, not an empty repository."""
        return bool(self.unmatched_paths) and len(self.unmatched_paths) == len(paths or ["."])


# ---------------------------------------------------------------------------------------------
# Naming
# ---------------------------------------------------------------------------------------------


def _md5_hex(text: str, length: int) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()[:length]


def limit_name(name: str, count: int) -> str:
    """Shorten ``name`` to ``count`` characters, ending in ``-`` + 5 hex of its md5 when cut.

    The dash is dropped when the cut already ends in one, so no ``--`` appears.
    """
    if len(name) <= count:
        return name
    hex_len = 5
    if count <= hex_len + 1:
        return name[:count]
    keep = count - hex_len - 1
    separator = "" if name[keep - 1] == "-" else "-"
    return f"{name[:keep]}{separator}{_md5_hex(name, hex_len)}"


def release_name(raw: str) -> str:
    """Turn any string into a Helm release name / DNS-1123 label, exactly as Fleet does.

    Slashes become dashes; upper-case or illegal characters earn an 8-hex md5 suffix (taken
    before cleaning, so ``App`` and ``app`` differ); over 53 characters the name is limited.
    """
    text = raw.replace("/", "-")
    if text != text.lower() or _DISALLOWED.search(text):
        text = f"{text}-{_md5_hex(text, 8)}"
    text = _LOWER_DISALLOWED.sub("-", text.lower())
    text = _MULTI_DASH.sub("-", text).strip("-")
    limited = limit_name(text, MAX_RELEASE_NAME_LEN)
    if is_dns1123(limited, max_length=MAX_RELEASE_NAME_LEN):
        return limited
    return _md5_hex(raw, 24)


def name_bundle(gitrepo_name: str, path: str) -> str:
    """Default bundle name: the GitRepo name joined with the bundle's directory, cleaned."""
    return release_name(posixpath.normpath(posixpath.join(gitrepo_name, path)))


# ---------------------------------------------------------------------------------------------
# The checkout tree
# ---------------------------------------------------------------------------------------------


@dataclass
class _Tree:
    """Files and directories of a checkout after symlinks were followed."""

    files: dict[str, bytes]
    bad: dict[str, str]  # path -> why it cannot be read (symlink out of the checkout, ...)
    dirs: dict[str, list[str]] = field(default_factory=dict)  # dir -> sorted subdir names
    dir_files: dict[str, list[str]] = field(default_factory=dict)  # dir -> sorted file names

    def index(self) -> None:
        subdirs: dict[str, set[str]] = {"": set()}
        names: dict[str, list[str]] = {}
        registered = {""}
        for path in (*self.files, *self.bad):
            parent, base = posixpath.split(path)
            names.setdefault(parent, []).append(base)
            child = parent
            while child not in registered:
                registered.add(child)
                subdirs.setdefault(child, set())
                up, name = posixpath.split(child)
                subdirs.setdefault(up, set()).add(name)
                child = up
        self.dirs = {d: sorted(s) for d, s in subdirs.items()}
        self.dir_files = {d: sorted(n) for d, n in names.items()}

    def has_file(self, directory: str, name: str) -> bool:
        return _join(directory, name) in self.files

    def fleet_yaml(self, directory: str) -> str | None:
        for name in FLEET_YAML_NAMES:
            if self.has_file(directory, name):
                return name
        return None


def _join(directory: str, name: str) -> str:
    return f"{directory}/{name}" if directory else name


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _follow_links(listing: FileListing) -> _Tree:
    """Replace symlinks by what they point to; links leaving the checkout become errors."""
    files = dict(listing.files)
    bad = {
        path: f"file is {size} bytes, over the limit of {MAX_FILE_BYTES} bytes (10 MiB)"
        for path, size in listing.too_large.items()
    }
    pending = dict(listing.symlinks)
    hops = 0
    while pending and hops <= _MAX_LINK_HOPS:
        hops += 1
        still: dict[str, str] = {}
        for link, target in pending.items():
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(link), target))
            if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
                bad[link] = f"symlink points outside the checkout ({short_repr(target)})"
            elif resolved in files:
                files[link] = files[resolved]
            elif resolved in bad:
                bad[link] = bad[resolved]
            elif resolved in pending:
                still[link] = target  # a link to a link: resolve on the next round
            elif resolved in (".", link) or link.startswith(resolved + "/"):
                bad[link] = f"symlink loops back to its own directory ({short_repr(target)})"
            else:
                prefix = resolved + "/"
                under = {p[len(prefix) :]: d for p, d in files.items() if p.startswith(prefix)}
                links = {p[len(prefix) :]: t for p, t in pending.items() if p.startswith(prefix)}
                if not under and not links:
                    bad[link] = f"symlink target does not exist ({short_repr(target)})"
                for rel, data in under.items():
                    files[f"{link}/{rel}"] = data
                for rel, inner in links.items():
                    still[f"{link}/{rel}"] = inner
        if still == pending:
            break
        pending = still
    for link, target in pending.items():
        bad[link] = f"symlink cannot be resolved ({short_repr(target)})"
    tree = _Tree(files=files, bad=bad)
    tree.index()
    return tree


# ---------------------------------------------------------------------------------------------
# Discovery
# ---------------------------------------------------------------------------------------------


def match_glob(pattern: str, name: str, *, where: str) -> bool:
    """Match one path segment against a glob with Go's ``filepath.Match`` rules, as Fleet does:
    ``*``, ``?``, ``[a-z]``, ``[^a-z]`` and ``\\`` escapes; ``*`` never crosses a ``/``."""
    return _compile_glob(pattern, where).fullmatch(name) is not None


@functools.lru_cache(maxsize=4096)
def _compile_glob(pattern: str, where: str) -> re.Pattern[str]:
    """The regex of a Go glob; ``where`` (file or field) names the pattern in an error."""
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        index += 1
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "\\" and index < len(pattern):
            out.append(re.escape(pattern[index]))
            index += 1
        elif char == "[":
            end = pattern.find("]", index + 1)
            if end < 0:
                raise SpecError(
                    f"{short_repr(pattern)} is not a valid glob (unclosed [)", file=where
                )
            body = pattern[index:end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            out.append(f"[{'^' if negate else ''}{_class_body(body)}]")
            index = end + 1
        else:
            out.append(re.escape(char))
    return re.compile("".join(out))


def _class_body(body: str) -> str:
    # Inside a class only "\\", "]", "^" and "[" need escaping for Python; "-" keeps its
    # meaning as a range.
    return "".join("\\" + c if c in "\\]^[" else c for c in body)


def _glob_dirs(tree_dirs: Iterable[str], pattern: str, *, where: str) -> list[str]:
    """Directories matching a GitRepo ``paths`` glob (``*`` stays within one path segment)."""
    cleaned = posixpath.normpath(pattern.lstrip("/") or ".")
    if cleaned == ".":
        return [""]
    parts = cleaned.split("/")
    found = []
    for directory in tree_dirs:
        segments = directory.split("/") if directory else []
        if len(segments) == len(parts) and all(
            match_glob(p, s, where=where) for s, p in zip(segments, parts, strict=True)
        ):
            found.append(directory)
    return sorted(found)


def _has_loose_yaml(tree: _Tree, directory: str) -> bool:
    """True when ``directory`` or a subdirectory without its own fleet.yaml holds *.yaml files."""
    if tree.fleet_yaml(directory):
        return False
    if any(n.endswith((".yaml", ".yml")) for n in tree.dir_files.get(directory, ())):
        return True
    return any(
        _has_loose_yaml(tree, _join(directory, sub))
        for sub in tree.dirs.get(directory, ())
        if not _is_hidden(sub)
    )


def _walk_dirs(tree: _Tree, directory: str) -> Iterator[str]:
    for sub in tree.dirs.get(directory, ()):
        if _is_hidden(sub):  # .git, .github and other hidden trees never hold bundles
            continue
        child = _join(directory, sub)
        yield child
        yield from _walk_dirs(tree, child)


def _find_bundle_dirs(tree: _Tree, base: str) -> list[str]:
    """Bundle directories below one ``paths`` entry, in walk order (Fleet's rules)."""
    found = []
    if tree.fleet_yaml(base) or _has_loose_yaml(tree, base):
        found.append(base)
    found.extend(d for d in _walk_dirs(tree, base) if tree.fleet_yaml(d))
    return found


# ---------------------------------------------------------------------------------------------
# Content
# ---------------------------------------------------------------------------------------------


def parse_fleetignore(text: str) -> list[str]:
    """Globs of a ``.fleetignore``: one per line; blank lines and ``#`` comments skipped;
    trailing spaces dropped unless escaped with a backslash."""
    patterns = []
    for line in text.splitlines():
        stripped = re.sub(r"([^\\])\s+$", r"\1", line)
        if stripped and not stripped.startswith("#"):
            patterns.append(stripped)
    return patterns


def _ignored(name: str, is_dir: bool, patterns: Sequence[str]) -> bool:
    for pattern in patterns:
        if re.match(r"^.+/\*", pattern):
            # "dir/*" ignores a directory of that name, wherever it is below
            if is_dir and pattern.removesuffix("/*") == name:
                return True
        elif match_glob(pattern, name, where=FLEETIGNORE):
            return True
    return False


def _collect_content(
    tree: _Tree, directory: str, *, skip: frozenset[str]
) -> tuple[dict[str, bytes], list[str]]:
    """Every file below ``directory`` by relative path, minus hidden and ignored files and
    ``skip`` (the bundle's fleet.yaml and values files); also the unreadable paths met."""
    resources: dict[str, bytes] = {}
    problems: list[str] = []

    def visit(current: str, relative: str, inherited: list[str]) -> None:
        patterns = inherited
        ignore_file = _join(current, FLEETIGNORE)
        if ignore_file in tree.files:
            text = tree.files[ignore_file].decode("utf-8", errors="replace")
            own = parse_fleetignore(text)
            for pattern in own:  # a broken pattern is reported against its own file
                _compile_glob(pattern.removesuffix("/*"), ignore_file)
            patterns = [*inherited, *own]
        for name in tree.dir_files.get(current, ()):
            rel = _join(relative, name)
            if _is_hidden(name) or rel in skip or _ignored(name, False, patterns):
                continue
            path = _join(current, name)
            if path in tree.bad:
                problems.append(f"{path}: {tree.bad[path]}")
            else:
                resources[rel] = tree.files[path]
        for sub in tree.dirs.get(current, ()):
            if _is_hidden(sub) or _ignored(sub, True, patterns):
                continue
            visit(_join(current, sub), _join(relative, sub), patterns)

    visit(directory, "", [])
    return resources, problems


# ---------------------------------------------------------------------------------------------
# Style
# ---------------------------------------------------------------------------------------------


def is_remote_chart(options: BundleDeploymentOptions) -> bool:
    """True when ``helm`` names a chart fetched at render time (repo, ``oci://`` or .tgz URL)."""
    helm = options.helm
    if helm is None or not helm.chart:
        return False
    return bool(helm.repo) or helm.chart.startswith("oci://") or bool(_REMOTE_TGZ.match(helm.chart))


def chart_dir(options: BundleDeploymentOptions) -> str:
    """The directory, relative to the bundle, that holds a local chart's Chart.yaml."""
    chart = options.helm.chart if options.helm and options.helm.chart else "."
    return posixpath.normpath(chart)


def kustomize_dir(options: BundleDeploymentOptions) -> str:
    """The directory, relative to the bundle, that ``kustomize build`` runs in."""
    directory = options.kustomize.dir if options.kustomize and options.kustomize.dir else "."
    return posixpath.normpath(directory)


def detect_style(
    resources: Mapping[str, bytes], options: BundleDeploymentOptions, *, file: str = "fleet.yaml"
) -> BundleStyle:
    """Helm, else Kustomize, else raw YAML; a named chart or kustomize dir must exist."""
    if is_remote_chart(options):
        return BundleStyle.HELM
    chart = chart_dir(options)
    if _join("" if chart == "." else chart, CHART_YAML) in resources:
        return BundleStyle.HELM
    if chart != ".":
        raise SpecError(
            f"{short_repr(options.helm.chart if options.helm else chart)} has no {CHART_YAML} "
            "in the bundle (and is not a repo, oci:// or .tgz URL chart)",
            file=file,
            field="helm.chart",
        )
    directory = kustomize_dir(options)
    if _join("" if directory == "." else directory, KUSTOMIZATION_YAML) in resources:
        return BundleStyle.KUSTOMIZE
    if directory != ".":
        raise SpecError(
            f"{short_repr(directory)} has no {KUSTOMIZATION_YAML} in the bundle",
            file=file,
            field="kustomize.dir",
        )
    return BundleStyle.RAW


# ---------------------------------------------------------------------------------------------
# Digest
# ---------------------------------------------------------------------------------------------


def digest_bundle(
    resources: Mapping[str, bytes],
    options: FleetYaml,
    sealed_values: Mapping[str, bytes] | None = None,
) -> str:
    """sha256 over the sorted resources (path, size, bytes) and the canonical JSON of options.

    Every content file counts (a README too, as Fleet ships it as content); the options are
    compared as data, so key order, comments and formatting of fleet.yaml do not matter.
    Encrypted values files count whole (a new recipient changes the file, not its tokens);
    bundles without them keep the digest they always had.
    """
    digest = hashlib.sha256()
    _digest_files(digest, resources)
    digest.update(b"options:")
    digest.update(
        _canonical_json(options.model_dump(mode="json", by_alias=True, exclude_defaults=True))
    )
    if sealed_values:
        digest.update(b"sealed:")
        _digest_files(digest, sealed_values)
    return digest.hexdigest()


def _digest_files(digest: hashlib._Hash, files: Mapping[str, bytes]) -> None:
    for path in sorted(files):
        data = files[path]
        digest.update(f"{len(path)}:{path}:{len(data)}:".encode())
        digest.update(data)


def _canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def read_bundles(
    listing: FileListing, *, gitrepo_name: str, paths: Sequence[str] = (".",), namespace: str = ""
) -> ReadResult:
    """Find and read every bundle of a checkout; a bad bundle is reported, the rest returned.

    Only a ``paths`` entry that is not a valid glob fails the whole read (SpecError).

    ``namespace`` is the GitRepo's namespace: it only labels messages here (bundles live in
    their GitRepo's namespace).
    """
    tree = _follow_links(listing)
    result = ReadResult()
    seen_dirs: set[str] = set()
    names: dict[str, str] = {}
    gitrepo = f"gitrepo {namespace}/{gitrepo_name}" if namespace else f"gitrepo {gitrepo_name}"
    for pattern in paths or (".",):
        bases = _glob_dirs(tree.dirs, pattern, where=f"{gitrepo}: paths")
        if not bases:
            result.unmatched_paths.append(pattern)
            result.warnings.append(f"{gitrepo}: paths: {short_repr(pattern)} matches no directory")
        for base in bases:
            for directory in _find_bundle_dirs(tree, base):
                if directory in seen_dirs:
                    continue
                seen_dirs.add(directory)
                _read_one(tree, directory, gitrepo_name, names, result)
    return result


def _read_one(
    tree: _Tree, directory: str, gitrepo_name: str, names: dict[str, str], result: ReadResult
) -> None:
    path = directory or "."
    try:
        bundle = _read_bundle(tree, directory, gitrepo_name=gitrepo_name)
    except FlotillaError as err:
        result.invalid.append(InvalidBundle(path=path, error=str(err)))
        return
    if bundle is None:
        result.warnings.append(f"{path}: no resources found to deploy, skipped")
        return
    if bundle.name in names:
        result.invalid.append(
            InvalidBundle(
                path=path,
                error=f"{_join(directory, 'fleet.yaml')}: name: {bundle.name!r} is already "
                f"used by the bundle in {names[bundle.name]!r}",
            )
        )
        return
    names[bundle.name] = path
    result.bundles.append(bundle)
    result.warnings.extend(bundle.warnings)


def _read_bundle(tree: _Tree, directory: str, *, gitrepo_name: str) -> Bundle | None:
    """Read the bundle in ``directory``; None when it has nothing to deploy."""
    fleet_name = tree.fleet_yaml(directory)
    file = _join(directory, fleet_name or "fleet.yaml")
    warnings: list[str] = []
    if fleet_name:
        raw = tree.files[file]
        _check_size(file, raw)
        options, warnings = load_fleet_yaml(raw.decode("utf-8", errors="replace"), file=file)
    else:
        options = FleetYaml()
    name = options.name or name_bundle(gitrepo_name, directory or ".")
    if options.name is not None and not is_dns1123(name, max_length=MAX_RELEASE_NAME_LEN):
        raise SpecError(
            f"{short_repr(options.name)} is not a valid DNS-1123 name of at most "
            f"{MAX_RELEASE_NAME_LEN} characters",
            file=file,
            field="name",
        )
    skip = {fleet_name} if fleet_name else set()
    options, values_files, sealed = _merge_values_files(tree, directory, options, file=file)
    skip.update(values_files)
    resources, problems = _collect_content(tree, directory, skip=frozenset(skip))
    if problems:
        raise SpecError(problems[0])
    for rel, data in resources.items():
        _check_size(_join(directory, rel), data)
    style = detect_style(resources, options, file=file)
    _check_all_overlays(resources, options, file=file)
    _check_namespaces(options, file=file)
    if not resources and not is_remote_chart(options):
        return None
    return Bundle(
        name=name,
        path=directory or ".",
        style=style,
        options=options,
        resources=dict(sorted(resources.items())),
        digest=digest_bundle(resources, options, sealed),
        warnings=warnings,
        sealed_values=sealed,
    )


def _merge_values_files(
    tree: _Tree, directory: str, options: FleetYaml, *, file: str
) -> tuple[FleetYaml, set[str], dict[str, bytes]]:
    """Fold ``helm.valuesFiles`` (base and each targetCustomization) into ``helm.values``.

    Fleet's rules: each entry is read relative to the bundle's directory and may reach
    above it (``../common/values.yaml``), though never outside the repository; each file is
    deep-merged over the values in list order (maps merge, anything else replaces). Fleet
    leaves out of the content every file whose bundle-relative path is an entry as written or
    an entry's base name (``values/prod.yaml`` also drops a top-level ``prod.yaml``).
    A SOPS-encrypted file is folded with its ciphertext tokens (``flotilla.sops``).
    Returns the new options, those bundle-relative paths and the encrypted files.
    """
    used: set[str] = set()
    sealed: dict[str, bytes] = {}

    def merged(helm: HelmOptions | None, field: str) -> HelmOptions | None:
        if helm is None or not helm.values_files:
            return helm
        values = dict(helm.values or {})
        for index, name in enumerate(helm.values_files):
            path = posixpath.normpath(_join(directory, name))
            problem = ""
            if posixpath.isabs(name) or path == ".." or path.startswith("../"):
                problem = "is outside the repository"
            elif path not in tree.files:
                problem = "does not exist in the bundle"
            if problem:
                raise SpecError(
                    f"{short_repr(name)} {problem}",
                    file=file,
                    field=f"{field}.valuesFiles[{index}]",
                )
            data = tree.files[path]
            _check_size(path, data)
            if is_encrypted(path, data):
                values = merge_values(values, encrypted_documents(path, data)[0])
                sealed[posixpath.normpath(name)] = data
            else:
                text = data.decode("utf-8", errors="replace")
                values = merge_values(values, load_yaml_mapping(text, file=path))
            used.update({posixpath.normpath(name), posixpath.basename(name)})
        return helm.model_copy(update={"values": values})

    update: dict[str, Any] = {"helm": merged(options.helm, "helm")}
    if options.target_customizations:
        update["target_customizations"] = [
            t.model_copy(update={"helm": merged(t.helm, f"targetCustomizations[{i}].helm")})
            for i, t in enumerate(options.target_customizations)
        ]
    return options.model_copy(update=update), used, sealed


def _option_sets(options: FleetYaml) -> list[tuple[str, BundleDeploymentOptions]]:
    """The base options and each targetCustomization, with the field prefix naming them."""
    customizations = options.target_customizations or []
    return [("", options)] + [
        (f"targetCustomizations[{i}].", c) for i, c in enumerate(customizations)
    ]


def _check_all_overlays(resources: Mapping[str, bytes], options: FleetYaml, *, file: str) -> None:
    """Fail at read time, not on the first cluster, when any overlay name has no directory."""
    for prefix, candidate in _option_sets(options):
        if candidate.yaml and candidate.yaml.overlays:
            check_overlays(
                resources, candidate.yaml.overlays, field=f"{prefix}yaml.overlays", file=file
            )


def _check_namespaces(options: FleetYaml, *, file: str) -> None:
    """Namespaces must be DNS-1123 labels: Kubernetes would refuse them on every cluster."""
    for prefix, candidate in _option_sets(options):
        for field_name, value in (
            ("namespace", candidate.namespace),
            ("defaultNamespace", candidate.default_namespace),
        ):
            if value and not is_dns1123(value):
                raise SpecError(
                    f"{short_repr(value)} is not a valid namespace name "
                    f"(DNS-1123 label, at most {MAX_LABEL} characters)",
                    file=file,
                    field=f"{prefix}{field_name}",
                )


def _check_size(path: str, data: bytes) -> None:
    if len(data) > MAX_FILE_BYTES:
        raise SpecError(
            f"file is {len(data)} bytes, over the limit of {MAX_FILE_BYTES} bytes (10 MiB)",
            file=path,
        )


__all__ = [
    "CHART_YAML",
    "FLEETIGNORE",
    "KUSTOMIZATION_YAML",
    "MAX_FILE_BYTES",
    "Bundle",
    "BundleStyle",
    "FileListing",
    "InvalidBundle",
    "ReadResult",
    "chart_dir",
    "detect_style",
    "digest_bundle",
    "is_remote_chart",
    "kustomize_dir",
    "limit_name",
    "match_glob",
    "name_bundle",
    "parse_fleetignore",
    "read_bundles",
    "release_name",
]
