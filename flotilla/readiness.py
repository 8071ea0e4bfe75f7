"""Readiness of one live Kubernetes object, judged by kstatus-style rules per kind."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, RootModel

MAX_NOT_READY = 10


class Readiness(BaseModel):
    """Whether an object is ready, and why not when it is not."""

    model_config = ConfigDict(frozen=True)

    ready: bool
    message: str = ""


class IgnoreCondition(RootModel[dict[str, str]]):
    """One fleet.yaml ``ignore.conditions`` entry: drops a condition when every pair matches."""

    def matches(self, condition: dict[str, Any]) -> bool:
        """Return True when every key of this entry equals the condition's field of that name."""
        return all(str(condition.get(key, "")) == value for key, value in self.root.items())


READY = Readiness(ready=True)


def _not_ready(message: str) -> Readiness:
    return Readiness(ready=False, message=message)


def _status(obj: dict[str, Any]) -> dict[str, Any]:
    status = obj.get("status")
    return status if isinstance(status, dict) else {}


def _spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _int(value: Any) -> int:
    # Status counters are omitted by the API server when zero.
    return value if isinstance(value, int) else 0


def _conditions(obj: dict[str, Any], ignore: list[IgnoreCondition]) -> dict[str, dict[str, Any]]:
    """Return the status conditions by type, without those that an ignore entry matches."""
    found: dict[str, dict[str, Any]] = {}
    for condition in _status(obj).get("conditions") or []:
        if not isinstance(condition, dict) or "type" not in condition:
            continue
        if any(entry.matches(condition) for entry in ignore):
            continue
        found[str(condition["type"])] = condition
    return found


def _condition_text(condition: dict[str, Any]) -> str:
    detail = condition.get("message") or condition.get("reason") or ""
    return f"{condition['type']}={condition.get('status')}" + (f": {detail}" if detail else "")


def _check_generation(obj: dict[str, Any]) -> Readiness | None:
    """Not ready while the controller has not yet seen the latest spec."""
    generation = obj.get("metadata", {}).get("generation")
    observed = _status(obj).get("observedGeneration")
    if isinstance(generation, int) and isinstance(observed, int) and observed < generation:
        return _not_ready(f"controller has observed generation {observed} of {generation}")
    return None


def _check_generation_required(obj: dict[str, Any]) -> Readiness | None:
    """Like _check_generation, but a workload without observedGeneration is not seen yet."""
    if "observedGeneration" not in _status(obj):
        return _not_ready("controller has not observed the object yet")
    return _check_generation(obj)


def _replica_gaps(want: int, counts: Iterable[tuple[str, Any]]) -> Readiness | None:
    for label, value in counts:
        if _int(value) != want:
            return _not_ready(f"{label} {_int(value)} of {want}")
    return None


def _desired_replicas(obj: dict[str, Any]) -> int:
    replicas = _spec(obj).get("replicas", 1)
    return replicas if isinstance(replicas, int) else 1


def _assess_deployment(obj: dict[str, Any], conditions: dict[str, dict[str, Any]]) -> Readiness:
    progressing = conditions.get("Progressing", {})
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        detail = progressing.get("message")
        return _not_ready(
            f"ProgressDeadlineExceeded: {detail}" if detail else "ProgressDeadlineExceeded"
        )
    status = _status(obj)
    want = _desired_replicas(obj)
    return (
        _check_generation_required(obj)
        or _replica_gaps(
            want,
            [
                ("updated replicas", status.get("updatedReplicas")),
                ("available replicas", status.get("availableReplicas")),
                ("ready replicas", status.get("readyReplicas")),
            ],
        )
        or _excess_replicas(status.get("replicas"), want)
        or READY
    )


def _excess_replicas(current: Any, want: int) -> Readiness | None:
    """Old pods still terminating during a rollout keep the total above the desired count."""
    if _int(current) > want:
        return _not_ready(f"{_int(current) - want} old replicas pending termination")
    return None


def _assess_statefulset(obj: dict[str, Any], conditions: dict[str, dict[str, Any]]) -> Readiness:
    status = _status(obj)
    want = _desired_replicas(obj)
    strategy = _spec(obj).get("updateStrategy", {}).get("type", "RollingUpdate")
    gap = _check_generation_required(obj) or _replica_gaps(
        want, [("ready replicas", status.get("readyReplicas"))]
    )
    if gap:
        return gap
    if strategy == "RollingUpdate":
        partition = _spec(obj).get("updateStrategy", {}).get("rollingUpdate", {}).get("partition")
        # With a partition only the ordinals at or above it are updated; that is the target.
        updated_want = want - partition if isinstance(partition, int) else want
        if _int(status.get("updatedReplicas")) < updated_want:
            return _not_ready(f"updated replicas {_int(status.get('updatedReplicas'))} of {want}")
        if not isinstance(partition, int) and status.get("currentRevision") != status.get(
            "updateRevision"
        ):
            return _not_ready(f"revision {status.get('updateRevision')} is still rolling out")
    return READY


def _assess_daemonset(obj: dict[str, Any], conditions: dict[str, dict[str, Any]]) -> Readiness:
    status = _status(obj)
    want = _int(status.get("desiredNumberScheduled"))
    return (
        _check_generation_required(obj)
        or _replica_gaps(
            want,
            [
                ("updated pods", status.get("updatedNumberScheduled")),
                ("available pods", status.get("numberAvailable")),
                ("ready pods", status.get("numberReady")),
            ],
        )
        or READY
    )


