"""Built-in strategy `full`: every parameter of the model trains; the whole model is saved.

A saved package is a whole model, so it cannot share a base with others (not `stackable`: the router refuses
it). For the transfer matrix, `attach` loads its weights into the base and remembers what they replaced, and
`detach` puts the base's own weights back, so one loaded base serves every row of the matrix.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from xft_core.hooks import StrategySpec, TaskHead, hookimpl


@dataclass(frozen=True, kw_only=True)
class FullOptions:
    freeze_embeddings: bool = False  # keep the (large, multilingual) embedding matrix fixed


class FullFineTuning:
    mixed_batch = False

    def __init__(self, options: FullOptions):
        self.options = options
        self._replaced: dict[str, dict[str, Any]] = {}  # attached name -> the base tensors its weights replaced
        self._trained: dict[str, dict[str, Any]] = {}  # attached name -> its own tensors, once `scale` moved them

    def apply(self, model: Any, head: TaskHead, adapters: Sequence[str] | None) -> Any:
        for parameter in model.parameters():
            parameter.requires_grad = True
        if self.options.freeze_embeddings:
            for parameter in model.get_input_embeddings().parameters():
                parameter.requires_grad = False
        return model

    def activate(self, model: Any, adapter: str | None, language: str | None = None) -> None:
        return None  # one set of weights

    def init_from(self, model: Any, folder: Path, adapters: Sequence[str]) -> None:
        _copy_into(model, _read(folder), folder)

    def save(self, model: Any, folder: Path, adapter: str | None, head: TaskHead) -> None:
        model.save_pretrained(folder, safe_serialization=True)

    def attach(self, model: Any, folder: Path, name: str, head: TaskHead) -> Any:
        state = _read(folder)
        current = model.state_dict()
        replaced = {k: current[k].detach().clone() for k in state if k in current}
        _copy_into(model, state, folder)  # checks every key first: a package that does not fit changes nothing
        self._replaced[name] = replaced
        return model

    def detach(self, model: Any, name: str) -> Any:
        self._trained.pop(name, None)
        _copy_into(model, self._replaced.pop(name), Path(name))
        return model

    def scale(self, model: Any, adapter: str, factor: float) -> None:
        """Weights base + factor * (trained - base) for every tensor the package replaced."""
        import torch

        replaced = self._replaced[adapter]
        own = model.state_dict()
        trained = self._trained.setdefault(adapter, {k: own[k].detach().clone() for k in replaced})
        with torch.no_grad():
            for key, base in replaced.items():
                own[key].copy_(base + factor * (trained[key] - base) if base.is_floating_point() else trained[key])

    @contextlib.contextmanager
    def base_only(self, model: Any) -> Iterator[Any]:
        attached = list(self._replaced)
        current = {}
        for name in reversed(attached):  # undo the newest first, back to the base's own weights
            state = model.state_dict()
            current[name] = {k: state[k].detach().clone() for k in self._replaced[name]}
            _copy_into(model, self._replaced[name], Path(name))
        try:
            yield model
        finally:
            for name in attached:
                _copy_into(model, current[name], Path(name))

    def route(self, model: Any, names: Sequence[str]) -> dict[str, list[Any]]:
        raise NotImplementedError("full fine-tuning holds one set of weights: rows of different packages cannot mix")

    def merge(self, model: Any, adapter: str, language: str | None = None) -> Any:
        """The model itself: `attach` copied the package's weights in (at the scale `scale` set)."""
        if adapter not in self._replaced:
            raise KeyError(f"full: no package '{adapter}' attached (attached: {', '.join(self._replaced) or 'none'})")
        self._replaced.clear()  # the weights in place are the export's now; nothing is put back
        self._trained.clear()
        return model.eval()


def _read(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    files = sorted(Path(folder).glob("model*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no model*.safetensors (a `full` strategy save)")
    state: dict[str, Any] = {}
    for file in files:
        state.update(load_file(str(file)))
    return state


def _copy_into(model: Any, state: dict[str, Any], folder: Path) -> None:
    import torch

    own = model.state_dict()
    unexpected = [k for k in state if k not in own]
    if unexpected:
        raise ValueError(f"{folder}: weights do not fit the base model (unexpected: {', '.join(unexpected[:5])})")
    with torch.no_grad():
        for key, tensor in state.items():
            own[key].copy_(tensor)


@hookimpl
def xft_strategies():
    yield StrategySpec(
        name="full",
        options=FullOptions,
        build=FullFineTuning,
        description="Full fine-tuning: every parameter trains; saves the whole model.",
    )
