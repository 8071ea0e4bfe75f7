"""Benchmark: read and digest a generated checkout of 1,000 bundles (rendering excluded).

Run: .venv/bin/python bench/bench_bundles.py  (prints the median of the runs; goal <= 2 s)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from activities.checkout import read_checkout
from flotilla.bundles import read_bundles

BUNDLES = 1000
RUNS = 7
GOAL_SECONDS = 2.0

DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{i}-{j}
  labels: {{app: app-{i}}}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: app-{i}}}
  template:
    metadata:
      labels: {{app: app-{i}}}
    spec:
      containers:
      - name: app
        image: registry.local/demo/app:1.0.{j}
        ports: [{{containerPort: 8080}}]
"""


def generate(root: Path) -> None:
    """Mixed styles, about 10 files each: raw with overlays, local charts, kustomize."""
    for i in range(BUNDLES):
        bundle = root / "bundles" / f"team-{i % 20}" / f"app-{i}"
        style = i % 3
        files: dict[str, str] = {}
        if style == 0:
            files["fleet.yaml"] = (
                f"defaultNamespace: ns-{i}\ntargetCustomizations:\n"
                "- name: prod\n  clusterSelector: {matchLabels: {env: prod}}\n"
                "  yaml: {overlays: [prod]}\n"
            )
            for j in range(6):
                files[f"manifests/deploy-{j}.yaml"] = DEPLOY.format(i=i, j=j)
            files["overlays/prod/manifests/deploy-0_patch.yaml"] = "spec: {replicas: 3}\n"
            files["README.md"] = f"# app {i}\n"
            files[".fleetignore"] = "*.tmp\n"
        elif style == 1:
            files["fleet.yaml"] = (
                f"defaultNamespace: ns-{i}\nhelm:\n  chart: chart\n  releaseName: app-{i}\n"
                f"  values: {{replicas: 2, name: app-{i}}}\n  valuesFiles: [values/common.yaml]\n"
            )
            files["values/common.yaml"] = "image: {tag: 1.0.0}\n"
            files["chart/Chart.yaml"] = f"apiVersion: v2\nname: app-{i}\nversion: 0.1.0\n"
            files["chart/values.yaml"] = "replicas: 1\n"
            for j in range(5):
                files[f"chart/templates/t{j}.yaml"] = DEPLOY.format(i=i, j=j)
            files["chart/.helmignore"] = "*.tmp\n"
        else:
            files["fleet.yaml"] = f"defaultNamespace: ns-{i}\nkustomize: {{dir: overlays/dev}}\n"
            files["base/kustomization.yaml"] = "resources: [d0.yaml, d1.yaml, d2.yaml]\n"
            for j in range(3):
                files[f"base/d{j}.yaml"] = DEPLOY.format(i=i, j=j)
            for env in ("dev", "test", "prod"):
                files[f"overlays/{env}/kustomization.yaml"] = "resources: [../../base]\n"
            files["kustomization.yaml"] = "resources: [base]\n"
        for name, text in files.items():
            path = bundle / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)


def run_once(root: Path) -> tuple[float, int]:
    started = time.perf_counter()
    listing = read_checkout(root)
    result = read_bundles(listing, gitrepo_name="bench", paths=["bundles"])
    elapsed = time.perf_counter() - started
    if result.invalid:
        raise SystemExit(f"unexpected invalid bundle: {result.invalid[0].error}")
    return elapsed, len(result.bundles)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="flotilla-bench-") as tmp:
        root = Path(tmp)
        generate(root)
        files = sum(1 for p in root.rglob("*") if p.is_file())
        run_once(root)  # warm the page cache and imports
        timings = []
        for _ in range(RUNS):
            elapsed, count = run_once(root)
            timings.append(elapsed)
    median = statistics.median(timings)
    print(
        f"read+digest {count} bundles ({files} files): median {median:.3f} s over {RUNS} runs "
        f"(min {min(timings):.3f}, max {max(timings):.3f}); goal <= {GOAL_SECONDS} s"
    )
    return 0 if median <= GOAL_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
