"""SOPS-encrypted files in bundles, decrypted at render time by the real sops with an age key
from the GitRepo namespace's ``sops-age`` secret; plaintext never reaches an error or a log."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from activities.render import RenderedBundle, customize_options, render_bundle
from activities.rendersecrets import read_render_secrets
from activities.secrets import FileSecretStore, SecretStore
from activities.tools import ToolPaths
from flotilla.bundles import Bundle, FileListing, read_bundles
from flotilla.credentials import SOPS_AGE_SECRET, RenderSecretRefs
from flotilla.errors import FlotillaError
from flotilla.targeting import ClusterInfo
from tests.charts import AgeKey, ArgvRecorder, make_age_key, sops_encrypt
from tests.conftest import locate

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


@pytest.fixture
def sops(render_tools: dict[str, str]) -> str:
    return locate("sops")


@pytest.fixture
def recorder(tmp_path: Path) -> ArgvRecorder:
    return ArgvRecorder(tmp_path / "recorded")


@pytest.fixture
def store(tmp_path: Path, age_key: AgeKey) -> SecretStore:
    secrets = FileSecretStore(tmp_path / "secrets")
    secrets.put(NAMESPACE, SOPS_AGE_SECRET, {"age.agekey": age_key.identity})
    return secrets


def bundle_of(files: dict[str, str]) -> Bundle:
    listing = FileListing(files={f"b/{k}": v.encode() for k, v in files.items()})
    result = read_bundles(listing, gitrepo_name="t", paths=["b"])
    assert result.invalid == []
    (bundle,) = result.bundles
    return bundle


def render(
    bundle: Bundle, store: SecretStore, recorder: ArgvRecorder, sops: str, workdir: Path
) -> RenderedBundle:
    options = customize_options(bundle, CLUSTER)
    assert options is not None
    secrets = read_render_secrets(store, RenderSecretRefs(namespace=NAMESPACE), bundle, options)
    return render_bundle(
        bundle,
        CLUSTER,
        workdir=workdir,
        options=options,
        tools=ToolPaths(sops=recorder.wrap("sops", sops)),
        secrets=secrets,
    )


def find(out: RenderedBundle, kind: str) -> dict[str, Any]:
    (found,) = [o for o in out.manifests if o["kind"] == kind]
    return found


def raw_bundle(sops: str, age_key: AgeKey) -> Bundle:
    encrypted = sops_encrypt(
        sops, SECRET_MANIFEST, age_key.recipient, encrypted_regex="^(data|stringData)$"
    )
    assert DB_PASSWORD not in encrypted
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\ndata: {a: b}\n"
    return bundle_of({"secret.yaml": encrypted, "cm.yaml": cm})


def test_an_encrypted_manifest_is_decrypted_at_render(
    tmp_path: Path,
    store: SecretStore,
    recorder: ArgvRecorder,
    sops: str,
    age_key: AgeKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    bundle = raw_bundle(sops, age_key)
    assert DB_PASSWORD not in bundle.model_dump_json()  # the stored content is ciphertext

    out = render(bundle, store, recorder, sops, tmp_path / "w")

    secret = find(out, "Secret")
    assert secret["stringData"] == {"password": DB_PASSWORD}
    assert "sops" not in secret
    assert find(out, "ConfigMap")["data"] == {"a": "b"}
    assert recorder.lines() and not [line for line in recorder.lines() if "AGE-SECRET" in line]
    assert DB_PASSWORD not in caplog.text
    assert not list((tmp_path / "w").glob("sops-*"))  # the private scratch dir is gone


def test_an_encrypted_values_file_is_decrypted_in_merge_order(
    tmp_path: Path, store: SecretStore, recorder: ArgvRecorder, sops: str, age_key: AgeKey
) -> None:
    values = {"api": {"token": API_TOKEN, "url": "https://secret", "retries": 5}}
    encrypted = sops_encrypt(sops, yaml.safe_dump(values), age_key.recipient)
    plain = "api: {retries: 3}\n"  # after the encrypted file, so it wins for retries
    bundle = bundle_of(
        {"fleet.yaml": FLEET_YAML, "secrets.yaml": encrypted, "plain.yaml": plain, **CHART}
    )
    assert API_TOKEN not in bundle.model_dump_json()

    out = render(bundle, store, recorder, sops, tmp_path / "w")

    assert find(out, "ConfigMap")["data"] == {
        "token": API_TOKEN,
        "url": "https://secret",
        "retries": "3",
    }
    assert out.values["api"]["token"] == API_TOKEN


def test_a_missing_age_key_secret_is_one_line_naming_it(
    tmp_path: Path, recorder: ArgvRecorder, sops: str, age_key: AgeKey
) -> None:
    empty = FileSecretStore(tmp_path / "no-secrets")
    with pytest.raises(FlotillaError) as err:
        render(raw_bundle(sops, age_key), empty, recorder, sops, tmp_path / "w")
    assert str(err.value) == (
        f"b/secret.yaml is SOPS-encrypted, but secret {NAMESPACE}/{SOPS_AGE_SECRET} with its "
        "age key (key age.agekey) does not exist"
    )


def test_the_wrong_age_key_fails_in_one_line_without_plaintext_or_key(
    tmp_path: Path,
    recorder: ArgvRecorder,
    sops: str,
    age_key: AgeKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    other = make_age_key(tmp_path, locate("age-keygen"))
    store = FileSecretStore(tmp_path / "secrets")
    store.put(NAMESPACE, SOPS_AGE_SECRET, {"age.agekey": other.identity})

    with pytest.raises(FlotillaError) as err:
        render(raw_bundle(sops, age_key), store, recorder, sops, tmp_path / "w")

    message = str(err.value)
    assert message.startswith("b/secret.yaml: sops decrypt failed: ")
    assert message.endswith(f" (age key from secret {NAMESPACE}/{SOPS_AGE_SECRET})")
    assert "\n" not in message
    identity = [line for line in other.identity.splitlines() if line.startswith("AGE-SECRET")]
    for secret in (DB_PASSWORD, *identity):
        assert secret not in message and secret not in caplog.text
