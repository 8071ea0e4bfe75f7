"""KubernetesSecretStore against a real API server: Fleet's types round-trip, lists carry no
values, and not found, unauthorized, forbidden (real RBAC) and a stopped API server are one
line each, never holding a value."""

from __future__ import annotations

import base64
import json
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import kube, kubesecrets
from activities.content import FileContentStore
from activities.deploy import DeployActivities
from activities.deploy_models import ReleaseRef, RemoveRequest
from activities.kube import Kube
from activities.kubesecrets import MANAGED_BY, MANAGED_BY_LABEL, KubernetesSecretStore
from activities.registry import RegistryActivities
from activities.registry_models import PollRequest
from activities.secrets import (
    BASIC_AUTH,
    DOCKER_CONFIG_JSON,
    OPAQUE,
    SSH_AUTH,
    SecretNotFoundError,
    SecretStoreError,
    get_key,
    kubeconfig_secret_name,
)
from devenv.cluster import LocalCluster
from flotilla.settings import SettingsError
from runtime.stores import load_settings, secret_store
from tests.images.conftest import FaultServer, Reply
from tests.secrets.conftest import (
    bind,
    create_namespace,
    create_secret,
    service_account_token,
)

PASSWORD = "pw-" + uuid.uuid4().hex  # a value that must never show up anywhere

FLEET_SECRETS = {
    OPAQUE: {"value": "apiVersion: v1\nkind: Config\n# ünïcode survives\n"},
    BASIC_AUTH: {"username": "bot", "password": PASSWORD},
    SSH_AUTH: {
        "ssh-privatekey": f"-----BEGIN OPENSSH PRIVATE KEY-----\n{PASSWORD}\n"
        "-----END OPENSSH PRIVATE KEY-----\n",
        "known_hosts": "git.example.com ssh-ed25519 AAAAC3Nza\n",
    },
    DOCKER_CONFIG_JSON: {
        ".dockerconfigjson": json.dumps({"auths": {"ghcr.io": {"auth": PASSWORD}}}),
    },
}


def raw_secret(cluster: LocalCluster, namespace: str, name: str) -> dict[str, object]:
    return cluster.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")


