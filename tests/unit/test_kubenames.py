"""Kubernetes' name rules: DNS-1123 labels and subdomains, label keys and values."""

from __future__ import annotations

import pytest

from flotilla.kubenames import (
    is_dns1123,
    is_label_key,
    is_label_value,
    labels_problem,
    name_problem,
)


@pytest.mark.parametrize(
    ("name", "label", "subdomain"),
    [
        ("a", True, True),
        ("edge-1", True, True),
        ("0abc", True, True),
        ("a" * 63, True, True),
        ("a" * 64, False, True),
        ("shop.example.com", False, True),
        ("a." * 126 + "a", False, True),  # 253 characters
        ("a." * 126 + "ab", False, False),  # 254
        ("", False, False),
        ("-a", False, False),
        ("a-", False, False),
        ("A", False, False),
        ("a_b", False, False),
        ("a..b", False, False),
        (".a", False, False),
        ("a\n", False, False),
        ("a/b", False, False),
    ],
)
def test_is_dns1123(name: str, label: bool, subdomain: bool) -> None:
    assert is_dns1123(name) is label
    assert is_dns1123(name, subdomain=True) is subdomain


@pytest.mark.parametrize(
    ("name", "max_length", "valid"),
    [("a" * 53, 53, True), ("a" * 54, 53, False), ("a" * 64, 100, True)],
)
def test_is_dns1123_with_a_tighter_or_looser_limit(name: str, max_length: int, valid: bool) -> None:
    assert is_dns1123(name, max_length=max_length) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("", True),
        ("prod", True),
        ("Prod_1.x-y", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("-a", False),
        ("a.", False),
        ("a b", False),
        ("a/b", False),
    ],
)
def test_is_label_value(value: str, valid: bool) -> None:
    assert is_label_value(value) is valid


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        ("env", True),
        ("app.kubernetes.io/name", True),
        ("example.com/Team_1", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("", False),
        ("/env", False),
        ("example.com/", False),
        ("Example.com/env", False),
        ("a/b/c", False),
        ("a" * 254 + "/env", False),
    ],
)
def test_is_label_key(key: str, valid: bool) -> None:
    assert is_label_key(key) is valid


def test_name_problem_names_what_and_the_value() -> None:
    assert name_problem("edge-1") == ""
    assert name_problem("Edge_1", "cluster group") == (
        "cluster group name 'Edge_1' is not a valid DNS-1123 label "
        "(lowercase letters, digits and '-', at most 63 characters)"
    )


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        ({}, ""),
        ({"env": "prod", "tier": ""}, ""),
        (
            {"env": "prod", "bad key": "x"},
            "label key 'bad key' is not a valid Kubernetes label key",
        ),
        (
            {"env": "-prod"},
            "label env: value '-prod' is not a valid Kubernetes label value",
        ),
    ],
)
def test_labels_problem_names_the_first_bad_label(labels: dict[str, str], problem: str) -> None:
    assert labels_problem(labels) == problem
