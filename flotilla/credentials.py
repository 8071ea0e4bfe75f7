"""Which secrets a bundle's render uses, by name, and Fleet's rules for Helm repository access.

A GitRepo names its Helm credentials, in its own namespace, the way Fleet reads them:

- ``helmSecretName``: one Secret for every bundle, keys ``username`` and ``password`` (both or
  neither), ``cacerts`` (PEM), ``insecureSkipVerify`` and ``basicHTTP`` (booleans; anything
  unparsable is false, as security settings should be).
- ``helmSecretNameForPaths``: a Secret whose key ``secrets-path.yaml`` maps bundle paths (or
  ``filepath.Match`` globs, tried in lexical order after an exact match) to
  ``{username, password, caBundle (base64 of PEM), insecureSkipVerify, basicHTTP}``. It wins
  over ``helmSecretName``; a bundle whose path matches no entry gets nothing from either.
- ``helmRepoURLRegex``: the username and password go only to a chart whose URL (``helm.repo``,
  else ``helm.chart``) matches it at its start; without it they go nowhere. The CA bundle and
  the TLS switches apply either way, as in Fleet.

The GitRepo's ``insecureSkipTLSVerify`` also covers chart pulls (Fleet passes it to Helm too).
Fleet applies ``helmRepoURLRegex`` only with ``helmSecretName``, so its per-path credentials
are never sent; flotilla applies the regex to both, which is what Fleet's own migration of
that field assumes.

SOPS-encrypted files are decrypted with the age identities of the Secret ``sops-age`` in the
GitRepo's namespace: every key ending in ``.agekey`` (Fleet has no field for this; the key
suffix is the one Flux uses, so one Secret serves both).

Nothing here formats a password or an identity: messages name the secret and the key.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from flotilla.bundles import match_glob
from flotilla.errors import FlotillaError, short_repr
from flotilla.models import BundleDeploymentOptions, GitRepoSpec

SECRETS_PATH_KEY = "secrets-path.yaml"
CACERTS_KEY = "cacerts"
SOPS_AGE_SECRET = "sops-age"  # noqa: S105 - a secret's name, not a secret
AGE_KEY_SUFFIX = ".agekey"
_TRUE = {"1", "t", "true"}


class RenderSecretRefs(BaseModel):
    """The GitRepo's secret names a render needs: they travel in requests, never the secrets."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    helm_secret_name: str | None = None
    helm_secret_name_for_paths: str | None = None
    helm_repo_url_regex: str | None = None
    insecure_skip_tls_verify: bool = False

    @classmethod
    def for_gitrepo(cls, namespace: str, spec: GitRepoSpec) -> RenderSecretRefs:
        return cls(
            namespace=namespace,
            helm_secret_name=spec.helm_secret_name or None,
            helm_secret_name_for_paths=spec.helm_secret_name_for_paths or None,
            helm_repo_url_regex=spec.helm_repo_url_regex or None,
            insecure_skip_tls_verify=spec.insecure_skip_tls_verify,
        )

    @property
    def helm_secret(self) -> str | None:
        """The Secret a chart pull reads: the per-path one wins, as in Fleet."""
        return self.helm_secret_name_for_paths or self.helm_secret_name


@dataclass(frozen=True)
class ChartAccess:
    """How one chart pull reaches its repository; lives in memory for one render only."""

    username: str = ""
    password: str = field(default="", repr=False)
    ca_bundle: str = field(default="", repr=False)
    insecure_skip_verify: bool = False
    basic_http: bool = False
    # "namespace/name" of the secret these came from, for messages ("" when none).
    secret: str = ""
    # Why the secret's username and password are not sent ("" when they are, or there are none).
    withheld: str = ""

    @property
    def sends_credentials(self) -> bool:
        return bool(self.username and self.password)

    def note(self) -> str:
        """What to add to a failed pull's message: which secret was used, or why it was not."""
        if self.sends_credentials:
            return f" (credentials from secret {self.secret})"
        if self.withheld:
            return f" (credentials of secret {self.secret} not sent: {self.withheld})"
        return ""


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in _TRUE


