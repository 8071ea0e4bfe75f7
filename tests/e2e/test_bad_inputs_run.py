"""A run of bad inputs against a running worker: each shows in the status with a reason, no
workflow task fails, and the log holds no traceback (tracebacks are for bugs).

Real components: the Temporal dev server, the git daemon, the local cluster and Helm; the
unreachable cluster, git host and Helm repository are loopback ports nobody listens on. The
corpus of the offline commands is `tests/cli/test_bad_input.py`; this is its running twin.
"""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from temporalio.api.enums.v1 import EventType

from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from devenv.process import free_port
from tests.e2e.harness import Flotilla, gitrepo_yaml, per_cluster_namespaces

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{k: v}}\n"


async def test_bad_inputs_show_in_status_without_failed_workflow_tasks_or_tracebacks(
    flotilla: Flotilla,
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    ns = flotilla.namespace
    prefix = f"t{uuid.uuid4().hex[:6]}"
    kubeconfig = json.loads(local_cluster.kubeconfig.read_text())
    await flotilla.control.add_cluster(ns, "good", json.dumps(kubeconfig))
    kubeconfig["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    await flotilla.control.add_cluster(ns, "gone", json.dumps(kubeconfig))
    await flotilla.worker.refresh_clusters()
    customize = per_cluster_namespaces(prefix, ["good", "gone"])
    url = git_daemon.create_repo(
        repo_name,
        {
            "ok/cm.yaml": CM.format(name="ok"),
            "ok/fleet.yaml": customize,
            "badyaml/cm.yaml": CM.format(name="b"),
            "badyaml/fleet.yaml": "helm: [1\n",
            "badname/cm.yaml": CM.format(name="c"),
            "badname/fleet.yaml": "helm: {releaseName: Not_Valid}\n",
            "nochart/fleet.yaml": customize + "helm: {chart: ./missing}\n",
            "helmdown/fleet.yaml": customize
            + f"helm: {{repo: 'http://127.0.0.1:{free_port()}/charts', chart: web}}\n",
            "badmanifest/cm.yaml": "kind: [\n",
            "badmanifest/fleet.yaml": customize,
            "badtemplate/cm.yaml": CM.format(name="t"),
            "badtemplate/fleet.yaml": customize + "helm: {values: {a: '${ .Nope.Missing }'}}\n",
            "cycle-a/cm.yaml": CM.format(name="ca"),
            "cycle-a/fleet.yaml": "dependsOn: [{name: bad-cycle-b}]\n",
            "cycle-b/cm.yaml": CM.format(name="cb"),
            "cycle-b/fleet.yaml": "dependsOn: [{name: bad-cycle-a}]\n",
        },
    )
    targets = [{"clusterSelector": {}}]
    specs = {
        "bad": gitrepo_yaml(ns, "bad", url, targets=targets),
        "nobranch": gitrepo_yaml(ns, "nobranch", url).replace("branch: main", "branch: nope"),
        "nohost": gitrepo_yaml(ns, "nohost", f"git://127.0.0.1:{free_port()}/x.git"),
        "malformed": gitrepo_yaml(ns, "malformed", "htp//not a url"),
        "nopaths": gitrepo_yaml(ns, "nopaths", url, paths=["nope/*"]),
    }
    for name, text in specs.items():
        await flotilla.control.apply_text(text, file=f"{name}.yaml")

    for name in ("nobranch", "nohost", "malformed", "nopaths"):
        status = await flotilla.eventually(
            lambda name=name: flotilla.control.gitrepo_status(ns, name),  # type: ignore[misc]
            lambda s: s.state == "GitError",
            timeout=60,
        )
        assert status.message and "\n" not in status.message, name
    bad = await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "bad"),
        lambda s: (
            {b.name for b in s.bundles if b.state != "Pending"} >= {"bad-ok", "bad-badyaml"}
            and any(b.state == "Offline" for b in s.bundles)
        ),
        timeout=120,
    )
    for line in bad.bundles:
        assert line.state == "Ready" or line.message or line.error, line
    states = {b.name: b.state for b in bad.bundles}
    assert states["bad-badyaml"] == states["bad-badname"] == "ErrApplied"
    assert states["bad-cycle-a"] == states["bad-cycle-b"] == "ErrApplied"
    # The unreachable cluster is Offline everywhere a bundle targets it.
    assert states["bad-ok"] == "Offline", bad

    # No workflow task failed, in any workflow of the run.
    failed: dict[str, int] = {}
    for prefix_ in ("gitrepo", "bundle", "registry"):
        async for execution in flotilla.client.list_workflows(
            f"WorkflowId STARTS_WITH '{prefix_}/{ns}'"
        ):
            handle = flotilla.client.get_workflow_handle(execution.id, run_id=execution.run_id)
            async for event in handle.fetch_history_events():
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                    failed[execution.id] = failed.get(execution.id, 0) + 1
    assert failed == {}

    # Expected errors were logged as one line each: nothing at INFO or above has a traceback.
    tracebacks = [
        f"{r.name}: {r.getMessage()[:200]}"
        for r in caplog.records
        if r.levelno >= logging.INFO and (r.exc_info or "Traceback" in r.getMessage())
    ]
    assert tracebacks == []
