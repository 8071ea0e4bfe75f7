"""Fleet's own API (fleet.cattle.io/v1alpha1) as data: CRDs, objects read, statuses written.

The controller (``controller/``) is a translator between custom resources in a management
cluster and the workflows; everything it decides without I/O is here: the CRDs (schemas
generated from the models flotilla reads with, printer columns as Fleet's), reading an API
object into a model, the digest that says whether an object was already applied, the status
documents in Fleet's shape (bounded, so 500 clusters never make a status too big for etcd),
and whether a Lease means another controller serves a namespace.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from flotilla.errors import SpecError, one_line
from flotilla.models import (
    API_VERSION,
    Cluster,
    ClusterGroup,
    GitRepo,
    GitRepoRestriction,
    HelmOp,
    Policy,
    Schedule,
    parse_fleet_object,
)
from flotilla.schemas import json_schema
from flotilla.status import BundleLine, BundleState, Condition, explain

GROUP = "fleet.cattle.io"
VERSION = "v1alpha1"
FINALIZER = "flotilla.dev/controller"
# Status lists are cut to this many entries; counts always cover everything.
MAX_STATUS_ITEMS = 10
# The Lease a flotilla controller holds in each namespace it serves.
LEASE_NAME = "flotilla-controller"
LEASE_SECONDS = 30
# Leases Fleet's own controllers hold (leader election), by name prefix.
FLEET_LEASE_PREFIXES = ("fleet-controller-leader-election", "fleet-gitops-leader-election")

FleetObject = GitRepo | HelmOp | Cluster | ClusterGroup | Policy | GitRepoRestriction | Schedule
APPLIED_KINDS: dict[str, type[FleetObject]] = {
    "GitRepo": GitRepo,
    "HelmOp": HelmOp,
    "Cluster": Cluster,
    "ClusterGroup": ClusterGroup,
    "Policy": Policy,
    "GitRepoRestriction": GitRepoRestriction,
    "Schedule": Schedule,
}
# Object fields that are never the user's input, beside a top-level kind's own fields.
_ENVELOPE = ("apiVersion", "kind", "metadata", "status")


@dataclass(frozen=True)
class Column:
    name: str
    path: str


def _ready_message() -> Column:
    return Column("Status", '.status.conditions[?(@.type=="Ready")].message')


@dataclass(frozen=True)
class Kind:
    """One served kind: its names, columns and (for applied kinds) the model of its spec."""

    kind: str
    plural: str
    columns: tuple[Column, ...]
    schema: str = ""  # flotilla schema name of the object, empty: spec kept as it comes
    # Fields beside ``metadata`` instead of under ``spec`` (Policy, GitRepoRestriction).
    top_level: bool = False

    @property
    def resource(self) -> str:
        return f"{self.plural}.{GROUP}"


KINDS: tuple[Kind, ...] = (
    Kind(
        "GitRepo",
        "gitrepos",
        (
            Column("Repo", ".spec.repo"),
            Column("Commit", ".status.commit"),
            Column("BundleDeployments-Ready", ".status.display.readyBundleDeployments"),
            _ready_message(),
        ),
        "gitrepo",
    ),
    Kind(
        "HelmOp",
        "helmops",
        (
            Column("Repo", ".spec.helm.repo"),
            Column("Chart", ".spec.helm.chart"),
            Column("Version", ".status.version"),
            Column("BundleDeployments-Ready", ".status.display.readyBundleDeployments"),
            _ready_message(),
        ),
        "helmop",
    ),
    Kind(
        "Cluster",
        "clusters",
        (
            Column("Bundles-Ready", ".status.display.readyBundles"),
            Column("Last-Seen", ".status.agent.lastSeen"),
            _ready_message(),
        ),
        "cluster",
    ),
    Kind(
        "ClusterGroup",
        "clustergroups",
        (
            Column("Clusters-Ready", ".status.display.readyClusters"),
            Column("Bundles-Ready", ".status.display.readyBundles"),
            _ready_message(),
        ),
        "clustergroup",
    ),
    Kind("Policy", "policies", (), "policy", top_level=True),
    Kind(
        "GitRepoRestriction",
        "gitreporestrictions",
        (
            Column("Default-ServiceAccount", ".defaultServiceAccount"),
            Column("Allowed-ServiceAccounts", ".allowedServiceAccounts"),
        ),
        "gitreporestriction",
        top_level=True,
    ),
    Kind(
        "Schedule",
        "schedules",
        (
            Column("Schedule", ".spec.schedule"),
            Column("Duration", ".spec.duration"),
            Column("Active", ".status.active"),
            Column("NextStart", ".status.nextStartTime"),
        ),
    ),
    Kind(
        "Bundle",
        "bundles",
        (Column("BundleDeployments-Ready", ".status.display.readyClusters"), _ready_message()),
    ),
    Kind(
        "BundleDeployment",
        "bundledeployments",
        (
            Column("Deployed", ".status.display.deployed"),
            Column("Monitored", ".status.display.monitored"),
            _ready_message(),
        ),
    ),
)
KIND_BY_NAME = {k.kind: k for k in KINDS}

# --- CRDs -------------------------------------------------------------------------------------

_KEPT = (
    "type",
    "description",
    "enum",
    "required",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
)
_OPEN: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}


def _structural(node: Any, defs: Mapping[str, Any], depth: int = 0) -> dict[str, Any]:
    """A pydantic JSON Schema node as a structural OpenAPI v3 schema: references inlined,
    ``X | None`` as nullable X, other unions and free-form values open."""
    if not isinstance(node, dict) or depth > 32:
        return dict(_OPEN)
    if "$ref" in node:
        return _structural(defs[node["$ref"].rsplit("/", 1)[-1]], defs, depth + 1)
    for union in ("anyOf", "oneOf"):
        if union in node:
            options = [o for o in node[union] if o != {"type": "null"}]
            if len(options) == 1:
                inner = _structural(options[0], defs, depth + 1)
                if "type" in inner:
                    inner["nullable"] = True
                return inner
            return dict(_OPEN)
    if "const" in node:
        return {"type": "string", "enum": [node["const"]]}
    kind = node.get("type")
    if kind is None or isinstance(kind, list):
        return dict(_OPEN)
    out = {k: node[k] for k in _KEPT if k in node}
    if kind == "object":
        properties = node.get("properties")
        extra = node.get("additionalProperties")
        if properties:
            out["properties"] = {
                key: _structural(value, defs, depth + 1) for key, value in properties.items()
            }
        elif isinstance(extra, dict) and extra:
            out["additionalProperties"] = _structural(extra, defs, depth + 1)
        else:
            out.update(_OPEN)
    elif kind == "array":
        out["items"] = _structural(node.get("items", {}), defs, depth + 1)
    return out


def _spec_schema(kind: Kind) -> dict[str, Any]:
    if not kind.schema:
        return {"type": "object", **_OPEN}
    schema = json_schema(kind.schema)
    spec = _structural(schema["properties"]["spec"], schema.get("$defs", {}))
    # Unknown fields reach the controller, which reports them in a condition (Fleet's API
    # server would drop them silently).
    return {**spec, **_OPEN}


def _object_schema(kind: Kind) -> dict[str, Any]:
    envelope = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "status": {"type": "object", **_OPEN},
    }
    if not kind.top_level:
        return {"type": "object", "properties": {**envelope, "spec": _spec_schema(kind)}}
    schema = json_schema(kind.schema)
    defs = schema.get("$defs", {})
    own = {
        key: _structural(value, defs)
        for key, value in schema["properties"].items()
        if key not in envelope
    }
    # Unknown fields are kept so the controller can refuse them by name (a misspelt
    # allow-list ignored would allow what was meant to be forbidden).
    return {"type": "object", "properties": {**own, **envelope}, **_OPEN}


def crd_documents() -> list[dict[str, Any]]:
    """The CustomResourceDefinitions of every served kind."""
    documents = []
    for kind in KINDS:
        schema = _object_schema(kind)
        documents.append(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {
                    "name": kind.resource,
                    "labels": {"app.kubernetes.io/managed-by": "flotilla"},
                },
                "spec": {
                    "group": GROUP,
                    "names": {
                        "kind": kind.kind,
                        "listKind": f"{kind.kind}List",
                        "plural": kind.plural,
                        "singular": kind.kind.lower(),
                    },
                    "scope": "Namespaced",
                    "versions": [
                        {
                            "name": VERSION,
                            "served": True,
                            "storage": True,
                            "subresources": {"status": {}},
                            "schema": {"openAPIV3Schema": schema},
                            "additionalPrinterColumns": [
                                {"name": c.name, "type": "string", "jsonPath": c.path}
                                for c in kind.columns
                            ],
                        }
                    ],
                },
            }
        )
    return documents


# --- objects in -------------------------------------------------------------------------------


def object_name(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{str(obj.get('kind', '')).lower()} {meta.get('namespace', '')}/{meta.get('name', '')}"


def _user_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What the user wrote beside ``metadata``: ``spec``, or a top-level kind's own fields."""
    kind = KIND_BY_NAME.get(str(obj.get("kind")))
    if kind is not None and kind.top_level:
        return {k: v for k, v in obj.items() if k not in _ENVELOPE}
    return {"spec": obj.get("spec") or {}}


