# The flotilla worker image: Python, the package, and the pinned helm, kustomize and sops.
# The tools are built as devenv/tools.py builds them (module, version, version stamp);
# tests/substrate/test_compose.py fails when the two drift apart.
FROM golang:1.26-bookworm AS tools
ENV CGO_ENABLED=0
RUN go install -trimpath -ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=v4.3.2" \
      helm.sh/helm/v4/cmd/helm@v4.3.2
RUN go install -trimpath -ldflags="-s -w -X sigs.k8s.io/kustomize/api/provenance.version=v5.8.2" \
      sigs.k8s.io/kustomize/kustomize/v5@v5.8.2
RUN go install -trimpath -ldflags="-s -w" github.com/getsops/sops/v3/cmd/sops@v3.13.3

FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=tools /go/bin/helm /go/bin/kustomize /go/bin/sops /usr/local/bin/
WORKDIR /app
COPY pyproject.toml README.md ./
COPY flotilla ./flotilla
COPY workflows ./workflows
COPY activities ./activities
COPY starters ./starters
COPY devenv ./devenv
COPY runtime ./runtime
COPY controller ./controller
COPY worker.py ./
# Bytecode is compiled at build time: the workflow sandbox re-imports workflow modules for
# every new run, and the image's files are read-only to the worker's user (the Helm chart
# also mounts the root filesystem read-only). /var/lib/flotilla is the user's home and the
# scratch space; the chart and the compose file put an empty volume there.
RUN pip install --no-cache-dir . && python -m compileall -q /app \
 && groupadd --system --gid 10001 flotilla \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/flotilla flotilla \
 && mkdir -p /var/lib/flotilla && chown flotilla:flotilla /var/lib/flotilla
ENV FLOTILLA_HELM=/usr/local/bin/helm \
    FLOTILLA_KUSTOMIZE=/usr/local/bin/kustomize \
    FLOTILLA_SOPS=/usr/local/bin/sops \
    FLOTILLA_WORKDIR=/var/lib/flotilla/work
# Numeric, so that Kubernetes can check runAsNonRoot without reading /etc/passwd.
USER 10001:10001
CMD ["python", "-m", "worker"]
