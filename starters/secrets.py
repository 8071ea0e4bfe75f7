"""``flotilla secret create|list|delete``: Fleet's Secrets in the configured secret store
(and, with ``create --type configmap``, the ConfigMaps downstreamResources copy).

Values come from files or standard input (``-``), never from the command line, where other
users could read them (``ps``, shell history); ``--username`` is the one value allowed there,
because a username is not a secret. Types and keys are Fleet's, so a GitRepo's
``clientSecretName`` or ``helmSecretName`` and an image scan's ``secretRef`` name what these
commands create unchanged. ``list`` shows names, types and keys, never a value.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from activities.secrets import (
    BASIC_AUTH,
    DOCKER_CONFIG_JSON,
    OPAQUE,
    SSH_AUTH,
    SecretInfo,
    SecretNotFoundError,
    SecretStore,
    exists,
)
from flotilla.errors import FlotillaError, SpecError
from flotilla.ids import DEFAULT_NAMESPACE
from runtime.stores import load_settings, secret_store
from starters.tables import render, table

# ``--type configmap`` writes a ConfigMap (downstreamResources) instead of a Secret.
CONFIG_MAP = "ConfigMap"
# Kubernetes' rule for the keys of a Secret's data.
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_MAX_KEY = 253
STDIN = "-"


class _Inputs:
    """Reads the value flags' files; standard input (``-``) once at most."""

    def __init__(self) -> None:
        self.stdin_flag = ""

    def read(self, flag: str, path: str, *, trim_newline: bool = False) -> str:
        if path == STDIN:
            if self.stdin_flag:
                raise SpecError(
                    f"{flag}: standard input is already read for {self.stdin_flag}; "
                    "give a file instead of '-'"
                )
            self.stdin_flag = flag
            text, where = sys.stdin.read(), "standard input"
        else:
            where = repr(path)
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as err:
                raise SpecError(f"{flag}: cannot read {where}: {err.strerror}") from None
            except UnicodeDecodeError:
                raise SpecError(f"{flag}: {where} is not UTF-8 text") from None
        if trim_newline:
            # `echo secret > file` adds a line end that is no part of the password.
            text = text.removesuffix("\n").removesuffix("\r")
        if not text.strip():
            raise SpecError(f"{flag}: {where} is empty")
        return text


@dataclass(frozen=True)
class SecretKind:
    """One ``--type``: the Kubernetes Secret type, the value flags it takes, what it is for."""

    type: str
    flags: tuple[str, ...]
    use: str
    build: Callable[[argparse.Namespace, _Inputs], dict[str, str]]


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _username(args: argparse.Namespace, inputs: _Inputs) -> str | None:
    if args.username is not None:
        if not args.username.strip():
            raise SpecError("--username: '' is empty")
        return str(args.username)
    if args.username_file:
        return inputs.read("--username-file", args.username_file, trim_newline=True)
    return None


def _credentials(args: argparse.Namespace, inputs: _Inputs, *, kind: str) -> dict[str, str]:
    """``username`` and ``password``: both, or (for helm with a CA or an SSH key) neither."""
    username = _username(args, inputs)
    password = (
        inputs.read("--password-file", args.password_file, trim_newline=True)
        if args.password_file
        else None
    )
    others = kind == "helm" and (args.ca_file or args.ssh_key_file)
    if username is None and password is None and others:
        return {}
    if username is None:
        raise SpecError(f"--type {kind} needs --username or --username-file")
    if password is None:
        raise SpecError(f"--type {kind} needs --password-file (a file, or - for stdin)")
    return {"username": username, "password": password}


def _basic_auth(args: argparse.Namespace, inputs: _Inputs) -> dict[str, str]:
    return _credentials(args, inputs, kind="basic-auth")


def _ssh_key(args: argparse.Namespace, inputs: _Inputs) -> str:
    key = inputs.read("--ssh-key-file", args.ssh_key_file)
    if "PRIVATE KEY-----" not in key:
        raise SpecError(
            f"--ssh-key-file: {args.ssh_key_file!r} holds no PEM private key "
            "('-----BEGIN ... PRIVATE KEY-----')"
        )
    return key


def _helm(args: argparse.Namespace, inputs: _Inputs) -> dict[str, str]:
    data = _credentials(args, inputs, kind="helm")
    if args.ca_file:
        data["cacerts"] = inputs.read("--ca-file", args.ca_file)
    if args.ssh_key_file:
        data["ssh-privatekey"] = _ssh_key(args, inputs)
    return data