def read_object(obj: Mapping[str, Any]) -> tuple[FleetObject, list[str]]:
    """An API object as the model ``flotilla apply -f`` reads it (the same parser, so a
    restriction's unknown field is refused here too), and one warning per unknown field;
    SpecError names the object and the field. Server-set metadata is not the user's input."""
    meta = obj.get("metadata") or {}
    data = {
        "apiVersion": API_VERSION,
        "kind": obj.get("kind"),
        "metadata": {
            k: meta[k] for k in ("name", "namespace", "labels", "annotations") if meta.get(k)
        },
        **_user_fields(obj),
    }
    model, warnings = parse_fleet_object(data, file=object_name(obj))
    if isinstance(model, HelmOp) and model.spec.helm and model.spec.helm.values_files:
        # `flotilla apply -f` reads them beside the file; an object in the API has no files.
        raise SpecError(
            f"{object_name(obj)}: spec.helm.valuesFiles: {model.spec.helm.values_files!r}: an "
            "object in the API has no files beside it; put the values in spec.helm.values"
        )
    return model, warnings


def applied_digest(obj: Mapping[str, Any]) -> str:
    """What decides whether an object must be applied again: its spec (or a top-level kind's
    fields), and its labels (a Cluster's labels are what targets select on, and changing them
    bumps no generation)."""
    meta = obj.get("metadata") or {}
    key = {**_user_fields(obj), "labels": meta.get("labels") or {}}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


