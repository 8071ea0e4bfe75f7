"""Content store latency per blob: the ``oci`` backend against a local registry, and ``file``.

Starts Debian's docker-registry on loopback (plain HTTP, no auth), then for each blob size
times every call on fresh content: put (new), put (already stored), has, get from the
registry (a second store without cache, as a fresh worker would) and get from the local
cache. Each figure is the median over ``--blobs`` blobs, and the median of ``--runs`` such
runs is reported, with the registry requests per call (token requests would count too).

    .venv/bin/python bench/bench_content.py                      # 1 KiB, 64 KiB, 1 MiB
    .venv/bin/python bench/bench_content.py --sizes 4096 --blobs 50 --runs 5
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from activities.content import ContentStore, FileContentStore
from activities.ocicontent import OciContentStore
from activities.secrets import FileSecretStore
from devenv.registry import LocalRegistry
from flotilla.settings import DEFAULT_SYSTEM_NAMESPACE, ContentRegistrySettings

CALLS = ("put new", "put again", "has", "get (registry)", "get (cache)")


def requests(store: ContentStore) -> int:
    return store.requests if isinstance(store, OciContentStore) else 0


def call(name: str, writer: ContentStore, reader: ContentStore, data: bytes) -> ContentStore:
    """Make the call ``name`` about ``data``; return the store that made it."""
    digest = hashlib.sha256(data).hexdigest()
    if name.startswith("put"):
        writer.put(data)
        return writer
    if name == "has":
        reader.has(digest)
        return reader
    if name == "get (registry)":
        reader.get(digest)
        return reader
    writer.get(digest)
    return writer


def measure(
    writer: ContentStore, reader: ContentStore, size: int, blobs: int
) -> dict[str, tuple[float, float]]:
    """Median seconds and mean requests per call, over ``blobs`` fresh blobs of ``size``."""
    seconds: dict[str, list[float]] = {name: [] for name in CALLS}
    counts: dict[str, int] = dict.fromkeys(CALLS, 0)
    for _ in range(blobs):
        data = os.urandom(size)
        for name in CALLS:
            before = requests(writer) + requests(reader)
            start = time.perf_counter()
            call(name, writer, reader, data)
            seconds[name].append(time.perf_counter() - start)
            counts[name] += requests(writer) + requests(reader) - before
    return {name: (statistics.median(seconds[name]), counts[name] / blobs) for name in CALLS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 65536, 1048576])
    parser.add_argument("--blobs", type=int, default=30, help="blobs per size and run")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="bench-content-") as tmp:
        work = Path(tmp)
        secrets = FileSecretStore(work / "secrets")
        with LocalRegistry(work / "registry") as registry:
            for backend in ("oci", "file"):
                for size in args.sizes:
                    runs: list[dict[str, tuple[float, float]]] = []
                    for run in range(args.runs):
                        if backend == "oci":
                            settings = ContentRegistrySettings(
                                reference=f"{registry.host}/bench/{uuid.uuid4().hex[:8]}",
                                insecure=True,
                            )
                            writer: ContentStore = OciContentStore(
                                settings,
                                secrets,
                                DEFAULT_SYSTEM_NAMESPACE,
                                cache_dir=work / f"cache-{size}-{run}",
                            )
                            reader: ContentStore = OciContentStore(
                                settings, secrets, DEFAULT_SYSTEM_NAMESPACE
                            )
                            writer.put(b"warm-up")  # the repository's empty config, once
                        else:
                            writer = reader = FileContentStore(work / f"files-{size}-{run}")
                        runs.append(measure(writer, reader, size, args.blobs))
                    print(f"\n{backend}, {size} bytes per blob, median of {args.runs} runs:")
                    for name in CALLS:
                        median_ms = statistics.median(r[name][0] for r in runs) * 1000
                        reqs = statistics.median(r[name][1] for r in runs)
                        print(f"  {name:15} {median_ms:8.2f} ms  {reqs:4.1f} requests")
    print(f"\nload average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
