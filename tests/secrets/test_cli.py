"""``flotilla secret create|list|delete`` with both backends, through the real entry point:
Fleet's types and keys, values only from files or stdin, never a value in any output."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from activities.secrets import SecretStore
from devenv.cluster import LocalCluster
from runtime.stores import load_settings, secret_store
from starters.cli import main

PASSWORD = "pw-" + uuid.uuid4().hex
KEY = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{PASSWORD}\n-----END OPENSSH PRIVATE KEY-----\n"
DOCKER_CONFIG = json.dumps({"auths": {"ghcr.io": {"auth": PASSWORD}}})
_VARIABLES = ("FLOTILLA_SECRET_BACKEND", "FLOTILLA_SECRETS_DIR", "FLOTILLA_MANAGEMENT_KUBECONFIG")


@dataclass
class Backend:
    """The environment a CLI user has for one backend, and a store to look behind it."""

    name: str
    namespace: str
    env: dict[str, str]
    store: SecretStore


def _backend(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Backend:
    env = {"HOME": str(tmp_path / "home")}
    if name == "file":
        namespace = "fleet-local"
        env["FLOTILLA_SECRETS_DIR"] = str(tmp_path / "secrets")
    else:
        cluster: LocalCluster = request.getfixturevalue("management_cluster")
        namespace = request.getfixturevalue("mgmt_namespace")
        env["FLOTILLA_SECRET_BACKEND"] = "kubernetes"
        env["FLOTILLA_MANAGEMENT_KUBECONFIG"] = str(cluster.kubeconfig)
    for variable in _VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.chdir(tmp_path)  # files are named relative to here, as a person would
    return Backend(name, namespace, env, secret_store(load_settings()))


@pytest.fixture(params=["file", "kubernetes"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Backend:
    return _backend(request.param, tmp_path, monkeypatch, request)


@pytest.fixture
def file_backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Backend:
    return _backend("file", tmp_path, monkeypatch, request)


def run(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *argv: str,
    stdin: str = "",
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as leave:  # argparse's own errors
        code = int(leave.code or 0)
    out, err = capsys.readouterr()
    assert PASSWORD not in out and PASSWORD not in err
    return code, out, err


def write(path: str, text: str) -> str:
    Path(path).write_text(text)
    return path


def test_create_list_and_delete_each_type(
    backend: Backend, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = backend.namespace

    def cli(*argv: str, stdin: str = "") -> tuple[int, str, str]:
        return run(capsys, monkeypatch, *argv, "-n", ns, stdin=stdin)

    write("password", PASSWORD + "\n")
    assert cli(
        "secret",
        "create",
        "git",
        "--type",
        "basic-auth",
        "--username",
        "bot",
        "--password-file",
        "password",
    ) == (
        0,
        f"secret {ns}/git created (type kubernetes.io/basic-auth, keys password, username)\n",
        "",
    )
    # The username from a file, the password from stdin: the secret is replaced.
    write("username", "robot\r\n")
    code, out, _ = cli(
        "secret",
        "create",
        "git",
        "--type",
        "basic-auth",
        "--username-file",
        "username",
        "--password-file",
        "-",
        stdin=PASSWORD + "\n",
    )
    assert (code, out) == (
        0,
        f"secret {ns}/git replaced (type kubernetes.io/basic-auth, keys password, username)\n",
    )
    assert backend.store.get(ns, "git") == {"username": "robot", "password": PASSWORD}

    write("known_hosts", "git.example.com ssh-ed25519 AAAA\n")
    code, _, _ = cli(
        "secret",
        "create",
        "git-ssh",
        "--type",
        "ssh-auth",
        "--ssh-key-file",
        "-",
        "--known-hosts-file",
        "known_hosts",
        stdin=KEY,
    )
    assert code == 0
    assert backend.store.get(ns, "git-ssh") == {
        "ssh-privatekey": KEY,  # exactly as given: a key needs its last line end
        "known_hosts": "git.example.com ssh-ed25519 AAAA\n",
    }

    write("ca.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    assert (
        cli(
            "secret",
            "create",
            "helm",
            "--type",
            "helm",
            "--username",
            "bot",
            "--password-file",
            "password",
            "--ca-file",
            "ca.pem",
        )[0]
        == 0
    )
    assert cli("secret", "create", "helm-ca", "--type", "helm", "--ca-file", "ca.pem")[0] == 0
    assert backend.store.get(ns, "helm")["password"] == PASSWORD

    write("config.json", DOCKER_CONFIG)
    assert (
        cli(
            "secret",
            "create",
            "ghcr",
            "--type",
            "docker-config",
            "--docker-config-file",
            "config.json",
        )[0]
        == 0
    )
    assert backend.store.get(ns, "ghcr") == {".dockerconfigjson": DOCKER_CONFIG}

    write("secrets-path.yaml", f"app: {{username: bot, password: {PASSWORD}}}\n")
    write("kubeconfig", "apiVersion: v1\nkind: Config\n")
    assert (
        cli(
            "secret",
            "create",
            "misc",
            "--type",
            "generic",
            "--from-file",
            "secrets-path.yaml",
            "--from-file",
            "value=kubeconfig",
        )[0]
        == 0
    )

    code, out, _ = cli("secret", "list")
    assert code == 0
    assert [line.split() for line in out.splitlines()] == [
        ["NAME", "TYPE", "KEYS"],
        ["ghcr", "kubernetes.io/dockerconfigjson", ".dockerconfigjson"],
        ["git", "kubernetes.io/basic-auth", "password,username"],
        ["git-ssh", "kubernetes.io/ssh-auth", "known_hosts,ssh-privatekey"],
        ["helm", "Opaque", "cacerts,password,username"],
        ["helm-ca", "Opaque", "cacerts"],
        ["misc", "Opaque", "secrets-path.yaml,value"],
    ]
    code, out, _ = cli("secret", "list", "-o", "json")
    listed = json.loads(out)
    assert listed[1] == {
        "namespace": ns,
        "name": "git",
        "type": "kubernetes.io/basic-auth",
        "keys": ["password", "username"],
    }
    code, out, _ = cli("secret", "list", "-o", "yaml")
    assert yaml.safe_load(out) == listed

    assert cli("secret", "delete", "git") == (0, f"secret {ns}/git deleted\n", "")
    assert cli("secret", "delete", "git") == (1, "", f"error: secret {ns}/git not found\n")
    assert [s.name for s in backend.store.list(ns)] == [
        "ghcr",
        "git-ssh",
        "helm",
        "helm-ca",
        "misc",
    ]
    empty = f"e-{uuid.uuid4().hex[:6]}"
    code, out, _ = run(capsys, monkeypatch, "secret", "list", "-n", empty)
    assert (code, out) == (0, f"no secrets in namespace {empty}\n")


BAD_INPUT = {
    "missing-file": (
        ["--type", "basic-auth", "--username", "bot", "--password-file", "nope"],
        "error: --password-file: cannot read 'nope': No such file or directory",
    ),
    "empty-password": (
        ["--type", "basic-auth", "--username", "bot", "--password-file", "empty"],
        "error: --password-file: 'empty' is empty",
    ),
    "empty-stdin": (
        ["--type", "basic-auth", "--username", "bot", "--password-file", "-"],
        "error: --password-file: standard input is empty",
    ),
    "empty-username": (
        ["--type", "basic-auth", "--username", "", "--password-file", "password"],
        "error: --username: '' is empty",
    ),
    "no-password": (
        ["--type", "basic-auth", "--username", "bot"],
        "error: --type basic-auth needs --password-file (a file, or - for stdin)",
    ),
    "flag-of-another-type": (
        ["--type", "ssh-auth", "--password-file", "password"],
        "error: --password-file does not apply to --type ssh-auth "
        "(it takes --ssh-key-file, --known-hosts-file)",
    ),
    "not-a-key": (
        ["--type", "ssh-auth", "--ssh-key-file", "password"],
        "error: --ssh-key-file: 'password' holds no PEM private key "
        "('-----BEGIN ... PRIVATE KEY-----')",
    ),
    "docker-config-not-json": (
        ["--type", "docker-config", "--docker-config-file", "password"],
        "error: --docker-config-file: 'password' is not JSON (line 1, column 1)",
    ),
    "docker-config-without-auths": (
        ["--type", "docker-config", "--docker-config-file", "list.json"],
        "error: --docker-config-file: 'list.json' has no \"auths\" map of registries "
        "(a Docker config.json)",
    ),
    "generic-bad-key": (
        ["--type", "generic", "--from-file", "a b=password"],
        "error: --from-file: key 'a b' is not a valid Secret key (letters, digits, '-', '_' "
        "and '.')",
    ),
    "generic-twice": (
        ["--type", "generic", "--from-file", "k=password", "--from-file", "k=password"],
        "error: --from-file: key 'k' is given twice",
    ),
    "two-stdin": (
        ["--type", "helm", "--username", "u", "--password-file", "-", "--ca-file", "-"],
        "error: --ca-file: standard input is already read for --password-file; give a file "
        "instead of '-'",
    ),
    "bad-name": (
        ["--type", "generic", "--from-file", "password", "--", "Bad_Name"],
        "error: secret name: 'Bad_Name' is not a valid Kubernetes object name (DNS-1123)",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_naming_the_flag_and_nothing_is_written(
    case: str,
    file_backend: Backend,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argv, error = BAD_INPUT[case]
    write("password", PASSWORD)
    write("empty", "\n")
    write("list.json", "[1, 2]")
    if "Bad_Name" not in argv:
        argv = [*argv, "creds"]
    stdin = PASSWORD if case == "two-stdin" else ""
    code, out, err = run(capsys, monkeypatch, "secret", "create", *argv, stdin=stdin)
    assert (code, out, err) == (1, "", error + "\n")
    assert file_backend.store.list(file_backend.namespace) == []
    assert not Path(file_backend.env["FLOTILLA_SECRETS_DIR"]).exists()


def test_a_bad_type_and_a_password_on_the_command_line_are_refused(
    file_backend: Backend, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(capsys, monkeypatch, "secret", "create", "x", "--type", "tls")
    assert code == 2 and "argument --type: invalid choice: 'tls'" in err
    for argv in (["--password", PASSWORD], [f"--password={PASSWORD}"], ["--ssh-key", PASSWORD]):
        code, _, err = run(
            capsys, monkeypatch, "secret", "create", "x", "--type", "basic-auth", *argv
        )
        flag = argv[0].split("=")[0]
        assert code == 2 and err.splitlines()[-1] == (
            f"flotilla secret create: error: {flag}: secret values are not taken on the "
            "command line, where other users and your shell history see them: use "
            f"{flag}-file FILE, or {flag}-file - for standard input"
        )
    # No prefix matching either: `--password-f` is not taken for `--password-file`.
    code, _, err = run(
        capsys, monkeypatch, "secret", "create", "x", "--type", "basic-auth", "--password-f", "p"
    )
    assert code == 2
    assert not Path(file_backend.env["FLOTILLA_SECRETS_DIR"]).exists()


def test_the_password_is_never_in_argv_output_or_debug_logs(
    management_cluster: LocalCluster, mgmt_namespace: str, tmp_path: Path
) -> None:
    """The real console script in its own process, talking to the management cluster."""
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "FLOTILLA_SECRET_BACKEND": "kubernetes",
        "FLOTILLA_MANAGEMENT_KUBECONFIG": str(management_cluster.kubeconfig),
    }
    flotilla = [sys.executable, "-m", "starters.cli", "--debug", "secret"]
    commands = [
        ["create", "git", "--type", "basic-auth", "--username", "bot", "--password-file", "-"],
        ["list", "-o", "json"],
        ["list"],
        ["delete", "git"],
    ]
    outputs = []
    for command in commands:
        argv = [*flotilla, *command, "-n", mgmt_namespace]
        done = subprocess.run(
            argv, input=PASSWORD, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert PASSWORD not in " ".join(argv)
        assert PASSWORD not in done.stdout and PASSWORD not in done.stderr
        outputs.append(done.stdout)
        if command[0] == "create":
            stored = secret_store(load_settings(env, tmp_path)).get(mgmt_namespace, "git")
            assert stored == {"username": "bot", "password": PASSWORD}
    assert json.loads(outputs[1])[0]["keys"] == ["password", "username"]
    assert outputs[3] == f"secret {mgmt_namespace}/git deleted\n"


def test_create_a_configmap_for_downstream_resources(
    backend: Backend, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = backend.namespace
    write("values.yaml", "greeting: hello\n")
    argv = ("secret", "create", "settings", "--type", "configmap", "-n", ns)
    assert run(capsys, monkeypatch, *argv, "--from-file", "values.yaml") == (
        0,
        f"configmap {ns}/settings created (keys values.yaml)\n",
        "",
    )
    assert backend.store.get_config_map(ns, "settings") == {"values.yaml": "greeting: hello\n"}
    write("values.yaml", "greeting: bonjour\n")
    code, out, _ = run(capsys, monkeypatch, *argv, "--from-file", "values.yaml")
    assert (code, out) == (0, f"configmap {ns}/settings replaced (keys values.yaml)\n")
    assert backend.store.get_config_map(ns, "settings") == {"values.yaml": "greeting: bonjour\n"}
    # A ConfigMap is not a Secret of the same name.
    assert "settings" not in [s.name for s in backend.store.list(ns)]
    assert run(capsys, monkeypatch, *argv)[:1] == (1,)
