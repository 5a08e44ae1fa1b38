"""Plugin manager factory: built-ins and third-party plugins load through the same entry-point path.

Discovery controls:
- ``XFT_DISABLE_PLUGIN_AUTOLOAD=1`` loads no entry points (tests register what they need by hand);
- ``XFT_BLOCK_PLUGINS=name1,name2`` blocks plugins by entry-point name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Iterable

import pluggy

from xft_core.hooks import spec as hookspecs
from xft_core.hooks.descriptors import KINDS, SINGULAR

ENTRY_POINT_GROUP = "xft"


class PluginError(Exception):
    """A plugin could not be found, loaded or combined."""


class PluginConflictError(PluginError):
    """Two plugins declare the same name for the same kind of thing."""


class XftPluginManager(pluggy.PluginManager):
    """pluggy's manager, remembering which distribution each entry-point plugin came from (for messages)."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.distributions: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)


def make_plugin_manager(*, autoload: bool | None = None, blocked: Iterable[str] | None = None) -> XftPluginManager:
    """A fresh manager with the xft hookspecs, entry points of group "xft" loaded unless autoload is off."""
    pm = XftPluginManager()
    pm.add_hookspecs(hookspecs)
    if autoload is None:
        autoload = os.environ.get("XFT_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0", "false")
    blocked_names = set(blocked or ()) | {b.strip() for b in os.environ.get("XFT_BLOCK_PLUGINS", "").split(",") if b.strip()}
    for name in blocked_names:
        pm.set_blocked(name)
    if autoload:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if pm.is_blocked(ep.name) or pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken third-party plugin must not hide which one it is
                dist = ep.dist.name if ep.dist else "?"
                raise PluginError(f"Plugin '{ep.name}' ({dist}, {ep.value}) failed to import: {exc}") from exc
            pm.register(plugin, name=ep.name)
            if ep.dist is not None:
                pm.distributions[ep.name] = (ep.dist.name, ep.dist.version)
    pm.check_pending()
    return pm


_default: XftPluginManager | None = None


def get_plugin_manager() -> XftPluginManager:
    """The process-wide manager, built on first use (never at import time)."""
    global _default
    if _default is None:
        _default = make_plugin_manager()
    return _default


@dataclass(frozen=True)
class Provided:
    spec: Any
    plugin: str


def plugin_distribution(pm: pluggy.PluginManager, plugin_name: str) -> tuple[str, str]:
    """(distribution, version) of an entry-point plugin; plugins registered in code have none."""
    distributions = pm.distributions if isinstance(pm, XftPluginManager) else {}
    return distributions.get(plugin_name, ("registered in code", ""))


def collect(pm: pluggy.PluginManager, kind: str) -> dict[str, Provided]:
    """All descriptors of one kind ("strategies", "samplers", ...), by name; duplicates are an error."""
    if kind not in KINDS:
        raise KeyError(f"unknown plugin kind {kind!r}; one of {', '.join(KINDS)}")
    hook = getattr(pm.hook, f"xft_{kind}")
    found: dict[str, Provided] = {}
    for impl in hook.get_hookimpls():  # registration order (pluggy calls them in reverse)
        plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
        result = impl.function()
        for spec in result or ():
            if not isinstance(spec, KINDS[kind]):
                raise PluginError(f"Plugin '{plugin_name}' yielded {type(spec).__name__} from xft_{kind}; "
                                  f"expected {KINDS[kind].__name__}")
            if spec.name in found:
                other = found[spec.name].plugin
                raise PluginConflictError(
                    f"Duplicate {SINGULAR[kind]} name '{spec.name}': provided by plugin '{other}' "
                    f"({_dist_label(pm, other)}) and by plugin '{plugin_name}' ({_dist_label(pm, plugin_name)}). "
                    f"Uninstall one, or block it with XFT_BLOCK_PLUGINS={plugin_name}."
                )
            found[spec.name] = Provided(spec, plugin_name)
    return found



def _dist_label(pm: pluggy.PluginManager, plugin_name: str) -> str:
    dist, version = plugin_distribution(pm, plugin_name)
    return f"{dist} {version}".strip()


def get_spec(pm: pluggy.PluginManager, kind: str, name: str, *, config_key: str) -> Any:
    """The descriptor `name` of `kind`, or an error listing the valid choices and where the name came from."""
    found = collect(pm, kind)
    if name not in found:
        available = ", ".join(sorted(found)) or "(none installed)"
        raise PluginError(
            f"Unknown {SINGULAR[kind]} '{name}' (config key: {config_key}). Available: {available}.\n"
            f'Install a plugin that provides it (entry-point group "{ENTRY_POINT_GROUP}") or run `xft plugins`.'
        )
    return found[name].spec
