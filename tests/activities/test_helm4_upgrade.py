"""Helm 4 takes over releases Helm 3 installed, in place, and charts' ``lookup`` sees the cluster.

The release is installed by the previous pin (helm 3.21.4, built as ``helm3`` by
devenv/tools.py) as flotilla installed it, then upgraded twice by the engine with Helm 4: the
history gains exactly one revision per deploy, nothing is uninstalled or reinstalled, every
object keeps its uid and the Deployment never has fewer ready pods.
"""

from __future__ import annotations

import subprocess
from typing import Any

from activities.deploy_models import ReleaseRef
from activities.helm import DEPLOYMENT_ID_LABEL, read_release_record
from activities.objectwatch_models import BUNDLE_LABEL
from devenv import tools
from flotilla.bundles import Bundle
from flotilla.deployment import deployment_label
from flotilla.helmhistory import HistoryAction
from tests.activities.conftest import Engine, configmap, deployment, dump, service
from tests.activities.test_heal import Sampler

RELEASE = "t-app"
KINDS = (("Deployment", "web"), ("ConfigMap", "cfg"), ("Service", "web"))


def app(engine: Engine, data: str, replicas: int = 2) -> Bundle:
    objects = (deployment("web", replicas=replicas), configmap("cfg", {"a": data}), service("web"))
    return engine.bundle({"app.yaml": dump(*objects)})


def uids(engine: Engine) -> dict[str, str]:
    found = {}
    for kind, name in KINDS:
        live = engine.get(kind, name)
        assert live is not None, f"{kind}/{name} is gone"
        found[kind] = live["metadata"]["uid"]
    return found


def record(engine: Engine, revision: int) -> dict[str, Any]:
    with engine.kube() as kube:
        return read_release_record(kube, RELEASE, engine.namespace, revision)


def install_with_helm3(engine: Engine, helm3: str) -> ReleaseRef:
    """The release as flotilla installed it with the previous pin: the generated chart of the
    raw bundle, with the deploy's labels and flags (Helm 3 knows no --server-side)."""
    objects = [deployment("web"), configmap("cfg", {"a": "1"}), service("web")]
    chart = engine.chart_dir(RELEASE, objects, "0.0.0")
    subprocess.run(
        [
            helm3,
            *("upgrade", RELEASE, str(chart), "--install", "--namespace", engine.namespace),
            *("--labels", f"{DEPLOYMENT_ID_LABEL}={deployment_label('v1')},{BUNDLE_LABEL}=app"),
            *("--history-max", "2", "--enable-dns", "--wait", "--timeout", "60s"),
            *("--kubeconfig", str(engine.cluster.kubeconfig)),
        ],
        check=True,
        capture_output=True,
    )
    return ReleaseRef(name=RELEASE, namespace=engine.namespace, revision=1)


def test_release_installed_by_helm3_is_upgraded_in_place_by_helm4(engine: Engine) -> None:
    helm3 = str(tools.locate("helm3"))
    old = subprocess.run([helm3, "version", "--short"], capture_output=True, text=True).stdout
    assert old.startswith(f"v{tools.HELM3_VERSION}"), old
    helm4 = subprocess.run(["helm", "version", "--short"], capture_output=True, text=True).stdout
    assert helm4.startswith(f"v{tools.HELM_VERSION}"), helm4
    installed = install_with_helm3(engine, helm3)
    assert engine.history(RELEASE)[0]["status"] == "deployed"
    # Helm 3 records no apply method: Helm 4 reads that as its three-way merge.
    assert "apply_method" not in record(engine, 1)
    before = uids(engine)

    with Sampler(engine, "web").sampling() as sampler:
        second = engine.deploy(app(engine, "2"), "v2", previous=installed, wait_ready_seconds=60)
        third = engine.deploy(
            app(engine, "3", replicas=3), "v3", previous=second.release, wait_ready_seconds=60
        )

    assert (second.action, third.action) == (HistoryAction.UPGRADE, HistoryAction.UPGRADE)
    assert (second.release.revision, third.release.revision) == (2, 3)
    assert third.status is not None and third.status.ready, third.status
    history = engine.history(RELEASE)
    # History keeps two revisions (maxHistory 2): the superseded 2 and the deployed 3. An
    # uninstall-and-install would have restarted at 1.
    assert [(h["revision"], h["status"]) for h in history] == [(2, "superseded"), (3, "deployed")]
    assert record(engine, 3).get("apply_method") == "csa"
    assert uids(engine) == before
    assert sampler.missing == 0 and len(sampler.uids) == 1
    assert min(sampler.ready) >= 2, sampler.ready
    live = engine.get("ConfigMap", "cfg")
    assert live is not None and live["data"] == {"a": "3"}
    check = engine.check(app(engine, "3", replicas=3), "v3")
    assert check.ready and check.drift == []


def test_new_release_is_applied_server_side_and_its_chart_looks_up_the_cluster(
    engine: Engine,
) -> None:
    engine.cluster.request(
        "POST",
        f"/api/v1/namespaces/{engine.namespace}/configmaps",
        {"metadata": {"name": "seed"}, "data": {"v": "from-the-cluster"}},
    )
    lookup = (
        '{{- $seed := lookup "v1" "ConfigMap" .Release.Namespace "seed" }}\n'
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: seen\ndata:\n"
        '  v: {{ if $seed }}{{ $seed.data.v | quote }}{{ else }}"nothing"{{ end }}\n'
    )
    bundle = engine.bundle(
        {
            "Chart.yaml": "apiVersion: v2\nname: looker\nversion: 0.1.0\n",
            "templates/seen.yaml": lookup,
        }
    )

    result = engine.deploy(bundle, "v1")

    seen = engine.get("ConfigMap", "seen")
    assert seen is not None and seen["data"] == {"v": "from-the-cluster"}
    with engine.kube() as kube:
        applied = read_release_record(kube, result.release.name, engine.namespace, 1)
    assert applied.get("apply_method") == "ssa"
    managers = {(m["manager"], m["operation"]) for m in seen["metadata"]["managedFields"]}
    assert managers == {("helm", "Apply")}
