"""The ``fastapi-ratelimits`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .config import load_config
from .config.schema import json_schema_text
from .errors import ConfigError


def _check(args: argparse.Namespace) -> int:
    try:
        loaded = load_config(args.file)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    cfg = loaded.config
    print(f"{args.file}: OK ({len(cfg.rules)} rules, storage {cfg.storage.url}, hash {loaded.hash})")
    if getattr(args, "app", None):
        from .cli_app import check_app

        return check_app(args, loaded)
    return 0


def _schema(args: argparse.Namespace) -> int:
    sys.stdout.write(json_schema_text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastapi-ratelimits", description="Rate limits for FastAPI from a rules file.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check", help="validate a rules file")
    p.add_argument("file")
    p.add_argument("--app", help="module:attr of the app: also list rules that match no route and routes no rule covers")
    p.set_defaults(func=_check)
    p = sub.add_parser("schema", help="print the JSON Schema of the rules file")
    p.set_defaults(func=_schema)
    from .cli_app import add_commands

    add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
