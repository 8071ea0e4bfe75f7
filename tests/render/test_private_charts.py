"""Charts from private repositories with the GitRepo's Helm credentials, as Fleet picks them.

The sources are real (a basic-auth chart repository, an htpasswd OCI registry) and so is helm;
helm runs through a wrapper that records its argv, so every test can show that no password
was ever on a command line.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from activities.render import RenderedBundle, customize_options, render_bundle
from activities.rendersecrets import read_render_secrets
from activities.secrets import FileSecretStore, SecretStore
from activities.tools import ToolPaths
from devenv.registry import BASIC_PASSWORD, BASIC_USER
from flotilla.bundles import Bundle, FileListing, read_bundles
from flotilla.credentials import RenderSecretRefs
from flotilla.errors import FlotillaError
from flotilla.targeting import ClusterInfo
from tests.charts import ArgvRecorder, ChartServer
from tests.conftest import CHART_PASSWORD, CHART_USER

NAMESPACE = "fleet-local"
SECRET = "helm-creds"
CLUSTER = ClusterInfo(name="dev-1", labels={"env": "dev"})


@dataclass
class Renders:
    """Renders the way the worker and ``flotilla test`` do: read the secrets the bundle needs
    from ``store``, then render with a helm whose argv ``recorder`` keeps."""

    store: SecretStore
    recorder: ArgvRecorder
    root: Path

    def credentials(self, user: str, password: str) -> None:
        self.store.put(NAMESPACE, SECRET, {"username": user, "password": password})

    def render(self, bundle: Bundle, refs: RenderSecretRefs, workdir: str) -> RenderedBundle:
        options = customize_options(bundle, CLUSTER)
        assert options is not None
        secrets = read_render_secrets(self.store, refs, bundle, options)
        return render_bundle(
            bundle,
            CLUSTER,
            workdir=self.root / workdir,
            options=options,
            tools=ToolPaths(helm=self.recorder.wrap("helm", ToolPaths().require("helm"))),
            secrets=secrets,
        )

    def assert_never_on_a_command_line(self, *secrets: str) -> None:
        lines = self.recorder.lines()
        assert lines, "helm never ran"
        for secret in secrets:
            assert not [line for line in lines if secret in line]


@pytest.fixture
def renders(tmp_path: Path, render_tools: dict[str, str]) -> Renders:
    return Renders(
        FileSecretStore(tmp_path / "secrets"), ArgvRecorder(tmp_path / "recorded"), tmp_path
    )


def bundle_at(path: str, fleet_yaml: str) -> Bundle:
    listing = FileListing(files={f"{path}/fleet.yaml": fleet_yaml.encode()})
    (bundle,) = read_bundles(listing, gitrepo_name="t", paths=[path]).bundles
    return bundle


def refs(regex: str | None = None, **names: str) -> RenderSecretRefs:
    return RenderSecretRefs(
        namespace=NAMESPACE, helm_repo_url_regex=regex, **(names or {"helm_secret_name": SECRET})
    )


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def repo_chart(server: ChartServer) -> str:
    return f"helm:\n  repo: {server.url}\n  chart: private\n  version: 1.0.0\n"


def chart_version(out: RenderedBundle) -> str:
    (cm,) = [o for o in out.manifests if o["kind"] == "ConfigMap"]
    version: str = cm["data"]["chartVersion"]
    return version


# --- a basic-auth chart repository -----------------------------------------------------------


def test_private_repository_with_the_gitrepo_helm_secret(
    renders: Renders, private_chart_server: ChartServer
) -> None:
    renders.credentials(CHART_USER, CHART_PASSWORD)
    private_chart_server.authorizations.clear()
    bundle = bundle_at("apps/private", repo_chart(private_chart_server))

    out = renders.render(bundle, refs(re.escape(private_chart_server.url)), "w")

    assert chart_version(out) == "1.0.0"
    assert set(private_chart_server.authorizations) == {basic(CHART_USER, CHART_PASSWORD)}
    assert any(line.startswith("repo add flotilla ") for line in renders.recorder.lines())
    renders.assert_never_on_a_command_line(CHART_PASSWORD)


def test_a_wrong_password_is_one_line_naming_the_repository_and_the_secret(
    renders: Renders, private_chart_server: ChartServer
) -> None:
    renders.credentials(CHART_USER, "wrong-pw-4711")
    bundle = bundle_at("apps/private", repo_chart(private_chart_server))

    with pytest.raises(FlotillaError) as err:
        renders.render(bundle, refs(".*"), "w")

    message = str(err.value)
    assert message.startswith(
        f"apps/private/fleet.yaml: helm repo add {private_chart_server.url} failed: "
    )
    assert "401 Unauthorized" in message
    assert message.endswith(f" (credentials from secret {NAMESPACE}/{SECRET})")
    assert "wrong-pw-4711" not in message and "\n" not in message
    renders.assert_never_on_a_command_line("wrong-pw-4711")


@pytest.mark.parametrize(
    ("regex", "why"),
    [
        ("https://charts\\.example\\.com", "{url!r} does not match spec.helmRepoURLRegex"),
        (None, "spec.helmRepoURLRegex is empty; set it to allow sending them"),
    ],
)
def test_a_url_the_regex_does_not_allow_gets_no_credentials(
    renders: Renders, private_chart_server: ChartServer, regex: str | None, why: str
) -> None:
    renders.credentials(CHART_USER, CHART_PASSWORD)
    private_chart_server.authorizations.clear()
    bundle = bundle_at("apps/private", repo_chart(private_chart_server))

    with pytest.raises(FlotillaError) as err:
        renders.render(bundle, refs(regex), "w")

    assert private_chart_server.authorizations  # asked, without credentials
    assert set(private_chart_server.authorizations) == {""}
    message = str(err.value)
    assert message.startswith("apps/private/fleet.yaml: helm pull failed: ")
    why = why.format(url=private_chart_server.url)
    assert message.endswith(f" (credentials of secret {NAMESPACE}/{SECRET} not sent: {why})")


def test_credentials_by_bundle_path(renders: Renders, private_chart_server: ChartServer) -> None:
    by_path = (
        f"apps/*:\n  username: {CHART_USER}\n  password: {CHART_PASSWORD}\n"
        "other:\n  username: nobody\n  password: not-this-one\n"
    )
    renders.store.put(NAMESPACE, "by-path", {"secrets-path.yaml": by_path})
    # The per-path secret wins over helmSecretName, which here holds the wrong password.
    renders.credentials(CHART_USER, "wrong-pw-4711")
    names = {"helm_secret_name": SECRET, "helm_secret_name_for_paths": "by-path"}
    fleet_yaml = repo_chart(private_chart_server)

    out = renders.render(bundle_at("apps/private", fleet_yaml), refs(".*", **names), "a")
    assert chart_version(out) == "1.0.0"

    with pytest.raises(FlotillaError) as err:  # "apps/*" does not reach below apps/x/
        renders.render(bundle_at("apps/x/y", fleet_yaml), refs(".*", **names), "b")
    assert "401 Unauthorized" in str(err.value)
    assert "credentials" not in str(err.value)  # no entry matched: nothing was sent
    renders.assert_never_on_a_command_line(CHART_PASSWORD, "wrong-pw-4711", "not-this-one")


def test_a_tgz_url_with_credentials_is_downloaded_without_helm(
    renders: Renders, private_chart_server: ChartServer
) -> None:
    renders.credentials(CHART_USER, CHART_PASSWORD)
    url = f"{private_chart_server.url}/private-1.0.0.tgz"
    bundle = bundle_at("apps/tgz", f"helm:\n  chart: {url}\n")

    out = renders.render(bundle, refs(re.escape(url)), "ok")
    assert chart_version(out) == "1.0.0"

    renders.credentials(CHART_USER, "wrong-pw-4711")
    with pytest.raises(FlotillaError) as err:
        renders.render(bundle, refs(re.escape(url)), "bad")
    assert str(err.value) == (
        f"apps/tgz/fleet.yaml: download of {url} failed: HTTP 401 Unauthorized "
        f"(credentials from secret {NAMESPACE}/{SECRET})"
    )
    renders.assert_never_on_a_command_line(CHART_PASSWORD, "wrong-pw-4711")


def test_a_missing_helm_secret_names_itself(
    renders: Renders, private_chart_server: ChartServer
) -> None:
    bundle = bundle_at("apps/private", repo_chart(private_chart_server))
    with pytest.raises(FlotillaError) as err:
        renders.render(bundle, refs(".*"), "w")
    assert str(err.value).startswith(f"secret {NAMESPACE}/{SECRET} not found in the secret store")


# --- an OCI registry with htpasswd -----------------------------------------------------------


def oci_chart(reference: str) -> str:
    return f"helm:\n  chart: {reference}/private\n  version: 1.0.0\n"


def test_private_oci_registry_with_the_gitrepo_helm_secret(
    renders: Renders, private_oci_registry: str
) -> None:
    renders.credentials(BASIC_USER, BASIC_PASSWORD)
    bundle = bundle_at("apps/oci", oci_chart(private_oci_registry))

    out = renders.render(bundle, refs("oci://127\\.0\\.0\\.1:"), "ok")

    assert chart_version(out) == "1.0.0"
    assert any(line.startswith("registry login 127.0.0.1:") for line in renders.recorder.lines())
    renders.assert_never_on_a_command_line(BASIC_PASSWORD)


def test_a_wrong_registry_password_is_one_line(renders: Renders, private_oci_registry: str) -> None:
    renders.credentials(BASIC_USER, "wrong-pw-4711")
    bundle = bundle_at("apps/oci", oci_chart(private_oci_registry))
    host = private_oci_registry.removeprefix("oci://").split("/")[0]

    with pytest.raises(FlotillaError) as err:
        renders.render(bundle, refs("oci://"), "w")

    message = str(err.value)
    assert message.startswith(f"apps/oci/fleet.yaml: helm registry login {host} failed: ")
    assert message.endswith(f" (credentials from secret {NAMESPACE}/{SECRET})")
    assert "wrong-pw-4711" not in message and "\n" not in message
    renders.assert_never_on_a_command_line("wrong-pw-4711")


def test_an_oci_chart_outside_the_regex_is_pulled_without_credentials(
    renders: Renders, private_oci_registry: str
) -> None:
    renders.credentials(BASIC_USER, BASIC_PASSWORD)
    bundle = bundle_at("apps/oci", oci_chart(private_oci_registry))

    with pytest.raises(FlotillaError) as err:
        renders.render(bundle, refs("oci://registry\\.example\\.com/"), "w")

    assert str(err.value).startswith("apps/oci/fleet.yaml: helm pull failed: ")
    assert "does not match spec.helmRepoURLRegex" in str(err.value)
    assert not any("registry login" in line for line in renders.recorder.lines())
