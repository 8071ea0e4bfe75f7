"""``flotilla schema``: the JSON Schemas of fleet.yaml and the Fleet objects, for editors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flotilla.errors import SpecError
from flotilla.schemas import SCHEMA_MODELS, json_schema


def schema_text(name: str) -> str:
    return json.dumps(json_schema(name), indent=2, sort_keys=True) + "\n"


def cmd_schema(args: argparse.Namespace) -> int:
    if args.write:
        out = Path(args.write)
        try:
            out.mkdir(parents=True, exist_ok=True)
            for name in SCHEMA_MODELS:
                (out / f"{name}.json").write_text(schema_text(name))
        except OSError as err:
            raise SpecError(f"cannot write: {err.strerror}", file=str(out)) from None
        print(f"wrote {len(SCHEMA_MODELS)} schemas to {out}")
        return 0
    print(schema_text(args.name), end="")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "schema",
        help="print the JSON Schema of fleet.yaml or a Fleet object (for editors)",
        description="Print a JSON Schema generated from the models flotilla reads with; "
        "--write puts them all in a directory (the repository keeps them in schemas/).",
    )
    parser.add_argument("name", nargs="?", default="fleet.yaml", choices=list(SCHEMA_MODELS))
    parser.add_argument("--write", metavar="DIR", help="write every schema to DIR/<name>.json")
    parser.set_defaults(handler=cmd_schema)