def _ssh_auth(args: argparse.Namespace, inputs: _Inputs) -> dict[str, str]:
    if not args.ssh_key_file:
        raise SpecError("--type ssh-auth needs --ssh-key-file (a file, or - for stdin)")
    data = {"ssh-privatekey": _ssh_key(args, inputs)}
    if args.known_hosts_file:
        data["known_hosts"] = inputs.read("--known-hosts-file", args.known_hosts_file)
    return data


def _docker_config(args: argparse.Namespace, inputs: _Inputs) -> dict[str, str]:
    if not args.docker_config_file:
        raise SpecError("--type docker-config needs --docker-config-file")
    text = inputs.read("--docker-config-file", args.docker_config_file)
    where = f"--docker-config-file: {args.docker_config_file!r}"
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as err:
        # The position only: the decoder's message never quotes the file.
        raise SpecError(f"{where} is not JSON (line {err.lineno}, column {err.colno})") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("auths"), dict):
        raise SpecError(f'{where} has no "auths" map of registries (a Docker config.json)')
    return {".dockerconfigjson": text}


def _generic(args: argparse.Namespace, inputs: _Inputs) -> dict[str, str]:
    if not args.from_file:
        raise SpecError(f"--type {args.type} needs at least one --from-file KEY=PATH")
    data: dict[str, str] = {}
    for entry in args.from_file:
        key, sep, path = entry.partition("=")
        if not sep:
            key, path = Path(entry).name, entry
        if len(key) > _MAX_KEY or not _KEY.match(key):
            raise SpecError(
                f"--from-file: key {key!r} is not a valid Secret key "
                "(letters, digits, '-', '_' and '.')"
            )
        if key in data:
            raise SpecError(f"--from-file: key {key!r} is given twice")
        data[key] = inputs.read(f"--from-file {key}", path)
    return data


KINDS: dict[str, SecretKind] = {
    "basic-auth": SecretKind(
        BASIC_AUTH,
        ("username", "username_file", "password_file"),
        "git over HTTPS (GitRepo clientSecretName): username, password",
        _basic_auth,
    ),
    "ssh-auth": SecretKind(
        SSH_AUTH,
        ("ssh_key_file", "known_hosts_file"),
        "git over SSH (GitRepo clientSecretName): ssh-privatekey, known_hosts",
        _ssh_auth,
    ),
    "helm": SecretKind(
        OPAQUE,
        ("username", "username_file", "password_file", "ca_file", "ssh_key_file"),
        "Helm repositories (helmSecretName): username, password, cacerts, ssh-privatekey",
        _helm,
    ),
    "docker-config": SecretKind(
        DOCKER_CONFIG_JSON,
        ("docker_config_file",),
        "container registries (imageScans secretRef): .dockerconfigjson",
        _docker_config,
    ),
    "generic": SecretKind(
        OPAQUE,
        ("from_file",),
        "any keys: a kubeconfig (value), helmSecretNameForPaths (secrets-path.yaml)",
        _generic,
    ),
    # Not a Secret: a ConfigMap beside the store's Secrets, for downstreamResources.
    "configmap": SecretKind(
        CONFIG_MAP,
        ("from_file",),
        "a ConfigMap, not a Secret (downstreamResources): any keys",
        _generic,
    ),
}
VALUE_FLAGS = (
    "username",
    "username_file",
    "password_file",
    "ssh_key_file",
    "known_hosts_file",
    "ca_file",
    "docker_config_file",
    "from_file",
)


