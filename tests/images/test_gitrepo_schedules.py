"""The GitRepo workflow owns its image schedules, end to end: a new tag in the registry is
committed by the schedule, deployed through the GitRepo, paused with it and deleted with it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from datetime import datetime

import pytest
from kubernetes import client, config
from temporalio.client import ScheduleActionStartWorkflow
from temporalio.service import RPCError, RPCStatusCode

from activities.schedules import image_policy_id
from activities.schedules_models import ImagePolicyInput
from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon, git
from devenv.registry import LocalRegistry
from flotilla.models import GitRepo, load_fleet_objects
from tests.e2e.harness import Flotilla, activity_calls

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
        - name: web
          image: {image}:1.0.0 # {{"$imagescan": "web"}}
"""


def _fleet_yaml(namespace: str, image: str) -> str:
    scan = {
        "image": image,
        "tagName": "web",
        "policy": {"semver": {"range": ">=1.0.0 <2.0.0"}},
        "pollSchedule": "@every 2s",
    }
    return f"defaultNamespace: {namespace}\nimageScans:\n  - {json.dumps(scan)}\n"


def _gitrepo(namespace: str, url: str, *, paused: bool = False) -> GitRepo:
    # An hour between polls: only the schedule's sync-now can bring the new commit in time.
    text = (
        "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepo\n"
        f"metadata: {{name: web, namespace: {namespace}}}\n"
        f"spec:\n  repo: {url}\n  branch: main\n  pollingInterval: 1h\n"
        f"  paused: {json.dumps(paused)}\n  targets: [{{clusterSelector: {{}}}}]\n"
    )
    [gitrepo], _ = load_fleet_objects(text, file="gitrepo.yaml")
    assert isinstance(gitrepo, GitRepo)
    return gitrepo


def _head(git_daemon: GitDaemon, repo: str) -> tuple[str, str, int]:
    """The branch head: (sha, author, commit time in epoch seconds)."""
    work = git_daemon.working_copy(repo)
    git("pull", "-q", "--ff-only", "origin", "main", cwd=work)
    sha, author, when = git("log", "-1", "--format=%H|%an|%ct", cwd=work).strip().split("|")
    return sha, author, int(when)


def _deployment(cluster: LocalCluster, namespace: str) -> tuple[str, datetime | None]:
    """The Deployment's image and when its spec was last written (not its status)."""
    api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(cluster.kubeconfig)
    )
    with api_client as api:
        found = client.AppsV1Api(api).read_namespaced_deployment("web", namespace)
    assert found.spec is not None and found.spec.template.spec is not None, found
    assert found.metadata is not None, found
    image = str(found.spec.template.spec.containers[0].image)
    written = [
        f.time for f in found.metadata.managed_fields or [] if f.subresource != "status" and f.time
    ]
    return image, max(written, default=None)


Schedule = tuple[bool, str, ImagePolicyInput]


async def _schedule(fl: Flotilla, policy_id: str) -> Schedule | None:
    """Paused, note and workflow input of the schedule; None while it does not exist."""
    try:
        description = await fl.client.get_schedule_handle(policy_id).describe()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return None
    action = description.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    [value] = await fl.client.data_converter.decode(list(action.args), [ImagePolicyInput])
    assert isinstance(value, ImagePolicyInput)
    return description.schedule.state.paused, description.schedule.state.note or "", value


async def wait_schedule(
    fl: Flotilla, policy_id: str, check: Callable[[Schedule], bool]
) -> Schedule:
    found = await fl.eventually(
        lambda: _schedule(fl, policy_id), lambda s: s is not None and check(s)
    )
    assert found is not None
    return found


