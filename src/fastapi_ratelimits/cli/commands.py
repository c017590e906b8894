"""The ``fastapi-ratelimits`` command (also ``python -m fastapi_ratelimits``).

Each subcommand is one ``_add_<name>(subparsers)`` function that declares its
arguments and sets ``func`` to the function that runs it (``args -> exit code``);
:data:`SUBCOMMANDS` lists them in the order ``--help`` shows. To add a subcommand,
write both functions and append the first to the list.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config import LoadedConfig, load_config, redact_url
from ..config.schema import json_schema_text
from ..errors import ConfigError

Subparsers = Any  # argparse's _SubParsersAction, which has no public name


def _print_err(text: str) -> None:
    print(text, file=sys.stderr)


# -- check ----------------------------------------------------------------------------

def _summary(loaded: LoadedConfig) -> list[str]:
    cfg = loaded.config
    lines = [
        f"  storage   {redact_url(cfg.storage.url)} (prefix {cfg.storage.key_prefix}, "
        f"on_error {cfg.storage.on_error}, timeout {cfg.storage.timeout_ms} ms)",
        f"  defaults  algorithm {cfg.defaults.algorithm}, scope {cfg.defaults.scope}, "
        f"headers {cfg.defaults.headers}, status {cfg.defaults.status}",
    ]
    if cfg.identities:
        lines.append("  identities " + ", ".join(f"{k}={v}" for k, v in cfg.identities.items()))
    lines.append(f"  exempt    {len(cfg.exempt.paths)} path(s), {len(cfg.exempt.ips)} IP range(s)")
    lines.append(f"  rules     {len(cfg.rules)}")
    for rule in cfg.rules:
        where = rule.match.path if rule.match.path is not None else f"route {rule.match.route}"
        methods = ",".join(rule.match.methods) if rule.match.methods else "*"
        limits = ", ".join(str(r) for r in rule.rates())
        extra = []
        if rule.overrides:
            extra.append(f"{len(rule.overrides)} override(s)")
        if rule.mode == "shadow":
            extra.append("shadow")
        tail = f"  [{'; '.join(extra)}]" if extra else ""
        lines.append(
            f"    {rule.name}: {methods} {where} per {rule.scope or cfg.defaults.scope}, "
            f"{rule.algorithm or cfg.defaults.algorithm} {limits}{tail}"
        )
    admin = cfg.admin
    lines.append(f"  admin     {'on at ' + admin.path + ' (token from $' + admin.token_env + ')' if admin.enabled else 'off'}")
    return lines


def _run_check(args: argparse.Namespace) -> int:
    status = 0
    for file in args.files:
        try:
            loaded = load_config(file)
        except ConfigError as exc:
            for problem in exc.problems:
                _print_err(problem)
            status = 1
            continue
        n = len(loaded.config.rules)
        print(f"{file}: OK ({n} rule{'' if n == 1 else 's'}, hash {loaded.hash})")
        if not args.quiet:
            for line in _summary(loaded):
                print(line)
        admin = loaded.config.admin
        if admin.enabled and not os.environ.get(admin.token_env):
            _print_err(f"{file}: note: the admin API is enabled; ${admin.token_env} must be set "
                       "where the app runs (install() refuses to start without it)")
        if args.app:
            from .app import check_app

            status = max(status, check_app(args.app, loaded))
    return status


def _add_check(sub: Subparsers) -> None:
    p = sub.add_parser("check", help="validate rules files", description="Validate rules files; exit 0 when all are valid, 1 otherwise.")
    p.add_argument("files", nargs="+", metavar="FILE", help="a rules file (.yaml, .yml or .toml)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only OK or the errors")
    p.add_argument("--app", metavar="MODULE:ATTR",
                   help="the app: also list rules that match no route (exit 1) and routes no rule covers")
    p.set_defaults(func=_run_check)


# -- schema ---------------------------------------------------------------------------

def _run_schema(args: argparse.Namespace) -> int:
    text = json_schema_text()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def _add_schema(sub: Subparsers) -> None:
    p = sub.add_parser("schema", help="print the JSON Schema of the rules file",
                       description="Print the JSON Schema of the rules file (generated from the models).")
    p.add_argument("-o", "--output", metavar="FILE", help="write it to FILE instead")
    p.set_defaults(func=_run_schema)


# -- the command ----------------------------------------------------------------------

def _add_app_commands(sub: Subparsers) -> None:
    from .app import add_demo, add_explain

    add_explain(sub)
    add_demo(sub)


def _add_bench(sub: Subparsers) -> None:
    from .bench import add_bench

    add_bench(sub)


SUBCOMMANDS: list[Callable[[Subparsers], None]] = [_add_check, _add_schema, _add_app_commands, _add_bench]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastapi-ratelimits", description="Rate limits for FastAPI from a rules file."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return int(func(args))
