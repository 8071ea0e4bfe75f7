"""Benchmark: render a raw-YAML bundle of 500 manifests with two overlays for one cluster.

Run: .venv/bin/python bench/bench_render.py  (prints the median of the runs; goal <= 0.5 s)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from activities.render import render_bundle
from flotilla.bundles import Bundle, FileListing, read_bundles
from flotilla.targeting import ClusterInfo

MANIFESTS = 500
PER_FILE = 5
RUNS = 9
GOAL_SECONDS = 0.5

DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{n}
  labels: {{app: app-{n}, tier: web}}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: app-{n}}}
  template:
    metadata:
      labels: {{app: app-{n}}}
    spec:
      containers:
      - name: app
        image: registry.local/demo/app:1.0.0
        env: [{{name: MODE, value: base}}, {{name: ID, value: "{n}"}}]
        ports: [{{containerPort: 8080}}]
        resources: {{requests: {{cpu: 10m, memory: 16Mi}}}}
"""


def make_bundle() -> Bundle:
    """100 files of 5 Deployments; overlay ``a`` patches 20 files (strategic merge) and
    replaces 5, overlay ``b`` JSON-patches 20 single-object files."""
    files: dict[str, bytes] = {
        "app/fleet.yaml": b"defaultNamespace: bench\nyaml: {overlays: [a, b]}\n"
    }
    for f in range(MANIFESTS // PER_FILE):
        docs = [DEPLOY.format(n=f * PER_FILE + k) for k in range(PER_FILE)]
        files[f"app/m/file{f:03d}.yaml"] = "---\n".join(docs).encode()
    for s in range(20):
        files[f"app/single/s{s}.yaml"] = DEPLOY.format(n=f"s{s}").encode()
        files[f"app/overlays/a/single/s{s}_patch.yaml"] = (
            b"spec:\n  replicas: 2\n  template:\n    spec:\n      containers:\n"
            b"      - name: app\n        env: [{name: MODE, value: a}]\n"
        )
        files[f"app/overlays/b/single/s{s}_patch.yaml"] = (
            b"- {op: replace, path: /spec/replicas, value: 3}\n"
        )
    for r in range(5):
        files[f"app/overlays/a/m/file{r:03d}.yaml"] = "---\n".join(
            DEPLOY.format(n=r * PER_FILE + k).replace("1.0.0", "1.1.0") for k in range(PER_FILE)
        ).encode()
    result = read_bundles(FileListing(files=files), gitrepo_name="bench", paths=["app"])
    (bundle,) = result.bundles
    return bundle


def main() -> int:
    bundle = make_bundle()
    cluster = ClusterInfo(name="c1", labels={"env": "prod"})
    timings = []
    with tempfile.TemporaryDirectory(prefix="flotilla-bench-") as tmp:
        for run in range(RUNS + 1):
            started = time.perf_counter()
            out = render_bundle(bundle, cluster, workdir=Path(tmp) / str(run))
            if run:  # the first run warms imports and caches
                timings.append(time.perf_counter() - started)
    count = len(out.manifests)
    if count != MANIFESTS + 20:
        raise SystemExit(f"expected {MANIFESTS + 20} manifests, got {count}")
    median = statistics.median(timings)
    print(
        f"render raw bundle, {count} manifests, 2 overlays: median {median:.3f} s over {RUNS} "
        f"runs (min {min(timings):.3f}, max {max(timings):.3f}); goal <= {GOAL_SECONDS} s"
    )
    return 0 if median <= GOAL_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
