"""Last-seen times: the worker probes the clusters it serves and tells the registry which
answered; that changes no registry version (nothing is re-planned) and shows in the CLI."""

from __future__ import annotations

import json

from devenv.cluster import LocalCluster
from devenv.process import free_port
from flotilla.ids import cluster_task_queue
from starters.tables import cluster_table
from tests.e2e.harness import Flotilla


async def test_clusters_that_answer_are_seen_and_the_others_are_not(
    flotilla: Flotilla, local_cluster: LocalCluster
) -> None:
    ns = flotilla.namespace
    kubeconfig = json.loads(local_cluster.kubeconfig.read_text())
    token = kubeconfig["users"][0]["user"]["token"]
    await flotilla.control.add_cluster(ns, "up", json.dumps(kubeconfig))
    # The same credentials for an API server that is not there.
    kubeconfig["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    await flotilla.control.add_cluster(ns, "down", json.dumps(kubeconfig))
    await flotilla.worker.refresh_clusters()
    before = await flotilla.control.registry(ns)
    assert [c.last_seen for c in before.clusters] == [None, None]

    problems = await flotilla.worker.report_seen()

    assert problems[cluster_task_queue(ns, "up")] == ""
    down = problems[cluster_task_queue(ns, "down")]
    assert "127.0.0.1" in down and token not in down and "\n" not in down
    after = await flotilla.eventually(
        lambda: flotilla.control.registry(ns),
        lambda s: any(c.last_seen is not None for c in s.clusters),
    )
    seen = {c.name: c.last_seen for c in after.clusters}
    assert seen["up"] is not None and seen["down"] is None
    assert after.version == before.version  # not a change: no bundle is re-planned for it

    rows = {line.split()[0]: line.split() for line in cluster_table(after, []).splitlines()}
    assert rows["NAME"][5] == "LAST-SEEN"
    assert rows["down"][5] == "<never>"
    assert rows["up"][5].endswith("s") and rows["up"][5][:-1].isdigit()
