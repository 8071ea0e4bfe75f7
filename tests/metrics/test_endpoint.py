"""The worker's Prometheus endpoint, scraped and parsed with prometheus_client's parser.

Real components: the Temporal dev server, a worker started with --metrics-listen and
--webhook-listen on a client whose SDK runtime serves its own metrics (bridged into ours),
and the git daemon. The scraped values must match what `flotilla get` shows at that moment.
"""

from __future__ import annotations

import json
import re
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from devenv.gitserver import GitDaemon
from devenv.process import free_port
from flotilla.webhooks import WEBHOOK_SECRET_NAME
from runtime.stores import secret_store
from starters.control import Control
from tests.e2e.harness import Flotilla, gitrepo_yaml, settings_for_test
from tests.webhooks.payloads import github
from worker import FlotillaWorker, WorkerConfig

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{k: v}}\n"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
async def measured(
    temporal_client: Client, task_queue: str, tmp_path: Path
) -> AsyncIterator[Flotilla]:
    sdk_address = f"127.0.0.1:{free_port()}"
    runtime = Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(bind_address=sdk_address, durations_as_seconds=True)
        )
    )
    client = await Client.connect(
        temporal_client.service_client.config.target_host,
        namespace=temporal_client.namespace,
        data_converter=pydantic_data_converter,
        runtime=runtime,
    )
    namespace = f"fl-{uuid.uuid4().hex[:8]}"
    config = WorkerConfig(
        task_queue=task_queue,
        namespaces=[namespace],
        control_threads=4,
        cluster_threads=4,
        refresh_seconds=0.5,
        workdir=tmp_path / "work",
        webhook_listen="127.0.0.1:0",
        metrics_listen="127.0.0.1:0",
        sdk_metrics_address=sdk_address,
        metrics_refresh_seconds=0.5,
    )
    settings = settings_for_test(client, tmp_path)
    worker = FlotillaWorker(client, config, settings)
    await worker.start()
    control = Control(client, task_queue=task_queue, secrets=secret_store(settings))
    fl = Flotilla(namespace, client, control, worker, config, settings)
    try:
        yield fl
    finally:
        await fl.cleanup()
        await worker.stop()


DASHBOARD = Path(__file__).resolve().parents[2] / "docs/grafana-dashboard.json"


def families(fl: Flotilla) -> set[str]:
    assert fl.worker.metrics is not None
    url = f"http://127.0.0.1:{fl.worker.metrics.port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        return {f.name for f in text_string_to_metric_families(answer.read().decode())}


def dashboard_metrics() -> set[str]:
    exprs = [
        target["expr"]
        for panel in json.loads(DASHBOARD.read_text())["panels"]
        for target in panel["targets"]
    ]
    names = set(re.findall(r"\b((?:flotilla|fleet|temporal)_[a-z_]+)", " ".join(exprs)))
    return {re.sub(r"_(bucket|count|sum|total)$", "", name) for name in names}


def scrape(fl: Flotilla) -> Samples:
    assert fl.worker.metrics is not None
    url = f"http://127.0.0.1:{fl.worker.metrics.port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, metric: str, /, **labels: object) -> float:
    """The sum of ``metric``'s samples whose labels include ``labels`` (enums by value)."""
    wanted = {(k, str(getattr(v, "value", v))) for k, v in labels.items()}
    return sum(v for (n, ls), v in samples.items() if n == metric and wanted <= set(ls))


