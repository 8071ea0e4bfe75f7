"""Notifications: the Provider and Alert kinds, the events people are told about, which alert
wants which event, and the message each provider type gets (pure; delivery is an activity).

A Provider says where messages go (Slack incoming webhook, Microsoft Teams, a generic JSON
webhook signed with HMAC); its URL and key live in a secret named by the Provider, read only
inside the delivery activity. An Alert picks events by kind and by the GitRepo or bundle they
concern (name or labels) and sends them to one Provider. Events come from workflows: a
GitRepo compares each bundle report with the previous one (``report_events``), an image
policy run says when it waits for approval or committed an update.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from flotilla.durations import parse_duration
from flotilla.helmops import check_helmop
from flotilla.models import (
    Duration,
    FleetModel,
    FleetObject,
    HelmOp,
    ObjectMeta,
    StringMap,
    document_mappings,
    model_for_kind,
    parse_fleet_object,
    parse_spec,
)
from flotilla.status import BundleReport, BundleState

NotificationApiVersion = Literal["notifications.flotilla.dev/v1alpha1"]
NOTIFICATION_API_VERSION: NotificationApiVersion = "notifications.flotilla.dev/v1alpha1"
# Keys of a Provider's secret: the URL messages are posted to, and the HMAC key (webhook).
ADDRESS_KEY = "address"
TOKEN_KEY = "token"  # noqa: S105 - a key's name, not a secret
# Headers of every delivery: the same key on every retry of one message, so a receiver can
# drop a repeat; the generic webhook's body signature.
DELIVERY_HEADER = "X-Flotilla-Delivery"
SIGNATURE_HEADER = "X-Flotilla-Signature"
DEFAULT_DEPENDENCY_WAIT = "10m"


class ProviderType(StrEnum):
    SLACK = "slack"
    MSTEAMS = "msteams"
    WEBHOOK = "webhook"


class EventKind(StrEnum):
    """What an Alert can ask to be told about."""

    ROLLOUT_STARTED = "RolloutStarted"
    PARTITION_DONE = "PartitionDone"
    BUNDLE_READY = "BundleReady"
    ERR_APPLIED = "ErrApplied"
    MODIFIED = "Modified"
    WAITING_FOR_DEPENDENCY = "WaitingForDependency"
    WAITING_FOR_APPROVAL = "WaitingForApproval"
    IMAGE_UPDATE_COMMITTED = "ImageUpdateCommitted"
    CLUSTER_OFFLINE = "ClusterOffline"
    # A gate halted a rollout: a rejection, a passed approval deadline, a spent failure budget.
    ROLLOUT_HALTED = "RolloutHalted"
    # A halted partition's autoRollback pinned the bundle to its last Ready version.
    ROLLED_BACK = "RolledBack"


# ---------------------------------------------------------------------------------------------
# The kinds applied with `flotilla apply -f`
# ---------------------------------------------------------------------------------------------


class SecretRef(FleetModel):
    name: str = Field(min_length=1)


class ProviderSpec(FleetModel):
    type: ProviderType
    # A secret in the Provider's namespace: key ``address`` (the URL), and for ``webhook``
    # key ``token`` (the HMAC key).
    secret_ref: SecretRef


class Provider(FleetModel):
    api_version: NotificationApiVersion = NOTIFICATION_API_VERSION
    kind: Literal["Provider"] = "Provider"
    metadata: ObjectMeta
    spec: ProviderSpec


class EventSource(FleetModel):
    """What an Alert is about: GitRepos by name (``*`` globs) and/or their labels, bundles by
    name and/or their fleet.yaml ``labels``, clusters (ClusterOffline) by name and/or labels."""

    kind: Literal["GitRepo", "Bundle", "Cluster"]
    name: str = "*"
    match_labels: StringMap | None = None


class ProviderRef(FleetModel):
    name: str = Field(min_length=1)


class AlertSpec(FleetModel):
    provider_ref: ProviderRef
    event_kinds: list[EventKind] = Field(min_length=1)
    event_sources: list[EventSource] = Field(min_length=1)
    # "Waiting for dependency longer than N": told only when the wait lasts this long.
    dependency_wait: Duration = DEFAULT_DEPENDENCY_WAIT
    suspend: bool = False

    @property
    def dependency_wait_seconds(self) -> float:
        return parse_duration(self.dependency_wait, field="spec.dependencyWait")


class Alert(FleetModel):
    api_version: NotificationApiVersion = NOTIFICATION_API_VERSION
    kind: Literal["Alert"] = "Alert"
    metadata: ObjectMeta
    spec: AlertSpec


NotificationObject = Provider | Alert
_KINDS: dict[str, type[Provider] | type[Alert]] = {"Provider": Provider, "Alert": Alert}


def load_objects(
    text: str, *, file: str
) -> tuple[list[FleetObject | NotificationObject], list[str]]:
    """Every document of a file `flotilla apply -f` takes: Fleet objects and notification
    kinds, validated (one-line errors naming the file, field and value), with warnings."""
    objects: list[FleetObject | NotificationObject] = []
    warnings: list[str] = []
    for where, data in document_mappings(text, file=file):
        if data.get("apiVersion") == NOTIFICATION_API_VERSION:
            model = model_for_kind(
                data, _KINDS, file=where, what=f"a kind of {NOTIFICATION_API_VERSION}"
            )
            parsed: FleetObject | NotificationObject
            parsed, found = parse_spec(model, data, file=where)
        else:
            parsed, found = parse_fleet_object(data, file=where)
            if isinstance(parsed, HelmOp):
                check_helmop(parsed, file=where)
        objects.append(parsed)
        warnings.extend(found)
    for obj in objects:
        if isinstance(obj, Alert):
            parse_duration(obj.spec.dependency_wait, field="spec.dependencyWait", file=file)
    return objects, warnings


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------


class NotificationEvent(BaseModel):
    """Something that happened, with what a person needs to find it."""

    model_config = ConfigDict(frozen=True)

    kind: EventKind
    namespace: str
    gitrepo: str = ""
    bundle: str = ""
    commit: str = ""
    clusters: list[str] = Field(default_factory=list)
    # The bundle's labels (fleet.yaml), or a cluster event's cluster labels, for selection.
    labels: dict[str, str] = Field(default_factory=dict)
    # The GitRepo's own metadata labels, for GitRepo sources with matchLabels.
    gitrepo_labels: dict[str, str] = Field(default_factory=dict)
    detail: str = ""
    # The workflow to open in the Temporal UI.
    workflow_id: str = ""
    # For WaitingForDependency: the wait is over (clears a pending notice, never sent).
    ended: bool = False
    # Unique per occurrence and stable across replays (the sender's run and history length).
    key: str = ""


def report_events(
    previous: BundleReport | None,
    report: BundleReport,
    *,
    namespace: str,
    gitrepo: str,
    labels: dict[str, str],
    workflow_id: str,
    gitrepo_labels: dict[str, str] | None = None,
) -> list[NotificationEvent]:
    """What changed between two reports of one bundle, as events (keys left to the caller)."""
    if report.retired or not report.commit:
        return []
    before: dict[str, BundleState] = {}
    done_before: set[str] = set()
    new_commit = previous is None or previous.commit != report.commit
    if previous is not None:
        before = previous.states
        if not new_commit:
            done_before = set(previous.partitions_done)

    def event(kind: EventKind, clusters: list[str], detail: str = "", **extra: Any) -> Any:
        return NotificationEvent(
            kind=kind,
            namespace=namespace,
            gitrepo=gitrepo,
            bundle=report.bundle,
            commit=report.commit,
            clusters=sorted(clusters),
            labels=labels,
            gitrepo_labels=gitrepo_labels or {},
            detail=detail,
            workflow_id=workflow_id,
            **extra,
        )

    events: list[NotificationEvent] = []
    # Started once the commit's first report that targets clusters arrives.
    if report.desired and (new_commit or not (previous and previous.desired)):
        events.append(event(EventKind.ROLLOUT_STARTED, list(report.states)))
    for name in report.partitions_done:
        if name not in done_before:
            members = [c for c, s in report.states.items() if s == BundleState.READY]
            events.append(event(EventKind.PARTITION_DONE, members, f"partition {name}"))
    was_ready = (
        previous is not None
        and not new_commit
        and previous.state == BundleState.READY
        and previous.ready == previous.desired
    )
    if (
        report.state == BundleState.READY
        and report.desired
        and report.ready == report.desired
        and not was_ready
    ):
        events.append(event(EventKind.BUNDLE_READY, list(report.states)))
    if report.halted and (new_commit or previous is None or previous.halted != report.halted):
        failing = (BundleState.ERR_APPLIED, BundleState.NOT_READY)
        failed = [c for c, s in report.states.items() if s in failing]
        events.append(event(EventKind.ROLLOUT_HALTED, failed, report.halted))
    for state, kind in (
        (BundleState.ERR_APPLIED, EventKind.ERR_APPLIED),
        (BundleState.MODIFIED, EventKind.MODIFIED),
        (BundleState.OFFLINE, EventKind.CLUSTER_OFFLINE),
    ):
        entered = [c for c, s in report.states.items() if s == state and before.get(c) != state]
        if entered:
            events.append(event(kind, entered, report.message))
    waiting = BundleState.WAITING_FOR_DEPENDENCY
    now_waiting = [c for c, s in report.states.items() if s == waiting]
    was_waiting = [c for c, s in before.items() if s == waiting]
    if now_waiting and not was_waiting:
        events.append(event(EventKind.WAITING_FOR_DEPENDENCY, now_waiting, report.message))
    elif was_waiting and not now_waiting:
        events.append(event(EventKind.WAITING_FOR_DEPENDENCY, was_waiting, ended=True))
    return events


def cluster_offline_event(
    *,
    namespace: str,
    cluster: str,
    labels: dict[str, str],
    reason: str,
    since: datetime,
    workflow_id: str,
    run_id: str,
) -> NotificationEvent:
    """One cluster gone offline, told once (by the registry), whatever runs on it; the key
    names the occurrence (cluster and since when), stable across replays."""
    return NotificationEvent(
        kind=EventKind.CLUSTER_OFFLINE,
        namespace=namespace,
        clusters=[cluster],
        labels=labels,
        detail=reason,
        workflow_id=workflow_id,
        key=f"{workflow_id}/{run_id}#offline/{cluster}@{since.isoformat()}",
    )


def is_cluster_event(event: NotificationEvent) -> bool:
    """An event about a cluster itself, not about a GitRepo's bundle."""
    return not (event.gitrepo or event.bundle)


