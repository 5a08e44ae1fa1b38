"""pytest fixtures for plugin authors. Enable them in your tests' top-level conftest.py:

    pytest_plugins = ["xft_core.testing_fixtures"]

- `xft_pm`: a fresh plugin manager per test with xft's built-in plugins registered by hand (no entry-point scan,
  no discovery controls; `xft_core.testing.plugin_manager`); register yours with `xft_pm.register(module, name=...)`.
- `tiny_model`: `tiny_model("bert")` -> the folder of a tiny offline model of that family (config, random weights,
  fast tokenizer; `xft_core.testing.FAMILIES`), built once per test session under pytest's temporary folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from xft_core.testing import plugin_manager, tiny_model_cache


@pytest.fixture
def xft_pm() -> Any:
    """A fresh plugin manager holding xft's built-in plugins (and nothing installed beside them)."""
    return plugin_manager()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """`tiny_model(family)` -> folder of a tiny offline model of `family`, built once per session."""
    root = tmp_path_factory.mktemp("xft-tiny-models")

    def get(family: str) -> Path:
        return tiny_model_cache(family, root)

    return get
