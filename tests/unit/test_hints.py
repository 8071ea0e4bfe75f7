"""The fix a connection error ends with (flotilla/hints.py)."""

import pytest

from flotilla.errors import MAX_MESSAGE
from flotilla.hints import Target, connection_fix, ending_with_fix


@pytest.mark.parametrize(
    "reason",
    [
        "dial tcp 127.0.0.1:4000: connect: connection refused",
        "<urllib3.connection.HTTPSConnection object>: Failed to establish a new connection: "
        "[Errno 111] Connection refused",
        "fatal: unable to access 'https://git.example/x/': Could not resolve host: git.example",
        "ssh: connect to host git.example port 22: No route to host",
        "dial tcp: lookup charts.example: no such host",
        "read tcp 10.0.0.1:5000: i/o timeout",
    ],
)
def test_a_failure_to_reach_ends_with_the_fix_for_its_target(reason: str) -> None:
    for target in Target:
        fix = connection_fix(reason, target)
        assert fix.startswith("; check "), (target, fix)
        assert "reachable" in fix
    assert "kubeconfig" in connection_fix(reason, Target.CLUSTER)
    long = "x" * 400 + " Connection refused"
    cut = ending_with_fix(f"helm pull failed: {long}", Target.CHART_SOURCE, reserve=20)
    assert len(cut) <= MAX_MESSAGE - 20 and "Connection refused; check helm.repo" in cut
    assert cut.startswith("helm pull failed: xxx")
    assert "spec.repo" in connection_fix(reason, Target.GIT)
    assert "fleet.yaml" in connection_fix(reason, Target.CHART_SOURCE)
    assert "FLOTILLA_CONTENT_REGISTRY" in connection_fix(reason, Target.CONTENT_STORE)


def test_an_untrusted_certificate_says_to_give_the_ca() -> None:
    reason = "x509: certificate signed by unknown authority"
    assert "CA" in connection_fix(reason, Target.CLUSTER)
    assert "certificate" in connection_fix(
        "SSL: CERTIFICATE_VERIFY_FAILED certificate verify failed", Target.GIT
    )


@pytest.mark.parametrize(
    "reason",
    [
        'chart "demo" version "9.9.9" not found in https://charts.example',
        "HTTP 404 Not Found",
        "remote: Repository not found.",
        "forbidden: User cannot get secrets",
    ],
)
def test_other_failures_get_no_hint(reason: str) -> None:
    assert all(connection_fix(reason, target) == "" for target in Target)
