"""Offline commands on a local checkout, no server: ``flotilla bundle``, ``test``, ``target``."""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import posixpath
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from activities.checkout import read_checkout
from flotilla.bundles import Bundle, ReadResult, read_bundles
from flotilla.credentials import RenderSecretRefs
from flotilla.errors import SpecError, short_repr
from flotilla.ids import DEFAULT_NAMESPACE
from flotilla.models import (
    Cluster,
    ClusterGroup,
    ClusterGroupSpec,
    FleetBundle,
    GitTarget,
    LabelSelector,
    ObjectMeta,
    load_fleet_objects,
    load_gitrepo,
)
from flotilla.targeting import (
    ClusterInfo,
    explain_no_match,
    match_gitrepo_targets,
    resolve_deployment,
)

# Without --gitrepo there is no GitRepo to target with: every cluster is a target, so the
# bundle's own targetCustomizations (and overrideTargets) alone decide what a cluster gets.
EVERY_CLUSTER = GitTarget(name="all", cluster_selector=LabelSelector())
DIGEST_ANNOTATION = "flotilla.cattle.io/content-digest"


# ---------------------------------------------------------------------------------------------
# Reading a checkout for a command
# ---------------------------------------------------------------------------------------------


@dataclass
class Source:
    """Where the bundles come from and what GitRepo they belong to."""

    root: Path
    paths: list[str]
    name: str
    namespace: str
    targets: list[GitTarget] | None
    target_namespace: str | None = None  # the GitRepo's targetNamespace forces every bundle's
    warnings: list[str] = field(default_factory=list)
    # Helm credentials and the SOPS key are read from the secret store by these names.
    render_secrets: RenderSecretRefs | None = None


def _source_for(path: str, gitrepo_file: str | None, name: str | None, namespace: str) -> Source:
    root = Path(path)
    if not root.is_dir():
        raise SpecError("is not a directory", file=path)
    if gitrepo_file is None:
        return Source(
            root=root,
            paths=["."],
            name=_name_with_path(name, path) if name else _default_name(root),
            namespace=namespace,
            targets=[EVERY_CLUSTER],
        )
    gitrepo, warnings = load_gitrepo(_read_text(gitrepo_file), file=gitrepo_file)
    return Source(
        root=root,
        paths=gitrepo.spec.paths,
        name=name or gitrepo.metadata.name,
        namespace=gitrepo.metadata.namespace,
        targets=gitrepo.spec.targets,
        target_namespace=gitrepo.spec.target_namespace,
        warnings=warnings,
        render_secrets=RenderSecretRefs.for_gitrepo(gitrepo.metadata.namespace, gitrepo.spec),
    )


def _name_with_path(name: str, path: str) -> str:
    """Fleet's ``fleet apply --name NAME PATH``: bundle names start with NAME joined with
    PATH as given (``apps/web`` under ``shop`` is ``shop-apps-web``), as GitRepo ``paths``
    do. A path that is absolute or leaves the current directory adds nothing."""
    relative = posixpath.normpath(Path(path).as_posix())
    if relative == "." or posixpath.isabs(relative) or relative.split("/")[0] == "..":
        return name
    return posixpath.join(name, relative)


def _default_name(root: Path) -> str:
    return root.resolve().name or "bundle"


