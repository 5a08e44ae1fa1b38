"""`xft plugins`: what is installed, from which distribution, providing what."""

from __future__ import annotations

import argparse
from typing import Any

from xft_core.hooks import CommandSpec, hookimpl
from xft_core.util.console import console


@hookimpl
def xft_commands():
    yield CommandSpec(name="plugins", register=register, description="list installed plugins and what they provide")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("plugins", help="list installed plugins and what they provide")
    p.add_argument("-v", "--verbose", action="store_true", help="also describe every strategy, sampler, head, source and metric")
    p.add_argument("--json", action="store_true",
                   help="print JSON on stdout: every plugin with its distribution, version and what it provides "
                        "(kind, name, description), and the blocked names")
    p.set_defaults(func=cmd_plugins)


def cmd_plugins(args: argparse.Namespace) -> int:
    from rich.table import Table

    from xft_core.hooks.descriptors import KINDS, SINGULAR
    from xft_core.hooks.manager import collect, get_plugin_manager, plugin_distribution

    pm = get_plugin_manager()
    table = Table(title="xft plugins")
    for column in ("plugin", "distribution", "version", "provides"):
        table.add_column(column)
    provided: dict[str, list[dict[str, str]]] = {}
    for kind in KINDS:
        for name, item in collect(pm, kind).items():
            provided.setdefault(item.plugin, []).append(
                {"kind": SINGULAR[kind], "name": name, "description": getattr(item.spec, "description", "")})
    blocked, plugins = [], []
    for plugin_name, plugin in sorted(pm.list_name_plugin(), key=lambda x: x[0] or ""):
        if plugin is None:  # pluggy keeps a blocked name with no plugin
            blocked.append(plugin_name)
            continue
        dist, version = plugin_distribution(pm, plugin_name)
        plugins.append({"plugin": plugin_name, "distribution": dist, "version": version,
                        "provides": provided.get(plugin_name, [])})
        table.add_row(plugin_name, dist, version,
                      "\n".join(f"{p['kind']}: {p['name']}" for p in provided.get(plugin_name, [])) or "(hooks only)")
    if args.json:
        import json
        import sys

        sys.stdout.write(json.dumps({"plugins": plugins, "blocked": blocked}, ensure_ascii=False, indent=2) + "\n")
        return 0
    console().print(table)
    if blocked:
        console().print(f"blocked (XFT_BLOCK_PLUGINS): {', '.join(blocked)}")
    if args.verbose:
        for kind in KINDS:
            for name, item in sorted(collect(pm, kind).items()):
                description = getattr(item.spec, "description", "")
                console().print(f"[bold]{SINGULAR[kind]}[/] {name}: {description}")
    return 0
