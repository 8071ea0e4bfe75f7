"""HelmOps: where a HelmOp's chart comes from, which version it gets and the bundle it becomes.

A HelmOp (Fleet 0.13+) is a Bundle spec whose chart lives in a Helm repository, an OCI
registry or a tarball URL instead of git. Its ``helm.version`` is an exact version or a
semver constraint; the newest version a source offers that satisfies it is chosen (an empty
version or ``*`` means the newest release), and that version becomes one bundle, deployed by
the normal bundle workflow like any GitRepo's. Everything here is pure: the activity lists
the versions and stores the bundle, the workflow keeps what was chosen and when.

Fleet's three forms of ``helm`` (anything else is refused, as Fleet refuses it):

- tarball: ``chart`` is an ``https://…/x.tgz`` URL, ``repo`` and ``version`` empty;
- OCI: ``repo`` is ``oci://host/path/chart``, ``chart`` empty;
- repository: ``repo`` is the repository URL and ``chart`` the chart's name.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from urllib.parse import urlsplit

import yaml

from flotilla.bundles import Bundle, BundleStyle, digest_bundle
from flotilla.credentials import RenderSecretRefs
from flotilla.depends import DEFAULT_ACCEPTED_STATES, Dependency
from flotilla.durations import parse_duration
from flotilla.errors import MAX_MESSAGE, FlotillaError, SpecError, one_line, short_repr
from flotilla.models import FleetYaml, GitTarget, HelmOp, HelmOpSpec, LabelSelector
from flotilla.semver import Version, parse_constraint, parse_version
from flotilla.status import (
    BundleReport,
    BundleState,
    Condition,
    GitRepoSummary,
    RepoState,
    ready_condition,
    since_text,
    summarize_gitrepo,
)
from flotilla.values import merge_values
from flotilla.yamlload import load_yaml_mapping

# The label Fleet puts on a HelmOp's bundle (dependsOn selectors can use it).
HELMOP_LABEL = "fleet.cattle.io/fleet-helm-name"
ANY_VERSION = "*"
_STRICT_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)


class ChartKind(StrEnum):
    """Where a HelmOp's chart is fetched from."""

    REPO = "repo"
    OCI = "oci"
    TARBALL = "tarball"


@dataclass(frozen=True)
class ChartSource:
    """A HelmOp's chart location: the URL to ask for versions (or the tarball) and the name."""

    kind: ChartKind
    url: str
    chart: str = ""

    @property
    def oci_repository(self) -> tuple[str, str]:
        """``oci://host:port/path/chart`` as (``host:port``, ``path/chart``)."""
        parts = urlsplit(self.url)
        return parts.netloc, parts.path.strip("/")

    def describe(self) -> str:
        """How a person names the chart: ``chart from URL`` or the URL."""
        return f"chart {self.chart!r} of {self.url}" if self.kind is ChartKind.REPO else self.url


def chart_source(spec: HelmOpSpec, *, file: str) -> ChartSource:
    """The chart's source, or a one-line SpecError for a combination Fleet refuses."""
    helm = spec.helm
    if helm is None:
        raise SpecError("a HelmOp needs helm.chart and/or helm.repo", file=file, field="spec.helm")
    chart, repo, version = helm.chart or "", helm.repo or "", helm.version or ""
    if chart.lower().endswith(".tgz"):
        for field, value in (("repo", repo), ("version", version)):
            if value:
                raise SpecError(
                    f"{short_repr(value)}: a tarball chart takes no {field} (the URL names it)",
                    file=file,
                    field=f"spec.helm.{field}",
                )
        _check_url(chart, ("http", "https"), file=file, field="spec.helm.chart")
        return ChartSource(ChartKind.TARBALL, chart)
    if repo.lower().startswith("oci://"):
        if chart:
            raise SpecError(
                f"{short_repr(chart)}: an oci:// repo names the chart itself; leave chart empty",
                file=file,
                field="spec.helm.chart",
            )
        _check_url(repo, ("oci",), file=file, field="spec.helm.repo")
        if not urlsplit(repo).path.strip("/"):
            raise SpecError(
                f"{short_repr(repo)} names no chart (oci://HOST/PATH/CHART)",
                file=file,
                field="spec.helm.repo",
            )
        return ChartSource(ChartKind.OCI, repo)
    if not chart:
        raise SpecError(
            "is empty: a Helm repository needs the chart's name "
            "(or use an oci:// repo or a .tgz URL)",
            file=file,
            field="spec.helm.chart",
        )
    if not repo:
        raise SpecError(
            f"is empty: chart {chart!r} needs the Helm repository's URL "
            "(or use an oci:// repo or a .tgz URL)",
            file=file,
            field="spec.helm.repo",
        )
    _check_url(repo, ("http", "https"), file=file, field="spec.helm.repo")
    return ChartSource(ChartKind.REPO, repo.rstrip("/"), chart)