def alert_wants(alert: AlertSpec, event: NotificationEvent) -> bool:
    """Whether ``alert`` asks for ``event``: its kind, and a source naming what it concerns.

    A GitRepo source matches the event's GitRepo (name glob, the GitRepo's labels), a Bundle
    source its bundle (name glob, fleet.yaml labels). A cluster event matches a Cluster source
    by the cluster's name and labels, and any source that names everything (``*``, no
    labels): every GitRepo and bundle of the namespace may run on that cluster."""
    if alert.suspend or event.kind not in alert.event_kinds:
        return False
    for source in alert.event_sources:
        wanted = source.match_labels or {}
        if is_cluster_event(event):
            if source.kind != "Cluster":
                if source.name == "*" and not wanted:
                    return True
                continue
            name, labels = (event.clusters or [""])[0], event.labels
        elif source.kind == "Cluster":
            continue
        elif source.kind == "GitRepo":
            name, labels = event.gitrepo, event.gitrepo_labels
        else:
            name, labels = event.bundle, event.labels
        if not name or not fnmatch.fnmatchcase(name, source.name):
            continue
        if all(labels.get(k) == v for k, v in wanted.items()):
            return True
    return False


def delivery_key(event: NotificationEvent, provider: str) -> str:
    """The deduplication key of one message: one event to one provider, whatever the retries."""
    return hashlib.sha256(f"{event.key}|{provider}".encode()).hexdigest()[:32]