# --- status out -------------------------------------------------------------------------------


def condition_dicts(conditions: Iterable[Condition], now: datetime) -> list[dict[str, Any]]:
    """Conditions as Kubernetes writes them."""
    return [
        {
            "type": c.type,
            "status": "True" if c.status else "False",
            "reason": c.reason,
            "message": c.message,
            "lastUpdateTime": _stamp(c.last_transition or now),
        }
        for c in conditions
    ]


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def rejected_status(obj: Mapping[str, Any], error: str, warnings: Sequence[str]) -> dict[str, Any]:
    """The status of an object that could not be applied: Ready false with the one line."""
    conditions = [
        Condition(type="Accepted", status=False, reason="InvalidSpec", message=one_line(error)),
        Condition(type="Ready", status=False, reason="InvalidSpec", message=one_line(error)),
    ]
    return {
        "observedGeneration": (obj.get("metadata") or {}).get("generation", 0),
        "conditions": _plain_conditions(conditions) + _warning_conditions(warnings),
        "display": {"state": "InvalidSpec", "message": one_line(error)},
    }


def _warning_conditions(warnings: Sequence[str]) -> list[dict[str, Any]]:
    if not warnings:
        return []
    text = "; ".join(warnings[:MAX_STATUS_ITEMS])
    return _plain_conditions(
        [Condition(type="Warning", status=True, reason="UnknownFields", message=one_line(text))]
    )


def accepted_conditions(warnings: Sequence[str]) -> list[dict[str, Any]]:
    """What every applied object carries besides its own conditions."""
    accepted = Condition(type="Accepted", status=True, reason="Applied")
    return _plain_conditions([accepted]) + _warning_conditions(warnings)


@dataclass(frozen=True)
class GitRepoView:
    """The part of a GitRepo workflow's status its custom resource shows."""

    commit: str
    ready_clusters: int
    desired_ready_clusters: int
    ready_bundle_deployments: str
    state: str
    message: str
    conditions: tuple[Condition, ...]
    bundles: tuple[BundleLine, ...]
    # Bundle deployments per state over every bundle (empty from workers before issue 12:
    # the bundles shown are counted instead).
    deployment_counts: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, status: Any) -> GitRepoView:
        """From the GitRepo workflow's status query (anything with these attributes)."""
        return cls(**_attributes(cls, status))


