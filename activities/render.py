"""Render a bundle for one cluster with the real helm and kustomize programs."""

from __future__ import annotations

import ipaddress
import os
import posixpath
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, Field

from activities.rendersecrets import RenderSecrets
from activities.sops import decrypt_bundle
from activities.tools import PATH_TOOLS, TOOL_TIMEOUT_SECONDS, ToolPaths, run_tool
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
from flotilla.credentials import ChartAccess
from flotilla.errors import RenderError, SpecError
from flotilla.hints import Target, ending_with_fix
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
# A chart archive downloaded by flotilla itself (a .tgz URL with credentials); Helm's own
# limit for chart archives is about the same.
MAX_CHART_BYTES = 64 * 1024 * 1024
# The name a private chart repository is added under, in a helm home private to one render.
_REPO_ALIAS = "flotilla"


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
    access: ChartAccess | None = None,
) -> Path:
    """Put the bundle's chart on disk below ``dest`` and return its directory (or archive).

    Local charts are written from the bundle's files (dependencies built unless
    ``disableDependencyUpdate``); remote charts (repo, ``oci://``, .tgz URL) are pulled, with
    ``access`` (the GitRepo's Helm credentials and TLS settings for this chart) when given.
    """
    opts = options or bundle.options
    file = posixpath.join(bundle.path, "fleet.yaml")
    if detect_style(bundle.resources, opts, file=file) is not BundleStyle.HELM:
        raise RenderError("bundle has no Helm chart", file=file, field="helm.chart")
    helm = tools.require("helm")
    env = _helm_env(dest)
    if is_remote_chart(opts):
        return _pull_chart(opts, access or ChartAccess(), dest, helm=helm, env=env, file=file)
    files = dest / "bundle"
    write_resources(bundle.resources, files)
    chart = files / chart_dir(opts)
    disabled = bool(opts.helm and opts.helm.disable_dependency_update)
    if not disabled and _has_dependencies(chart) and not (chart / "charts").is_dir():
        run_tool(
            [helm, "dependency", "build", str(chart)],
            what="helm dependency build",
            file=file,
            env=env,
        )
    return chart


def _pull_chart(
    options: BundleDeploymentOptions,
    access: ChartAccess,
    dest: Path,
    *,
    helm: str,
    env: Mapping[str, str],
    file: str,
) -> Path:
    """Pull a remote chart into ``dest``. Credentials never go on a command line: helm reads
    them from its private home (``helm repo add`` / ``helm registry login`` with the password
    on stdin), or, for a bare .tgz URL, which helm can only be given one with ``--password``,
    the archive is downloaded here."""
    source = options.helm
    assert source is not None and source.chart  # is_remote_chart guarantees both
    chart = source.chart
    oci = chart.startswith("oci://")
    dest.mkdir(parents=True, exist_ok=True)
    tls: list[str] = []
    if access.ca_bundle:
        ca_file = dest / "ca.pem"
        ca_file.write_text(access.ca_bundle)
        tls += ["--ca-file", str(ca_file)]
    plain_http = oci and (access.basic_http or _plain_http(chart))
    reference = [chart, *(["--repo", source.repo] if source.repo else [])]

    def log_in(args: list[str], what: str) -> None:
        run_tool(
            [*args, "--username", access.username, "--password-stdin", *tls],
            what=what,
            file=file,
            env=env,
            stdin=access.password,
            redact=[access.password],
            note=access.note(),
        )

    if access.sends_credentials and oci:
        host = urlsplit(chart).netloc
        args = [helm, "registry", "login", host]
        args += ["--insecure"] if access.insecure_skip_verify else []
        log_in(args + (["--plain-http"] if plain_http else []), f"helm registry login {host}")
    elif access.sends_credentials and source.repo:
        args = [helm, "repo", "add", _REPO_ALIAS, source.repo]
        args += ["--insecure-skip-tls-verify"] if access.insecure_skip_verify else []
        log_in(args, f"helm repo add {source.repo}")
        reference = [f"{_REPO_ALIAS}/{chart}"]
    elif access.sends_credentials:
        return _download_archive(chart, access, dest / "pulled", file=file)
    pulled = dest / "pulled"
    args = [helm, "pull", *reference, "--untar", "--destination", str(pulled), *tls]
    args += ["--version", source.version] if source.version else []
    args += ["--insecure-skip-tls-verify"] if access.insecure_skip_verify else []
    args += ["--plain-http"] if plain_http else []
    run_tool(
        args,
        what="helm pull",
        file=file,
        env=env,
        note=access.note(),
        target=Target.CHART_SOURCE,
    )
    # helm also leaves an empty directory named after the archive for a .tgz URL.
    (pulled_chart,) = [p for p in pulled.iterdir() if (p / CHART_YAML).is_file()]
    return pulled_chart