def one_line_without_value(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and PASSWORD not in text and PASSWORD not in repr(err)
    return text


@pytest.mark.parametrize("secret_type", list(FLEET_SECRETS))
def test_each_fleet_type_round_trips_with_the_managed_by_label(
    store: KubernetesSecretStore,
    management_cluster: LocalCluster,
    mgmt_namespace: str,
    secret_type: str,
) -> None:
    data = FLEET_SECRETS[secret_type]
    store.put(mgmt_namespace, "creds", data, type=secret_type)
    assert store.get(mgmt_namespace, "creds") == data
    raw = raw_secret(management_cluster, mgmt_namespace, "creds")
    assert raw["type"] == secret_type
    assert raw["metadata"]["labels"] == {MANAGED_BY_LABEL: MANAGED_BY}  # type: ignore[index]
    assert raw["data"] == {  # what kubectl and Fleet read: base64 of the UTF-8 text
        key: base64.b64encode(value.encode()).decode() for key, value in data.items()
    }


def test_replacing_keeps_metadata_and_drops_keys_not_given(
    store: KubernetesSecretStore, management_cluster: LocalCluster, mgmt_namespace: str
) -> None:
    store.put(mgmt_namespace, "git", {"username": "a", "password": "old"}, type=BASIC_AUTH)
    with Kube.from_kubeconfig(management_cluster.kubeconfig.read_text()) as admin:
        admin.merge_patch(
            "v1",
            "Secret",
            mgmt_namespace,
            "git",
            {"metadata": {"labels": {"team": "web"}, "annotations": {"note": "kept"}}},
        )
    store.put(mgmt_namespace, "git", {"password": PASSWORD}, type=BASIC_AUTH)
    assert store.get(mgmt_namespace, "git") == {"password": PASSWORD}
    metadata = raw_secret(management_cluster, mgmt_namespace, "git")["metadata"]
    assert metadata["labels"] == {"team": "web", MANAGED_BY_LABEL: MANAGED_BY}  # type: ignore[index]
    assert metadata["annotations"] == {"note": "kept"}  # type: ignore[index]

    with pytest.raises(SecretStoreError) as caught:
        store.put(mgmt_namespace, "git", {"value": "x"}, type=OPAQUE)
    assert one_line_without_value(caught.value) == (
        f"secret {mgmt_namespace}/git exists with type 'kubernetes.io/basic-auth', not "
        "'Opaque': a Secret's type cannot change; delete it first"
    )


def test_a_secret_made_for_fleet_is_read_and_only_deleted_when_asked(
    store: KubernetesSecretStore, management_cluster: LocalCluster, mgmt_namespace: str
) -> None:
    create_secret(
        management_cluster, mgmt_namespace, "one-kubeconfig", {"value": "kubeconfig text"}
    )
    assert get_key(store, mgmt_namespace, "one-kubeconfig", "value") == "kubeconfig text"
    assert store.delete(mgmt_namespace, "one-kubeconfig", if_managed=True) is False
    assert store.get(mgmt_namespace, "one-kubeconfig") == {"value": "kubeconfig text"}
    assert store.delete(mgmt_namespace, "one-kubeconfig") is True
    assert store.delete(mgmt_namespace, "one-kubeconfig") is False

    store.put(mgmt_namespace, "two-kubeconfig", {"value": "v"})
    assert store.delete(mgmt_namespace, "two-kubeconfig", if_managed=True) is True
    assert store.delete(mgmt_namespace, "two-kubeconfig", if_managed=True) is False


def test_list_gives_names_types_and_keys_in_pages_never_values(
    store: KubernetesSecretStore, mgmt_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index, (secret_type, data) in enumerate(FLEET_SECRETS.items()):
        store.put(mgmt_namespace, f"s{index}", data, type=secret_type)
    monkeypatch.setattr(kubesecrets, "_LIST_PAGE", 3)  # four Secrets: two pages
    listed = store.list(mgmt_namespace)
    assert [(s.name, s.type, s.keys) for s in listed] == [
        (f"s{index}", secret_type, sorted(data))
        for index, (secret_type, data) in enumerate(FLEET_SECRETS.items())
    ]
    dumped = json.dumps([s.model_dump() for s in listed])
    assert PASSWORD not in dumped and "ünïcode" not in dumped
    assert store.list(f"none-{uuid.uuid4().hex[:6]}") == []


def test_not_found_and_missing_namespace_are_one_line(
    store: KubernetesSecretStore, management_cluster: LocalCluster, mgmt_namespace: str
) -> None:
    with pytest.raises(SecretNotFoundError) as caught:
        store.get(mgmt_namespace, "nope")
    assert one_line_without_value(caught.value) == (
        f"secret {mgmt_namespace}/nope not found in the management cluster at "
        f"{management_cluster.server}"
    )
    missing = f"gone-{uuid.uuid4().hex[:6]}"
    with pytest.raises(SecretStoreError) as failed:
        store.put(missing, "creds", {"password": PASSWORD})
    assert one_line_without_value(failed.value) == (
        f"cannot create secret {missing}/creds: namespace {missing!r} does not exist in the "
        f"management cluster at {management_cluster.server}; create it first"
    )
    assert failed.value.retryable is False


def test_forbidden_names_the_service_account_and_the_missing_grant(
    management_cluster: LocalCluster,
    mgmt_namespace: str,
    documented_roles: list[str],
    tmp_path: Path,
) -> None:
    """The worker's documented role lets it read and clean up; creating and listing are
    refused by the real RBAC authorizer, and the errors say what to grant."""
    assert documented_roles == ["flotilla-worker", "flotilla-operator"]
    admin = KubernetesSecretStore(management_cluster.kubeconfig)
    admin.put(mgmt_namespace, "git", {"password": PASSWORD}, type=BASIC_AUTH)
    admin.put(mgmt_namespace, "one-kubeconfig", {"value": "x"})
    token = service_account_token(management_cluster, mgmt_namespace, "worker")
    kubeconfig = management_cluster.kubeconfig_for(token, tmp_path / "worker.kubeconfig")
    worker = KubernetesSecretStore(kubeconfig)

    with pytest.raises(SecretStoreError) as caught:
        worker.get(mgmt_namespace, "git")
    assert one_line_without_value(caught.value) == (
        f"service account {mgmt_namespace}/worker is forbidden to get secrets in namespace "
        f"{mgmt_namespace!r} of the management cluster at {management_cluster.server}: it "
        f"needs a Role granting 'get' on 'secrets' in {mgmt_namespace!r} and a RoleBinding "
        "to it (see docs/secrets.md)"
    )
    assert caught.value.retryable is False

    bind(management_cluster, mgmt_namespace, "flotilla-worker", mgmt_namespace, "worker")
    # RBAC changes reach the authorizer through its informer: give it a moment.
    deadline = time.monotonic() + 10
    while True:
        try:
            assert worker.get(mgmt_namespace, "git") == {"password": PASSWORD}
            break
        except SecretStoreError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert worker.delete(mgmt_namespace, "one-kubeconfig", if_managed=True) is True
    for action, verb in (
        (lambda: worker.put(mgmt_namespace, "new", {"password": PASSWORD}), "create"),
        (lambda: worker.list(mgmt_namespace), "list"),
    ):
        with pytest.raises(SecretStoreError) as refused:
            action()
        text = one_line_without_value(refused.value)
        assert text.startswith(
            f"service account {mgmt_namespace}/worker is forbidden to {verb} secrets"
        ), text
        assert f"a Role granting {verb!r} on 'secrets'" in text

    # The operator's role is enough for every command.
    operator_token = service_account_token(management_cluster, mgmt_namespace, "operator")
    bind(management_cluster, mgmt_namespace, "flotilla-operator", mgmt_namespace, "operator")
    operator = KubernetesSecretStore(
        management_cluster.kubeconfig_for(operator_token, tmp_path / "operator.kubeconfig")
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            operator.put(mgmt_namespace, "git", {"password": "rotated"}, type=BASIC_AUTH)
            break
        except SecretStoreError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    operator.put(mgmt_namespace, "new", {"value": "v"})
    assert [s.name for s in operator.list(mgmt_namespace)] == ["git", "new"]
    assert operator.delete(mgmt_namespace, "new") is True


def test_a_token_the_server_does_not_know_is_unauthorized(
    management_cluster: LocalCluster, mgmt_namespace: str, tmp_path: Path
) -> None:
    kubeconfig = management_cluster.kubeconfig_for("not-a-token", tmp_path / "bad.kubeconfig")
    with pytest.raises(SecretStoreError) as caught:
        KubernetesSecretStore(kubeconfig).get(mgmt_namespace, "git")
    assert one_line_without_value(caught.value) == (
        f"the management cluster at {management_cluster.server} does not accept the "
        f"credentials of kubeconfig {str(kubeconfig)!r} (401 Unauthorized) to get secret "
        f"{mgmt_namespace}/git: renew the token or fix the kubeconfig"
    )


def test_in_cluster_credentials_are_the_service_account_of_the_pod(
    management_cluster: LocalCluster,
    mgmt_namespace: str,
    documented_roles: list[str],
    tmp_path: Path,
) -> None:
    """What a pod has: KUBERNETES_SERVICE_HOST/PORT and a mounted token and CA."""
    mounted = tmp_path / "serviceaccount"
    mounted.mkdir()
    token = service_account_token(management_cluster, mgmt_namespace, "flotilla")
    (mounted / "token").write_text(token)
    (mounted / "ca.crt").write_bytes((management_cluster.dir / "pki" / "ca.crt").read_bytes())
    port = management_cluster.server.rsplit(":", 1)[1]
    environ = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port}
    pod = KubernetesSecretStore(None, environ=environ, service_account_dir=mounted)
    assert pod.server == management_cluster.server

    with pytest.raises(SecretStoreError) as caught:
        pod.get(mgmt_namespace, "git")
    assert f"service account {mgmt_namespace}/flotilla is forbidden to get" in str(caught.value)
    bind(management_cluster, mgmt_namespace, "flotilla-worker", mgmt_namespace, "flotilla")
    KubernetesSecretStore(management_cluster.kubeconfig).put(mgmt_namespace, "git", {"k": "v"})
    deadline = time.monotonic() + 10
    while True:
        try:
            assert pod.get(mgmt_namespace, "git") == {"k": "v"}
            break
        except SecretStoreError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)

    with pytest.raises(SettingsError) as outside:
        KubernetesSecretStore(None, environ={}, service_account_dir=mounted)
    assert str(outside.value) == (
        "FLOTILLA_SECRET_BACKEND=kubernetes without FLOTILLA_MANAGEMENT_KUBECONFIG needs an "
        "in-cluster service account (Service host/port is not set.): outside a pod, set "
        "FLOTILLA_MANAGEMENT_KUBECONFIG to the management cluster's kubeconfig"
    )


def test_the_settings_choose_the_store_and_a_bad_kubeconfig_stops_start_up(
    management_cluster: LocalCluster, tmp_path: Path
) -> None:
    settings = load_settings(
        {
            "FLOTILLA_SECRET_BACKEND": "kubernetes",
            "FLOTILLA_MANAGEMENT_KUBECONFIG": str(management_cluster.kubeconfig),
        },
        home=tmp_path,
    )
    chosen = secret_store(settings)
    assert isinstance(chosen, KubernetesSecretStore)
    assert repr(chosen) == f"KubernetesSecretStore(server={management_cluster.server!r})"
    missing = tmp_path / "missing.kubeconfig"
    with pytest.raises(SettingsError) as caught:
        KubernetesSecretStore(missing)
    assert str(caught.value) == (
        f"FLOTILLA_MANAGEMENT_KUBECONFIG={str(missing)!r} cannot be read: No such file or directory"
    )
    broken = tmp_path / "broken.kubeconfig"
    broken.write_text(f"users: [{{name: u, user: {{token: {PASSWORD}}}}}\n")
    with pytest.raises(SettingsError) as unusable:
        KubernetesSecretStore(broken)
    assert str(unusable.value).startswith(f"FLOTILLA_MANAGEMENT_KUBECONFIG={str(broken)!r} cannot")
    one_line_without_value(unusable.value)


def test_one_store_serves_many_threads(store: KubernetesSecretStore, mgmt_namespace: str) -> None:
    def round_trip(index: int) -> bool:
        name = f"t{index % 4}"
        store.put(mgmt_namespace, name, {"value": f"{index}"})
        value = store.get(mgmt_namespace, name)["value"]
        return value.isdigit() and int(value) % 4 == index % 4

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(round_trip, range(64)))
    assert [s.name for s in store.list(mgmt_namespace)] == ["t0", "t1", "t2", "t3"]


