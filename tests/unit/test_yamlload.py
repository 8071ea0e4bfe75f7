"""Safe YAML loading: syntax errors, alias bombs, size limit and shape checks are one line."""

from __future__ import annotations

import time

import pytest
from pydantic import BaseModel, ValidationError, field_validator

from flotilla.errors import SpecError
from flotilla.yamlload import (
    MAX_ALIASES,
    MAX_DEPTH,
    MAX_YAML_BYTES,
    format_loc,
    load_yaml,
    load_yaml_documents,
    load_yaml_mapping,
    require_mapping,
    spec_error_from_validation,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("a: 1\n", [{"a": 1}]),
        ("---\na: 1\n---\nb: 2\n", [{"a": 1}, {"b": 2}]),
        ("---\n---\na: 1\n", [None, {"a": 1}]),
        ("- 1\n- 2\n", [[1, 2]]),
        ("a: &x [1, 2]\nb: *x\n", [{"a": [1, 2], "b": [1, 2]}]),
        (
            "base: &b {x: 1}\nover:\n  <<: *b\n  y: 2\n",
            [{"base": {"x": 1}, "over": {"x": 1, "y": 2}}],
        ),
    ],
)
def test_load_yaml_documents_parses(text: str, expected: list[object]) -> None:
    assert load_yaml_documents(text, file="f.yaml") == expected


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("a: [1\n", "line 2, column 1", "did not find expected ',' or ']'"),
        ("a: b: c\n", "line 1, column 5", "mapping values are not allowed"),
        ("a:\n  - 1\n b: 2\n", "line 3", ""),
        ('key: "unclosed\n', "line 2", "found unexpected end of stream"),
        ("a: *nope\n", "line 1, column 4", "found undefined alias"),
        ("\tkey: 1\n", "line 1, column 1", "cannot start any token"),
    ],
)
def test_syntax_errors_name_file_line_and_column(text: str, where: str, problem: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_yaml_documents(text, file="fleet.yaml")
    message = str(caught.value)
    assert message.startswith(f"fleet.yaml: {where}")
    assert problem in message
    assert "\n" not in message


def _laughs(levels: int, width: int = 10) -> str:
    lines = ["l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    for level in range(1, levels + 1):
        refs = ", ".join([f"*l{level - 1}"] * width)
        lines.append(f"l{level}: &l{level} [{refs}]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_is_refused_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(SpecError, match=r"bomb\.yaml: document 1 expands to more than"):
        load_yaml(_laughs(9), file="bomb.yaml")
    assert time.monotonic() - started < 2


def test_small_alias_fanout_is_accepted() -> None:
    data = load_yaml(_laughs(2), file="ok.yaml")
    assert len(data["l2"]) == 10
    assert data["l2"][0] == data["l1"]


def test_too_many_aliases_are_refused() -> None:
    refs = ", ".join(["*a"] * (MAX_ALIASES + 1))
    with pytest.raises(SpecError, match=f"more than {MAX_ALIASES} YAML aliases"):
        load_yaml(f"a: &a x\nb: [{refs}]\n", file="many.yaml")


def test_alias_to_itself_is_refused() -> None:
    with pytest.raises(SpecError, match="alias to itself"):
        load_yaml("&a [*a]\n", file="loop.yaml")


def test_bomb_in_second_document_names_it() -> None:
    with pytest.raises(SpecError, match="document 2 expands"):
        load_yaml_documents("a: 1\n---\n" + _laughs(9), file="multi.yaml")


def test_oversize_file_is_refused_with_the_limit() -> None:
    text = "a: " + "x" * MAX_YAML_BYTES + "\n"
    with pytest.raises(SpecError) as caught:
        load_yaml(text, file="big.yaml")
    assert str(caught.value).startswith("big.yaml: file is ")
    assert f"limit of {MAX_YAML_BYTES} bytes (10 MiB)" in str(caught.value)


def test_size_counts_bytes_not_characters() -> None:
    # Three bytes per character in UTF-8: under the limit in characters, over it in bytes.
    text = "a: " + "€" * (MAX_YAML_BYTES // 3 + 1) + "\n"
    with pytest.raises(SpecError, match="over the limit"):
        load_yaml(text, file="big.yaml")


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100_000])
def test_deep_nesting_is_an_error_not_a_crash(depth: int) -> None:
    # Where it is found: our own limit, or PyYAML's (6.0.4+) when it meets it first.
    column = rf"({MAX_DEPTH + 1}|1001)"
    with pytest.raises(SpecError, match=rf"^deep\.yaml: line 1, column {column}: .*deeper"):
        load_yaml("[" * depth + "]" * depth, file="deep.yaml")


def test_nesting_at_the_limit_loads() -> None:
    data = load_yaml("[" * MAX_DEPTH + "]" * MAX_DEPTH, file="deep.yaml")
    for _ in range(MAX_DEPTH - 1):
        data = data[0]
    assert data == []


def test_nesting_through_chained_aliases_is_an_error() -> None:
    chain = "[" * 150 + "x" + "]" * 150
    lines = [f"a0: &a0 {chain}"]
    for i in range(1, 12):
        lines.append(f"a{i}: &a{i} " + "[" * 150 + f"*a{i - 1}" + "]" * 150)
    with pytest.raises(
        SpecError, match=r"^chain\.yaml: document 1 nests deeper than 200 levels through aliases"
    ):
        load_yaml("\n".join(lines), file="chain.yaml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", None), ("a: 1", {"a": 1}), ("[1]", [1]), ("3", 3), ("---\nx\n", "x")],
)
def test_load_yaml_returns_the_single_document(text: str, expected: object) -> None:
    assert load_yaml(text, file="f") == expected