async def test_metrics_match_get_and_time_git_and_webhooks(
    measured: Flotilla, git_daemon: GitDaemon, repo_name: str
) -> None:
    fl = measured
    ns = fl.namespace
    url = git_daemon.create_repo(
        repo_name,
        {
            **{f"{d}/cm.yaml": CM.format(name=d) for d in ("a", "b", "c")},
            # A fleet.yaml makes each directory a bundle of its own (Fleet's rule).
            **{f"{d}/fleet.yaml": f"labels: {{app: {d}}}\n" for d in ("a", "b", "c")},
        },
    )
    # Paths given, so Fleet's paths label has something to join.
    await fl.control.apply_text(
        gitrepo_yaml(ns, "repo", url, paths=["a", "b", "c"]), file="gitrepo.yaml"
    )
    await fl.eventually(
        lambda: fl.control.list_bundles(ns),
        lambda bs: len(bs) == 3 and all(b.state == "Ready" for b in bs),
    )

    # The GitRepo turns Ready a moment after its bundles (it aggregates their reports), and
    # the gauges follow each a refresh later: wait for both before comparing with `get`.
    await fl.eventually(lambda: fl.control.gitrepo_status(ns, "repo"), lambda s: s.state == "Ready")

    def settled(samples: Samples) -> bool:
        return (
            value(samples, "flotilla_bundles", namespace=ns, state="Ready") == 3
            and value(samples, "flotilla_gitrepos", namespace=ns, state="Ready") == 1
        )

    async def scraped() -> Samples:
        return scrape(fl)

    samples = await fl.eventually(scraped, settled, timeout=30)
    gitrepo = await fl.control.gitrepo_status(ns, "repo")
    bundles = await fl.control.list_bundles(ns)
    # The same numbers `flotilla get` prints.
    assert value(samples, "flotilla_gitrepos", namespace=ns, state=gitrepo.state) == 1
    # Fleet's labels: spec.branch and spec.paths joined with ";".
    source = {"name": "repo", "namespace": ns, "repo": url, "branch": "main", "paths": "a;b;c"}
    series = ("fleet_gitrepo_ready_clusters", tuple(sorted(source.items())))
    assert samples.get(series) == gitrepo.ready_clusters, sorted(
        k for k in samples if k[0] == series[0]
    )
    assert (
        value(samples, "fleet_gitrepo_desired_ready_clusters", namespace=ns, name="repo")
        == gitrepo.desired_ready_clusters
    )
    for bundle in bundles:
        labels = {"namespace": ns, "name": bundle.bundle, "gitrepo": "repo", "repo": url}
        assert value(samples, "fleet_bundle_state", state=bundle.state, **labels) == 1
        assert value(samples, "fleet_bundle_state", **labels) == 1  # one state at a time
        assert value(samples, "fleet_bundle_ready", commit=gitrepo.commit, **labels) == bundle.ready
        assert value(samples, "fleet_bundle_desired_ready", **labels) == bundle.desired
    # git polls and the clone were timed where they ran (success), and Temporal's own
    # metrics come through the same endpoint.
    assert value(samples, "flotilla_git_poll_duration_seconds_count", result="success") >= 1
    assert value(samples, "flotilla_git_fetch_duration_seconds_count", result="success") >= 1
    assert value(samples, "flotilla_activity_duration_seconds_count", activity="ls_remote") >= 1
    assert any(name.startswith("temporal_") for name, _ in samples), "no Temporal SDK metric"
    # Every metric the Grafana dashboard in docs/ reads is served.
    missing = dashboard_metrics() - families(fl)
    assert not missing, f"docs/grafana-dashboard.json reads metrics nobody serves: {missing}"

    # The worker's webhook receiver counts what it answered.
    fl.worker.secrets.put(fl.settings.system_namespace, WEBHOOK_SECRET_NAME, {"github": "k"})
    hook = f"http://127.0.0.1:{fl.worker.webhook_port}/webhook"
    async with aiohttp.ClientSession() as session:
        for secret in ("k", "wrong"):
            headers, body = github(
                "https://example.com/no/repo", "refs/heads/main", "a" * 40, secret
            )
            async with session.post(hook, data=body, headers=headers) as answer:
                assert answer.status == (202 if secret == "k" else 401)
    samples = scrape(fl)
    assert (
        value(samples, "flotilla_webhook_requests_total", provider="github", outcome="unknown_repo")
        == 1
    )
    assert (
        value(samples, "flotilla_webhook_requests_total", provider="github", outcome="unauthorized")
        == 1
    )

    # A new commit is a rollout: timed from the read that first sees it to Ready.
    git_daemon.commit(
        git_daemon.working_copy(repo_name), {"a/cm.yaml": CM.format(name="a2")}, message="a2"
    )
    await fl.control.sync_gitrepo(ns, "repo")
    await fl.eventually(
        scraped,
        lambda s: value(s, "flotilla_rollout_duration_seconds_count", namespace=ns) == 3,
        timeout=60,
    )
