"""Content failures at the activity boundary: a registry that is down is retried, missing
content is not; the message is one line naming the registry."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.deploy import DeployActivities
from activities.deploy_models import DeployRequest
from activities.gitops import GitOpsActivities
from activities.gitops_models import FetchRequest, GitSource, PlanRequest
from activities.secrets import FileSecretStore
from devenv.gitserver import GitDaemon
from devenv.process import free_port
from flotilla.errors import CONTENT_MISSING, CONTENT_UNAVAILABLE
from flotilla.targeting import GitRepoSwitches
from tests.content.conftest import MakeStore

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"
MISSING = hashlib.sha256(b"never stored").hexdigest()


def deploy_request(digest: str) -> DeployRequest:
    return DeployRequest(
        gitrepo="r",
        bundle_name="r-a",
        cluster_namespace="ns",
        cluster_name="c1",
        deployment_id=f"{digest}:{digest}",
        bundle_digest=digest,
        options_digest=digest,
    )


def test_a_registry_that_is_down_fails_fetch_and_deploy_retryably(
    make_store: MakeStore, git_daemon: GitDaemon, repo_name: str, tmp_path: Path
) -> None:
    down = f"127.0.0.1:{free_port()}"
    store = make_store(host=down, cache=None)
    secrets = FileSecretStore(tmp_path / "secrets")
    url = git_daemon.create_repo(repo_name, {"a/cm.yaml": CM, "a/fleet.yaml": "{}\n"})
    gitops = GitOpsActivities(None, secrets, store, tmp_path / "git")
    deploy = DeployActivities(secrets, store, tmp_path / "deploy")
    fetch = FetchRequest(
        namespace="ns", gitrepo="r", source=GitSource(repo=url, branch="main"), commit="0" * 40
    )
    failures = []
    for activity, request in (
        (gitops.fetch_bundles, fetch),
        (deploy.deploy_bundle, deploy_request(MISSING)),
    ):
        with pytest.raises(ApplicationError) as caught:
            ActivityEnvironment().run(activity, request)
        failures.append(caught.value)
    for failure in failures:
        assert failure.type == CONTENT_UNAVAILABLE and not failure.non_retryable
        assert failure.message.startswith(f"content registry {down} is unreachable: ")
        assert "\n" not in failure.message


def test_missing_content_fails_plan_and_deploy_for_good(
    make_store: MakeStore, tmp_path: Path
) -> None:
    store = make_store(cache=None)
    secrets = FileSecretStore(tmp_path / "secrets")
    gitops = GitOpsActivities(None, secrets, store, tmp_path / "git")
    deploy = DeployActivities(secrets, store, tmp_path / "deploy")
    plan = PlanRequest(
        namespace="ns", bundle="r-a", bundle_digest=MISSING, switches=GitRepoSwitches(), clusters=[]
    )
    with pytest.raises(ApplicationError) as planned:
        ActivityEnvironment().run(gitops.plan_bundle, plan)
    with pytest.raises(ApplicationError) as deployed:
        ActivityEnvironment().run(deploy.deploy_bundle, deploy_request(MISSING))
    assert planned.value.type == CONTENT_MISSING and planned.value.non_retryable
    assert deployed.value.type == "DeployFailed" and deployed.value.non_retryable
    for failure in (planned.value, deployed.value):
        assert failure.message == f"content {MISSING} in {store.reference} is not in the store"
