"""Workspace restrictions (Policy, GitRepoRestriction) enforced by the worker, against real
Temporal and a real git daemon: each field allowed, refused and defaulted; a GitRepo started
straight through the Temporal client is refused the same; a restriction added later stops new
deploys and keeps what runs; bad restrictions change nothing; `flotilla get policies`."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from temporalio.service import RPCError

from activities.gitops_models import SYNC_BUNDLES, SYNC_BUNDLES_SHARED
from devenv.gitserver import GitDaemon
from flotilla.errors import FlotillaError, SpecError
from flotilla.ids import gitrepo_workflow_id
from flotilla.models import GitRepoSpec, load_fleet_objects
from starters.cli import main
from tests.e2e.harness import Flotilla, activity_calls, gitrepo_yaml
from workflows.gitrepo_models import GITREPO_WORKFLOW, GitRepoState, GitRepoStatus

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {k: v}\n"


def restriction_yaml(kind: str, namespace: str, name: str, body: str) -> str:
    return (
        f"apiVersion: fleet.cattle.io/v1alpha1\nkind: {kind}\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\n{body}"
    )


async def status_of(flotilla: Flotilla, name: str) -> GitRepoStatus:
    """The GitRepo's status; a query that times out (workflow tasks slow down on a loaded
    machine) counts as "not yet", not as the answer."""
    try:
        return await flotilla.control.gitrepo_status(flotilla.namespace, name)
    except RPCError as err:
        raise FlotillaError(f"status query failed: {err.message}") from None


async def settled(flotilla: Flotilla, name: str) -> GitRepoStatus:
    """The GitRepo once it is Restricted, or Ready with its commit read."""
    return await flotilla.eventually(
        lambda: status_of(flotilla, name),
        lambda s: s.state == "Restricted" or (s.state == "Ready" and bool(s.commit)),
        timeout=180,
    )


async def fetched_and_told(flotilla: Flotilla, name: str) -> tuple[list[str], list[dict]]:  # type: ignore[type-arg]
    """The git secret names the GitRepo's ls-remote calls used, and the bundle specs it sent."""
    calls, _ = await activity_calls(flotilla.client, gitrepo_workflow_id(flotilla.namespace, name))
    secrets = [str(c.input["source"]["client_secret_name"]) for c in calls if c.name == "ls_remote"]
    specs = [
        start["signal_arg"]["spec"]
        for c in calls
        if c.name in (SYNC_BUNDLES, SYNC_BUNDLES_SHARED)
        for start in c.input["starts"]
    ]
    return secrets, specs