def test_a_stopped_api_server_is_a_retryable_one_line_error_in_every_activity(
    tmp_path: Path, tools_on_path: list[Path]
) -> None:
    cluster = LocalCluster("flotilla-stopped", tmp_path / "cluster", workloads=False).start()
    try:
        create_namespace(cluster, "fleet-local")
        secrets = KubernetesSecretStore(cluster.kubeconfig)
        secrets.put("fleet-local", kubeconfig_secret_name("one"), {"value": PASSWORD})
        secrets.put("fleet-local", "regcreds", {"username": "u", "password": PASSWORD})
        server = cluster.server
        cluster.stop(remove=False)

        started = time.monotonic()
        with pytest.raises(SecretStoreError) as caught:
            secrets.get("fleet-local", "one-kubeconfig")
        assert time.monotonic() - started < 5  # refused at once, not retried here
        text = one_line_without_value(caught.value)
        assert text.startswith(
            f"cannot get secret fleet-local/one-kubeconfig: management cluster unreachable at "
            f"{server} (check that its API server is up"
        ), text
        assert text.endswith("; retryable") and "Connection refused" in text, text
        assert caught.value.retryable is True

        # A deploy activity hands it to Temporal as retryable, not as a failed deploy.
        deploy = DeployActivities(secrets, FileContentStore(tmp_path / "content"), tmp_path)
        request = RemoveRequest(
            gitrepo="g",
            bundle_name="b",
            cluster_namespace="fleet-local",
            cluster_name="one",
            release=ReleaseRef(name="r", namespace="n"),
        )
        with pytest.raises(ApplicationError) as failed:
            ActivityEnvironment().run(deploy.remove_deployment, request)
        assert (failed.value.type, failed.value.non_retryable) == ("SecretStoreError", False)
        assert failed.value.message.startswith("cannot get secret fleet-local/one-kubeconfig")

        # So does a registry poll that needs the scan's credentials.
        def basic_challenge(method: str, path: str, headers: dict[str, str]) -> Reply:
            return 401, {"WWW-Authenticate": 'Basic realm="registry"'}, b""

        with FaultServer(basic_challenge) as registry:
            poll = PollRequest(registry=registry.host, repository="app", secret_name="regcreds")
            with pytest.raises(ApplicationError) as polled:
                ActivityEnvironment().run(RegistryActivities(secrets).poll_registry, poll)
        assert (polled.value.type, polled.value.non_retryable) == ("SecretStoreError", False)
        assert PASSWORD not in polled.value.message
    finally:
        cluster.stop()


def test_an_api_server_that_never_answers_times_out_retryable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault-injection stand-in beside the real stopped server above: a socket that accepts
    connections and never answers (a hung API server or a black-holing load balancer)."""
    monkeypatch.setattr(kube, "REQUEST_TIMEOUT_SECONDS", 1.0)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        server = f"https://127.0.0.1:{silent.getsockname()[1]}"
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                {
                    "clusters": [{"name": "c", "cluster": {"server": server}}],
                    "users": [{"name": "u", "user": {"token": PASSWORD}}],
                    "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                    "current-context": "c",
                }
            )
        )
        started = time.monotonic()
        with pytest.raises(SecretStoreError) as caught:
            KubernetesSecretStore(kubeconfig).get("fleet-local", "git")
    assert time.monotonic() - started < 5
    text = one_line_without_value(caught.value)
    assert text.startswith(
        f"cannot get secret fleet-local/git: management cluster unreachable at {server} (check "
    ), text
    assert "timed out" in text and text.endswith("; retryable") and caught.value.retryable