# ---------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------

_TITLES: dict[EventKind, str] = {
    EventKind.ROLLOUT_STARTED: "rollout started",
    EventKind.PARTITION_DONE: "partition done",
    EventKind.BUNDLE_READY: "Ready on all clusters",
    EventKind.ERR_APPLIED: "failed to apply (ErrApplied)",
    EventKind.MODIFIED: "modified on the cluster (drift)",
    EventKind.WAITING_FOR_DEPENDENCY: "waiting for a dependency",
    EventKind.WAITING_FOR_APPROVAL: "image update waiting for approval",
    EventKind.IMAGE_UPDATE_COMMITTED: "image update committed",
    EventKind.CLUSTER_OFFLINE: "cluster offline",
    EventKind.ROLLOUT_HALTED: "rollout halted",
    EventKind.ROLLED_BACK: "rolled back automatically",
}


def temporal_ui_link(base_url: str, temporal_namespace: str, workflow_id: str) -> str:
    if not (base_url and workflow_id):
        return ""
    return (
        f"{base_url.rstrip('/')}/namespaces/{quote(temporal_namespace, safe='')}"
        f"/workflows/{quote(workflow_id, safe='')}"
    )


def message_text(event: NotificationEvent) -> str:
    """The event in one sentence: what happened, to which bundle of which GitRepo, at which
    commit, on which clusters."""
    if is_cluster_event(event):
        cluster = (event.clusters or ["?"])[0]
        text = f"cluster {event.namespace}/{cluster}: {_TITLES[event.kind]}"
        return f"{text} ({event.detail})" if event.detail else text
    what = f"bundle {event.bundle}" if event.bundle else "gitrepo"
    where = f"{what} of gitrepo {event.namespace}/{event.gitrepo}"
    text = f"{where}: {_TITLES[event.kind]}"
    if event.commit:
        text += f" at commit {event.commit[:12]}"
    if event.clusters:
        shown = ", ".join(event.clusters[:10])
        more = f" and {len(event.clusters) - 10} more" if len(event.clusters) > 10 else ""
        text += f" on {len(event.clusters)} cluster(s): {shown}{more}"
    if event.detail:
        text += f" ({event.detail})"
    return text


