"""Read the secrets one render needs, by the GitRepo's names, just before the render."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from activities.secrets import SecretNotFoundError, SecretStore, get_key
from activities.sops import AgeKey, encrypted_files
from flotilla.bundles import Bundle, is_remote_chart
from flotilla.credentials import (
    SECRETS_PATH_KEY,
    SOPS_AGE_SECRET,
    ChartAccess,
    RenderSecretRefs,
    access_for_path,
    access_from_helm_secret,
    age_identities,
    chart_access,
)
from flotilla.errors import FlotillaError
from flotilla.models import BundleDeploymentOptions


@dataclass(frozen=True)
class RenderSecrets:
    """What a render may use: chart access for a remote chart, an age key for SOPS files.

    Held in memory for one render; never stored, logged or returned.
    """

    chart: ChartAccess | None = None
    age_key: AgeKey | None = None


def read_render_secrets(
    store: SecretStore,
    refs: RenderSecretRefs,
    bundle: Bundle,
    options: BundleDeploymentOptions,
) -> RenderSecrets:
    """Only what this bundle needs: Helm credentials for a remote chart (local charts and their
    dependencies are fetched without, as in Fleet), the age key when it has SOPS files."""
    chart = None
    if is_remote_chart(options):
        chart = chart_access(_helm_access(store, refs, bundle), refs, options)
    age_key = None
    encrypted = encrypted_files(bundle)
    if encrypted:
        secret = f"{refs.namespace}/{SOPS_AGE_SECRET}"
        try:
            data = store.get(refs.namespace, SOPS_AGE_SECRET)
        except SecretNotFoundError:
            raise FlotillaError(
                f"{posixpath.join(bundle.path, encrypted[0])} is SOPS-encrypted, but secret "
                f"{secret} with its age key (key age.agekey) does not exist"
            ) from None
        age_key = AgeKey(secret=secret, identities=age_identities(data, secret=secret))
    return RenderSecrets(chart=chart, age_key=age_key)


def _helm_access(store: SecretStore, refs: RenderSecretRefs, bundle: Bundle) -> ChartAccess:
    name = refs.helm_secret
    if name is None:
        return ChartAccess()
    secret = f"{refs.namespace}/{name}"
    if refs.helm_secret_name_for_paths:
        text = get_key(store, refs.namespace, name, SECRETS_PATH_KEY)
        return access_for_path(text, bundle.path, secret=secret)
    return access_from_helm_secret(store.get(refs.namespace, name), secret=secret)