def access_from_helm_secret(data: dict[str, str], *, secret: str) -> ChartAccess:
    """A ``helmSecretName`` Secret's data as chart access (Fleet's keys)."""
    has_user, has_password = "username" in data, "password" in data
    if has_user != has_password:
        present, missing = ("username", "password") if has_user else ("password", "username")
        raise FlotillaError(f"secret {secret}: has {present!r} but no {missing!r}")
    return ChartAccess(
        username=data.get("username", ""),
        password=data.get("password", ""),
        ca_bundle=data.get(CACERTS_KEY, ""),
        insecure_skip_verify=_flag(data.get("insecureSkipVerify", "")),
        basic_http=_flag(data.get("basicHTTP", "")),
        secret=secret,
    )


def access_for_path(text: str, path: str, *, secret: str) -> ChartAccess:
    """The ``secrets-path.yaml`` entry for the bundle at ``path`` (empty access when none)."""
    where = f"secret {secret}: {SECRETS_PATH_KEY}"
    try:
        entries = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        raise FlotillaError(f"{where}: is not valid YAML") from None
    if not isinstance(entries, dict):
        raise FlotillaError(f"{where}: is not a map of bundle paths")
    pattern = path if path in entries else None
    if pattern is None:
        patterns = sorted(map(str, entries))
        pattern = next((p for p in patterns if match_glob(p, path, where=where)), None)
    if pattern is None:
        return ChartAccess(secret=secret)
    entry = entries[pattern]
    if not isinstance(entry, dict):
        raise FlotillaError(f"{where}: {short_repr(pattern)} is not a map")
    ca_bundle = ""
    if entry.get("caBundle"):
        try:
            ca_bundle = base64.b64decode(str(entry["caBundle"]), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise FlotillaError(
                f"{where}: {short_repr(pattern)}: caBundle is not base64 of a PEM bundle"
            ) from None
    return ChartAccess(
        username=str(entry.get("username") or ""),
        password=str(entry.get("password") or ""),
        ca_bundle=ca_bundle,
        insecure_skip_verify=_flag(entry.get("insecureSkipVerify", False)),
        basic_http=_flag(entry.get("basicHTTP", False)),
        secret=secret,
    )


def chart_url(options: BundleDeploymentOptions) -> str:
    """The URL Fleet matches against ``helmRepoURLRegex``: ``helm.repo``, else ``helm.chart``."""
    helm = options.helm
    if helm is None:
        return ""
    return helm.repo or helm.chart or ""


def chart_access(
    access: ChartAccess, refs: RenderSecretRefs, options: BundleDeploymentOptions
) -> ChartAccess:
    """What the chart's pull may use: credentials only for a URL the regex allows."""
    access = ChartAccess(
        username=access.username,
        password=access.password,
        ca_bundle=access.ca_bundle,
        insecure_skip_verify=access.insecure_skip_verify or refs.insecure_skip_tls_verify,
        basic_http=access.basic_http,
        secret=access.secret,
    )
    if not access.sends_credentials:
        return access
    regex = refs.helm_repo_url_regex
    if not regex:
        withheld = "spec.helmRepoURLRegex is empty; set it to allow sending them"
    elif re.match(f"(?:{regex})", chart_url(options)) is None:
        withheld = f"{chart_url(options)!r} does not match spec.helmRepoURLRegex"
    else:
        return access
    return ChartAccess(
        ca_bundle=access.ca_bundle,
        insecure_skip_verify=access.insecure_skip_verify,
        basic_http=access.basic_http,
        secret=access.secret,
        withheld=withheld,
    )


def age_identities(data: dict[str, str], *, secret: str) -> str:
    """Every age identity of the ``sops-age`` Secret (keys ending in ``.agekey``), one per line."""
    keys = sorted(k for k in data if k.endswith(AGE_KEY_SUFFIX))
    if not keys:
        raise FlotillaError(
            f"secret {secret} has no key ending in {AGE_KEY_SUFFIX!r} "
            f"(it has: {', '.join(sorted(data)) or 'none'})"
        )
    return "\n".join(data[k].strip() for k in keys) + "\n"