def secret_data(args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    """The Secret type and data that ``create``'s flags describe; SpecError names the flag."""
    kind = KINDS[args.type]
    for dest in VALUE_FLAGS:
        if getattr(args, dest) and dest not in kind.flags:
            takes = ", ".join(_flag(f) for f in kind.flags)
            raise SpecError(
                f"{_flag(dest)} does not apply to --type {args.type} (it takes {takes})"
            )
    return kind.type, kind.build(args, _Inputs())


def _store() -> SecretStore:
    return secret_store(load_settings())


def cmd_create(args: argparse.Namespace) -> int:
    type_, data = secret_data(args)  # every flag checked before the store is touched
    store = _store()
    if type_ == CONFIG_MAP:
        try:
            store.get_config_map(args.namespace, args.name)
            replaced = True
        except SecretNotFoundError:
            replaced = False
        store.put_config_map(args.namespace, args.name, data)
        print(
            f"configmap {args.namespace}/{args.name} {'replaced' if replaced else 'created'} "
            f"(keys {', '.join(sorted(data))})"
        )
        return 0
    replaced = exists(store, args.namespace, args.name)
    store.put(args.namespace, args.name, data, type=type_)
    print(
        f"secret {args.namespace}/{args.name} {'replaced' if replaced else 'created'} "
        f"(type {type_}, keys {', '.join(sorted(data))})"
    )
    return 0


def secret_table(items: list[SecretInfo]) -> str:
    return table(["NAME", "TYPE", "KEYS"], [[s.name, s.type, ",".join(s.keys)] for s in items])


def cmd_list(args: argparse.Namespace) -> int:
    items = _store().list(args.namespace)
    if not items and args.output == "table":
        print(f"no secrets in namespace {args.namespace}")
        return 0
    print(render(items, args.output, lambda: secret_table(items)))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    if not _store().delete(args.namespace, args.name):
        raise FlotillaError(f"secret {args.namespace}/{args.name} not found")
    print(f"secret {args.namespace}/{args.name} deleted")
    return 0


class _RefuseValue(argparse.Action):
    """A flag that would put a secret on the command line: refused without echoing it."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        parser.error(
            f"{option_string}: secret values are not taken on the command line, where other "
            f"users and your shell history see them: use {option_string}-file FILE, or "
            f"{option_string}-file - for standard input"
        )


def _namespace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n",
        "--namespace",
        default=DEFAULT_NAMESPACE,
        help=f"the GitRepo's or Cluster's namespace (default {DEFAULT_NAMESPACE})",
    )


_CREATE_EPILOG = """\
types:
{types}

Values are read from files, or from standard input for one flag given '-'; a single line
end at the end of a username or password file is dropped. Examples:
  flotilla secret create git-creds --type basic-auth --username bot --password-file token.txt
  pass show git/bot | flotilla secret create git-creds --type basic-auth --username bot \\
      --password-file -
  flotilla secret create git-ssh --type ssh-auth --ssh-key-file ~/.ssh/id_ed25519 \\
      --known-hosts-file known_hosts
  flotilla secret create ghcr --type docker-config --docker-config-file ~/.docker/config.json
  flotilla secret create paths --type generic --from-file secrets-path.yaml
An existing secret of the same type is replaced."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    secret = sub.add_parser(
        "secret",
        help="create, list and delete Fleet's secrets (git, Helm, registry credentials)",
        description="Secrets in the configured secret store (FLOTILLA_SECRET_BACKEND: a local "
        "directory, or Secrets in the management cluster), with Fleet's names and keys.",
    )
    actions = secret.add_subparsers(dest="secret_command", metavar="ACTION", required=True)

    types = "\n".join(
        f"  {name:<14}{kind.use}\n  {'':<14}type {kind.type}" for name, kind in KINDS.items()
    )
    create = actions.add_parser(
        "create",
        help="create or replace a secret from files (never from command-line values)",
        epilog=_CREATE_EPILOG.format(types=types),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        # No prefixes: `--password X` must not turn into `--password-file X`.
        allow_abbrev=False,
    )
    create.add_argument("name", help="the name a GitRepo, Cluster or image scan refers to")
    create.add_argument("--type", required=True, choices=list(KINDS), help="see below")
    _namespace(create)
    user = create.add_mutually_exclusive_group()
    user.add_argument("--username", help="basic-auth, helm: the username (not a secret)")
    user.add_argument("--username-file", metavar="FILE", help="basic-auth, helm: or from a file")
    create.add_argument(
        "--password-file", metavar="FILE", help="basic-auth, helm: the password or token (- stdin)"
    )
    create.add_argument(
        "--ssh-key-file", metavar="FILE", help="ssh-auth, helm: the PEM private key (- stdin)"
    )
    for refused in ("--password", "--ssh-key"):
        create.add_argument(refused, action=_RefuseValue, help=argparse.SUPPRESS)
    create.add_argument("--known-hosts-file", metavar="FILE", help="ssh-auth: known_hosts")
    create.add_argument("--ca-file", metavar="FILE", help="helm: PEM CA certificates (cacerts)")
    create.add_argument(
        "--docker-config-file", metavar="FILE", help="docker-config: a Docker config.json"
    )
    create.add_argument(
        "--from-file",
        action="append",
        default=[],
        metavar="[KEY=]PATH",
        help="generic: one key from a file (the key defaults to the file's name); repeatable",
    )
    create.set_defaults(handler=cmd_create)

    listing = actions.add_parser("list", help="list secrets: names, types and keys, no values")
    _namespace(listing)
    listing.add_argument("-o", "--output", choices=("table", "yaml", "json"), default="table")
    listing.set_defaults(handler=cmd_list)

    delete = actions.add_parser("delete", help="delete a secret")
    delete.add_argument("name")
    _namespace(delete)
    delete.set_defaults(handler=cmd_delete)
