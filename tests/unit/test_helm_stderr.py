"""Helm's stderr made into the one-line message people see (activities.helm.one_line_stderr)."""

from __future__ import annotations

from activities.helm import one_line_stderr

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