async def test_each_restriction_field_is_allowed_refused_and_defaulted_by_the_worker(
    flotilla: Flotilla, git_daemon: GitDaemon
) -> None:
    ns = flotilla.namespace
    tag = uuid.uuid4().hex[:8]
    allowed = git_daemon.create_repo(f"allowed-{tag}", {"cm.yaml": CM})
    denied = git_daemon.create_repo(f"denied-{tag}", {"cm.yaml": CM})
    password = f"pw-{tag}-never-in-history"
    for secret in ("git-default", "git-ok", "git-other"):
        flotilla.control.secrets.put(ns, secret, {"username": "u", "password": password})
    await flotilla.control.apply_text(
        restriction_yaml(
            "GitRepoRestriction",
            ns,
            "team",
            "allowedServiceAccounts: [deployer, other]\n"
            "defaultServiceAccount: deployer\n"
            "allowedClientSecretNames: [git-default, git-ok]\n"
            "defaultClientSecretName: git-default\n"
            f"allowedRepoPatterns: ['/allowed-{tag}']\n"
            "allowedTargetNamespaces: [apps, web]\n",
        ),
        file="restriction.yaml",
    )
    cases: dict[str, tuple[str, dict[str, object]]] = {
        "ok": (allowed, {"targetNamespace": "web", "serviceAccount": "other",
                         "clientSecretName": "git-ok"}),
        "defaults": (allowed, {"targetNamespace": "apps"}),
        "bad-sa": (allowed, {"targetNamespace": "apps", "serviceAccount": "admin"}),
        "bad-secret": (allowed, {"targetNamespace": "apps", "clientSecretName": "git-other"}),
        "bad-repo": (denied, {"targetNamespace": "apps"}),
        "bad-ns": (allowed, {"targetNamespace": "kube-system"}),
        "no-ns": (allowed, {}),
    }  # fmt: skip
    for name, (url, spec) in cases.items():
        await flotilla.control.apply_text(gitrepo_yaml(ns, name, url, **spec), file=f"{name}.yaml")
    # Started straight through Temporal, as anyone who can reach it could: the worker refuses.
    direct_spec = GitRepoSpec.model_validate(
        {"repo": allowed, "branch": "main", "targetNamespace": "apps", "serviceAccount": "root"}
    )
    await flotilla.client.start_workflow(
        GITREPO_WORKFLOW,
        GitRepoState(namespace=ns, name="direct", spec=direct_spec),
        id=gitrepo_workflow_id(ns, "direct"),
        task_queue=flotilla.config.task_queue,
    )
    status = dict(
        zip(
            [*cases, "direct"],
            await asyncio.gather(*(settled(flotilla, n) for n in [*cases, "direct"])),
            strict=True,
        )
    )
    refused = {
        "bad-sa": "spec.serviceAccount: 'admin' is not allowed by GitRepoRestriction team",
        "bad-secret": "spec.clientSecretName: 'git-other' is not allowed by GitRepoRestriction "
        "team",
        "bad-repo": f"spec.repo: {denied!r} is not allowed by GitRepoRestriction team",
        "bad-ns": "spec.targetNamespace: 'kube-system' is not allowed by GitRepoRestriction team",
        "no-ns": "spec.targetNamespace: is required: GitRepoRestriction team sets "
        "allowedTargetNamespaces",
        "direct": "spec.serviceAccount: 'root' is not allowed by GitRepoRestriction team",
    }
    for name, reason in refused.items():
        assert status[name].state == "Restricted", (name, status[name])
        assert reason in status[name].message and "\n" not in status[name].message
        # Refused before anything is read: no git call, no bundle told anything.
        assert await fetched_and_told(flotilla, name) == ([], []), name
        assert await flotilla.control.list_bundles(ns, gitrepo=name) == []
    for name in ("ok", "defaults"):
        assert status[name].state == "Ready", status[name]
        assert [b.gitrepo for b in await flotilla.control.list_bundles(ns, gitrepo=name)] == [name]
    secrets, specs = await fetched_and_told(flotilla, "ok")
    assert set(secrets) == {"git-ok"}
    assert {s["switches"]["service_account"] for s in specs} == {"other"}
    # The restriction's defaults are what the GitRepo fetches and deploys with.
    secrets, specs = await fetched_and_told(flotilla, "defaults")
    assert set(secrets) == {"git-default"}
    assert {s["switches"]["service_account"] for s in specs} == {"deployer"}
    assert {s["switches"]["target_namespace"] for s in specs} == {"apps"}
    # Secrets are named, never carried: not in any GitRepo's history.
    for name in [*cases, "direct"]:
        history = await flotilla.client.get_workflow_handle(
            gitrepo_workflow_id(ns, name)
        ).fetch_history()
        assert password not in history.to_json()


async def test_require_service_account_of_a_policy(
    flotilla: Flotilla, git_daemon: GitDaemon, repo_name: str
) -> None:
    ns = flotilla.namespace
    url = git_daemon.create_repo(repo_name, {"cm.yaml": CM})
    await flotilla.control.apply_text(
        restriction_yaml("Policy", ns, "strict", "requireServiceAccount: true\n"),
        file="policy.yaml",
    )
    await flotilla.control.apply_text(gitrepo_yaml(ns, "anon", url), file="a.yaml")
    await flotilla.control.apply_text(
        gitrepo_yaml(ns, "named", url, serviceAccount="deployer"), file="b.yaml"
    )
    anon, named = await asyncio.gather(settled(flotilla, "anon"), settled(flotilla, "named"))
    assert anon.state == "Restricted"
    assert "spec.serviceAccount: is required by Policy strict (requireServiceAccount)" in (
        anon.message
    )
    assert named.state == "Ready"
    _, specs = await fetched_and_told(flotilla, "named")
    assert {s["switches"]["service_account"] for s in specs} == {"deployer"}


