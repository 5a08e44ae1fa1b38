"""The `lora` strategy: every peft call xft makes lives here (the core imports no peft).

Training: `apply` wraps the model in a PeftModel with one adapter per language (or one), the task head trained
alongside as a `modules_to_save` module; `activate` picks the adapter a batch trains. Saving writes peft's own
files, so plain `peft.PeftModel.from_pretrained(base, folder)` loads them, head included.
Inference: `attach` loads a package onto the base or onto a PeftModel already carrying others, `route` sends each
row through its own adapter in one forward (peft's `adapter_names`), `detach` deletes an adapter and unwraps the
model when none is left, `base_only` runs the bare base.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any, ContextManager, Sequence

from xft_core.hooks import BASE_ADAPTER, TaskHead
from xft_lora.options import LoraOptions, auto_target_modules

DEFAULT = "default"  # peft's adapter name for a single set of weights
TASK_TYPES = {  # xft head kinds -> peft TaskType names (heads of other kinds get no task type)
    "sequence-classification": "SEQ_CLS",
    "token-classification": "TOKEN_CLS",
    "causal-lm": "CAUSAL_LM",
    "seq2seq": "SEQ_2_SEQ_LM",
}
WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"


class Lora:
    def __init__(self, options: LoraOptions):
        self.options = options
        # peft runs rows of different adapters in one forward (adapter_names) for LoRA, not for DoRA
        self.mixed_batch = not options.use_dora
        self._training = False  # set by `apply`: this instance trains, so every adapter stays trainable
        self._scales: dict[str, float] = {}  # adapter -> factor set by `scale` (1.0 when absent)
        self.prefix_cache: Any = None  # with top_layers: the frozen layers' outputs per training row

    # ------------------------------------------------------------------------------------------ training
    def config(self, model: Any, head: TaskHead) -> Any:
        """The peft LoraConfig for this model and head."""
        from peft import LoraConfig

        head_modules = head.head_modules(model)
        targets = self.options.target_modules
        if targets == "auto":
            targets = auto_target_modules(model, exclude=head_modules)
        layers = None
        if self.options.top_layers:
            config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
            total = getattr(config, "num_hidden_layers", None) or getattr(config, "num_layers", None)
            if not total:
                raise ValueError("lora: top_layers needs a model config with num_hidden_layers")
            layers = list(range(max(0, total - self.options.top_layers), total))
        return LoraConfig(
            layers_to_transform=layers,
            r=self.options.r,
            lora_alpha=self.options.alpha,
            lora_dropout=self.options.dropout,
            target_modules=targets,
            use_dora=self.options.use_dora,
            use_rslora=self.options.use_rslora,
            bias=self.options.bias,
            modules_to_save=head_modules or None,
            task_type=TASK_TYPES.get(head.model_kind),
        )

    def apply(self, model: Any, head: TaskHead, adapters: Sequence[str] | None) -> Any:
        from peft import get_peft_model

        config = self.config(model, head)
        names = list(adapters) if adapters else [DEFAULT]
        peft_model = get_peft_model(model, copy.deepcopy(config), adapter_name=names[0])
        for name in names[1:]:
            peft_model.add_adapter(name, copy.deepcopy(config))
        peft_model.set_adapter(names[0])
        _make_all_trainable(peft_model, names)
        self._training = True
        if self.options.top_layers and self.options.cache_frozen_layers:
            self.prefix_cache = _prefix_cache(peft_model, self.options.top_layers)
        return peft_model

    def activate(self, model: Any, adapter: str | None, language: str | None = None) -> None:
        name = adapter or DEFAULT
        if model.active_adapter == name:
            return
        if self._training:
            model.set_adapter(name)
            _make_all_trainable(model, list(model.peft_config))
        else:
            model.set_adapter(name, inference_mode=True)

    def init_from(self, model: Any, folder: Path, adapters: Sequence[str]) -> None:
        """Start every adapter from a saved (multilingual) adapter."""
        from peft.utils import load_peft_weights, set_peft_model_state_dict

        if not (Path(folder) / WEIGHTS).is_file():
            raise FileNotFoundError(f"{folder}: no {WEIGHTS} to start from (config key: init_from)")
        weights = load_peft_weights(str(folder), device="cpu")
        for adapter in [a for a in adapters if a in model.peft_config] or [DEFAULT]:  # one set of weights: "default"
            set_peft_model_state_dict(model, weights, adapter_name=adapter)

    def save(self, model: Any, folder: Path, adapter: str | None, head: TaskHead) -> None:  # manifest: nothing to add
        from peft.utils import get_peft_model_state_dict
        from safetensors.torch import save_file

        name = adapter or DEFAULT
        state = get_peft_model_state_dict(model, adapter_name=name)
        state = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
        save_file(state, str(Path(folder) / WEIGHTS), metadata={"format": "pt"})
        config = copy.deepcopy(model.peft_config[name])
        config.inference_mode = True
        config.save_pretrained(str(folder))

    # ----------------------------------------------------------------------------------------- inference
    def attach(self, model: Any, folder: Path, name: str, head: TaskHead) -> Any:
        from peft import PeftConfig, PeftModel
        from safetensors.torch import load_file

        folder = Path(folder)
        # read and check both files before the model changes: a truncated or foreign file fails here
        try:
            PeftConfig.from_pretrained(str(folder))
            load_file(str(folder / WEIGHTS), device="cpu")
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{folder}: missing {CONFIG} or {WEIGHTS} ({exc})") from None
        except Exception as exc:
            raise ValueError(f"{folder}: cannot read the LoRA adapter ({type(exc).__name__}: {exc})") from None
        if isinstance(model, PeftModel):
            try:
                model.load_adapter(str(folder), adapter_name=name, is_trainable=False)
            except BaseException:
                if name in model.peft_config:
                    model.delete_adapter(name)
                raise
            return model
        return PeftModel.from_pretrained(model, str(folder), adapter_name=name, is_trainable=False)

    def detach(self, model: Any, name: str) -> Any:
        model.delete_adapter(name)
        self._scales.pop(name, None)
        if not model.peft_config:
            # peft cannot load into or run a PeftModel without adapters: unwrap back to the bare base
            base = model.unload()
            if hasattr(base, "peft_config"):
                del base.peft_config
            return base
        if model.active_adapter not in model.peft_config:
            model.set_adapter(next(iter(model.peft_config)), inference_mode=True)
        return model

    def scale(self, model: Any, adapter: str, factor: float) -> None:
        """peft's per-layer `set_scale`: the LoRA update (B A x) times `factor`; the head (`modules_to_save`) and
        DoRA's magnitude are not interpolated."""
        if self._scales.get(adapter, 1.0) == factor:
            return
        from peft.tuners.lora import LoraLayer

        for module in model.modules():
            if isinstance(module, LoraLayer):
                module.set_scale(adapter, factor)
        self._scales[adapter] = factor

    def base_only(self, model: Any) -> ContextManager[Any]:
        from peft import PeftModel

        return model.disable_adapter() if isinstance(model, PeftModel) else contextlib.nullcontext()

    def route(self, model: Any, names: Sequence[str]) -> dict[str, list[Any]]:
        return {"adapter_names": ["__base__" if n == BASE_ADAPTER else n for n in names]}


def _prefix_cache(model: Any, top_layers: int) -> Any:
    """A FrozenPrefixCache over the layers below the adapted ones, where that is exact (else None)."""
    from xft_lora.prefix_cache import FrozenPrefixCache, is_deterministic, transformer_layers

    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    total = getattr(config, "num_hidden_layers", None) or getattr(config, "num_layers", None) or 0
    first = total - top_layers
    layers = transformer_layers(model, total) if first > 0 else None
    if layers is None or not is_deterministic(model, layers[:first]):
        return None
    return FrozenPrefixCache(model, layers, first)


def _make_all_trainable(model: Any, names: Sequence[str]) -> None:
    """peft's set_adapter freezes inactive adapters; keep every adapter's parameters in the optimizer (an
    inactive one simply gets no gradient), so the set of trainable tensors never changes."""
    markers = tuple(f".{n}." for n in names)
    for name, parameter in model.named_parameters():
        if any(m in name for m in markers):
            parameter.requires_grad = True
