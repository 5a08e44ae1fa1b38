"""Plugin manager factory: built-ins and third-party plugins load through the same entry-point path.

Discovery controls:
- ``XFT_DISABLE_PLUGIN_AUTOLOAD=1`` loads no entry points (tests register what they need by hand);
- ``XFT_BLOCK_PLUGINS=name1,name2`` blocks plugins by entry-point name.
"""

from __future__ import annotations

import dataclasses
import os
import types
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable, Iterable

import pluggy

from xft_core.hooks import spec as hookspecs
from xft_core.hooks.descriptors import KINDS, SINGULAR
from xft_core.util.errors import UserError

ENTRY_POINT_GROUP = "xft"


class PluginError(UserError):
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
                blockable = other if _is_xft(pm, plugin_name) and not _is_xft(pm, other) else plugin_name
                raise PluginConflictError(
                    f"Duplicate {SINGULAR[kind]} name '{spec.name}': provided by plugin '{other}' "
                    f"({_dist_label(pm, other)}) and by plugin '{plugin_name}' ({_dist_label(pm, plugin_name)}). "
                    f"Uninstall one, or block it with XFT_BLOCK_PLUGINS={blockable}."
                )
            found[spec.name] = Provided(_guarded(pm, kind, spec, plugin_name), plugin_name)
    return found


def _is_xft(pm: pluggy.PluginManager, plugin_name: str) -> bool:
    """xft's own plugin (a command module of xft_core, or a built-in of the xft distribution): the hint to
    resolve a clash names the other one, so that blocking it does not hand xft's name to a third party."""
    plugin = pm.get_plugin(plugin_name)
    module = plugin.__name__ if isinstance(plugin, types.ModuleType) else type(plugin).__module__
    return module.split(".")[0] == "xft_core" or plugin_distribution(pm, plugin_name)[0] == "xft"


def _guarded(pm: pluggy.PluginManager, kind: str, spec: Any, plugin_name: str) -> Any:
    """The descriptor with its `build` (strategies, samplers, task heads) wrapped in a GuardedBuild."""
    build = getattr(spec, "build", None)
    if not callable(build) or isinstance(build, GuardedBuild):
        return spec
    guard = GuardedBuild(build, f"{SINGULAR[kind]} '{spec.name}'", plugin_name, _dist_label(pm, plugin_name))
    return dataclasses.replace(spec, build=guard)


class GuardedBuild:
    """A descriptor's `build`: whatever it raises comes out as a PluginError naming the plugin and its distribution
    (the original exception is its `__cause__`). Equal to another guard of the same function."""

    def __init__(self, function: Callable[..., Any], what: str, plugin: str, distribution: str) -> None:
        self.function, self.what, self.plugin, self.distribution = function, what, plugin, distribution

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.function(*args, **kwargs)
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(f"Plugin '{self.plugin}' ({self.distribution}) failed to build {self.what}: "
                              f"{type(exc).__name__}: {exc}") from exc

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GuardedBuild):
            return bool(self.function == other.function)
        return bool(self.function == other)

    def __hash__(self) -> int:
        return hash(self.function)

    def __repr__(self) -> str:
        return f"GuardedBuild({self.function!r}, plugin={self.plugin!r})"


def describe_plugin(pm: pluggy.PluginManager, plugin_name: str) -> str:
    """`plugin 'name' (distribution version)` for messages."""
    return f"plugin '{plugin_name}' ({_dist_label(pm, plugin_name)})"


def plugin_modules(pm: pluggy.PluginManager) -> dict[str, str]:
    """Module name -> plugin name for every registered plugin that is not xft's own code: the module of the
    plugin object, then the top-level package of entry-point plugins (more specific names first)."""
    exact: dict[str, str] = {}
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        if isinstance(plugin, types.ModuleType):
            module = plugin.__name__
        elif isinstance(plugin, type):
            module = plugin.__module__
        else:
            module = type(plugin).__module__
        if module and module.split(".")[0] != "xft_core":
            exact.setdefault(module, name)
    found = dict(exact)
    distributions = pm.distributions if isinstance(pm, XftPluginManager) else {}
    for module, name in exact.items():
        if name in distributions:
            found.setdefault(module.split(".")[0], name)
    return found


def plugin_in_traceback(pm: pluggy.PluginManager, tb: types.TracebackType | None) -> str | None:
    """The registered plugin whose code is innermost in a traceback (the one that raised, or called what raised);
    None when no plugin's code is in it."""
    modules = plugin_modules(pm)
    found = None
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        matches = [prefix for prefix in modules if module == prefix or module.startswith(prefix + ".")]
        if matches:
            found = modules[max(matches, key=len)]
        tb = tb.tb_next
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
