"""Built-in strategy `full`: every parameter of the model trains; the whole model is saved."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from xft_core.hooks.spec import hookimpl
from xft_core.hooks.descriptors import StrategySpec


@dataclass(frozen=True, kw_only=True)
class FullOptions:
    freeze_embeddings: bool = False  # keep the (large, multilingual) embedding matrix fixed


class FullFineTuning:
    def __init__(self, options: FullOptions):
        self.options = options

    def apply(self, model: Any, head: Any, languages: Sequence[str] | None) -> Any:
        for parameter in model.parameters():
            parameter.requires_grad = True
        if self.options.freeze_embeddings:
            for parameter in model.get_input_embeddings().parameters():
                parameter.requires_grad = False
        return model

    def activate(self, model: Any, language: str | None) -> None:
        return None

    def save(self, model: Any, folder: Path, language: str | None) -> None:
        model.save_pretrained(folder, safe_serialization=True)

    def load(self, base_model: Any, folder: Path, name: str) -> Any:
        from safetensors.torch import load_file

        files = sorted(Path(folder).glob("model*.safetensors"))
        if not files:
            raise FileNotFoundError(f"{folder}: no model*.safetensors (a `full` strategy save)")
        state = {}
        for file in files:
            state.update(load_file(str(file)))
        missing, unexpected = base_model.load_state_dict(state, strict=False)
        if unexpected:
            raise ValueError(f"{folder}: weights do not fit the base model (unexpected: {', '.join(unexpected[:5])})")
        return base_model


@hookimpl
def xft_strategies():
    yield StrategySpec(
        name="full",
        options=FullOptions,
        build=FullFineTuning,
        description="Full fine-tuning: every parameter trains; saves the whole model.",
    )