def _check_url(url: str, schemes: tuple[str, ...], *, file: str, field: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.netloc:
        wanted = " or ".join(f"{s}://" for s in schemes)
        raise SpecError(f"{short_repr(url)} is not a {wanted} URL", file=file, field=field)


def is_exact_version(version: str) -> bool:
    """A strict semver version (``1.2.3``), which Fleet never polls for; anything else is a
    constraint (``^1.2``, ``>=1.0 <2``, ``*``, empty)."""
    return bool(_STRICT_SEMVER.fullmatch(version))


def wanted_version(spec: HelmOpSpec) -> str:
    """``helm.version`` as written, ``*`` when empty."""
    return (spec.helm.version if spec.helm else None) or ANY_VERSION


def check_helmop(helmop: HelmOp, *, file: str) -> None:
    """Everything about a HelmOp that can be wrong before any repository is asked."""
    source = chart_source(helmop.spec, file=file)
    wanted = wanted_version(helmop.spec)
    if source.kind is not ChartKind.TARBALL and not is_exact_version(wanted):
        parse_constraint(wanted, field="spec.helm.version", file=file)
    polling_seconds(helmop.spec, file=file)


def helmop_selectors(spec: HelmOpSpec) -> list[LabelSelector]:
    """The label selectors of the HelmOp's ``dependsOn``, in order (entries by name left out)."""
    return [e.selector for e in spec.depends_on or [] if e.selector is not None and not e.name]


def helmop_dependencies(
    spec: HelmOpSpec, selected: Sequence[Sequence[str]] = ()
) -> list[Dependency]:
    """The bundles a HelmOp's bundle waits for (any GitRepo's or HelmOp's bundle of the
    namespace): those named, and for the i-th selector (``helmop_selectors``) the bundles
    ``selected[i]`` lists (read from the bundles' labels by an activity)."""
    found: dict[str, Dependency] = {}
    selectors = 0
    for entry in spec.depends_on or []:
        states = tuple(BundleState(s) for s in entry.accepted_states or DEFAULT_ACCEPTED_STATES)
        if entry.name:
            names: Sequence[str] = [entry.name]
        else:
            names = selected[selectors] if selectors < len(selected) else ()
            selectors += 1
        for name in names:
            found.setdefault(name, Dependency(bundle=name, accepted_states=states))
    return list(found.values())


def _shown(selector: LabelSelector) -> dict[str, object]:
    """A selector as written (a selector that went through a workflow has every field set)."""
    return selector.model_dump(mode="json", by_alias=True, exclude_none=True)


def unselected(spec: HelmOpSpec, selected: Sequence[Sequence[str]]) -> str:
    """Why the HelmOp's bundle cannot be told what to wait for: a ``dependsOn`` selector that
    selects no bundle (it would deploy without waiting, so it waits for one to appear), or ""."""
    selectors = helmop_selectors(spec)
    for index, selector in enumerate(selectors):
        if index >= len(selected) or not selected[index]:
            return (
                f"spec.dependsOn: selector {short_repr(_shown(selector))} selects no bundle "
                "of the namespace yet; the chart waits for one"
            )
    return ""


def polling_seconds(spec: HelmOpSpec, *, file: str = "") -> float:
    """How often the chart's versions are polled; 0 when they are not (as in Fleet: no
    interval, a tarball, or an exact version)."""
    if spec.polling_interval is None:
        return 0.0
    seconds = parse_duration(spec.polling_interval, field="spec.pollingInterval", file=file)
    if seconds <= 0:
        return 0.0
    helm = spec.helm
    if helm is not None and (helm.chart or "").lower().endswith(".tgz"):
        return 0.0
    return 0.0 if is_exact_version(wanted_version(spec)) else seconds


# ---------------------------------------------------------------------------------------------
# Versions
# ---------------------------------------------------------------------------------------------


def index_versions(text: str, chart: str, *, where: str) -> list[str]:
    """The versions of ``chart`` a repository's ``index.yaml`` lists."""
    try:
        index = yaml.safe_load(text)
    except yaml.YAMLError:
        raise FlotillaError(f"{where}: index.yaml is not valid YAML") from None
    entries = index.get("entries") if isinstance(index, dict) else None
    if not isinstance(entries, dict):
        raise FlotillaError(f"{where}: index.yaml has no 'entries' map")
    listed = entries.get(chart)
    if not listed:
        known = ", ".join(sorted(map(str, entries))[:5]) or "none"
        raise FlotillaError(f"{where}: no chart {chart!r} in the repository (it has: {known})")
    return [str(e["version"]) for e in listed if isinstance(e, dict) and e.get("version")]


def oci_tag_versions(tags: Iterable[str]) -> list[str]:
    """Chart versions from an OCI repository's tags (helm writes ``+`` as ``_`` in a tag)."""
    return [t.replace("_", "+") for t in tags]


def choose_chart_version(versions: Iterable[str], wanted: str, *, where: str) -> str:
    """The newest of ``versions`` satisfying ``wanted`` (an exact version must be offered)."""
    parsed = [v for v in (parse_version(text) for text in versions) if v is not None]
    if is_exact_version(wanted):
        exact = parse_version(wanted)
        if any(exact is not None and v.key() == exact.key() for v in parsed):
            return wanted
        raise FlotillaError(f"{where}: version {wanted} not found{_offered(parsed)}")
    check = parse_constraint(wanted, field="spec.helm.version")
    matching = [v for v in parsed if check(v)]
    if not matching:
        raise FlotillaError(f"{where}: no version matches {wanted!r}{_offered(parsed)}")
    return max(matching, key=Version.key).original


def _offered(versions: list[Version]) -> str:
    newest = sorted(versions, key=Version.key, reverse=True)[:5]
    return f" (newest offered: {', '.join(v.original for v in newest)})" if newest else ""


# ---------------------------------------------------------------------------------------------
# The bundle
# ---------------------------------------------------------------------------------------------


def helmop_options(name: str, spec: HelmOpSpec, version: str) -> FleetYaml:
    """The bundle options of a HelmOp at ``version``: its spec with the chart pinned.

    An OCI chart is named by its reference in ``helm.chart`` (the form the renderer pulls);
    the HelmOp's labels plus Fleet's ``fleet.cattle.io/fleet-helm-name`` label the bundle."""
    source = chart_source(spec, file=f"helmop {name}")
    assert spec.helm is not None  # chart_source refused a spec without it
    pinned = {"version": version or None}
    if source.kind is ChartKind.OCI:
        pinned |= {"chart": source.url, "repo": None}
    helm = spec.helm.model_copy(update={**pinned, "values_files": None})
    data = spec.model_dump(
        include=set(FleetYaml.model_fields) - {"labels", "helm"}, exclude_unset=True
    )
    return FleetYaml.model_validate(
        {
            **data,
            "helm": helm,
            "labels": {**(spec.labels or {}), HELMOP_LABEL: name},
        }
    )


def helmop_bundle(name: str, spec: HelmOpSpec, version: str) -> Bundle:
    """The bundle a HelmOp becomes at ``version``: options only, the chart is pulled at render."""
    options = helmop_options(name, spec, version)
    return Bundle(
        name=name,
        path=".",
        style=BundleStyle.HELM,
        options=options,
        resources={},
        digest=digest_bundle({}, options),
    )


def helmop_targets(spec: HelmOpSpec) -> list[dict[str, object]] | None:
    """The HelmOp's targets as the bundle workflow's target switch (they choose the clusters;
    the same entries customize them as a Bundle's targets do)."""
    if not spec.targets:
        return None
    fields = set(GitTarget.model_fields)
    return [
        GitTarget.model_validate(t.model_dump(include=fields, exclude_unset=True)).to_fleet()
        for t in spec.targets
    ]


def render_secret_refs(namespace: str, spec: HelmOpSpec) -> RenderSecretRefs | None:
    """The HelmOp's credentials for its chart pulls: sent to its own chart URL only."""
    if not (spec.helm_secret_name or spec.insecure_skip_tls_verify):
        return None
    source = chart_source(spec, file="")
    return RenderSecretRefs(
        namespace=namespace,
        helm_secret_name=spec.helm_secret_name or None,
        helm_repo_url_regex=re.escape(source.url) if spec.helm_secret_name else None,
        insecure_skip_tls_verify=spec.insecure_skip_tls_verify,
    )


def fold_values_files(spec: HelmOpSpec, files: Mapping[str, str], *, file: str) -> HelmOpSpec:
    """``helm.valuesFiles`` (read beside the HelmOp's file by ``flotilla apply``) deep-merged
    in order over ``helm.values``, as a fleet.yaml's files are folded; ``files`` maps each
    entry to its text."""
    helm = spec.helm
    if helm is None or not helm.values_files:
        return spec
    layers = []
    for index, name in enumerate(helm.values_files):
        if name not in files:
            raise SpecError(
                f"{short_repr(name)} does not exist beside {posixpath.basename(file)}",
                file=file,
                field=f"spec.helm.valuesFiles[{index}]",
            )
        layers.append(load_yaml_mapping(files[name], file=name))
    values = merge_values(helm.values, *layers)
    return spec.model_copy(
        update={"helm": helm.model_copy(update={"values": values, "values_files": None})}
    )


# ---------------------------------------------------------------------------------------------
# Status
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Bundle:
    name: str
    path: str = "."
    error: str = ""


def summarize_helmop(
    name: str,
    report: BundleReport | None,
    *,
    version: str,
    commit: str,
    error: str,
    error_since: datetime | None,
) -> GitRepoSummary:
    """A HelmOp's status from its one bundle's report: as a GitRepo's, except that a chart
    source that gives no version is ChartError with the error, since when and the version
    still served (or, before any version was chosen, that nothing is deployed)."""
    summary = summarize_gitrepo(
        [_Bundle(name)] if commit else [],
        {name: report} if report else {},
        commit=commit,
        git_states=False,
    )
    if error:
        serving = f"still serving {version or 'the tarball'}" if commit else "nothing deployed"
        tail = f" (since {since_text(error_since)}; {serving})"
        message = one_line(error, MAX_MESSAGE - len(tail)) + tail
        return summary.model_copy(update={"state": RepoState.CHART_ERROR, "message": message})
    if not commit:
        return summary.model_copy(
            update={"state": BundleState.WAIT_APPLIED, "message": "choosing the chart version"}
        )
    return summary


def helmop_conditions(summary: GitRepoSummary, error: str) -> list[Condition]:
    """A HelmOp's conditions: Polled (the chart source answered, Fleet's name) and Ready."""
    return [
        Condition(
            type="Polled",
            status=not error,
            reason=RepoState.CHART_ERROR if error else "Polled",
            message=one_line(error),
        ),
        ready_condition(summary.state, summary.message),
    ]