@pytest.mark.timeout(600)
async def test_new_tag_reaches_the_cluster_and_schedules_follow_pause_and_delete(
    flotilla: Flotilla,
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    registry: LocalRegistry,
    repo_name: str,
) -> None:
    fl, ns = flotilla, flotilla.namespace
    target = f"t{uuid.uuid4().hex[:8]}"
    image_repo = f"web-{uuid.uuid4().hex[:8]}"
    image = f"{registry.host}/{image_repo}"
    registry.push_image(image_repo, "1.0.0", "one")
    url = git_daemon.create_repo(
        repo_name,
        {
            "web/fleet.yaml": _fleet_yaml(target, image),
            "web/deployment.yaml": DEPLOYMENT.format(image=image),
        },
    )
    first, _, _ = _head(git_daemon, repo_name)
    policy_id = image_policy_id(ns, "web", "web-web", "web")
    try:
        await fl.control.add_cluster(ns, "one", local_cluster.kubeconfig.read_text())
        await fl.worker.refresh_clusters()
        await fl.control.apply_gitrepo(_gitrepo(ns, url))
        status = await fl.eventually(
            lambda: fl.control.gitrepo_status(ns, "web"),
            lambda s: s.commit == first and s.state == "Ready",
        )
        assert not status.warnings, status
        # The schedule exists and has polled (1.0.0 is the newest): nothing was committed.
        paused, _, policy = await wait_schedule(
            fl,
            policy_id,
            lambda s: bool(s[2].state.last_result),
        )
        assert not paused and policy.config.current.tag == "1.0.0", policy
        # The namespace has no notification config: its runs will send no notify signal.
        assert not policy.config.notify, policy
        assert policy.config.commit == first
        assert (await asyncio.to_thread(_head, git_daemon, repo_name))[0] == first
        image_before, _ = await asyncio.to_thread(_deployment, local_cluster, target)
        assert image_before == f"{image}:1.0.0"

        pushed_at = int(time.time())
        registry.push_image(image_repo, "1.1.0", "two")
        registry.push_image(image_repo, "2.0.0", "three")  # outside the range

        status = await fl.eventually(
            lambda: fl.control.gitrepo_status(ns, "web"),
            lambda s: s.commit != first and s.state == "Ready",
            # Generous: the scan, its commit and the deploy took over 120 s on the production
            # server at load 30. Polling waits an hour, so any commit read here came through
            # the schedule's sync-now (also checked by the update count below).
            timeout=240,
        )
        commit, author, committed_at = await asyncio.to_thread(_head, git_daemon, repo_name)
        assert status.commit == commit and author == "flotilla-imagescan"
        bundle = await fl.control.bundle_status(ns, "web-web")
        assert bundle.commit == commit and bundle.state == "Ready", bundle
        image_after, written = await asyncio.to_thread(_deployment, local_cluster, target)
        assert image_after == f"{image}:1.1.0"
        # Registry push, then the commit, then the new image on the cluster (1 s resolution).
        assert written is not None
        assert pushed_at <= committed_at <= int(written.timestamp()), (
            pushed_at,
            committed_at,
            written,
        )
        # Polling waits an hour: the commit came in through the schedule's sync-now update.
        _, events = await activity_calls(fl.client, f"gitrepo/{ns}/web")
        assert events["WORKFLOW_EXECUTION_UPDATE_ACCEPTED"] >= 2, events
        # The GitRepo re-synced the schedule with the commit it read.
        _, _, policy = await wait_schedule(
            fl,
            policy_id,
            lambda s: s[2].config.commit == commit,
        )
        assert policy.config.current.tag == "1.1.0", policy

        await fl.control.apply_gitrepo(_gitrepo(ns, url, paused=True))
        paused, note, _ = await wait_schedule(fl, policy_id, lambda s: s[0])
        assert note == "gitrepo paused"

        # Deleting the GitRepo deletes the schedule before the workflow ends.
        await fl.control.delete_gitrepo(ns, "web", wait=True)
        assert await _schedule(fl, policy_id) is None
    finally:
        with contextlib.suppress(RPCError):
            await fl.client.get_schedule_handle(policy_id).delete()
        with contextlib.suppress(Exception):
            local_cluster.request("DELETE", f"/api/v1/namespaces/{target}")


async def test_a_restricted_gitrepos_schedules_pause_and_resume_when_released(
    flotilla: Flotilla, git_daemon: GitDaemon, repo_name: str
) -> None:
    """A restriction that refuses the GitRepo pauses its image schedules, with the refusal as
    the note (no registry is scanned, nothing committed); removing it resumes them."""
    fl, ns = flotilla, flotilla.namespace
    image = "127.0.0.1:9/nowhere/web"  # never polled: the schedule waits an hour
    fleet = _fleet_yaml(ns, image).replace("@every 2s", "@every 1h")
    url = git_daemon.create_repo(
        repo_name,
        {"web/fleet.yaml": fleet, "web/deployment.yaml": DEPLOYMENT.format(image=image)},
    )
    policy_id = image_policy_id(ns, "web", "web-web", "web")

    def restriction(pattern: str) -> str:
        return (
            "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepoRestriction\n"
            f"metadata: {{name: repos, namespace: {ns}}}\n"
            f"allowedRepoPatterns: [{json.dumps(pattern)}]\n"
        )

    try:
        await fl.control.apply_text(restriction(url), file="allow.yaml")
        await fl.control.apply_gitrepo(_gitrepo(ns, url))
        await wait_schedule(fl, policy_id, lambda s: not s[0])
        await fl.control.apply_text(restriction("^https://elsewhere/"), file="refuse.yaml")
        _, note, _ = await wait_schedule(fl, policy_id, lambda s: s[0])
        assert note.startswith("refused by the workspace's restrictions: spec.repo:"), note
        status = await fl.control.gitrepo_status(ns, "web")
        assert status.state == "Restricted", status
        await fl.control.remove_restriction(ns, "GitRepoRestriction", "repos")
        _, note, _ = await wait_schedule(fl, policy_id, lambda s: not s[0])
        assert note == ""
    finally:
        with contextlib.suppress(Exception):
            await fl.control.delete_gitrepo(ns, "web", wait=True)