async def test_a_restriction_added_later_stops_new_deploys_and_keeps_what_runs(
    flotilla: Flotilla, git_daemon: GitDaemon, repo_name: str
) -> None:
    ns = flotilla.namespace
    url = git_daemon.create_repo(repo_name, {"cm.yaml": CM})
    await flotilla.control.apply_text(gitrepo_yaml(ns, "app", url), file="g.yaml")
    first = await settled(flotilla, "app")
    assert first.state == "Ready"
    await flotilla.control.apply_text(
        restriction_yaml(
            "Policy", ns, "only-https", "gitRepo: {allowedRepoPatterns: ['https://.*']}\n"
        ),
        file="policy.yaml",
    )
    status = await flotilla.eventually(
        lambda: status_of(flotilla, "app"), lambda s: s.state == "Restricted"
    )
    assert f"spec.repo: {url!r} is not allowed by Policy only-https" in status.message
    git_daemon.commit(git_daemon.working_copy(repo_name), {"more.yaml": CM}, message="second")
    with pytest.raises(FlotillaError, match=r"spec\.repo"):
        await flotilla.control.sync_gitrepo(ns, "app")
    # The bundle keeps running at the commit it had; the new one is not read.
    (bundle,) = await flotilla.control.list_bundles(ns, gitrepo="app")
    assert bundle.commit == first.commit
    assert (await flotilla.control.gitrepo_status(ns, "app")).commit == first.commit

    await flotilla.control.remove_restriction(ns, "Policy", "only-https")
    await flotilla.eventually(
        lambda: flotilla.control.list_bundles(ns, gitrepo="app"),
        lambda bs: len(bs) == 1 and bs[0].commit != first.commit,
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            restriction_yaml("Policy", "{ns}", "p", "gitRepo: {allowedRepoPatterns: ['(x']}\n"),
            "bad.yaml: gitRepo.allowedRepoPatterns",
        ),
        (
            restriction_yaml("GitRepoRestriction", "{ns}", "r", "allowedServiceAcounts: [a]\n"),
            "bad.yaml: allowedServiceAcounts: unknown field; did you mean "
            "'allowedServiceAccounts'?",
        ),
        (
            restriction_yaml("Policy", "{ns}", "one", "gitRepo: {defaultServiceAccount: a}\n")
            + "---\n"
            + restriction_yaml("Policy", "{ns}", "two", "gitRepo: {defaultServiceAccount: b}\n"),
            "Policy two: defaultServiceAccount 'b' conflicts with 'a' of Policy one",
        ),
    ],
)
async def test_bad_restrictions_are_one_line_and_change_nothing(
    flotilla: Flotilla, body: str, message: str
) -> None:
    ns = flotilla.namespace
    with pytest.raises(SpecError) as err:
        await flotilla.control.apply_text(body.replace("{ns}", ns), file="bad.yaml")
    assert message in str(err.value) and "\n" not in str(err.value)
    snapshot = await flotilla.control.registry(ns)
    assert (snapshot.policies, snapshot.restrictions, snapshot.version) == ([], [], 0)


async def test_the_registry_refuses_a_conflict_that_skipped_the_cli(flotilla: Flotilla) -> None:
    ns = flotilla.namespace
    policy = "gitRepo: {defaultClientSecretName: ssh-a}\n"
    await flotilla.control.apply_text(restriction_yaml("Policy", ns, "a", policy), file="a.yaml")
    (other,), _ = load_fleet_objects(
        restriction_yaml("Policy", ns, "b", policy.replace("ssh-a", "ssh-b")), file="b.yaml"
    )
    with pytest.raises(FlotillaError, match="conflicts with 'ssh-a' of Policy a"):
        await flotilla.control.apply_restriction(other)  # type: ignore[arg-type]
    assert [p.metadata.name for p in (await flotilla.control.registry(ns)).policies] == ["a"]


async def test_get_and_delete_policies_on_the_command_line(
    flotilla: Flotilla,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ns = flotilla.namespace
    monkeypatch.setenv("TEMPORAL_ADDRESS", flotilla.client.service_client.config.target_host)
    monkeypatch.setenv("FLOTILLA_SECRETS_DIR", str(flotilla.settings.secrets_dir))
    common = ["-n", ns, "--task-queue", flotilla.config.task_queue]
    file = tmp_path / "r.yaml"
    file.write_text(
        restriction_yaml("Policy", ns, "p", "allowedServiceAccounts: [deployer]\n")
        + "---\n"
        + restriction_yaml("GitRepoRestriction", ns, "r", "defaultServiceAccount: deployer\n")
    )

    async def cli(*argv: str) -> tuple[int, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(main, list(argv))
        return code, capsys.readouterr().out

    assert await cli("apply", "-f", str(file), "--task-queue", flotilla.config.task_queue) == (
        0,
        f"policy {ns}/p applied\ngitreporestriction {ns}/r applied\n",
    )
    code, out = await cli("get", "policies", *common)
    assert code == 0
    assert out.split("\n")[0].split() == ["KIND", "NAME", "RULES"]
    assert out.split("\n")[1].split() == ["Policy", "p", "allowedServiceAccounts=[deployer]"]
    assert out.split("\n")[2].split() == [
        "GitRepoRestriction",
        "r",
        'defaultServiceAccount="deployer"',
    ]
    code, out = await cli("get", "gitreporestrictions", *common)
    assert [line.split()[0] for line in out.strip().split("\n")] == ["KIND", "GitRepoRestriction"]
    assert await cli("delete", "policy", "p", *common) == (0, "policy p removed\n")
    code, out = await cli("get", "policies", *common, "-o", "json")
    assert '"Policy"' not in out and '"GitRepoRestriction"' in out
