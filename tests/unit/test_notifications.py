"""Notifications' pure part: loading Providers and Alerts, events from report changes, which
Alert wants what, and each provider type's payload."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import pytest

from flotilla.errors import SpecError
from flotilla.models import GitRepo
from flotilla.notifications import (
    Alert,
    AlertSpec,
    EventKind,
    NotificationEvent,
    Provider,
    ProviderType,
    alert_wants,
    cluster_offline_event,
    delivery_key,
    load_objects,
    message_text,
    render_payload,
    report_events,
    signature,
    temporal_ui_link,
)
from flotilla.status import BundleReport, BundleState

R, E, W, M, OFF, N = (
    BundleState.READY,
    BundleState.ERR_APPLIED,
    BundleState.WAITING_FOR_DEPENDENCY,
    BundleState.MODIFIED,
    BundleState.OFFLINE,
    BundleState.NOT_READY,
)

CONFIG = """\
apiVersion: notifications.flotilla.dev/v1alpha1
kind: Provider
metadata: {name: ops, namespace: team}
spec: {type: slack, secretRef: {name: slack-url}}
---
apiVersion: notifications.flotilla.dev/v1alpha1
kind: Alert
metadata: {name: prod, namespace: team}
spec:
  providerRef: {name: ops}
  eventKinds: [BundleReady, ErrApplied]
  eventSources: [{kind: Bundle, name: "web-*", matchLabels: {env: prod}}]
  dependencyWait: 5m
