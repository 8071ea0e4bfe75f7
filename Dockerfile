# The flotilla worker image: Python, the package, and pinned helm, kustomize and sops built with Go.
FROM golang:1.24-bookworm AS tools
RUN CGO_ENABLED=0 go install -ldflags="-s -w" helm.sh/helm/v3/cmd/helm@v3.21.4 \
 && CGO_ENABLED=0 go install -ldflags="-s -w" sigs.k8s.io/kustomize/kustomize/v5@v5.8.2 \
 && CGO_ENABLED=0 go install -ldflags="-s -w" github.com/getsops/sops/v3/cmd/sops@v3.13.3

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
COPY worker.py ./
# Bytecode is compiled at build time: the workflow sandbox re-imports workflow modules for
# every new run, and the image's files are read-only to the worker's user.
RUN pip install --no-cache-dir . && python -m compileall -q /app \
 && useradd --system --uid 10001 flotilla \
 && mkdir -p /var/lib/flotilla && chown flotilla /var/lib/flotilla
USER flotilla
CMD ["python", "-m", "worker"]
