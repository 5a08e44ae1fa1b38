"""The shape contracts import-linter cannot check (docs/architecture.md, "Contracts checked in CI")."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 400


def test_no_module_of_the_engine_or_the_plugins_is_over_400_lines():
    modules = sorted([*(ROOT / "xft_core").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")])
    assert len(modules) > 50, "the engine and the built-in plugins were found"
    long = {str(p.relative_to(ROOT)): n for p in modules
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > LIMIT}
    assert not long, f"modules over {LIMIT} lines (split them by job: docs/architecture.md, 'Contracts checked in CI'): {long}"
