"""The worker's environment contract (issue 10): the only names the install files may set.

The settings object that reads them is being written alongside; until it lands, this list is
the contract the Helm chart and docker-compose.yml are checked against.
"""

from __future__ import annotations

TEMPORAL = frozenset(
    {
        "TEMPORAL_ADDRESS",
        "TEMPORAL_NAMESPACE",
        "TEMPORAL_TLS",
        "TEMPORAL_TLS_CA_FILE",
        "TEMPORAL_TLS_CERT_FILE",
        "TEMPORAL_TLS_KEY_FILE",
        "TEMPORAL_TLS_SERVER_NAME",
        "TEMPORAL_API_KEY_FILE",
    }
)
FLOTILLA = frozenset(
    {
        "FLOTILLA_SECRET_BACKEND",
        "FLOTILLA_MANAGEMENT_KUBECONFIG",
        "FLOTILLA_SECRETS_DIR",
        "FLOTILLA_CONTENT_BACKEND",
        "FLOTILLA_CONTENT_DIR",
        "FLOTILLA_CONTENT_REGISTRY",
        "FLOTILLA_CONTENT_REGISTRY_SECRET",
        "FLOTILLA_CONTENT_REGISTRY_INSECURE",
        "FLOTILLA_CONTENT_REGISTRY_CA_FILE",
        "FLOTILLA_SYSTEM_NAMESPACE",
        "FLOTILLA_HELM",
        "FLOTILLA_KUSTOMIZE",
        "FLOTILLA_SOPS",
        "FLOTILLA_WORKDIR",
    }
)
ENV_CONTRACT = TEMPORAL | FLOTILLA
# Variables that name a file the worker reads: they must point into a mounted volume.
FILE_VARIABLES = frozenset(name for name in ENV_CONTRACT if name.endswith("_FILE"))
