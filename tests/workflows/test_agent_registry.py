"""Registration tokens and agent heartbeats on the real registry workflow (dev server).

Tokens: valid, expired, deleted, reused beyond their limit, for another cluster, unknown,
a pre-created cluster claimed, a push-mode cluster refused; each refusal one line, and the
token's text never in the registry's history. Heartbeats: a silent agent turns Offline within
two intervals, a beat brings it back, a stopping agent is Offline at once; one that never beat
is Offline from its registration.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from flotilla.agents import NEVER_CONNECTED, token_hash
from flotilla.errors import FlotillaError, SpecError
from flotilla.ids import registry_workflow_id
from tests.e2e.harness import Flotilla, history_text
from workflows.registry_models import AgentHeartbeat, ClusterRecord


async def _refused(flotilla: Flotilla, token: str, name: str) -> str:
    with pytest.raises(FlotillaError) as err:
        await flotilla.control.register_agent(token, name)
    message = str(err.value)
    assert "\n" not in message and token not in message
    return message


async def test_tokens_register_claim_and_refuse_in_one_line(flotilla: Flotilla) -> None:
    control, ns = flotilla.control, flotilla.namespace
    once = await control.create_token(
        ns, "once", ttl_seconds=3600, labels={"env": "edge"}, max_uses=1
    )
    namespace, change = await control.register_agent(once, "a", {"zone": "z1", "env": "x"})
    assert namespace == ns and "registered by its agent" in change.message
    # The agent restarts: the same cluster registers again without using the token again.
    assert "re-registered" in (await control.register_agent(once, "a", {"zone": "z1"}))[1].message
    assert "limit is 1" in await _refused(flotilla, once, "b")

    short = await control.create_token(ns, "short", ttl_seconds=1)
    await asyncio.sleep(1.5)
    assert "short expired at" in await _refused(flotilla, short, "c")

    gone = await control.create_token(ns, "gone", ttl_seconds=3600)
    await control.delete_token(ns, "gone")
    assert "gone was deleted" in await _refused(flotilla, gone, "c")
    with pytest.raises(FlotillaError, match="'gone' does not exist"):
        await control.delete_token(ns, "gone")

    # A pre-created agent cluster is claimed by a token naming it, and only by such a token.
    await control.add_cluster(ns, "pre", None, labels={"site": "s1"})
    named = await control.create_token(ns, "for-pre", ttl_seconds=3600, cluster="pre")
    assert "is for cluster 'pre', not 'c'" in await _refused(flotilla, named, "c")
    anyone = await control.create_token(ns, "anyone", ttl_seconds=3600)
    assert "does not name it" in await _refused(flotilla, anyone, "pre")
    assert "claimed by its agent" in (await control.register_agent(named, "pre"))[1].message
    flotilla.worker.config.watch_objects = False  # no API server behind this kubeconfig
    await control.add_cluster(ns, "pushed", "apiVersion: v1\nkind: Config\n")
    pushed = await control.create_token(ns, "for-pushed", ttl_seconds=3600, cluster="pushed")
    assert "push mode" in await _refused(flotilla, pushed, "pushed")

    assert "not known" in await _refused(flotilla, f"flt1.{ns}.made-up", "c")
    with pytest.raises(SpecError, match="not of the form"):
        await control.register_agent("no-token-at-all", "c")

    snapshot = await control.registry(ns)
    clusters = {c.name: c for c in snapshot.clusters}
    assert clusters["a"].agent and clusters["a"].labels == {"zone": "z1", "env": "edge"}
    assert clusters["pre"].labels == {"site": "s1"} and clusters["pre"].registered_with
    assert "b" not in clusters and "c" not in clusters
    listed = {t.name: t for t in await control.list_tokens(ns)}
    # expired and deleted tokens are forgotten when the next one is made
    assert set(listed) == {"once", "for-pre", "anyone", "for-pushed"}
    assert listed["once"].used_by == ["a"]

    history = await flotilla.client.get_workflow_handle(registry_workflow_id(ns)).fetch_history()
    text = history_text(history)
    for token in (once, short, gone, named, anyone, pushed):
        assert token not in text
        assert token.rsplit(".", 1)[1] not in text
    assert token_hash(once) in text  # what the registry keeps instead


async def _record(flotilla: Flotilla, name: str) -> ClusterRecord:
    snapshot = await flotilla.control.registry(flotilla.namespace)
    (record,) = [c for c in snapshot.clusters if c.name == name]
    return record


async def test_silent_agent_turns_offline_within_two_heartbeats_and_comes_back(
    flotilla: Flotilla,
) -> None:
    control, ns = flotilla.control, flotilla.namespace
    await control.add_cluster(ns, "edge", None)
    # Registered, never heard from: Offline from the start, last seen never.
    record = await _record(flotilla, "edge")
    assert record.offline == NEVER_CONNECTED and record.last_seen is None
    beat = AgentHeartbeat(
        name="edge", agent_version="0.1.0", kubernetes_version="v1.31.0", interval_seconds=1.0
    )
    await control.agent_heartbeat(ns, beat)
    record = await flotilla.eventually(
        lambda: _record(flotilla, "edge"), lambda r: r.last_seen is not None
    )
    assert (record.agent_version, record.kubernetes_version) == ("0.1.0", "v1.31.0")
    assert not record.unreachable and not record.offline
    silent_from = time.monotonic()
    record = await flotilla.eventually(
        lambda: _record(flotilla, "edge"), lambda r: bool(r.unreachable), timeout=30
    )
    # Two intervals (2 s) plus the timer's and the dev server's latency under load.
    assert time.monotonic() - silent_from < 15
    assert "agent stopped heartbeating" in record.offline
    assert record.unreachable_since == record.last_seen

    await control.agent_heartbeat(ns, beat)
    await flotilla.eventually(lambda: _record(flotilla, "edge"), lambda r: not r.unreachable)
    await control.agent_heartbeat(ns, beat.model_copy(update={"stopping": True}))
    record = await flotilla.eventually(
        lambda: _record(flotilla, "edge"), lambda r: r.unreachable == "agent stopped"
    )


def _cluster_yaml(ns: str, name: str, labels: str, spec: str = "{}") -> str:
    return (
        f"apiVersion: fleet.cattle.io/v1alpha1\nkind: Cluster\n"
        f"metadata: {{name: {name}, namespace: {ns}, labels: {labels}}}\nspec: {spec}\n"
    )


async def test_a_fleet_cluster_without_a_kubeconfig_secret_waits_for_the_agent_its_token_names(
    flotilla: Flotilla,
) -> None:
    control, ns = flotilla.control, flotilla.namespace
    flotilla.worker.config.watch_objects = False  # the push-mode one has no API server
    lines = await control.apply_text(_cluster_yaml(ns, "edge", "{site: s1}"), file="edge.yaml")
    assert lines == [
        f"cluster {ns}/edge applied in agent mode (no kubeconfig Secret): its agent claims it "
        f"with a token naming it, `flotilla cluster token create --cluster edge -n {ns}`"
    ]
    # Re-applied (labels changed): still the agent's, no Secret asked for.
    await control.apply_text(_cluster_yaml(ns, "edge", "{site: s2}"), file="edge.yaml")
    edge = await _record(flotilla, "edge")
    assert edge.agent and edge.kubeconfig_secret == "" and edge.labels == {"site": "s2"}

    anyone = await control.create_token(ns, "anyone", ttl_seconds=3600)
    assert "does not name it" in await _refused(flotilla, anyone, "edge")
    named = await control.create_token(ns, "for-edge", ttl_seconds=3600, cluster="edge")
    assert "claimed by its agent" in (await control.register_agent(named, "edge"))[1].message
    edge = await _record(flotilla, "edge")
    assert edge.agent and edge.registered_with == "for-edge"

    # A Secret named in the spec that does not exist is an error, never agent mode.
    with pytest.raises(SpecError) as err:
        await control.apply_text(
            _cluster_yaml(ns, "lab", "{}", "{kubeConfigSecret: lab-creds}"), file="lab.yaml"
        )
    assert str(err.value) == (
        f"cluster {ns}/lab: its kubeconfig Secret {ns}/lab-creds does not exist: run "
        f"`flotilla cluster add lab --kubeconfig FILE -n {ns}` or create the Secret (key "
        "'value'); leave spec.kubeConfigSecret out for a cluster its agent serves"
    )
    # flotilla's own default Secret (from `cluster add --kubeconfig`) keeps a cluster push-mode.
    control.secrets.put(ns, "pushed-kubeconfig", {"value": "apiVersion: v1\nkind: Config\n"})
    lines = await control.apply_text(_cluster_yaml(ns, "pushed", "{}"), file="p.yaml")
    assert lines == [f"cluster {ns}/pushed applied"]
    clusters = {c.name: c for c in (await control.registry(ns)).clusters}
    assert set(clusters) == {"edge", "pushed"}
    assert not clusters["pushed"].agent
    assert clusters["pushed"].kubeconfig_secret == "pushed-kubeconfig"
