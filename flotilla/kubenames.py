"""Kubernetes' name rules: DNS-1123 labels and subdomains, label keys and label values."""

from __future__ import annotations

import re
from collections.abc import Mapping

# Kubernetes' limits: a DNS-1123 label (namespaces, most names), a subdomain (object names),
# the name part of a label key, and a label value.
MAX_LABEL = 63
MAX_SUBDOMAIN = 253

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")


def is_dns1123(name: str, *, subdomain: bool = False, max_length: int | None = None) -> bool:
    """Whether ``name`` is a DNS-1123 label: lowercase letters, digits and '-', starting and
    ending with a letter or digit; with ``subdomain``, such labels joined by dots.

    ``max_length`` defaults to Kubernetes' limit: 63 for a label, 253 for a subdomain.
    """
    limit = max_length if max_length is not None else MAX_SUBDOMAIN if subdomain else MAX_LABEL
    if len(name) > limit:
        return False
    parts = name.split(".") if subdomain else [name]
    return all(_DNS1123_LABEL.fullmatch(part) for part in parts)


def is_label_value(value: str) -> bool:
    """Whether ``value`` may be a label's value: empty, or up to 63 letters, digits, '-', '_'
    and '.', starting and ending with a letter or digit."""
    return value == "" or (len(value) <= MAX_LABEL and bool(_LABEL_NAME.fullmatch(value)))


def is_label_key(key: str) -> bool:
    """Whether ``key`` may be a label's key: a name as for values (not empty), optionally after
    a DNS-1123 subdomain prefix and '/'."""
    prefix, slash, name = key.rpartition("/")
    if slash and not is_dns1123(prefix, subdomain=True):
        return False
    return name != "" and is_label_value(name)


def name_problem(name: str, what: str = "cluster") -> str:
    """Why ``name`` cannot name a ``what`` (a cluster, a cluster group), or "" when it can."""
    if is_dns1123(name):
        return ""
    return (
        f"{what} name {name!r} is not a valid DNS-1123 label "
        f"(lowercase letters, digits and '-', at most {MAX_LABEL} characters)"
    )


def labels_problem(labels: Mapping[str, str]) -> str:
    """Why ``labels`` cannot be a Kubernetes object's labels (the first bad one), or ""."""
    for key, value in labels.items():
        if not is_label_key(key):
            return f"label key {key!r} is not a valid Kubernetes label key"
        if not is_label_value(value):
            return f"label {key}: value {value!r} is not a valid Kubernetes label value"
    return ""
