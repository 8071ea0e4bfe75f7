"""Helm's stderr made into the one-line message people see (activities.helm.one_line_stderr)."""

from __future__ import annotations

from activities.helm import classify, one_line_stderr
from flotilla.errors import HELM_FAILED, INVALID_MANIFEST

# Shaped like helm's stderr when an atomic upgrade's readiness wait timed out while client-go
# re-opened its watch under load: klog lines first (tests/activities/test_options.py once
# lost "rolled back" to them when the message was cut to one line).
KLOG_WARNING = (
    "W1204 19:02:11.418207   88123 reflector.go:484] k8s.io/client-go/tools/watch/"
    "informerwatcher.go:146: watch of *unstructured.Unstructured ended with: an error on the "
    'server ("unable to decode an event from the watch stream: context canceled")'
)
KLOG_ERROR = 'E1204 19:02:12.001042   88123 retrywatcher.go:131] "Watch failed" err="canceled"'
ATOMIC = (
    "Error: UPGRADE FAILED: release t-app failed, and has been rolled back due to atomic "
    "being set: context deadline exceeded"
)


def test_client_go_log_lines_are_not_the_message() -> None:
    message = one_line_stderr("\n".join([KLOG_WARNING, KLOG_ERROR, ATOMIC, ""]))
    assert message.startswith("UPGRADE FAILED: release t-app failed, and has been rolled back")
    assert "reflector.go" not in message and "Watch failed" not in message


def test_only_log_lines_are_still_a_message() -> None:
    # (one_line folds runs of spaces)
    assert one_line_stderr(KLOG_ERROR) == " ".join(KLOG_ERROR.split())


def test_fields_the_api_server_refuses_read_as_an_invalid_manifest() -> None:
    # As helm 4.3 prints them (tests/activities/test_errors.py meets the first two live).
    refused = [
        "server-side apply failed for object ns/x /v1, Kind=ConfigMap: failed to create typed "
        "patch object (ns/x; /v1, Kind=ConfigMap): .bogusField: field not declared in schema",
        'UPGRADE FAILED: failed to create resource: Deployment in version "v1" cannot be '
        "handled as a Deployment: json: cannot unmarshal string into Go struct field "
        "DeploymentSpec.spec.replicas of type int32",
        'failed to create resource: Deployment.apps "web" is invalid: spec.replicas: Invalid',
    ]
    assert [classify(message) for message in refused] == [INVALID_MANIFEST] * 3
    assert classify("UPGRADE FAILED: another operation is in progress") == HELM_FAILED
