"""Each bundle style becomes a release that reaches Ready with no drift; drift is seen and fixed."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from activities.deploy_models import DeploymentStatus, ReleaseRef
from activities.kube import ForbiddenError
from activities.releasewatch import ReleaseWatch
from devenv.registry import LocalRegistry
from flotilla.deployment import Redactor
from flotilla.helmhistory import HistoryAction
from flotilla.status import BundleState, DeploymentObservation, compute_state
from tests.activities.conftest import (
    UNSCHEDULABLE,
    Engine,
    configmap,
    deployment,
    dump,
    service,
)

CHART_YAML = "apiVersion: v2\nname: webchart\nversion: 0.1.0\n"
CHART_VALUES = "replicas: 1\ngreeting: chart-default\nlevel: chart-default\n"
CHART_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: app
          image: registry.local/web:1
"""
CHART_CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  greeting: {{ .Values.greeting | quote }}
  level: {{ .Values.level | quote }}
"""
CHART_FILES = {
    "Chart.yaml": CHART_YAML,
    "values.yaml": CHART_VALUES,
    "templates/deployment.yaml": CHART_DEPLOYMENT,
    "templates/configmap.yaml": CHART_CONFIGMAP,
}


def state(status: DeploymentStatus) -> BundleState:
    """The state flotilla.status gives an applied, current deployment with this status."""
    observation = DeploymentObservation(
        staged="v1",
        released="v1",
        applied="v1",
        ready=status.ready,
        non_ready=status.non_ready,
        drift=status.drift,
    )
    return compute_state(observation).state


def test_raw_bundle_is_a_release_seen_not_ready_then_ready(engine: Engine) -> None:
    pending = deployment("web", pod=UNSCHEDULABLE)
    bundle = engine.bundle(
        {"web.yaml": dump(pending, service("web"), configmap("cfg", {"a": "1"}))}
    )

    first = engine.deploy(bundle, "v1")

    assert first.changed and first.action is HistoryAction.INSTALL
    assert first.release.revision == 1 and first.release.namespace == engine.namespace
    (listed,) = engine.releases()
    assert listed["name"] == "t-app" and listed["status"] == "deployed"
    waiting = engine.wait_ready(bundle, "v1", timeout=2)
    assert not waiting.ready
    assert waiting.non_ready == [f"Deployment/{engine.namespace}/web: available replicas 0 of 2"]
    assert waiting.applied_deployment_id == "v1"

    runnable = engine.bundle(
        {"web.yaml": dump(deployment("web"), service("web"), configmap("cfg", {"a": "1"}))}
    )
    second = engine.deploy(runnable, "v2")
    ready = engine.wait_ready(runnable, "v2")

    assert second.release.revision == 2
    assert ready.ready and ready.non_ready == [] and ready.drift == []
    assert ready.applied_deployment_id == "v2"
    assert any(details for details in engine.heartbeats)


def test_deploy_watches_readiness_itself_when_asked(engine: Engine) -> None:
    runnable = engine.bundle({"web.yaml": dump(deployment("web"), configmap("cfg", {"a": "1"}))})

    result = engine.deploy(runnable, "v1", wait_ready_seconds=90)

    assert result.changed and result.status is not None
    assert result.status.ready and result.status.applied_deployment_id == "v1"
    assert result.status.release == result.release and result.status.drift == []

    stuck = engine.bundle(
        {"web.yaml": dump(deployment("web", pod=UNSCHEDULABLE), configmap("cfg", {"a": "1"}))}
    )
    late = engine.deploy(stuck, "v2", wait_ready_seconds=2)

    assert late.release.revision == 2 and late.status is not None and not late.status.ready
    (line,) = late.status.non_ready  # a rolling update stuck on pods that cannot schedule
    assert line.startswith(f"Deployment/{engine.namespace}/web: ")
    assert engine.deploy(stuck, "v2").status is None  # not asked: no watching


def test_a_readiness_wait_rereads_only_what_was_not_ready(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = engine.bundle(
        {
            "web.yaml": dump(
                deployment("web", pod=UNSCHEDULABLE), service("web"), configmap("cfg", {"a": "1"})
            )
        }
    )
    engine.deploy(bundle, "v1")
    reads: list[str] = []
    with engine.activities._watch(engine.status_request(bundle, "v1"), Redactor()) as watch:
        real_get = watch.kube.get

        def counting_get(api_version: str, kind: str, namespace: str, name: str) -> Any:
            reads.append(kind)
            return real_get(api_version, kind, namespace, name)

        monkeypatch.setattr(watch.kube, "get", counting_get)
        first = watch.poll_ready()
        second = watch.poll_ready()
        watch.forget_ready()
        third = watch.poll_ready()

    for lines in (first, second, third):
        (line,) = lines
        assert line.startswith(f"Deployment/{engine.namespace}/web: ")
    # Polls 1 and 3 read the Deployment and the Service, poll 2 only the Deployment; the
    # ConfigMap is Ready once it exists and is never read while waiting.
    assert sorted(reads) == ["Deployment"] * 3 + ["Service"] * 2


def test_a_readiness_wait_watches_the_object_it_waits_for(engine: Engine) -> None:
    bundle = engine.bundle({"web.yaml": dump(deployment("web", pod=UNSCHEDULABLE))})
    engine.deploy(bundle, "v1")
    with engine.activities._watch(engine.status_request(bundle, "v1"), Redactor()) as watch:
        (line,) = watch.poll_ready()
        assert line.startswith(f"Deployment/{engine.namespace}/web: ")
        # Nothing changes: the watch ends when its time is up, and the Deployment still waits.
        started = time.monotonic()
        assert watch.watch_waiting(1)
        assert time.monotonic() - started >= 0.9
        assert watch.poll_ready() != []

        def schedulable() -> None:
            time.sleep(1.0)
            with engine.kube() as kube:
                patch = {"spec": {"template": {"spec": {"nodeSelector": None}}}}
                kube.merge_patch("apps/v1", "Deployment", engine.namespace, "web", patch)

        fixer = threading.Thread(target=schedulable)
        fixer.start()
        started = time.monotonic()
        # Returns once the Deployment is Ready (its pods schedule now), long before 60 s.
        assert watch.watch_waiting(60)
        fixer.join()
        assert time.monotonic() - started < 45
        assert watch.poll_ready() == []
        # Nothing is waiting any more: nothing to watch.
        assert not watch.watch_waiting(60)


def test_a_readiness_wait_polls_where_it_may_not_watch(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(self: ReleaseWatch, seconds: int) -> bool:
        refusals.append(seconds)
        raise ForbiddenError("deployments.apps is forbidden: cannot watch")

    refusals: list[int] = []
    monkeypatch.setattr(ReleaseWatch, "watch_waiting", refused)
    bundle = engine.bundle({"web.yaml": dump(deployment("web"), configmap("cfg", {"a": "1"}))})

    result = engine.deploy(bundle, "v1", wait_ready_seconds=90)

    assert result.status is not None and result.status.ready
    assert len(refusals) == 1  # tried once, then polled


def test_helm_chart_bundle_deploys_with_values_and_shows_no_drift(engine: Engine) -> None:
    bundle = engine.bundle(CHART_FILES, fleet={"helm": {"values": {"greeting": "from-fleet"}}})

    result = engine.deploy(bundle, "c1")
    status = engine.wait_ready(bundle, "c1")

    (listed,) = engine.releases()
    assert listed["chart"] == "webchart-0.1.0"
    assert status.ready and status.drift == []
    settings = engine.get("ConfigMap", "settings")
    assert settings is not None
    assert settings["data"] == {"greeting": "from-fleet", "level": "chart-default"}
    assert result.release.name == "t-app"


def test_kustomize_bundle_deploys_its_build_output_with_no_drift(engine: Engine) -> None:
    files = {
        "kustomization.yaml": (
            "resources: [web.yaml]\nnamePrefix: k-\nlabels:\n- pairs: {tier: web}\n"
        ),
        "web.yaml": dump(deployment("web"), service("web")),
    }
    bundle = engine.bundle(files)

    engine.deploy(bundle, "k1")
    status = engine.wait_ready(bundle, "k1")

    assert status.ready and status.drift == []
    live = engine.get("Deployment", "k-web")
    assert live is not None and live["metadata"]["labels"]["tier"] == "web"
    assert engine.get("Service", "k-web") is not None


def test_chart_with_kustomization_is_post_rendered_by_kustomize(engine: Engine) -> None:
    files = {**CHART_FILES, "kustomization.yaml": "labels:\n- pairs: {post: rendered}\n"}
    bundle = engine.bundle(files)

    engine.deploy(bundle, "p1")
    status = engine.wait_ready(bundle, "p1")

    assert status.ready and status.drift == []
    live = engine.get("ConfigMap", "settings")
    assert live is not None and live["metadata"]["labels"]["post"] == "rendered"
    (listed,) = engine.releases()
    assert listed["chart"] == "webchart-0.1.0"


def test_drift_is_modified_then_corrected(engine: Engine) -> None:
    objects = dump(deployment("web"), service("web"))
    bundle = engine.bundle({"web.yaml": objects})
    engine.deploy(bundle, "d1")
    assert engine.wait_ready(bundle, "d1").ready
    with engine.kube() as kube:
        kube.merge_patch(
            "apps/v1", "Deployment", engine.namespace, "web", {"spec": {"replicas": 3}}
        )
        kube.merge_patch(
            "apps/v1",
            "Deployment",
            engine.namespace,
            "web",
            {
                "spec": {
                    "template": {
                        "spec": {"containers": [{"name": "app", "image": "registry.local/web:2"}]}
                    }
                }
            },
        )
        kube.delete("v1", "Service", engine.namespace, "web")

    seen = engine.wait_ready(bundle, "d1")

    ns = engine.namespace
    assert seen.ready
    assert sorted(seen.drift) == [
        f"Deployment/{ns}/web: differs at /spec/replicas, /spec/template/spec/containers/0/image",
        f"Service/{ns}/web: missing",
    ]
    assert state(seen) is BundleState.MODIFIED
    # Without correctDrift, a check only reports.
    assert engine.check(bundle, "d1").drift == seen.drift

    correcting = engine.bundle({"web.yaml": objects}, fleet={"correctDrift": {"enabled": True}})
    fixed = engine.check(correcting, "d1")
    assert sorted(fixed.corrected) == sorted(seen.drift)
    assert fixed.drift == []
    after = engine.wait_ready(correcting, "d1")
    assert after.ready and after.drift == []
    assert state(after) is BundleState.READY
    live = engine.get("Deployment", "web")
    assert live is not None and live["spec"]["replicas"] == 2
    # Re-created objects carry Helm's ownership, so the next upgrade still manages them.
    engine.deploy(correcting, "d2")
    assert engine.history("t-app")[-1]["status"] == "deployed"


def test_forced_drift_correction_replaces_objects(engine: Engine) -> None:
    bundle = engine.bundle(
        {"cfg.yaml": dump(configmap("cfg", {"a": "1"}))},
        fleet={"correctDrift": {"enabled": True, "force": True}},
    )
    engine.deploy(bundle, "f1")
    with engine.kube() as kube:
        kube.merge_patch(
            "v1", "ConfigMap", engine.namespace, "cfg", {"data": {"a": "2", "extra": "x"}}
        )

    fixed = engine.check(bundle, "f1")

    assert fixed.corrected == [f"ConfigMap/{engine.namespace}/cfg: differs at /data/a"]
    live = engine.get("ConfigMap", "cfg")
    # Replacing drops what someone added by hand, unlike an apply.
    assert live is not None and live["data"] == {"a": "1"}


def test_same_deployment_id_is_a_no_op_and_a_new_one_adds_one_revision(engine: Engine) -> None:
    bundle = engine.bundle({"cfg.yaml": dump(configmap("cfg", {"a": "1"}))})

    first = engine.deploy(bundle, "same")
    again = engine.deploy(bundle, "same")
    newer = engine.deploy(bundle, "next")

    assert first.release.revision == 1 and first.changed
    assert again.release.revision == 1 and not again.changed
    assert again.action is HistoryAction.ALREADY_DEPLOYED
    assert newer.release.revision == 2 and newer.changed
    assert [r["revision"] for r in engine.history("t-app")] == [1, 2]


def test_values_from_configmap_and_secret_are_merged_last(engine: Engine) -> None:
    ns = engine.namespace
    engine.cluster.request(
        "POST",
        f"/api/v1/namespaces/{ns}/configmaps",
        configmap(
            "extra-values", {"values.yaml": "greeting: from-configmap\nlevel: from-configmap\n"}
        ),
    )
    secret_values = base64.b64encode(b"level: from-secret\n").decode()
    engine.cluster.request(
        "POST",
        f"/api/v1/namespaces/{ns}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s"},
            "data": {"vals": secret_values},
        },
    )
    values_from = [
        {"configMapKeyRef": {"name": "extra-values", "namespace": ns}},
        {"secretKeyRef": {"name": "s", "key": "vals"}},
    ]
    bundle = engine.bundle(
        CHART_FILES,
        fleet={
            "helm": {"values": {"greeting": "inline", "level": "inline"}, "valuesFrom": values_from}
        },
    )

    engine.deploy(bundle, "vf1")

    settings = engine.get("ConfigMap", "settings")
    assert settings is not None
    # Over the inline values, in list order: the ConfigMap, then the Secret.
    assert settings["data"] == {"greeting": "from-configmap", "level": "from-secret"}


def test_namespace_is_created_and_labelled_after_deploy(engine: Engine) -> None:
    target = f"{engine.namespace}-x"
    bundle = engine.bundle(
        {"cfg.yaml": dump(configmap("cfg", {"a": "1"}))},
        fleet={
            "defaultNamespace": target,
            "namespaceLabels": {"team": "blue"},
            "namespaceAnnotations": {"owner": "ops"},
        },
    )
    try:
        result = engine.deploy(bundle, "n1")
        live = engine.get("Namespace", target)
        assert result.release.namespace == target
        assert live is not None
        assert live["metadata"]["labels"]["team"] == "blue"
        assert live["metadata"]["annotations"]["owner"] == "ops"
        assert engine.get("ConfigMap", "cfg", target) is not None
    finally:
        engine.cluster.request("DELETE", f"/api/v1/namespaces/{target}")


def test_release_name_comes_from_helm_release_name(engine: Engine) -> None:
    name = f"r-{uuid.uuid4().hex[:6]}"
    bundle = engine.bundle(
        {"cfg.yaml": dump(configmap("cfg", {"a": "1"}))}, fleet={"helm": {"releaseName": name}}
    )

    result = engine.deploy(bundle, "r1")

    assert result.release.name == name
    assert [r["name"] for r in engine.releases()] == [name]


def test_moving_to_another_namespace_removes_the_previous_release(engine: Engine) -> None:
    files = {"cfg.yaml": dump(configmap("cfg", {"a": "1"}))}
    first = engine.deploy(engine.bundle(files), "v1")
    target = f"{engine.namespace}-moved"
    try:
        moved = engine.deploy(
            engine.bundle(files, fleet={"defaultNamespace": target}), "v2", previous=first.release
        )

        assert moved.release == ReleaseRef(name="t-app", namespace=target, revision=1)
        assert moved.reason.endswith(f"removed the previous release {engine.namespace}/t-app")
        assert engine.releases() == []
        assert engine.get("ConfigMap", "cfg") is None
        assert engine.get("ConfigMap", "cfg", target) is not None
    finally:
        engine.cluster.request("DELETE", f"/api/v1/namespaces/{target}")


def test_a_release_removed_behind_our_back_reads_as_not_applied(engine: Engine) -> None:
    bundle = engine.bundle(
        {"cfg.yaml": dump(configmap("cfg", {"a": "1"}))}, fleet={"correctDrift": {"enabled": True}}
    )
    engine.deploy(bundle, "v1")
    engine.helm("uninstall", "t-app", "-n", engine.namespace)

    status = engine.check(bundle, "v1")

    assert status.applied_deployment_id == "" and status.corrected == []
    assert status.drift == [f"release {engine.namespace}/t-app: no deployed revision"]
    observation = DeploymentObservation(
        staged="v1",
        released="v1",
        applied=status.applied_deployment_id,
    )
    assert compute_state(observation).state is BundleState.WAIT_APPLIED
    assert engine.deploy(bundle, "v1").action is HistoryAction.INSTALL


def test_a_fresh_rollout_is_not_ready_until_kwok_runs_its_pods(engine: Engine) -> None:
    bundle = engine.bundle({"web.yaml": dump(deployment("web", replicas=3))})

    engine.deploy(bundle, "v1")
    # kwok makes pods Ready no sooner than 0.8 s after they run: this check comes first.
    first = engine.check(bundle, "v1")
    later = engine.wait_ready(bundle, "v1")

    assert not first.ready
    assert first.non_ready[0].startswith(f"Deployment/{engine.namespace}/web: ")
    assert later.ready and later.non_ready == [] and later.drift == []


def test_remote_oci_chart_is_pulled_and_installed(
    engine: Engine, registry: LocalRegistry, tmp_path: Path
) -> None:
    chart = tmp_path / "webchart"
    for relative, text in CHART_FILES.items():
        (chart / relative).parent.mkdir(parents=True, exist_ok=True)
        (chart / relative).write_text(text)
    engine.helm("package", str(chart), "-d", str(tmp_path))
    engine.helm(
        "push",
        str(tmp_path / "webchart-0.1.0.tgz"),
        f"oci://{registry.host}/charts",
        "--plain-http",
    )
    bundle = engine.bundle(
        {"README.md": "chart from a registry\n"},
        fleet={"helm": {"chart": f"oci://{registry.host}/charts/webchart", "version": "0.1.0"}},
    )

    engine.deploy(bundle, "o1")

    (listed,) = engine.releases()
    assert listed["chart"] == "webchart-0.1.0"
    assert engine.get("ConfigMap", "settings") is not None