def render_payload(kind: ProviderType, event: NotificationEvent, link: str) -> dict[str, Any]:
    """The JSON body a provider type expects."""
    text = message_text(event)
    if kind is ProviderType.SLACK:
        return {
            "text": f"{text}\n<{link}|Temporal UI>" if link else text,
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": text}},
                *(
                    [
                        {
                            "type": "context",
                            "elements": [{"type": "mrkdwn", "text": f"<{link}|Temporal UI>"}],
                        }
                    ]
                    if link
                    else []
                ),
            ],
        }
    if kind is ProviderType.MSTEAMS:
        facts = [
            {"title": "GitRepo", "value": f"{event.namespace}/{event.gitrepo or '-'}"},
            {"title": "Bundle", "value": event.bundle or "-"},
            {"title": "Commit", "value": event.commit or "-"},
            {"title": "Clusters", "value": ", ".join(event.clusters) or "-"},
        ]
        card: dict[str, Any] = {
            "type": "AdaptiveCard",
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "version": "1.4",
            "body": [
                {"type": "TextBlock", "text": text, "wrap": True},
                {"type": "FactSet", "facts": facts},
            ],
            "actions": (
                [{"type": "Action.OpenUrl", "title": "Temporal UI", "url": link}] if link else []
            ),
        }
        return {
            "type": "message",
            "attachments": [
                {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
            ],
        }
    return {
        "event": event.kind.value,
        "message": text,
        "namespace": event.namespace,
        "gitrepo": event.gitrepo,
        "bundle": event.bundle,
        "commit": event.commit,
        "clusters": event.clusters,
        "detail": event.detail,
        "temporalUI": link,
    }


def signature(body: bytes, key: str) -> str:
    """The generic webhook's ``X-Flotilla-Signature``: ``sha256=`` and the body's HMAC."""
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