def test_load_yaml_refuses_several_documents() -> None:
    with pytest.raises(SpecError, match=r"f\.yaml: expected one YAML document, found 2"):
        load_yaml("a: 1\n---\nb: 2\n", file="f.yaml")


@pytest.mark.parametrize(
    ("text", "got"),
    [
        ("- a\n", "a list"),
        ("just text\n", "a string"),
        ("42\n", "a number"),
        ("true\n", "a boolean"),
    ],
)
def test_load_yaml_mapping_refuses_other_top_levels(text: str, got: str) -> None:
    with pytest.raises(SpecError, match=f"^fleet.yaml: top level must be a mapping, got {got} "):
        load_yaml_mapping(text, file="fleet.yaml")


@pytest.mark.parametrize(
    ("text", "expected"), [("", {}), ("# only a comment\n", {}), ("a: 1", {"a": 1})]
)
def test_load_yaml_mapping_accepts_empty_and_mappings(text: str, expected: object) -> None:
    assert load_yaml_mapping(text, file="fleet.yaml") == expected


def test_require_mapping_names_the_field() -> None:
    with pytest.raises(
        SpecError, match=r"^v.yaml: helm.values: value must be a mapping, got a list"
    ):
        require_mapping([1], file="v.yaml", field="helm.values")


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        (("helm", "releaseName"), "helm.releaseName"),
        (("targets", 0, "clusterSelector"), "targets[0].clusterSelector"),
        ((0, "name"), "[0].name"),
        (("a", 1, 2, "b"), "a[1][2].b"),
        ((), ""),
    ],
)
def test_format_loc(loc: tuple[int | str, ...], path: str) -> None:
    assert format_loc(loc) == path


class _Sample(BaseModel):
    count: int
    name: str = "x"

    @field_validator("name")
    @classmethod
    def _lower(cls, value: str) -> str:
        if value != value.lower():
            raise ValueError(f"{value!r} must be lower case")
        return value


def _validation_error(data: object) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        _Sample.model_validate(data)
    return caught.value


@pytest.mark.parametrize(
    ("data", "prefix", "message"),
    [
        ({"count": "many"}, "", "f.yaml: count: Input should be a valid integer"),
        ({"count": 1, "name": "Foo"}, "", "f.yaml: name: 'Foo' must be lower case"),
        ({}, "", "f.yaml: count: required field is missing"),
        ({"count": "x"}, "spec", "f.yaml: spec.count: Input should be a valid integer"),
        ({"count": "x"}, "items[2]", "f.yaml: items[2].count: Input should be"),
    ],
)
def test_spec_error_from_validation(data: object, prefix: str, message: str) -> None:
    error = spec_error_from_validation(_validation_error(data), file="f.yaml", prefix=prefix)
    assert str(error).startswith(message)
    assert "\n" not in str(error)


def test_builtin_validation_messages_quote_the_value() -> None:
    error = spec_error_from_validation(_validation_error({"count": "many"}), file="f.yaml")
    assert str(error).endswith("('many')")


def test_own_validation_messages_are_not_suffixed_twice() -> None:
    error = spec_error_from_validation(_validation_error({"count": 1, "name": "Foo"}), file="f")
    assert str(error) == "f: name: 'Foo' must be lower case"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("d: 2024-01-01", "2024-01-01"),
        ("d: 2001-12-14t21:59:43.10-05:00", "2001-12-14t21:59:43.10-05:00"),
        ("d: !!timestamp 2024-01-01", "2024-01-01"),
        ("d: '2024-01-01'", "2024-01-01"),
    ],
)
def test_timestamps_stay_strings_as_in_fleet(text: str, expected: str) -> None:
    assert load_yaml(text, file="f") == {"d": expected}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("v: yes", True), ("v: off", False), ("v: 010", 8), ("v: 1.5", 1.5), ("v: ~", None)],
)
def test_yaml_1_1_scalars_read_as_in_fleet(text: str, expected: object) -> None:
    assert load_yaml(text, file="f") == {"v": expected}