def _download_archive(url: str, access: ChartAccess, dest: Path, *, file: str) -> Path:
    """A chart .tgz fetched with basic auth, sent to that URL only (not to a redirect)."""
    passwords = urllib.request.HTTPPasswordMgrWithPriorAuth()
    passwords.add_password(None, url, access.username, access.password, is_authenticated=True)
    try:
        context = ssl.create_default_context(cadata=access.ca_bundle or None)
    except (ssl.SSLError, ValueError):
        raise RenderError(
            f"the CA bundle of secret {access.secret} is not PEM", file=file
        ) from None
    if access.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    opener = urllib.request.build_opener(
        urllib.request.HTTPBasicAuthHandler(passwords), urllib.request.HTTPSHandler(context=context)
    )
    try:
        with opener.open(url, timeout=TOOL_TIMEOUT_SECONDS) as response:
            data = response.read(MAX_CHART_BYTES + 1)
    except urllib.error.HTTPError as err:
        problem = f"HTTP {err.code} {err.reason}"
    except (OSError, urllib.error.URLError) as err:
        problem = str(getattr(err, "reason", err))
    else:
        if len(data) > MAX_CHART_BYTES:
            raise RenderError(f"chart {url} is larger than {MAX_CHART_BYTES} bytes", file=file)
        dest.mkdir(parents=True, exist_ok=True)
        archive = dest / (posixpath.basename(urlsplit(url).path) or "chart.tgz")
        archive.write_bytes(data)
        return archive
    note = access.note()
    room = len(file) + len(url) + len(note) + 30
    problem = ending_with_fix(problem, Target.CHART_SOURCE, reserve=room)
    raise RenderError(f"download of {url} failed: {problem}{note}", file=file)


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
    secrets: RenderSecrets | None = None,
) -> RenderedBundle:
    """Render what ``cluster`` gets from ``bundle``: Helm, Kustomize (also over Helm output)
    or raw YAML with overlays, then namespaces and a stable order.

    ``options`` are the cluster's merged options when the caller already resolved them;
    otherwise they are computed from the bundle's targetCustomizations. ``secrets`` (read by
    ``read_render_secrets``) decrypt SOPS files and reach a private chart repository.
    """
    file = posixpath.join(bundle.path, "fleet.yaml")
    if options is None:
        options = customize_options(bundle, cluster, groups)
        if options is None:
            raise RenderError(f"cluster {cluster.name!r} is excluded by doNotDeploy", file=file)
    workdir.mkdir(parents=True, exist_ok=True)
    secrets = secrets or RenderSecrets()
    decrypted = decrypt_bundle(bundle, secrets.age_key, workdir=workdir, tools=tools)
    bundle = decrypted.bundle
    options = decrypted.reveal_options(options)
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
            chart = materialize_chart(
                bundle, workdir, options=options, tools=tools, access=secrets.chart
            )
            text = helm_template([str(chart)])
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


# The post-renderer plugin each kustomized chart deploy writes (Helm 4 runs no bare executable).
KUSTOMIZE_PLUGIN = "flotilla-kustomize"


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
    return run_tool(args, what="helm template", file=file, env=_helm_env(workdir))


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
    return run_tool(
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


def kustomize_post_renderer(
    bundle: Bundle, options: BundleDeploymentOptions, dest: Path, tools: ToolPaths
) -> tuple[Path, tuple[str, ...]] | None:
    """For a chart with a kustomization: Helm's output is kustomized before it is applied.

    As in Fleet, the rendered chart becomes the first resource of the bundle's
    kustomization.yaml; the post-renderer writes it there and runs ``kustomize build``.
    Helm 4 takes post-renderers only as plugins, so this writes one (``plugin.yaml`` and its
    script) and returns the plugin's directory and its arguments, or None when the bundle
    has no kustomization.
    """
    directory = kustomize_dir(options)
    if posixpath.join("" if directory == "." else directory, KUSTOMIZATION_YAML) not in (
        bundle.resources
    ):
        return None
    files = dest / "kustomize"
    write_resources(bundle.resources, files)
    kustomization_dir = files / directory
    kustomization_path = kustomization_dir / KUSTOMIZATION_YAML
    where = posixpath.join(bundle.path, directory, KUSTOMIZATION_YAML)
    try:
        kustomization = yaml.safe_load(kustomization_path.read_text()) or {}
    except yaml.YAMLError:
        raise RenderError("is not valid YAML", file=where) from None
    if not isinstance(kustomization, dict):
        raise RenderError("top level must be a mapping", file=where)
    resources = list(kustomization.get("resources") or [])
    if HELM_OUTPUT_FILE not in resources:
        kustomization["resources"] = [HELM_OUTPUT_FILE, *resources]
    kustomization_path.write_text(yaml.safe_dump(kustomization, sort_keys=False))
    plugin = dest / "helm-plugins" / KUSTOMIZE_PLUGIN
    plugin.mkdir(parents=True, exist_ok=True)
    script = plugin / "kustomize-post-renderer.sh"
    script.write_text(f'#!/bin/sh\nset -e\ncat > "$1/{HELM_OUTPUT_FILE}"\nexec "$2" build "$1"\n')
    script.chmod(0o700)
    descriptor = {
        "apiVersion": "v1",
        "name": KUSTOMIZE_PLUGIN,
        "version": "1.0.0",
        "type": "postrenderer/v1",
        "runtime": "subprocess",
        "runtimeConfig": {"platformCommand": [{"command": f"${{HELM_PLUGIN_DIR}}/{script.name}"}]},
    }
    (plugin / "plugin.yaml").write_text(yaml.safe_dump(descriptor, sort_keys=False))
    return plugin, (str(kustomization_dir), tools.require("kustomize"))
