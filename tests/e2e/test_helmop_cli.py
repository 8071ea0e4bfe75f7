"""The HelmOp commands through ``flotilla``'s own parser: apply -f (with valuesFiles read
beside the file), get helmops, describe, sync and delete helmop, and a bad file in one line.
Real Temporal, a real chart repository, a real API server with kwok."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from devenv.cluster import LocalCluster
from starters.cli import main
from tests.charts import serve_charts, write_chart
from tests.conftest import locate
from tests.e2e.harness import Flotilla, table_row


async def test_helmop_commands(
    flotilla: Flotilla,
    local_cluster: LocalCluster,
    tmp_path: Path,
    prefix: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ns = flotilla.namespace
    monkeypatch.setenv("TEMPORAL_ADDRESS", flotilla.client.service_client.config.target_host)
    monkeypatch.setenv("FLOTILLA_SECRETS_DIR", str(flotilla.settings.secrets_dir))
    common = ["-n", ns, "--task-queue", flotilla.config.task_queue]

    async def flotilla_cli(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(main, list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    await flotilla.control.add_cluster(ns, "one", local_cluster.kubeconfig.read_text())
    await flotilla.worker.refresh_clusters()
    sources = [write_chart(tmp_path / "src", "app", v) for v in ("1.0.0", "1.1.0")]
    with serve_charts(tmp_path / "repo", sources, locate("helm")) as server:
        directory = tmp_path / "ops"
        directory.mkdir()
        (directory / "greeting.yaml").write_text("greeting: from-a-values-file\n")
        helmop = directory / "helmop.yaml"
        helmop.write_text(
            "apiVersion: fleet.cattle.io/v1alpha1\nkind: HelmOp\n"
            f"metadata: {{name: cli, namespace: {ns}}}\n"
            f"spec:\n  helm: {{repo: '{server.url}', chart: app, version: '~1.0.0',"
            " releaseName: cli, valuesFiles: [greeting.yaml]}\n"
            f"  namespace: {prefix}-cli\n  targets: [{{clusterSelector: {{}}}}]\n"
        )
        code, out, _ = await flotilla_cli("apply", "-f", str(helmop), "--task-queue", common[-1])
        assert (code, out.strip()) == (0, f"helmop {ns}/cli applied")
        await flotilla.eventually(
            lambda: flotilla.control.helmop_status(ns, "cli"),
            lambda s: s.state == "Ready" and s.ready_bundle_deployments == "1/1",
            timeout=240,
        )
        cm = local_cluster.request("GET", f"/api/v1/namespaces/{prefix}-cli/configmaps/cli-info")
        assert cm["data"]["greeting"] == "from-a-values-file"
        assert cm["data"]["chartVersion"] == "1.0.0"

        code, out, _ = await flotilla_cli("get", "helmops", *common)
        assert code == 0
        assert table_row(out, "cli").split()[1:5] == [server.url, "app", "1.0.0", "1/1"]
        code, out, _ = await flotilla_cli("describe", "helmop", "cli", *common)
        assert code == 0 and "Wanted:      ~1.0.0" in out and "Version:     1.0.0" in out
        code, out, _ = await flotilla_cli("sync", "helmop", "cli", *common)
        assert (code, out.strip()) == (0, f"helmop {ns}/cli synced at chart version 1.0.0")

        # A bad file: one line naming the file, the field and the value; nothing applied.
        bad = directory / "bad.yaml"
        bad.write_text(helmop.read_text().replace("'~1.0.0'", "'~~1'"))
        code, _, err = await flotilla_cli("apply", "-f", str(bad), "--task-queue", common[-1])
        assert code == 1 and err.count("\n") == 1
        assert f"{bad}: spec.helm.version: " in err and "'~~1'" in err
        missing = directory / "missing.yaml"
        missing.write_text(helmop.read_text().replace("greeting.yaml", "nope.yaml"))
        code, _, err = await flotilla_cli("apply", "-f", str(missing), "--task-queue", common[-1])
        assert code == 1 and err.count("\n") == 1
        assert "spec.helm.valuesFiles[0]: 'nope.yaml' does not exist beside missing.yaml" in err
        assert (await flotilla.control.helmop_status(ns, "cli")).wanted == "~1.0.0"

        code, out, _ = await flotilla_cli("delete", "helmop", "cli", *common)
        assert (code, out.strip()) == (0, f"helmop {ns}/cli deleted")
        code, out, _ = await flotilla_cli("get", "helmops", *common)
        assert code == 0 and "cli" not in out.split()
