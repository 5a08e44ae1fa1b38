"""The `ia3` strategy: (IA)^3 through peft, one set of vectors or one per language, the task head trained alongside.

Training: `apply` wraps the model in a PeftModel with one IA3 adapter per language (or one); the task head's modules
(`head.head_modules`) are peft `modules_to_save`, so each adapter trains and saves its own copy. Packages are peft's
own files (adapter_config.json + adapter_model.safetensors): plain `PeftModel.from_pretrained(base, folder)` loads
them, head included.
Inference: `attach` adds a package next to those already on the base (all or nothing), `activate` picks one, `scale`
interpolates its vectors toward 1 (v' = 1 + f (v - 1): f = 0 is the base, 1 the adapter as trained), `base_only`
runs the bare base. peft's IA3 layers take no per-row `adapter_names`, so rows of different adapters never share a
forward (`mixed_batch = False`: the router runs one forward per adapter).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ContextManager, Sequence

import xft_peft
from xft_core.hooks import TaskHead
from xft_peft import DEFAULT, TASK_TYPES

from xft_ia3.options import IA3Options, auto_target_modules


class IA3:
    mixed_batch = False  # peft's IA3 layers multiply by the active adapters' vectors; no per-row adapter_names

    def __init__(self, options: IA3Options):
        self.options = options
        self._training = False  # set by `apply`: every adapter's vectors stay trainable whichever is active
        self._scales: dict[str, float] = {}  # adapter -> factor set by `scale` (1.0 when absent)
        self._trained: dict[str, dict[str, Any]] = {}  # adapter -> layer name -> its vector as trained (while scaled)

    # ------------------------------------------------------------------------------------------ training
    def config(self, model: Any, head: TaskHead) -> Any:
        """The peft IA3Config for this model and head."""
        from peft import IA3Config

        head_modules = head.head_modules(model)
        if self.options.target_modules == "auto":
            targets, feedforward = auto_target_modules(model, exclude=head_modules)
        else:
            targets, feedforward = list(self.options.target_modules), list(self.options.feedforward_modules)
        return IA3Config(
            target_modules=targets,
            feedforward_modules=feedforward,
            modules_to_save=list(head_modules) or None,
            task_type=TASK_TYPES.get(head.model_kind),
        )

    def apply(self, model: Any, head: TaskHead, adapters: Sequence[str] | None) -> Any:
        peft_model = xft_peft.wrap(model, self.config(model, head), adapters)  # one adapter per name, all trainable
        self._training = True
        return peft_model

    def activate(self, model: Any, adapter: str | None, language: str | None = None) -> None:
        name = adapter or DEFAULT
        if model.active_adapter == name:
            return
        if name not in model.peft_config:
            raise KeyError(f"ia3: no adapter '{name}' (have: {', '.join(model.peft_config)})")
        if self._training:
            model.set_adapter(name)
            xft_peft.make_all_trainable(model, list(model.peft_config))  # the set of trainable tensors never changes
        else:
            model.set_adapter(name, inference_mode=True)

    def init_from(self, model: Any, folder: Path, adapters: Sequence[str]) -> None:
        """Start every adapter from a saved package (config key `init_from`); the package must fit exactly."""
        _, weights = _read_ia3(Path(folder))
        for adapter in [a for a in adapters if a in model.peft_config] or [DEFAULT]:
            xft_peft.load_exactly(model, adapter, weights, Path(folder))

    def save(self, model: Any, folder: Path, adapter: str | None, head: TaskHead) -> None:  # manifest: nothing to add
        name = adapter or DEFAULT
        if self._scales.get(name, 1.0) != 1.0:
            raise ValueError(f"ia3: adapter '{name}' is scaled by {self._scales[name]}; scale it back to 1 before saving")
        xft_peft.save_peft_files(model, name, Path(folder))  # peft's own two files: plain peft loads them

    # ----------------------------------------------------------------------------------------- inference
    def attach(self, model: Any, folder: Path, name: str, head: TaskHead) -> Any:
        """All or nothing (xft_peft.attach_package): both files are read and checked before the model changes; the
        adapter is then added and loaded only if the package's tensors are exactly its parameters (names and shapes).
        On any failure the adapter is deleted again and a PeftModel made here is unwrapped back to the untouched base."""
        config, weights = _read_ia3(Path(folder))
        return xft_peft.attach_package(model, name, config, weights, Path(folder), detach=self.detach)

    def detach(self, model: Any, name: str) -> Any:
        self._scales.pop(name, None)
        self._trained.pop(name, None)
        return xft_peft.remove_adapter(model, name)  # the last adapter out unwraps the bare base

    def scale(self, model: Any, adapter: str, factor: float) -> None:
        """Every IA3 vector of `adapter` interpolated toward 1 (no scaling): v' = 1 + factor (v - 1). The vectors as
        trained are kept aside while scaled and written back exactly at factor 1; the head is not interpolated."""
        import torch
        from peft.tuners.ia3 import IA3Layer

        if self._scales.get(adapter, 1.0) == factor:
            return
        if adapter not in model.peft_config:
            raise KeyError(f"ia3: no adapter '{adapter}' (have: {', '.join(model.peft_config)})")
        trained = self._trained.setdefault(adapter, {})
        with torch.no_grad():
            for layer_name, module in model.named_modules():
                if isinstance(module, IA3Layer) and adapter in module.ia3_l:
                    vector = module.ia3_l[adapter]
                    original = trained.setdefault(layer_name, vector.detach().clone())
                    vector.copy_(original if factor == 1 else 1 + factor * (original - 1))
        if factor == 1:
            self._scales.pop(adapter, None)
            self._trained.pop(adapter, None)
        else:
            self._scales[adapter] = factor

    def base_only(self, model: Any) -> ContextManager[Any]:
        return xft_peft.base_only(model)

    def route(self, model: Any, names: Sequence[str]) -> dict[str, list[Any]]:
        raise NotImplementedError("ia3: peft's IA3 layers run one adapter per forward; rows of different adapters "
                                  "cannot share one (mixed_batch is False)")


def _read_ia3(folder: Path) -> tuple[Any, dict[str, Any]]:
    """The package's IA3Config (inference mode) and tensors, read without touching any model; errors name the file."""
    from peft import IA3Config

    return xft_peft.read_package(folder, IA3Config, what="IA3")
