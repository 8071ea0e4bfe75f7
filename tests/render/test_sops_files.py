"""SOPS-encrypted files in bundles, decrypted at render time by the real sops with an age key
from the GitRepo namespace's ``sops-age`` secret; plaintext never reaches an error or a log."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from activities.render import RenderedBundle, customize_options, render_bundle
from activities.rendersecrets import read_render_secrets
from activities.secrets import FileSecretStore, SecretStore
from activities.tools import ToolPaths
from flotilla.bundles import Bundle
from flotilla.credentials import SOPS_AGE_SECRET, RenderSecretRefs
from flotilla.errors import FlotillaError
from flotilla.targeting import ClusterInfo
from tests.charts import AgeKey, ArgvRecorder, make_age_key, sops_encrypt
from tests.conftest import locate
from tests.render.test_render import bundle_of

NAMESPACE = "fleet-local"
CLUSTER = ClusterInfo(name="dev-1", labels={"env": "dev"})
DB_PASSWORD = "db-pass-Hx71q"
API_TOKEN = "api-token-9KzPw"
SECRET_MANIFEST = f"""\
apiVersion: v1
kind: Secret
metadata:
  name: db
stringData:
  password: {DB_PASSWORD}
"""
CHART = {
    "chart/Chart.yaml": "apiVersion: v2\nname: app\nversion: 0.1.0\n",
    "chart/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n"
    "data:\n  token: {{ .Values.api.token | quote }}\n  url: {{ .Values.api.url | quote }}\n"
    "  retries: {{ .Values.api.retries | quote }}\n",
}
FLEET_YAML = (
    "helm:\n  chart: chart\n  values: {api: {url: https://base, retries: 1}}\n"
    "  valuesFiles: [secrets.yaml, plain.yaml]\n"
)


@dataclass
class Renders:
    """Renders as the worker does: the age key from ``store``, a sops whose argv ``recorder``
    keeps."""

    store: SecretStore
    recorder: ArgvRecorder
    sops: str
    root: Path

    def use_key(self, key: AgeKey) -> None:
        self.store.put(NAMESPACE, SOPS_AGE_SECRET, {"age.agekey": key.identity})

    def render(self, bundle: Bundle) -> RenderedBundle:
        options = customize_options(bundle, CLUSTER)
        assert options is not None
        refs = RenderSecretRefs(namespace=NAMESPACE)
        return render_bundle(
            bundle,
            CLUSTER,
            workdir=self.root / "w",
            options=options,
            tools=ToolPaths(sops=self.recorder.wrap("sops", self.sops)),
            secrets=read_render_secrets(self.store, refs, bundle, options),
        )

    def encrypted_secret_bundle(self, key: AgeKey) -> Bundle:
        """A raw bundle: a Secret encrypted as people do (only stringData), a plain ConfigMap."""
        secret = sops_encrypt(
            self.sops, SECRET_MANIFEST, key.recipient, encrypted_regex="^(data|stringData)$"
        )
        assert DB_PASSWORD not in secret
        cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\ndata: {a: b}\n"
        return bundle_of({"secret.yaml": secret, "cm.yaml": cm})


@pytest.fixture
def renders(tmp_path: Path, render_tools: dict[str, str], age_key: AgeKey) -> Renders:
    made = Renders(
        FileSecretStore(tmp_path / "secrets"),
        ArgvRecorder(tmp_path / "recorded"),
        locate("sops"),
        tmp_path,
    )
    made.use_key(age_key)
    return made


def find(out: RenderedBundle, kind: str) -> dict[str, Any]:
    (found,) = [o for o in out.manifests if o["kind"] == kind]
    return found


def test_an_encrypted_manifest_is_decrypted_at_render(
    renders: Renders, age_key: AgeKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bundle = renders.encrypted_secret_bundle(age_key)
    assert DB_PASSWORD not in bundle.model_dump_json()  # the stored content is ciphertext

    out = renders.render(bundle)

    secret = find(out, "Secret")
    assert secret["stringData"] == {"password": DB_PASSWORD}
    assert "sops" not in secret
    assert find(out, "ConfigMap")["data"] == {"a": "b"}
    lines = renders.recorder.lines()
    assert lines and not [line for line in lines if "AGE-SECRET" in line]
    assert DB_PASSWORD not in caplog.text
    assert not list((renders.root / "w").glob("sops-*"))  # the private scratch dir is gone


def test_an_encrypted_values_file_is_decrypted_in_merge_order(
    renders: Renders, age_key: AgeKey
) -> None:
    values = {"api": {"token": API_TOKEN, "url": "https://secret", "retries": 5}}
    encrypted = sops_encrypt(renders.sops, yaml.safe_dump(values), age_key.recipient)
    plain = "api: {retries: 3}\n"  # after the encrypted file, so it wins for retries
    bundle = bundle_of(
        {"fleet.yaml": FLEET_YAML, "secrets.yaml": encrypted, "plain.yaml": plain, **CHART}
    )
    assert API_TOKEN not in bundle.model_dump_json()

    out = renders.render(bundle)

    assert find(out, "ConfigMap")["data"] == {
        "token": API_TOKEN,
        "url": "https://secret",
        "retries": "3",
    }
    assert out.values["api"]["token"] == API_TOKEN


def test_a_missing_age_key_secret_is_one_line_naming_it(renders: Renders, age_key: AgeKey) -> None:
    renders.store.delete(NAMESPACE, SOPS_AGE_SECRET)
    with pytest.raises(FlotillaError) as err:
        renders.render(renders.encrypted_secret_bundle(age_key))
    assert str(err.value) == (
        f"b/secret.yaml is SOPS-encrypted, but secret {NAMESPACE}/{SOPS_AGE_SECRET} with its "
        "age key (key age.agekey) does not exist"
    )


def test_the_wrong_age_key_fails_in_one_line_without_plaintext_or_key(
    renders: Renders, age_key: AgeKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    other = make_age_key(renders.root, locate("age-keygen"))
    renders.use_key(other)

    with pytest.raises(FlotillaError) as err:
        renders.render(renders.encrypted_secret_bundle(age_key))

    message = str(err.value)
    assert message.startswith("b/secret.yaml: sops decrypt failed: ")
    assert message.endswith(f" (age key from secret {NAMESPACE}/{SOPS_AGE_SECRET})")
    assert "\n" not in message
    identity = [line for line in other.identity.splitlines() if line.startswith("AGE-SECRET")]
    for secret in (DB_PASSWORD, *identity):
        assert secret not in message and secret not in caplog.text