def gitrepo_status(
    view: GitRepoView, extra: Sequence[dict[str, Any]], now: datetime
) -> dict[str, Any]:
    """A GitRepo's status in Fleet's shape; its summary counts every bundle deployment by
    state and lists at most MAX_STATUS_ITEMS that are not ready."""
    counts: dict[str, int] = dict(view.deployment_counts)
    if not counts:
        for line in view.bundles:
            counts[line.state] = counts.get(line.state, 0) + 1
    not_ready = [line for line in view.bundles if line.state != BundleState.READY]
    ready, _, desired = view.ready_bundle_deployments.partition("/")
    return {
        "commit": view.commit,
        "readyClusters": view.ready_clusters,
        "desiredReadyClusters": view.desired_ready_clusters,
        "display": {
            "readyBundleDeployments": view.ready_bundle_deployments,
            "state": "" if view.state == BundleState.READY else view.state,
            "message": view.message,
            "error": view.state in ("ErrApplied", "GitError", "Halted"),
        },
        "summary": {
            "desiredReady": int(desired or 0),
            "ready": int(ready or 0),
            **_state_counts(counts),
            "nonReadyResources": [
                {"name": line.name, "bundleState": line.state, "message": line.message}
                for line in not_ready[:MAX_STATUS_ITEMS]
            ],
        },
        "conditions": condition_dicts(view.conditions, now) + list(extra),
    }


