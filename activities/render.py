"""Render a bundle for one cluster with the real helm and kustomize programs."""

from __future__ import annotations

import ipaddress
import os
import posixpath
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, Field

from activities.tools import PATH_TOOLS, ToolPaths
from flotilla.bundles import (
    CHART_YAML,
    KUSTOMIZATION_YAML,
    Bundle,
    BundleStyle,
    chart_dir,
    detect_style,
    is_remote_chart,
    kustomize_dir,
)
from flotilla.errors import RenderError, SpecError
from flotilla.manifests import (
    Manifest,
    apply_namespaces,
    dump_manifests,
    parse_manifests,
    select_raw_files,
    sort_manifests,
)
from flotilla.models import BundleDeploymentOptions, ClusterGroup
from flotilla.overlays import apply_overlays
from flotilla.targeting import ClusterInfo, merge_customization, select_customizations
from flotilla.templating import process_values
from flotilla.values import merge_values

# Kustomize reads the Helm output from this file, listed first in the kustomization, as Fleet
# does when a bundle has both a chart and a kustomization.yaml.
HELM_OUTPUT_FILE = "fleet-manifests.yaml"
# In a raw-YAML bundle, files below templates/ are Helm templates (Fleet renders them too).
TEMPLATES_PREFIX = "templates/"
TOOL_TIMEOUT_SECONDS = 300
_MAX_MESSAGE = 300
# user:password@ after a scheme; kustomize also prints URLs with one slash after cleaning them
# as paths ("https:/user:pw@host").
_URL_CREDENTIALS = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*:/{1,2})[^/@\s'\"]+@")


class RenderedBundle(BaseModel):
    """What one cluster gets from one bundle: objects, and the same as stable YAML."""

    manifests: list[dict[str, Any]]
    yaml: str
    options: BundleDeploymentOptions
    values: dict[str, Any] = Field(default_factory=dict)
    release_name: str
    namespace: str


# ---------------------------------------------------------------------------------------------
# Running the tools
# ---------------------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    """A tool's stderr as one short line, with credentials in URLs masked."""
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    message = "; ".join(line.removeprefix("Error: ") for line in lines) or "no message"
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."


def _run(args: Sequence[str], *, what: str, file: str, env: Mapping[str, str]) -> str:
    try:
        done = subprocess.run(
            list(args),
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            env=dict(env),
            timeout=TOOL_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RenderError(f"{what} timed out after {TOOL_TIMEOUT_SECONDS}s", file=file) from None
    if done.returncode != 0:
        raise RenderError(f"{what} failed: {_one_line(done.stderr)}", file=file)
    return done.stdout


def _helm_env(workdir: Path) -> dict[str, str]:
    # Helm keeps repositories, caches and registry logins in the home directory; a private
    # set per render keeps renders independent of each other and of the user's setup.
    home = workdir / ".helm"
    env = dict(os.environ)
    env.update(
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_DATA_HOME=str(home / "data"),
    )
    return env


# ---------------------------------------------------------------------------------------------
# Options and values
# ---------------------------------------------------------------------------------------------


def customize_options(
    bundle: Bundle, cluster: ClusterInfo, groups: Sequence[ClusterGroup] = ()
) -> BundleDeploymentOptions | None:
    """The bundle's options after the targetCustomizations that apply to ``cluster``.

    None when a matching customization says ``doNotDeploy``. GitRepo targets are not checked
    here: rendering happens for clusters that targeting already chose.
    """
    customizations = select_customizations(bundle.options, cluster, groups)
    if any(c.do_not_deploy for c in customizations):
        return None
    fields = set(BundleDeploymentOptions.model_fields)
    options = BundleDeploymentOptions.model_validate(
        bundle.options.model_dump(include=fields, exclude_unset=True)
    )
    for customization in customizations:
        options = merge_customization(options, customization)
    return options


def compute_values(
    options: BundleDeploymentOptions,
    cluster: ClusterInfo,
    *,
    values_from: Mapping[str, Any] | None = None,
    file: str = "fleet.yaml",
) -> dict[str, Any]:
    """Helm values for one cluster: ``values`` (valuesFiles already folded in at read time)
    with ``global.fleet.clusterLabels.*`` references and ``${ }`` templates resolved unless
    ``disablePreProcess``, then ``values_from`` (read on the cluster by the caller) over them."""
    helm = options.helm
    values = process_values(
        (helm.values if helm else None) or {},
        cluster,
        disable_pre_process=bool(helm and helm.disable_pre_process),
        file=file,
    )
    return merge_values(values, values_from)


def release_namespace(options: BundleDeploymentOptions) -> str:
    """``namespace``, else ``defaultNamespace``, else ``default``."""
    return options.namespace or options.default_namespace or "default"


def release_name_for(bundle: Bundle, options: BundleDeploymentOptions) -> str:
    """``helm.releaseName``, else the bundle name."""
    return (options.helm.release_name if options.helm else None) or bundle.name


# ---------------------------------------------------------------------------------------------
# Files on disk
# ---------------------------------------------------------------------------------------------


def write_resources(resources: Mapping[str, bytes], dest: Path) -> None:
    """Write bundle files below ``dest``; paths never leave it (they come from a listing)."""
    root = dest.resolve()
    for relative, data in resources.items():
        target = (root / relative).resolve()
        if not target.is_relative_to(root):
            raise SpecError("path leaves the bundle directory", file=relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _has_dependencies(chart: Path) -> bool:
    try:
        meta = yaml.safe_load((chart / CHART_YAML).read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(meta, dict) and bool(meta.get("dependencies"))


def _plain_http(reference: str) -> bool:
    """Loopback registries and repos (tests, a local mirror) are spoken to without TLS."""
    host = urlsplit(reference).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def materialize_chart(
    bundle: Bundle,
    dest: Path,
    *,
    options: BundleDeploymentOptions | None = None,
    tools: ToolPaths = PATH_TOOLS,
) -> Path:
    """Put the bundle's chart on disk below ``dest`` and return its directory.

    Local charts are written from the bundle's files (dependencies built unless
    ``disableDependencyUpdate``); remote charts (repo, ``oci://``, .tgz URL) are pulled.
    """
    opts = options or bundle.options
    file = posixpath.join(bundle.path, "fleet.yaml")
    if detect_style(bundle.resources, opts, file=file) is not BundleStyle.HELM:
        raise RenderError("bundle has no Helm chart", file=file, field="helm.chart")
    helm = tools.require("helm")
    env = _helm_env(dest)
    if is_remote_chart(opts):
        assert opts.helm is not None and opts.helm.chart  # is_remote_chart guarantees both
        pulled = dest / "pulled"
        args = [helm, "pull", opts.helm.chart, "--untar", "--destination", str(pulled)]
        args += _source_flags(opts)
        _run(args, what="helm pull", file=file, env=env)
        (chart,) = [p for p in pulled.iterdir() if p.is_dir()]
        return chart
    files = dest / "bundle"
    write_resources(bundle.resources, files)
    chart = files / chart_dir(opts)
    disabled = bool(opts.helm and opts.helm.disable_dependency_update)
    if not disabled and _has_dependencies(chart) and not (chart / "charts").is_dir():
        _run(
            [helm, "dependency", "build", str(chart)],
            what="helm dependency build",
            file=file,
            env=env,
        )
    return chart


def _source_flags(options: BundleDeploymentOptions) -> list[str]:
    helm = options.helm
    if helm is None or not helm.chart:
        return []
    flags = []
    if helm.repo:
        flags += ["--repo", helm.repo]
    if helm.version:
        flags += ["--version", helm.version]
    if _plain_http(helm.repo or helm.chart) and helm.chart.startswith("oci://"):
        flags.append("--plain-http")
    return flags


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def render_bundle(
    bundle: Bundle,
    cluster: ClusterInfo,
    *,
    workdir: Path,
    options: BundleDeploymentOptions | None = None,
    groups: Sequence[ClusterGroup] = (),
    values_from: Mapping[str, Any] | None = None,
    tools: ToolPaths = PATH_TOOLS,
) -> RenderedBundle:
    """Render what ``cluster`` gets from ``bundle``: Helm, Kustomize (also over Helm output)
    or raw YAML with overlays, then namespaces and a stable order.

    ``options`` are the cluster's merged options when the caller already resolved them;
    otherwise they are computed from the bundle's targetCustomizations.
    """
    file = posixpath.join(bundle.path, "fleet.yaml")
    if options is None:
        options = customize_options(bundle, cluster, groups)
        if options is None:
            raise RenderError(f"cluster {cluster.name!r} is excluded by doNotDeploy", file=file)
    workdir.mkdir(parents=True, exist_ok=True)
    style = detect_style(bundle.resources, options, file=file)
    values = compute_values(options, cluster, values_from=values_from, file=file)
    release = release_name_for(bundle, options)
    namespace = release_namespace(options)

    def helm_template(chart_args: list[str]) -> str:
        return _helm_template(
            chart_args,
            values,
            workdir,
            release=release,
            namespace=namespace,
            options=options,
            file=file,
            tools=tools,
        )

    if style is BundleStyle.RAW:
        objects, templates = _raw_objects(bundle, options)
        if templates:
            chart = _generated_chart(bundle, templates, workdir / "generated")
            text = helm_template([str(chart)])
            objects += parse_manifests(text, file=f"{bundle.path}/templates (rendered by helm)")
    else:
        text = ""
        if style is BundleStyle.HELM:
            text = helm_template(_chart_args(bundle, options, workdir, tools))
        if _has_kustomization(bundle, options):
            text = _kustomize_build(bundle, options, text, workdir, file=file, tools=tools)
        objects = parse_manifests(text, file=f"{bundle.path} (rendered by {style})")
    objects = apply_namespaces(
        objects,
        namespace=options.namespace,
        default_namespace=options.default_namespace,
        file=file,
    )
    ordered = sort_manifests(objects)
    return RenderedBundle(
        manifests=ordered,
        yaml=dump_manifests(ordered),
        options=options,
        values=values,
        release_name=release,
        namespace=namespace,
    )


def _helm_template(
    chart_args: list[str],
    values: Mapping[str, Any],
    workdir: Path,
    *,
    release: str,
    namespace: str,
    options: BundleDeploymentOptions,
    file: str,
    tools: ToolPaths,
) -> str:
    helm = tools.require("helm")
    values_path = workdir / "values.yaml"
    values_path.write_text(yaml.safe_dump(dict(values), sort_keys=True))
    args = [helm, "template", release, *chart_args]
    args += ["--namespace", namespace, "--values", str(values_path), "--include-crds"]
    if options.helm and options.helm.skip_schema_validation:
        args.append("--skip-schema-validation")
    return _run(args, what="helm template", file=file, env=_helm_env(workdir))


def _chart_args(
    bundle: Bundle, options: BundleDeploymentOptions, workdir: Path, tools: ToolPaths
) -> list[str]:
    if is_remote_chart(options):
        assert options.helm is not None and options.helm.chart
        return [options.helm.chart, *_source_flags(options)]
    return [str(materialize_chart(bundle, workdir, options=options, tools=tools))]


def _generated_chart(bundle: Bundle, templates: Mapping[str, bytes], dest: Path) -> Path:
    """A chart around a raw bundle's ``templates/`` files, which Fleet renders with Helm."""
    chart = {"apiVersion": "v2", "name": bundle.name, "version": "0.0.0"}
    write_resources({CHART_YAML: yaml.safe_dump(chart).encode(), **templates}, dest)
    return dest


def _raw_objects(
    bundle: Bundle, options: BundleDeploymentOptions
) -> tuple[list[Manifest], dict[str, bytes]]:
    """Objects of the raw files after overlays, and the ``templates/`` files left for Helm."""
    overlays = (options.yaml.overlays if options.yaml else None) or []
    files = apply_overlays(bundle.resources, overlays, bundle_dir=bundle.path)
    objects: list[Manifest] = []
    templates: dict[str, bytes] = {}
    for path, data in sorted(select_raw_files(files).items()):
        if path.startswith(TEMPLATES_PREFIX):
            templates[path] = data
            continue
        # Each file is parsed on its own so that an error names the file it is in.
        where = posixpath.join(bundle.path, path)
        objects += parse_manifests(data.decode("utf-8", errors="replace"), file=where)
    return objects, templates


def _has_kustomization(bundle: Bundle, options: BundleDeploymentOptions) -> bool:
    directory = kustomize_dir(options)
    return posixpath.join("" if directory == "." else directory, KUSTOMIZATION_YAML) in (
        bundle.resources
    )


def _kustomize_build(
    bundle: Bundle,
    options: BundleDeploymentOptions,
    helm_output: str,
    workdir: Path,
    *,
    file: str,
    tools: ToolPaths,
) -> str:
    kustomize = tools.require("kustomize")
    files = workdir / "kustomize"
    write_resources(bundle.resources, files)
    directory = files / kustomize_dir(options)
    if helm_output.strip():
        (directory / HELM_OUTPUT_FILE).write_text(helm_output)
        kustomization_path = directory / KUSTOMIZATION_YAML
        kustomization = yaml.safe_load(kustomization_path.read_text()) or {}
        if not isinstance(kustomization, dict):
            where = posixpath.join(bundle.path, kustomize_dir(options), KUSTOMIZATION_YAML)
            raise RenderError("top level must be a mapping", file=where)
        resources = list(kustomization.get("resources") or [])
        if HELM_OUTPUT_FILE not in resources:
            kustomization["resources"] = [HELM_OUTPUT_FILE, *resources]
        kustomization_path.write_text(yaml.safe_dump(kustomization, sort_keys=False))
    return _run(
        [kustomize, "build", str(directory)], what="kustomize build", file=file, env=os.environ
    )


__all__ = [
    "RenderedBundle",
    "compute_values",
    "customize_options",
    "materialize_chart",
    "release_namespace",
    "render_bundle",
]