---
apiVersion: fleet.cattle.io/v1alpha1
kind: GitRepo
metadata: {name: repo, namespace: team}
spec: {repo: "https://example.com/r.git"}
"""


def test_load_objects_reads_notification_kinds_beside_fleet_objects() -> None:
    objects, warnings = load_objects(CONFIG, file="n.yaml")
    assert [type(o) for o in objects] == [Provider, Alert, GitRepo]
    assert warnings == []
    provider, alert = objects[0], objects[1]
    assert isinstance(provider, Provider) and provider.spec.type is ProviderType.SLACK
    assert isinstance(alert, Alert) and alert.spec.dependency_wait_seconds == 300


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            "kind: Provider\nmetadata: {name: p}\nspec: {type: pager, secretRef: {name: s}}",
            "n.yaml: spec.type:",
        ),
        ("kind: Provider\nmetadata: {name: p}\nspec: {type: slack}", "n.yaml: spec.secretRef:"),
        ("kind: Receiver\nmetadata: {name: p}\nspec: {}", "n.yaml: kind: 'Receiver' is not a kind"),
        (
            "kind: Alert\nmetadata: {name: a}\nspec: {providerRef: {name: p}, eventKinds: "
            "[Exploded], eventSources: [{kind: GitRepo}]}",
            "n.yaml: spec.eventKinds[0]:",
        ),
        (
            "kind: Alert\nmetadata: {name: a}\nspec: {providerRef: {name: p}, eventKinds: "
            "[ErrApplied], eventSources: [{kind: GitRepo}], dependencyWait: soon}",
            "n.yaml: spec.dependencyWait:",
        ),
    ],
)
def test_bad_notification_objects_are_one_line_errors(document: str, expected: str) -> None:
    text = "apiVersion: notifications.flotilla.dev/v1alpha1\n" + document
    with pytest.raises(SpecError) as caught:
        load_objects(text, file="n.yaml")
    message = str(caught.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_unknown_fields_are_warnings_with_the_near_miss() -> None:
    text = (
        "apiVersion: notifications.flotilla.dev/v1alpha1\nkind: Provider\nmetadata: {name: p}\n"
        "spec: {type: webhook, secretRef: {name: s}, secretRefs: x}\n"
    )
    _, warnings = load_objects(text, file="n.yaml")
    assert len(warnings) == 1 and "spec.secretRefs: unknown field" in warnings[0]


def report(commit: str = "c1", state: BundleState = N, **fields: Any) -> BundleReport:
    states = fields.pop("states", {})
    ready = sum(1 for s in states.values() if s == R)
    base = {"bundle": "web", "commit": commit, "ready": ready, "desired": len(states)}
    return BundleReport.model_validate(
        {**base, "state": state, "message": "", "states": states, **fields}
    )


def kinds(previous: BundleReport | None, current: BundleReport) -> list[tuple[str, list[str]]]:
    events = report_events(
        previous, current, namespace="ns", gitrepo="repo", labels={}, workflow_id="bundle/ns/web"
    )
    return [(e.kind.value + ("(ended)" if e.ended else ""), e.clusters) for e in events]


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        # a new commit starts a rollout; the same commit again starts nothing
        (None, report(states={"a": N, "b": N}), [("RolloutStarted", ["a", "b"])]),
        (
            report(states={"a": R}, state=R),
            report("c2", states={"a": N}),
            [("RolloutStarted", ["a"])],
        ),
        (report(states={"a": N}), report(states={"a": N}), []),
        # a commit's first report before planning targets nothing: started at the next one
        (report(states={}), report(states={"a": N}), [("RolloutStarted", ["a"])]),
        # Ready on all clusters, once per commit
        (
            report(states={"a": R, "b": N}),
            report(states={"a": R, "b": R}, state=R),
            [("BundleReady", ["a", "b"])],
        ),
        (report(states={"a": R}, state=R), report(states={"a": R}, state=R), []),
        # a first report that is already Ready: started and Ready together
        (
            None,
            report(states={"a": R}, state=R),
            [("RolloutStarted", ["a"]), ("BundleReady", ["a"])],
        ),
        # clusters entering ErrApplied, Modified and Offline; staying there says nothing new
        (
            report(states={"a": R, "b": N}),
            report(states={"a": E, "b": E}, state=E),
            [("ErrApplied", ["a", "b"])],
        ),
        (
            report(states={"a": E, "b": N}),
            report(states={"a": E, "b": E}, state=E),
            [("ErrApplied", ["b"])],
        ),
        (report(states={"a": R}, state=R), report(states={"a": M}, state=M), [("Modified", ["a"])]),
        (
            report(states={"a": R}, state=R),
            report(states={"a": OFF}, state=OFF),
            [("ClusterOffline", ["a"])],
        ),
        # a dependency wait starts and ends
        (
            report(states={"a": N}),
            report(states={"a": W}, state=W),
            [("WaitingForDependency", ["a"])],
        ),
        (
            report(states={"a": W}, state=W),
            report(states={"a": N}),
            [("WaitingForDependency(ended)", ["a"])],
        ),
        # partitions: each named once when it finishes
        (
            report(states={"a": R, "b": N}, partitions_done=[]),
            report(states={"a": R, "b": N}, partitions_done=["canary"]),
            [("PartitionDone", ["a"])],
        ),
        (
            report(states={"a": R, "b": N}, partitions_done=["canary"]),
            report(states={"a": R, "b": N}, partitions_done=["canary"]),
            [],
        ),
        # a gate halts the rollout: said once, with the clusters that failed
        (
            report(states={"a": E, "b": R}),
            report(states={"a": E, "b": R}, halted="rollout halted: partition canary: ..."),
            [("RolloutHalted", ["a"])],
        ),
        (
            report(states={"a": E}, halted="rollout halted: partition canary: ..."),
            report(states={"a": E}, halted="rollout halted: partition canary: ..."),
            [],
        ),
        # a retired bundle and one with no commit yet say nothing
        (report(states={"a": R}, state=R), report(states={}, retired=True), []),
        (None, report(commit="", states={}), []),
    ],
)
def test_report_events(
    previous: BundleReport | None, current: BundleReport, expected: list[tuple[str, list[str]]]
) -> None:
    assert kinds(previous, current) == expected


def event(**fields: Any) -> NotificationEvent:
    base = {"kind": EventKind.ERR_APPLIED, "namespace": "ns", "gitrepo": "repo", "bundle": "web-a"}
    return NotificationEvent.model_validate({**base, **fields})


def alert(**fields: Any) -> AlertSpec:
    base = {
        "providerRef": {"name": "p"},
        "eventKinds": ["ErrApplied"],
        "eventSources": [{"kind": "GitRepo", "name": "repo"}],
    }
    return AlertSpec.model_validate({**base, **fields})


CLUSTER_P = {"kind": "Cluster", "name": "prod-*", "matchLabels": {"env": "prod"}}
OFFLINE = cluster_offline_event(
    namespace="ns",
    cluster="prod-1",
    labels={"env": "prod"},
    reason="cluster unreachable at 10.0.0.1:6443",
    since=datetime(2026, 12, 4, 3, 0, tzinfo=UTC),
    workflow_id="registry/ns",
    run_id="r1",
)


def test_a_cluster_offline_event_says_which_cluster_once_per_occurrence() -> None:
    assert message_text(OFFLINE) == (
        "cluster ns/prod-1: cluster offline (cluster unreachable at 10.0.0.1:6443)"
    )
    assert OFFLINE.key == "registry/ns/r1#offline/prod-1@2026-12-04T03:00:00+00:00"
    later = cluster_offline_event(
        namespace="ns",
        cluster="prod-1",
        labels={},
        reason="again",
        since=datetime(2026, 12, 4, 4, 0, tzinfo=UTC),
        workflow_id="registry/ns",
        run_id="r1",
    )
    assert delivery_key(later, "p") != delivery_key(OFFLINE, "p")
    assert render_payload(ProviderType.WEBHOOK, OFFLINE, "")["clusters"] == ["prod-1"]


@pytest.mark.parametrize(
    ("spec", "evt", "wanted"),
    [
        (alert(), event(), True),
        (alert(), event(kind=EventKind.BUNDLE_READY), False),
        (alert(eventSources=[{"kind": "GitRepo", "name": "other"}]), event(), False),
        (alert(eventSources=[{"kind": "GitRepo", "name": "re*"}]), event(), True),
        (alert(eventSources=[{"kind": "Bundle", "name": "web-*"}]), event(), True),
        (alert(eventSources=[{"kind": "Bundle", "name": "db"}]), event(), False),
        (
            alert(eventSources=[{"kind": "Bundle", "matchLabels": {"env": "prod"}}]),
            event(labels={"env": "prod", "team": "a"}),
            True,
        ),
        (
            alert(eventSources=[{"kind": "Bundle", "matchLabels": {"env": "prod"}}]),
            event(labels={"env": "dev"}),
            False,
        ),
        # an image event of a GitRepo without a bundle is not any bundle's
        (alert(eventSources=[{"kind": "Bundle"}]), event(bundle=""), False),
        (alert(suspend=True), event(), False),
        # GitRepos by their own labels, not their bundles'
        (
            alert(eventSources=[{"kind": "GitRepo", "matchLabels": {"team": "pay"}}]),
            event(gitrepo_labels={"team": "pay"}, labels={"team": "web"}),
            True,
        ),
        (
            alert(eventSources=[{"kind": "GitRepo", "matchLabels": {"team": "pay"}}]),
            event(gitrepo_labels={"team": "web"}, labels={"team": "pay"}),
            False,
        ),
        # a cluster event: by a Cluster source, or a source naming everything
        (alert(eventKinds=["ClusterOffline"], eventSources=[CLUSTER_P]), OFFLINE, True),
        (
            alert(eventKinds=["ClusterOffline"], eventSources=[{"kind": "Cluster", "name": "d*"}]),
            OFFLINE,
            False,
        ),
        (
            alert(
                eventKinds=["ClusterOffline"],
                eventSources=[{"kind": "Cluster", "matchLabels": {"env": "dev"}}],
            ),
            OFFLINE,
            False,
        ),
        (alert(eventKinds=["ClusterOffline"], eventSources=[{"kind": "Bundle"}]), OFFLINE, True),
        (alert(eventKinds=["ClusterOffline"]), OFFLINE, False),  # GitRepo 'repo' only
        # a Cluster source wants no bundle's event
        (alert(eventSources=[CLUSTER_P]), event(clusters=["prod-1"]), False),
    ],
)
def test_alert_wants(spec: AlertSpec, evt: NotificationEvent, wanted: bool) -> None:
    assert alert_wants(spec, evt) is wanted


def test_delivery_key_is_per_event_and_provider() -> None:
    one, two = event(key="gitrepo/ns/repo/run#1"), event(key="gitrepo/ns/repo/run#2")
    assert delivery_key(one, "a") == delivery_key(one, "a")
    assert len({delivery_key(one, "a"), delivery_key(one, "b"), delivery_key(two, "a")}) == 3


FULL = event(
    kind=EventKind.ERR_APPLIED,
    commit="0123456789abcdef",
    clusters=["prod-1", "prod-2"],
    detail="helm: timed out",
    workflow_id="bundle/ns/web-a",
)
LINK = "http://ui.example:8233/namespaces/default/workflows/bundle%2Fns%2Fweb-a"


def test_message_says_what_happened_in_words() -> None:
    assert message_text(FULL) == (
        "bundle web-a of gitrepo ns/repo: failed to apply (ErrApplied) at commit 0123456789ab "
        "on 2 cluster(s): prod-1, prod-2 (helm: timed out)"
    )
    assert temporal_ui_link("http://ui.example:8233/", "default", "bundle/ns/web-a") == LINK


def test_slack_payload_has_text_and_blocks_with_the_link() -> None:
    body = render_payload(ProviderType.SLACK, FULL, LINK)
    assert body["text"].startswith("bundle web-a of gitrepo ns/repo")
    assert f"<{LINK}|Temporal UI>" in body["text"]
    assert body["blocks"][0] == {
        "type": "section",
        "text": {"type": "mrkdwn", "text": message_text(FULL)},
    }


def test_teams_payload_is_an_adaptive_card_with_facts_and_the_link() -> None:
    body = render_payload(ProviderType.MSTEAMS, FULL, LINK)
    assert body["type"] == "message"
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
    assert facts == {
        "GitRepo": "ns/repo",
        "Bundle": "web-a",
        "Commit": "0123456789abcdef",
        "Clusters": "prod-1, prod-2",
    }
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Temporal UI", "url": LINK}]


def test_webhook_payload_and_signature() -> None:
    body = render_payload(ProviderType.WEBHOOK, FULL, LINK)
    assert body["event"] == "ErrApplied" and body["clusters"] == ["prod-1", "prod-2"]
    assert body["temporalUI"] == LINK
    raw = b'{"a": 1}'
    expected = hmac.new(b"k", raw, hashlib.sha256).hexdigest()
    assert signature(raw, "k") == f"sha256={expected}"