def helmop_status(status: Any, extra: Sequence[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """A HelmOp's status in Fleet's shape, from the HelmOp workflow's status query: a
    GitRepo's (display, summary, ready counts, conditions) with ``version``, the chart
    version chosen, in place of ``commit``."""
    view = GitRepoView(
        commit="",
        ready_clusters=status.ready_clusters,
        desired_ready_clusters=status.desired_ready_clusters,
        ready_bundle_deployments=status.ready_bundle_deployments,
        state=status.state,
        message=status.message,
        conditions=tuple(status.conditions),
        bundles=tuple(status.bundles),
    )
    written = gitrepo_status(view, extra, now)
    written.pop("commit")
    written["display"]["error"] = view.state in ("ErrApplied", "ChartError")
    return {**written, "version": status.version}


def _summary_key(state: str) -> str:
    """Fleet's summary field of a state: ``WaitApplied`` → ``waitApplied``."""
    return state[:1].lower() + state[1:]


def _state_counts(counts: Mapping[str, int]) -> dict[str, int | None]:
    """The summary's count of each state but Ready; a state with none is null, so that a
    merge patch of the status removes a count left from before (Fleet omits zero counts)."""
    states = [s.value for s in BundleState if s is not BundleState.READY]
    states += sorted(set(counts) - set(states) - {BundleState.READY.value})
    return {_summary_key(state): counts.get(state) or None for state in states}


@dataclass(frozen=True)
class DeploymentView:
    """One bundle deployment as a BundleDeployment shows it."""

    cluster: str
    state: str
    message: str
    deployment_id: str
    applied: str

    @classmethod
    def of(cls, status: Any) -> DeploymentView:
        """From a bundle status's cluster line (anything with these attributes)."""
        return cls(**_attributes(cls, status))


def _attributes(view: type[Any], source: Any) -> dict[str, Any]:
    """The fields of dataclass ``view`` read from ``source``, lists as tuples."""
    values: dict[str, Any] = {}
    for f in fields(view):
        value = getattr(source, f.name, None)
        if value is None and f.default_factory is not MISSING:
            continue
        values[f.name] = tuple(value) if isinstance(value, list) else value
    return values


def bundle_status(
    ready: int, desired: int, state: str, message: str, deployments: Sequence[DeploymentView]
) -> dict[str, Any]:
    """A Bundle's status in Fleet's shape: counts per state, at most MAX_STATUS_ITEMS named."""
    counts: dict[str, int] = {}
    for d in deployments:
        counts[d.state] = counts.get(d.state, 0) + 1
    bad = [d for d in deployments if d.state != BundleState.READY]
    ready_condition = Condition(
        type="Ready",
        status=state == BundleState.READY,
        reason=state,
        message="" if state == BundleState.READY else explain(state, message),
    )
    return {
        "display": {"readyClusters": f"{ready}/{desired}", "state": state},
        "summary": {
            "desiredReady": desired,
            "ready": ready,
            **_state_counts(counts),
            "nonReadyResources": [
                {"name": d.cluster, "bundleState": d.state, "message": d.message}
                for d in bad[:MAX_STATUS_ITEMS]
            ],
        },
        "conditions": _plain_conditions([ready_condition]),
    }


def bundledeployment_status(d: DeploymentView) -> dict[str, Any]:
    ready = d.state == BundleState.READY
    deployed = bool(d.applied) and d.applied == d.deployment_id
    ready_condition = Condition(
        type="Ready",
        status=ready,
        reason=d.state,
        message="" if ready else explain(d.state, d.message),
    )
    return {
        "appliedDeploymentID": d.applied,
        "ready": ready,
        "display": {"deployed": "Yes" if deployed else "No", "monitored": "Yes", "state": d.state},
        "conditions": _plain_conditions([ready_condition]),
    }


def _plain_conditions(conditions: Iterable[Condition]) -> list[dict[str, Any]]:
    """Conditions without times: a Bundle's status is rewritten only when its content
    changes, and a time that moves on every read would make every read a write."""
    return [
        {
            "type": c.type,
            "status": "True" if c.status else "False",
            "reason": c.reason,
            "message": c.message,
        }
        for c in conditions
    ]


def cluster_status(
    deployments: Mapping[str, str], offline: str, last_seen: datetime | None
) -> dict[str, Any]:
    """A Cluster's status: its bundle deployments' states by bundle (counted, a few named)."""
    ready = sum(1 for s in deployments.values() if s == BundleState.READY)
    bad = sorted(b for b, s in deployments.items() if s != BundleState.READY)
    if offline:
        state, message = BundleState.OFFLINE.value, one_line(offline)
    elif bad:
        state = deployments[bad[0]]
        message = f"{len(bad)} bundle(s) not ready: {', '.join(bad[:MAX_STATUS_ITEMS])}"
    else:
        state, message = BundleState.READY.value, ""
    ready_condition = Condition(
        type="Ready", status=state == BundleState.READY, reason=state, message=message
    )
    return {
        "display": {"readyBundles": f"{ready}/{len(deployments)}", "state": state},
        # To the minute: the worker's probes move it every few seconds, and a status that
        # changes with every probe would be a write per probe per cluster.
        "agent": {
            "lastSeen": _stamp(last_seen.replace(second=0, microsecond=0)) if last_seen else ""
        },
        "summary": {"desiredReady": len(deployments), "ready": ready},
        "conditions": _plain_conditions([ready_condition]),
    }


def clustergroup_status(
    members: Mapping[str, Mapping[str, str]],
) -> dict[str, Any]:
    """A ClusterGroup's status from its member clusters' deployment states (cluster →
    bundle → state)."""
    ready_clusters = sum(
        1 for states in members.values() if all(s == BundleState.READY for s in states.values())
    )
    bundles = [s for states in members.values() for s in states.values()]
    ready_bundles = sum(1 for s in bundles if s == BundleState.READY)
    bad = sorted(c for c, states in members.items() if any(s != "Ready" for s in states.values()))
    ready = not bad
    message = (
        "" if ready else f"{len(bad)} cluster(s) not ready: {', '.join(bad[:MAX_STATUS_ITEMS])}"
    )
    ready_condition = Condition(
        type="Ready", status=ready, reason="Ready" if ready else "NotReady", message=message
    )
    return {
        "clusterCount": len(members),
        "nonReadyClusterCount": len(bad),
        "nonReadyClusters": bad[:MAX_STATUS_ITEMS],
        "display": {
            "readyClusters": f"{ready_clusters}/{len(members)}",
            "readyBundles": f"{ready_bundles}/{len(bundles)}",
        },
        "conditions": _plain_conditions([ready_condition]),
    }


def bundledeployment_name(bundle: str, cluster: str) -> str:
    """A BundleDeployment's name in the bundle's namespace (Fleet puts them in a namespace per
    cluster; flotilla has no agents reading them there)."""
    name = f"{bundle}-{cluster}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:54]}-{digest}"


# --- leases -----------------------------------------------------------------------------------


def lease_holder(lease: Mapping[str, Any], identity: str, now: datetime) -> str:
    """Who else holds this Lease now ("" when it is free, expired or ours)."""
    spec = lease.get("spec") or {}
    holder = str(spec.get("holderIdentity") or "")
    renewed = spec.get("renewTime") or spec.get("acquireTime")
    if not holder or holder == identity or not renewed:
        return ""
    seconds = int(spec.get("leaseDurationSeconds") or LEASE_SECONDS)
    when = datetime.fromisoformat(str(renewed).replace("Z", "+00:00"))
    return holder if when + timedelta(seconds=seconds) > now else ""


def fleet_controller_lease(leases: Iterable[Mapping[str, Any]], now: datetime) -> str:
    """The namespace/name of a live Lease of Fleet's own controller, "" when there is none."""
    for lease in leases:
        meta = lease.get("metadata") or {}
        name = str(meta.get("name", ""))
        if name.startswith(FLEET_LEASE_PREFIXES) and lease_holder(lease, "", now):
            return f"{meta.get('namespace', '')}/{name}"
    return ""


def lease_spec(identity: str, now: datetime) -> dict[str, Any]:
    when = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "holderIdentity": identity,
        "leaseDurationSeconds": LEASE_SECONDS,
        "renewTime": when,
        "acquireTime": when,
    }