def _assess_replicaset(obj: dict[str, Any], conditions: dict[str, dict[str, Any]]) -> Readiness:
    status = _status(obj)
    want = _desired_replicas(obj)
    return (
        _check_generation(obj)
        or _replica_gaps(
            want,
            [
                ("ready replicas", status.get("readyReplicas")),
                ("available replicas", status.get("availableReplicas")),
            ],
        )
        or READY
    )


def _assess_job(obj: dict[str, Any], conditions: dict[str, dict[str, Any]]) -> Readiness:
    failed = conditions.get("Failed", {})
    if failed.get("status") == "True":
        return _not_ready(f"job failed: {failed.get('message') or failed.get('reason') or ''}")
    if conditions.get("Complete", {}).get("status") == "True":
        return READY
    return _not_ready(f"job running: {_int(_status(obj).get('succeeded'))} succeeded")


def _assess_crd(obj: dict[str, Any], conditions: dict[str, dict[str, Any]]) -> Readiness:
    established = conditions.get("Established", {})
    if established.get("status") == "True":
        return READY
    names_accepted = conditions.get("NamesAccepted", {})
    if names_accepted.get("status") == "False":
        return _not_ready(_condition_text(names_accepted))
    return _not_ready("CRD is not established yet")


def _assess_service(obj: dict[str, Any], conditions: dict[str, dict[str, Any]]) -> Readiness:
    if _spec(obj).get("type") != "LoadBalancer":
        return READY
    if _status(obj).get("loadBalancer", {}).get("ingress"):
        return READY
    return _not_ready("load balancer has no ingress address yet")


def _assess_phase(want: str) -> Callable[[dict[str, Any], dict[str, dict[str, Any]]], Readiness]:
    def assess_phase(obj: dict[str, Any], conditions: dict[str, dict[str, Any]]) -> Readiness:
        phase = _status(obj).get("phase")
        if phase == want:
            return READY
        return _not_ready(f"phase is {phase or 'unknown'}, want {want}")

    return assess_phase


def _assess_pod(obj: dict[str, Any], conditions: dict[str, dict[str, Any]]) -> Readiness:
    phase = _status(obj).get("phase")
    if phase == "Succeeded":
        return READY
    if phase == "Failed":
        return _not_ready(
            f"pod failed: {_status(obj).get('message') or _status(obj).get('reason')}"
        )
    ready = conditions.get("Ready", {})
    if ready.get("status") == "True":
        return READY
    return _not_ready(f"pod is {phase or 'Pending'}, not ready")


def _assess_generic(obj: dict[str, Any], conditions: dict[str, dict[str, Any]]) -> Readiness:
    # kstatus's own conditions, which controllers following that convention set.
    for kind in ("Stalled", "Reconciling"):
        condition = conditions.get(kind, {})
        if condition.get("status") == "True":
            return _not_ready(_condition_text(condition))
    for kind in ("Ready", "Available"):
        condition = conditions.get(kind, {})
        if condition.get("status") == "False":
            return _not_ready(_condition_text(condition))
    return _check_generation(obj) or READY


_RULES: dict[str, Callable[[dict[str, Any], dict[str, dict[str, Any]]], Readiness]] = {
    "Deployment": _assess_deployment,
    "StatefulSet": _assess_statefulset,
    "DaemonSet": _assess_daemonset,
    "ReplicaSet": _assess_replicaset,
    "Job": _assess_job,
    "CustomResourceDefinition": _assess_crd,
    "Service": _assess_service,
    "PersistentVolumeClaim": _assess_phase("Bound"),
    "Namespace": _assess_phase("Active"),
    "Pod": _assess_pod,
}


# Built-in kinds without a status: Ready as soon as they exist, so a readiness wait need not
# read them again and again (ConfigMaps and Secrets are most of a typical bundle). Keyed by
# apiVersion too, so a custom resource that reuses one of these names is still watched.
_READY_WHEN_PRESENT = frozenset(
    {
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "ServiceAccount"),
        ("v1", "LimitRange"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("scheduling.k8s.io/v1", "PriorityClass"),
    }
)


def ready_when_present(api_version: str, kind: str) -> bool:
    """Whether an object of this kind is Ready as soon as it exists (it has no status)."""
    return (api_version, kind) in _READY_WHEN_PRESENT


def assess(
    obj: dict[str, Any], ignore_conditions: list[IgnoreCondition] | None = None
) -> Readiness:
    """Judge a live object by the rule for its kind, after dropping ignored conditions."""
    if obj.get("metadata", {}).get("deletionTimestamp"):
        return _not_ready("object is being deleted")
    conditions = _conditions(obj, ignore_conditions or [])
    rule = _RULES.get(str(obj.get("kind", "")), _assess_generic)
    return rule(obj, conditions)


def describe_object(obj: dict[str, Any]) -> str:
    """Return ``kind/namespace/name``, or ``kind/name`` for a cluster-scoped object."""
    metadata = obj.get("metadata", {})
    parts = [str(obj.get("kind", "")), metadata.get("namespace", ""), metadata.get("name", "")]
    return "/".join(part for part in parts if part)


def summarize_not_ready(
    objs_with_readiness: Iterable[tuple[dict[str, Any], Readiness]],
) -> list[str]:
    """List at most ten non-ready objects as ``kind/namespace/name: message``, sorted."""
    lines = sorted(
        f"{describe_object(obj)}: {readiness.message}"
        for obj, readiness in objs_with_readiness
        if not readiness.ready
    )
    return lines[:MAX_NOT_READY]
