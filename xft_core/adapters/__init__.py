"""Adapter packages on disk: the strategy's files plus xft's manifest, written atomically, checked on load."""

from xft_core.adapters.manifest import MANIFEST, AdapterError, Manifest, base_fingerprint, packages_in
from xft_core.adapters.package import (
    Base,
    attach,
    check_base,
    check_compatible,
    check_init_from,
    head_from_manifest,
    init_weights_from,
    load_base,
    save_package,
    strategy_from_manifest,
    trained_precision,
)

__all__ = ["MANIFEST", "AdapterError", "Base", "Manifest", "attach", "base_fingerprint", "check_base", "check_compatible",
           "check_init_from", "head_from_manifest", "init_weights_from", "load_base", "packages_in", "save_package",
           "strategy_from_manifest", "trained_precision"]
