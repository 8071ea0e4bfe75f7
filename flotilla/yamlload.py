"""Safe loading of user YAML: size, syntax, alias bombs and shapes become one-line SpecErrors."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

from flotilla.errors import SpecError, short_repr

# A fleet.yaml, GitRepo or values file is hand-written; 10 MiB is far beyond any real one and
# small enough that parsing it cannot exhaust a worker.
MAX_YAML_BYTES = 10 * 1024 * 1024
# Anchors and aliases are legitimate (values files use them), but a few nested aliases can
# describe a document of billions of nodes ("billion laughs"). Later stages (pydantic, deep
# merge, JSON) walk the expanded tree, so the bound applies to the expanded size.
MAX_ALIASES = 10_000
MAX_EXPANDED_NODES = 1_000_000
# libyaml composes nested nodes by C recursion, so a deeply nested document crashes the
# process instead of raising; depth is therefore checked on the event stream first.
MAX_DEPTH = 200

_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[valid-type,misc]
    """The safe loader, reading timestamps as strings the way Fleet's Go YAML library does.

    Dates would otherwise become ``datetime`` objects inside helm values, which neither JSON
    nor a content digest can take.
    """


_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}
_Loader.add_constructor(_TIMESTAMP_TAG, yaml.SafeLoader.construct_yaml_str)


def load_yaml_documents(text: str, *, file: str) -> list[Any]:
    """Parse every document of a multi-document YAML text; empty documents come back as None."""
    _check_size(text, file=file)
    loader = _Loader(text)
    try:
        _check_depth(text, file=file)
        documents: list[Any] = []
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                break
            _check_expansion(node, file=file, document=len(documents) + 1)
            documents.append(loader.construct_document(node))
        return documents
    except yaml.MarkedYAMLError as err:
        raise _syntax_error(err, file=file) from None
    except yaml.YAMLError as err:
        raise SpecError(f"not valid YAML: {err}", file=file) from None
    finally:
        loader.dispose()


def load_yaml(text: str, *, file: str) -> Any:
    """Parse a YAML text that must hold at most one document (None when empty)."""
    documents = load_yaml_documents(text, file=file)
    if len(documents) > 1:
        raise SpecError(f"expected one YAML document, found {len(documents)}", file=file)
    return documents[0] if documents else None


def load_yaml_mapping(text: str, *, file: str) -> dict[str, Any]:
    """Parse a one-document YAML text whose top level must be a mapping; empty gives {}."""
    return require_mapping(load_yaml(text, file=file), file=file)


def require_mapping(data: Any, *, file: str, field: str = "") -> dict[str, Any]:
    """Return ``data`` as a mapping (None counts as empty) or raise a SpecError naming its type."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        where = "top level" if not field else "value"
        raise SpecError(
            f"{where} must be a mapping, got {_yaml_type(data)} ({short_repr(data)})",
            file=file,
            field=field,
        )
    return data


def format_loc(loc: tuple[int | str, ...]) -> str:
    """Turn a pydantic error location into a field path: ``targets[0].clusterSelector``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def spec_error_from_validation(err: ValidationError, *, file: str, prefix: str = "") -> SpecError:
    """Make a one-line SpecError from the first problem pydantic found.

    Messages raised by our own validators already quote the bad value; pydantic's built-in
    ones do not, so the value is appended for those.
    """
    first = err.errors(include_url=False)[0]
    loc = format_loc(tuple(first["loc"]))
    field = ".".join(p for p in (prefix, loc) if p).replace(".[", "[")
    if first["type"] == "value_error":
        message = str(first["ctx"]["error"])
    elif first["type"] == "missing":
        message = "required field is missing"
    elif first["type"] == "model_type":
        # pydantic names the model class ("... or instance of HelmOptions"): ours, not the
        # user's words; a mapping is what the file must hold there.
        message = f"Input should be a valid dictionary ({short_repr(first['input'])})"
    else:
        message = f"{first['msg']} ({short_repr(first['input'])})"
    return SpecError(message, file=file, field=field)


def _check_size(text: str, *, file: str) -> None:
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_YAML_BYTES:
        raise SpecError(
            f"file is {size} bytes, over the limit of {MAX_YAML_BYTES} bytes (10 MiB)",
            file=file,
        )


def _check_depth(text: str, *, file: str) -> None:
    depth = 0
    try:
        events = list(yaml.parse(text, Loader=_Loader))
    except yaml.MarkedYAMLError as err:
        # PyYAML >= 6.0.4 has a nesting limit of its own (1,000), above ours, met while it
        # scans ahead: the same finding, said the same way.
        if "nesting depth" not in str(err.problem) or err.problem_mark is None:
            raise
        raise SpecError(
            f"YAML nesting is deeper than {MAX_DEPTH} levels",
            file=file,
            field=_where(err.problem_mark),
        ) from None
    for event in events:
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise SpecError(
                    f"YAML nesting is deeper than {MAX_DEPTH} levels",
                    file=file,
                    field=_where(event.start_mark),
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _check_expansion(root: yaml.Node, *, file: str, document: int) -> None:
    """Refuse a node graph that refers to itself, or whose aliases expand past the bounds.

    Sizes and depths are memoised per node, so the check is linear in the written document
    even when the expanded one would be astronomically large.
    """
    measured: dict[int, tuple[int, int]] = {}
    open_nodes: set[int] = set()
    aliases = 0

    def measure(node: yaml.Node) -> tuple[int, int]:
        """Return the expanded node count and depth below ``node``."""
        nonlocal aliases
        key = id(node)
        if key in measured:
            aliases += 1
            if aliases > MAX_ALIASES:
                raise SpecError(
                    f"document {document} uses more than {MAX_ALIASES} YAML aliases", file=file
                )
            return measured[key]
        if key in open_nodes:
            raise SpecError(f"document {document} has a YAML alias to itself", file=file)
        open_nodes.add(key)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        sizes = [measure(child) for child in children]
        open_nodes.discard(key)
        total = 1 + sum(size for size, _ in sizes)
        depth = 1 + max((d for _, d in sizes), default=0)
        if total > MAX_EXPANDED_NODES:
            raise SpecError(
                f"document {document} expands to more than {MAX_EXPANDED_NODES} YAML nodes "
                "through aliases",
                file=file,
            )
        if depth > MAX_DEPTH:
            # Anchored subtrees nested through aliases: later stages recurse this deep.
            raise SpecError(
                f"document {document} nests deeper than {MAX_DEPTH} levels through aliases",
                file=file,
            )
        measured[key] = (total, depth)
        return total, depth

    measure(root)


def _syntax_error(err: yaml.MarkedYAMLError, *, file: str) -> SpecError:
    where = _where(err.problem_mark or err.context_mark)
    problem = err.problem or err.context or "not valid YAML"
    return SpecError(f"invalid YAML: {problem}", file=file, field=where)


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def _yaml_type(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__
