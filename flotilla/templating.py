"""Per-cluster helm values: ``global.fleet.clusterLabels.*`` references and ``${ }`` templates.

Fleet renders values with Go templates (sprig functions, ``${ }`` delimiters) and re-reads the
result as YAML. flotilla implements the part of that language Fleet repositories use: field
access, ``index``, ``get``, ``default``, pipes, parentheses and literals. Anything else is a
SpecError naming the value, never a guess.
"""

from __future__ import annotations

import ast
import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from flotilla.errors import SpecError, short_repr
from flotilla.targeting import ClusterInfo
from flotilla.yamlload import load_yaml

CLUSTER_LABEL_PREFIX = "global.fleet.clusterLabels."
_OPEN = "${"
_CLOSE = "}"
# Fleet hides labels and annotations that belong to Rancher or kubectl from templates, then
# gives back the Fleet and Rancher management labels, which people do target on.
_HIDDEN_PREFIXES = ("kubectl.kubernetes.io/",)
_HIDDEN_PART = "cattle.io/"
_SHOWN_LABEL_PREFIXES = ("fleet.cattle.io/", "management.cattle.io/")
_GO_KEYWORDS = frozenset(
    {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}
)
_GO_ESCAPE = re.compile(
    r'\\(?:[abfnrtv\\"]|x[0-9a-fA-F]{2}|[0-7]{3}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})'
)
_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    | (?P<string>"(?:[^"\\\n]|\\.)*")
    | (?P<raw>`[^`]*`)
    | (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
    | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<punct>[|()])
    """,
    re.VERBOSE,
)


def template_context(cluster: ClusterInfo) -> dict[str, Any]:
    """Build what templates see: .ClusterName, .ClusterNamespace, .ClusterLabels, ..."""
    return {
        "ClusterName": cluster.name,
        "ClusterNamespace": cluster.namespace,
        "ClusterLabels": visible_labels(cluster.labels),
        "ClusterAnnotations": _without_hidden(cluster.annotations),
        "ClusterValues": dict(cluster.template_values),
    }


def visible_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """Return the cluster labels templates and clusterLabels references may use."""
    shown = _without_hidden(labels)
    shown.update({k: v for k, v in labels.items() if k.startswith(_SHOWN_LABEL_PREFIXES)})
    return shown


def _without_hidden(entries: Mapping[str, str]) -> dict[str, str]:
    return {
        k: v
        for k, v in entries.items()
        if not k.startswith(_HIDDEN_PREFIXES) and _HIDDEN_PART not in k
    }


def process_values(
    values: Mapping[str, Any],
    cluster: ClusterInfo,
    *,
    disable_pre_process: bool = False,
    file: str,
    field: str = "helm.values",
) -> dict[str, Any]:
    """Apply clusterLabels references, then (unless ``disablePreProcess``) ``${ }`` templates."""
    substituted = substitute_cluster_labels(values, visible_labels(cluster.labels))
    if disable_pre_process:
        return substituted
    return render_values(substituted, template_context(cluster), file=file, field=field)


def substitute_cluster_labels(
    values: Mapping[str, Any], labels: Mapping[str, str]
) -> dict[str, Any]:
    """Replace map values ``global.fleet.clusterLabels.<LABEL>`` by the label ("" if absent).

    As in Fleet, only values of mappings are replaced (also mappings inside lists); a bare
    string item of a list is left alone.
    """
    result: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, str) and value.startswith(CLUSTER_LABEL_PREFIX):
            result[key] = labels.get(value.removeprefix(CLUSTER_LABEL_PREFIX), "")
        elif isinstance(value, Mapping):
            result[key] = substitute_cluster_labels(value, labels)
        elif isinstance(value, list):
            result[key] = [
                substitute_cluster_labels(item, labels) if isinstance(item, Mapping) else item
                for item in value
            ]
        else:
            result[key] = value
    return result


def render_values(
    values: Mapping[str, Any], context: Mapping[str, Any], *, file: str, field: str
) -> dict[str, Any]:
    """Render every ``${ }`` in the keys and string values of a values tree."""
    rendered = _render_node(dict(values), context, file=file, path=field)
    assert isinstance(rendered, dict)  # a mapping renders to a mapping
    return rendered


def _render_node(node: Any, context: Mapping[str, Any], *, file: str, path: str) -> Any:
    if isinstance(node, Mapping):
        result: dict[str, Any] = {}
        for key, value in node.items():
            name = key
            if isinstance(key, str) and _OPEN in key:
                name = _render_key(key, context, file=file, path=path)
                if name in result or (name != key and name in node):
                    raise SpecError(
                        f"key {short_repr(key)} renders to {short_repr(name)}, "
                        "which is already a key",
                        file=file,
                        field=path,
                    )
            result[name] = _render_node(value, context, file=file, path=f"{path}.{name}")
        return result
    if isinstance(node, list):
        return [
            _render_node(item, context, file=file, path=f"{path}[{index}]")
            for index, item in enumerate(node)
        ]
    if isinstance(node, str) and _OPEN in node:
        return render_string(node, context, file=file, field=path)
    return node


def _render_key(key: str, context: Mapping[str, Any], *, file: str, path: str) -> str:
    parts = _parse_template(key, file=file, field=path)
    return "".join(_print(p, key, context, file=file, field=path) for p in parts)


def render_string(text: str, context: Mapping[str, Any], *, file: str, field: str) -> Any:
    """Render one templated string value.

    A value that is exactly one ``${ expr }`` keeps the type of the result (a map, a list, a
    number); otherwise the pieces are joined as text. Text is then read as a YAML scalar, as
    Fleet re-reads its output, so ``"${ .ClusterLabels.replicas }"`` with label "3" gives 3.
    """
    parts = _parse_template(text, file=file, field=field)
    if len(parts) == 1 and isinstance(parts[0], _Action):
        value = _evaluate(parts[0].pipeline, context, text, file=file, field=field)
        if value is None:
            raise _template_error(text, "gives no value (a missing key?)", file, field)
        # A copy, so rendered values never share a map with the cluster's templateValues.
        return _read_scalar(value) if isinstance(value, str) else copy.deepcopy(value)
    return _read_scalar("".join(_print(p, text, context, file=file, field=field) for p in parts))


def _read_scalar(text: str) -> Any:
    """Read rendered text back as Fleet does: "3" becomes 3, "true" true, "" null.

    Fleet re-parses its rendered values as YAML. Text its YAML writer would have quoted or
    put in a block (several lines, edge spaces, " #", ":") stays a string there, and so it
    does here; only plain numbers, booleans and nulls change type.
    """
    if "\n" in text or text != text.strip() or " #" in text or ":" in text:
        return text
    try:
        value = load_yaml(text, file="")
    except SpecError:
        return text
    return value if value is None or isinstance(value, bool | int | float) else text


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    names: tuple[str, ...]


@dataclass(frozen=True)
class _Literal:
    value: Any


@dataclass(frozen=True)
class _Call:
    function: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class _Pipeline:
    commands: tuple[Any, ...]


@dataclass(frozen=True)
class _Action:
    pipeline: _Pipeline


def _parse_template(text: str, *, file: str, field: str) -> list[str | _Action]:
    parts: list[str | _Action] = []
    position = 0
    while (start := text.find(_OPEN, position)) != -1:
        if start > position:
            parts.append(text[position:start])
        tokens, position = _lex_action(text, start + len(_OPEN), file=file, field=field)
        parser = _Parser(tokens, text, file=file, field=field)
        parts.append(_Action(parser.parse_action()))
    if position < len(text):
        parts.append(text[position:])
    return parts


def _lex_action(
    text: str, position: int, *, file: str, field: str
) -> tuple[list[tuple[str, str]], int]:
    """Cut the tokens of one action; return them and the index just past its closing brace."""
    tokens: list[tuple[str, str]] = []
    while position < len(text):
        if text[position] == _CLOSE:
            return tokens, position + 1
        match = _TOKEN.match(text, position)
        if match is None:
            problem = (
                "trim markers ('${-', '-}') are not supported"
                if text[position] == "-"
                else f"unexpected {text[position]!r} in the expression"
            )
            raise _template_error(text, problem, file, field)
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append((kind, match.group()))
        position = match.end()
    raise _template_error(text, "'${' is not closed by '}'", file, field)


class _Parser:
    """Recursive descent over one action's tokens: pipeline := command ('|' command)*."""

    def __init__(self, tokens: list[tuple[str, str]], text: str, *, file: str, field: str):
        self._tokens = tokens
        self._index = 0
        self._text = text
        self._file = file
        self._field = field

    def parse_action(self) -> _Pipeline:
        pipeline = self._pipeline()
        if self._index != len(self._tokens):
            raise self._error(f"unexpected {self._tokens[self._index][1]!r}")
        return pipeline

    def _pipeline(self) -> _Pipeline:
        commands = [self._command(first=True)]
        while self._peek() == ("punct", "|"):
            self._index += 1
            commands.append(self._command(first=False))
        return _Pipeline(tuple(commands))

    def _command(self, *, first: bool) -> Any:
        token = self._peek()
        if token is None or token in (("punct", "|"), ("punct", ")")):
            raise self._error("an expression is missing")
        kind, value = token
        if kind == "name" and value not in ("true", "false", "nil"):
            self._index += 1
            if value in _GO_KEYWORDS:
                raise self._error(f"template action {value!r} is not supported")
            if value not in _FUNCTIONS:
                raise self._error(
                    f"function {value!r} is not supported (use {', '.join(_FUNCTIONS)})"
                )
            return _Call(value, tuple(self._operands()))
        operand = self._operand()
        if isinstance(operand, _Pipeline) and (self._peek() or ("", ""))[0] == "field":
            raise self._error("field access after '( )' is not supported; use index")
        if not first:
            raise self._error("only a function can follow '|'")
        if self._peek() not in (None, ("punct", "|"), ("punct", ")")):
            raise self._error("a value cannot take arguments; did you forget a function name?")
        return operand

    def _operands(self) -> list[Any]:
        operands = []
        while self._peek() not in (None, ("punct", "|"), ("punct", ")")):
            operands.append(self._operand())
        return operands

    def _operand(self) -> Any:
        token = self._peek()
        if token is None:
            raise self._error("an expression is missing")
        kind, value = token
        self._index += 1
        if kind == "field":
            return _Field(tuple(n for n in value.split(".") if n))
        if kind == "string":
            return _Literal(self._unquote(value))
        if kind == "raw":
            return _Literal(value[1:-1])
        if kind == "number":
            number = float(value) if any(c in value for c in ".eE") else int(value)
            return _Literal(number)
        if kind == "name" and value in ("true", "false", "nil"):
            return _Literal({"true": True, "false": False, "nil": None}[value])
        if token == ("punct", "("):
            inner = self._pipeline()
            if self._peek() != ("punct", ")"):
                raise self._error("'(' is not closed by ')'")
            self._index += 1
            return inner
        if kind == "name":
            raise self._error(f"function {value!r} must come first in an expression or in '( )'")
        raise self._error(f"unexpected {value!r}")

    def _unquote(self, literal: str) -> str:
        # Go knows fewer escapes than Python; an unknown one is an error there, so here too.
        if "\\" in _GO_ESCAPE.sub("", literal):
            raise self._error(f"bad string literal {literal}")
        try:
            value = ast.literal_eval(literal)
        except (SyntaxError, ValueError):
            raise self._error(f"bad string literal {literal}") from None
        assert isinstance(value, str)  # the token pattern only admits "..." literals
        return value

    def _peek(self) -> tuple[str, str] | None:
        return self._tokens[self._index] if self._index < len(self._tokens) else None

    def _error(self, problem: str) -> SpecError:
        return _template_error(self._text, problem, self._file, self._field)


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


class _EvalError(Exception):
    """A template evaluated to an error; turned into a SpecError naming the value."""


def _evaluate(
    pipeline: _Pipeline, context: Mapping[str, Any], text: str, *, file: str, field: str
) -> Any:
    try:
        return _run_pipeline(pipeline, context)
    except _EvalError as err:
        raise _template_error(text, str(err), file, field) from None


def _run_pipeline(pipeline: _Pipeline, context: Mapping[str, Any]) -> Any:
    result: Any = None
    for position, command in enumerate(pipeline.commands):
        if isinstance(command, _Call):
            args = [_run_operand(a, context) for a in command.args]
            if position > 0:
                # The piped value is the last argument, as in Go templates.
                args.append(result)
            result = _FUNCTIONS[command.function](args)
        else:
            result = _run_operand(command, context)
    return result


def _run_operand(operand: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(operand, _Literal):
        return operand.value
    if isinstance(operand, _Pipeline):
        return _run_pipeline(operand, context)
    assert isinstance(operand, _Field)  # the parser makes nothing else
    value: Any = context
    walked = ""
    for name in operand.names:
        if not isinstance(value, Mapping):
            raise _EvalError(f"{walked or '.'} is {_describe(value)}, it has no field {name!r}")
        if name not in value:
            where = walked or "the context"
            raise _EvalError(
                f"{where} has no key {name!r}; use get {walked or '.'} {_quote(name)} "
                "for an optional key"
            )
        value = value[name]
        walked += f".{name}"
    return value


def _call_index(args: list[Any]) -> Any:
    if not args:
        raise _EvalError("index needs a map or list and keys")
    value = args[0]
    for key in args[1:]:
        if isinstance(value, Mapping):
            if not isinstance(key, str):
                raise _EvalError(f"index key {short_repr(key)} of a map must be a string")
            value = value.get(key)
        elif isinstance(value, list):
            if not isinstance(key, int) or isinstance(key, bool):
                raise _EvalError(f"index {short_repr(key)} of a list must be an integer")
            if not 0 <= key < len(value):
                raise _EvalError(f"index {key} is out of range for a list of {len(value)}")
            value = value[key]
        else:
            raise _EvalError(f"cannot index {_describe(value)} with {short_repr(key)}")
    return value


def _call_get(args: list[Any]) -> Any:
    if len(args) != 2:
        raise _EvalError(f"get takes a map and a key, got {len(args)} arguments")
    mapping, key = args
    if not isinstance(mapping, Mapping):
        raise _EvalError(f"get needs a map, got {_describe(mapping)}")
    if not isinstance(key, str):
        raise _EvalError(f"get key must be a string, got {short_repr(key)}")
    # sprig's get gives "" for a missing key.
    return mapping.get(key, "")


def _call_default(args: list[Any]) -> Any:
    if len(args) not in (1, 2):
        raise _EvalError(f"default takes a fallback and a value, got {len(args)} arguments")
    fallback, *given = args
    return fallback if not given or _is_empty(given[0]) else given[0]


def _is_empty(value: Any) -> bool:
    # sprig's notion of empty: nil, zero, false and empty strings, lists and maps.
    if value is None:
        return True
    if isinstance(value, bool | int | float | str | list | dict):
        return not value
    return False


_FUNCTIONS = {"index": _call_index, "get": _call_get, "default": _call_default}


# ---------------------------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------------------------


def _print(
    part: str | _Action, text: str, context: Mapping[str, Any], *, file: str, field: str
) -> str:
    if isinstance(part, str):
        return part
    value = _evaluate(part.pipeline, context, text, file=file, field=field)
    if value is None:
        raise _template_error(text, "gives no value (a missing key?)", file, field)
    if isinstance(value, Mapping | list):
        raise _template_error(
            text,
            f"gives {_describe(value)}, which can only be a whole value, not part of a string",
            file,
            field,
        )
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format_go_float(value)
    return str(value)


def format_go_float(value: float) -> str:
    """Print a float as Go's ``fmt`` does for ``%v`` (shortest digits, ``1e+06`` from 10^6)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return sign + "0"
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    assert isinstance(exponent, int)  # finite numbers have an integer exponent
    # repr gives the shortest digits that read back exactly, which is what Go prints too.
    point = len(digit_tuple) + exponent
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    power = point - 1
    if power < -4 or power >= 6:
        mantissa = digits[0] + (f".{digits[1:]}" if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if power < 0 else '+'}{abs(power):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _describe(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, Mapping):
        return "a map"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {short_repr(value)}"


def _quote(name: str) -> str:
    return '"' + name + '"'


def _template_error(text: str, problem: str, file: str, field: str) -> SpecError:
    return SpecError(f"template {short_repr(text)}: {problem}", file=file, field=field)
