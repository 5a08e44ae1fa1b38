"""The manifest `xft.json` beside a strategy's files, and the base-model fingerprint it records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xft_core.util.errors import UserError
from xft_core.util.fingerprint import base_fingerprint

__all__ = ["MANIFEST", "AdapterError", "Manifest", "base_fingerprint"]

MANIFEST = "xft.json"


class AdapterError(UserError):
    """An adapter package is missing, malformed, or does not fit the base model."""


@dataclass(frozen=True)
class Manifest:
    """The parsed `xft.json` of one package: base model, task, labels, languages, strategy, metrics."""

    data: dict[str, Any]

    @property
    def languages(self) -> list[str]:
        return list(self.data.get("languages", []))

    @property
    def serves(self) -> list[str]:
        """The languages the package can answer: what its strategy said (`serves`), else its training languages."""
        return list(self.data.get("serves") or self.languages)

    @property
    def strategy(self) -> str:
        return str(self.data.get("strategy", ""))

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise AdapterError(f"{folder}: no {MANIFEST} (not an xft adapter package)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise AdapterError(f"{path}: not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise AdapterError(f"{path}: expected a JSON object")
        return cls(data)


def packages_in(folder: Path) -> list[Path]:
    """The adapter packages (sub-folders with a manifest) directly in `folder`, sorted; none when it is no folder."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if (p / MANIFEST).is_file()) if folder.is_dir() else []