def _read_text(file: str) -> str:
    try:
        return Path(file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("file does not exist", file=file) from None
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(f"cannot be read: {err.__class__.__name__}", file=file) from None


def _read(source: Source) -> ReadResult:
    listing = read_checkout(source.root)
    result = read_bundles(
        listing, gitrepo_name=source.name, paths=source.paths, namespace=source.namespace
    )
    _warn([*source.warnings, *result.warnings])
    return result


def _warn(warnings: Sequence[str]) -> None:
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


def _report_invalid(result: ReadResult) -> None:
    """Every bad bundle but the last is printed here; the last becomes the command's error."""
    if not result.invalid:
        return
    for invalid in result.invalid[:-1]:
        print(f"error: {invalid.error}", file=sys.stderr)
    raise SpecError(result.invalid[-1].error)


# ---------------------------------------------------------------------------------------------
# flotilla bundle
# ---------------------------------------------------------------------------------------------


def to_fleet_bundle(bundle: Bundle, *, namespace: str) -> dict[str, Any]:
    """The Fleet ``Bundle`` object ``fleet apply -o -`` would print for this bundle."""
    options = bundle.options
    spec = options.model_dump(
        mode="json",
        by_alias=True,
        exclude_defaults=True,
        exclude={"name", "labels", "target_customizations", "override_targets", "image_scans"},
    )
    targets = [*(options.targets or []), *(options.target_customizations or [])]
    if targets:
        spec["targets"] = [
            t.model_dump(mode="json", by_alias=True, exclude_defaults=True) for t in targets
        ]
    spec["resources"] = [_resource(name, data) for name, data in sorted(bundle.resources.items())]
    fleet_bundle = FleetBundle.model_validate(
        {
            "metadata": {
                "name": bundle.name,
                "namespace": namespace,
                **({"labels": options.labels} if options.labels else {}),
                "annotations": {DIGEST_ANNOTATION: bundle.digest},
            },
            "spec": spec,
        }
    )
    return fleet_bundle.to_fleet()


class _BlockDumper(yaml.SafeDumper):
    """Prints multi-line strings (file contents) as ``|`` blocks, readable as in the repo."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


def _resource(name: str, data: bytes) -> dict[str, str]:
    try:
        return {"name": name, "content": data.decode("utf-8")}
    except UnicodeDecodeError:
        # Fleet's encoding for content that is not text.
        packed = base64.b64encode(gzip.compress(data, mtime=0)).decode()
        return {"name": name, "content": packed, "encoding": "base64+gz"}


def _cmd_bundle(args: argparse.Namespace) -> int:
    documents = []
    failed: ReadResult | None = None
    for path in args.paths:
        result = _read(_source_for(path, None, args.name, args.namespace))
        documents += [to_fleet_bundle(b, namespace=args.namespace) for b in result.bundles]
        if result.invalid:
            failed = result
    if documents:
        sys.stdout.write(
            yaml.dump_all(documents, Dumper=_BlockDumper, sort_keys=False, explicit_start=True)
        )
    if failed is not None:
        _report_invalid(failed)
    if not documents:
        raise SpecError("no bundle found", file=", ".join(args.paths))
    return 0


# ---------------------------------------------------------------------------------------------
# flotilla test
# ---------------------------------------------------------------------------------------------


def parse_label(text: str) -> tuple[str, str]:
    """``key=value`` from a ``-l`` flag."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise SpecError(f"{short_repr(text)} is not key=value", field="-l")
    return key.strip(), value.strip()


def _test_cluster(
    args: argparse.Namespace, namespace: str
) -> tuple[ClusterInfo, list[ClusterGroup]]:
    labels = dict(parse_label(item) for item in args.label or [])
    cluster = ClusterInfo(name=args.cluster_name, namespace=namespace, labels=labels)
    # A -g group holds this cluster: an empty selector matches every cluster.
    groups = [
        ClusterGroup(
            metadata=ObjectMeta(name=group, namespace=namespace),
            spec=ClusterGroupSpec(selector=LabelSelector()),
        )
        for group in args.group or []
    ]
    return cluster, groups


def _cmd_test(args: argparse.Namespace) -> int:
    source = _source_for(args.path, args.gitrepo, args.name, DEFAULT_NAMESPACE)
    result = _read(source)
    cluster, groups = _test_cluster(args, source.namespace)
    rendered = 0
    reasons: list[tuple[str, str]] = []
    # Only `test` renders: `bundle` and `target` start without the renderer and the settings.
    from activities.render import render_bundle  # noqa: PLC0415
    from activities.rendersecrets import read_render_secrets  # noqa: PLC0415
    from runtime.stores import load_settings, secret_store  # noqa: PLC0415
    from runtime.tools import locate_tools  # noqa: PLC0415

    settings = load_settings()
    # The pinned helm, kustomize and sops `make tools` built, found without PATH changes.
    tools = locate_tools(settings.tools)
    store = secret_store(settings)
    refs = source.render_secrets or RenderSecretRefs(namespace=source.namespace)
    for bundle in result.bundles:
        match = resolve_deployment(source.targets, bundle.options, cluster, groups)
        if match is None:
            targets = bundle.options.override_targets or source.targets
            if match_gitrepo_targets(targets, cluster, groups) is None:
                why = "; ".join(explain_no_match(targets, cluster, groups))
            else:
                why = "a targetCustomization with doNotDeploy matches"
            reasons.append((bundle.name, why))
            continue
        options = match.options
        if options.helm and options.helm.values_from:
            _warn([f"bundle {bundle.name}: helm.valuesFrom is read on the cluster; not used here"])
        if source.target_namespace:
            options = options.model_copy(update={"namespace": source.target_namespace})
        secrets = read_render_secrets(store, refs, bundle, options)
        with tempfile.TemporaryDirectory(prefix="flotilla-test-") as workdir:
            out = render_bundle(
                bundle,
                cluster,
                workdir=Path(workdir),
                options=options,
                groups=groups,
                tools=tools,
                secrets=secrets,
            )
        header = f"# bundle {bundle.name} ({bundle.path}), target {match.target.name}"
        if match.customizations:
            header += f", customizations {', '.join(match.customizations)}"
        sys.stdout.write(f"{header}\n{out.yaml}")
        rendered += 1
    _report_invalid(result)
    if rendered == 0:
        if not result.bundles:
            raise SpecError("no bundle found", file=args.path)
        raise SpecError(f"cluster {cluster.name!r} is not targeted: {_summarize(reasons)}")
    for name, why in reasons:
        print(f"note: bundle {name} is not deployed here: {why}", file=sys.stderr)
    return 0


def _summarize(reasons: list[tuple[str, str]]) -> str:
    """One line for many bundles: bundles that fail for the same reason are counted once."""
    by_reason: dict[str, list[str]] = {}
    for name, why in reasons:
        by_reason.setdefault(why, []).append(name)
    parts = []
    for why, names in by_reason.items():
        who = f"bundle {names[0]}" if len(names) == 1 else f"{len(names)} bundles"
        parts.append(f"{who}: {why}")
    return " | ".join(parts)


# ---------------------------------------------------------------------------------------------
# flotilla target
# ---------------------------------------------------------------------------------------------


def _load_clusters(file: str) -> tuple[list[Cluster], list[ClusterGroup]]:
    objects, warnings = load_fleet_objects(_read_text(file), file=file)
    _warn(warnings)
    clusters = [o for o in objects if isinstance(o, Cluster)]
    groups = [o for o in objects if isinstance(o, ClusterGroup)]
    if not clusters:
        raise SpecError("holds no Cluster object", file=file)
    return clusters, groups


def _cmd_target(args: argparse.Namespace) -> int:
    clusters, groups = _load_clusters(args.clusters)
    source = _source_for(args.path, args.gitrepo, args.name, DEFAULT_NAMESPACE)
    result = _read(source)
    rows = []
    for bundle in result.bundles:
        for cluster in clusters:
            info = ClusterInfo.from_cluster(cluster)
            match = resolve_deployment(source.targets, bundle.options, info, groups)
            rows.append(
                {
                    "bundle": bundle.name,
                    "cluster": f"{info.namespace}/{info.name}",
                    "targeted": match is not None,
                    "target": (match.target.name or "") if match else "",
                    "customizations": match.customizations if match else [],
                }
            )
    if args.output == "json":
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    elif args.output == "yaml":
        sys.stdout.write(yaml.safe_dump(rows, sort_keys=False))
    else:
        sys.stdout.write(_table(rows))
    _report_invalid(result)
    return 0


def _table(rows: list[dict[str, Any]]) -> str:
    header = ["BUNDLE", "CLUSTER", "TARGETED", "TARGET", "CUSTOMIZATIONS"]
    lines = [header]
    for row in rows:
        lines.append(
            [
                row["bundle"],
                row["cluster"],
                "yes" if row["targeted"] else "no",
                row["target"] or "-",
                ",".join(row["customizations"]) or "-",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        + "\n"
        for line in lines
    )


# ---------------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    """Add ``bundle``, ``test`` and ``target`` to the ``flotilla`` command."""
    bundle = subparsers.add_parser(
        "bundle", help="print the Bundle objects found in directories (like `fleet apply -o -`)"
    )
    bundle.add_argument("paths", nargs="+", metavar="PATH", help="bundle directories")
    bundle.add_argument("-n", "--namespace", default=DEFAULT_NAMESPACE, help="Bundle namespace")
    bundle.add_argument(
        "--name",
        help="GitRepo name the bundle names start with, joined with each PATH as given "
        "(like `fleet apply --name NAME PATH`)",
    )
    bundle.set_defaults(handler=_cmd_bundle)

    test = subparsers.add_parser(
        "test", help="print the manifests a cluster would get (like `fleet test`)"
    )
    _add_source_flags(test)
    test.add_argument(
        "-l", "--label", action="append", metavar="KEY=VALUE", help="a cluster label (repeatable)"
    )
    test.add_argument("-g", "--group", action="append", help="a cluster group (repeatable)")
    test.add_argument("-N", "--cluster-name", default="local", help="cluster name")
    test.set_defaults(handler=_cmd_test)

    target = subparsers.add_parser("target", help="show which clusters each bundle targets")
    _add_source_flags(target)
    target.add_argument(
        "--clusters", required=True, metavar="FILE", help="YAML with Cluster/ClusterGroup objects"
    )
    target.add_argument("-o", "--output", choices=["table", "yaml", "json"], default="table")
    target.set_defaults(handler=_cmd_target)


def _add_source_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="?", default=os.curdir, metavar="PATH", help="checkout")
    parser.add_argument(
        "--gitrepo", metavar="FILE", help="GitRepo YAML: its name, paths and targets are used"
    )
    parser.add_argument("--name", help="GitRepo name when no --gitrepo is given")


__all__ = ["parse_label", "register", "to_fleet_bundle"]
