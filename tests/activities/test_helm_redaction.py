"""helm's error output is redacted before it is shortened to one line.

A stand-in `helm` (a shell script that prints a long error and fails) is used: the point is
the text handling around the real program, whose own failures the deploy tests cover.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from activities.helm import Helm, HelmError
from flotilla.deployment import Redactor


@pytest.mark.parametrize("at", [0, 250, 285, 290])
def test_a_secret_near_the_length_limit_never_shows_even_in_part(tmp_path: Path, at: int) -> None:
    secret = "pw-" + "x7" * 20
    noise = "n" * at
    helm = tmp_path / "helm"
    helm.write_text(
        f"#!/bin/sh\necho 'Error: {noise}{secret} and then some more text' >&2\nexit 1\n"
    )
    helm.chmod(0o755)
    redact = Redactor()
    redact.add([secret])
    with (
        Helm(
            "apiVersion: v1\nkind: Config\n", tmp_path / "work", redact=redact, binary=str(helm)
        ) as run,
        pytest.raises(HelmError) as err,
    ):
        run.run(["version"], what="helm version")
    message = str(err.value)
    assert secret[:6] not in message, message
    assert "\n" not in message
