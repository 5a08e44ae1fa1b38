"""The `lora` strategy: every peft call xft makes lives here (the core imports no peft).

Training: `apply` wraps the model in a PeftModel with one adapter per language (or one), the task head trained
alongside as a `modules_to_save` module; `activate` picks the adapter a batch trains. Saving writes peft's own
files, so plain `peft.PeftModel.from_pretrained(base, folder)` loads them, head included.
Inference: `attach` loads a package onto the base or onto a PeftModel already carrying others, `route` sends each
row through its own adapter in one forward (peft's `adapter_names`), `detach` deletes an adapter and unwraps the
model when none is left, `base_only` runs the bare base.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ContextManager, Sequence

import xft_peft
from xft_core.hooks import BASE_ADAPTER, TaskHead
from xft_lora.fused import install as install_fused
from xft_lora.mixed import install as install_contiguous
from xft_lora.options import LoraOptions, auto_target_modules
from xft_lora.switch import fast_switch
from xft_peft import CONFIG, DEFAULT, TASK_TYPES, WEIGHTS


class Lora:
    def __init__(self, options: LoraOptions):
        self.options = options
        # peft runs rows of different adapters in one forward (adapter_names) for LoRA, not for DoRA
        self.mixed_batch = not options.use_dora
        self._training = False  # set by `apply`: this instance trains, so every adapter stays trainable
        self._scales: dict[str, float] = {}  # adapter -> factor set by `scale` (1.0 when absent)
        self.prefix_cache: Any = None  # with top_layers: the frozen layers' outputs per training row
        self._layers: tuple[Any, list[Any], bool | None] | None = None  # (model, its adapter layers, fast switch works)

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
        peft_model = xft_peft.wrap(model, self.config(model, head), adapters)
        install_fused(list(peft_model.modules()))  # the update as one addmm, no cast of the input (fused.py)
        self._training = True
        if self.options.top_layers and self.options.cache_frozen_layers:
            self.prefix_cache = _prefix_cache(peft_model, self.options.top_layers)
        return peft_model

    def activate(self, model: Any, adapter: str | None, language: str | None = None) -> None:
        name = adapter or DEFAULT
        if self._training:
            if model.active_adapter == name:
                return
            model.set_adapter(name)
            xft_peft.make_all_trainable(model, list(model.peft_config))
        else:
            self._switch(model, name)

    def _switch(self, model: Any, name: str) -> None:
        """Make `name` the active adapter at inference: `switch.fast_switch` (the active name written into each adapter
        layer, checked against peft's public view on the first switch of each attached set), or peft's own
        `set_adapter` where a peft internal it relies on has moved. Always done, even when peft's model-level name
        already matches: adding an adapter moves the head copy (modules_to_save) to the new one without changing it."""
        if name not in model.peft_config:
            raise KeyError(f"lora: no adapter '{name}' attached (attached: {', '.join(model.peft_config)})")
        layers = self._adapter_layers(model)
        assert self._layers is not None
        fast = self._layers[2]  # None: not yet checked on this attached set
        if fast is not False:
            fast = fast_switch(layers, name, verify=fast is None)
            self._layers = (model, layers, fast)
        if fast:
            model.base_model.active_adapter = name
        else:
            model.set_adapter(name, inference_mode=True)  # slower (walks the model), the same result

    def _adapter_layers(self, model: Any) -> list[Any]:
        """The adapter layers and head copies of `model`, found once per attached set (attach/detach reset it);
        the LoRA layers among them get the sliced mixed-batch path then."""
        from peft.tuners.tuners_utils import BaseTunerLayer
        from peft.utils import AuxiliaryTrainingWrapper

        if self._layers is None or self._layers[0] is not model:
            found = [m for m in model.modules() if isinstance(m, (BaseTunerLayer, AuxiliaryTrainingWrapper))]
            install_contiguous(found)  # mixed batches: each adapter's adjacent rows as one slice (mixed.py)
            install_fused(found)  # one adapter: its update as one addmm (fused.py)
            self._layers = (model, found, None)
        return self._layers[1]

    def init_from(self, model: Any, folder: Path, adapters: Sequence[str]) -> None:
        """Start every adapter from a saved (multilingual) adapter."""
        from peft.utils import load_peft_weights, set_peft_model_state_dict

        if not (Path(folder) / WEIGHTS).is_file():
            raise FileNotFoundError(f"{folder}: no {WEIGHTS} to start from (config key: init_from)")
        weights = load_peft_weights(str(folder), device="cpu")
        for adapter in [a for a in adapters if a in model.peft_config] or [DEFAULT]:  # one set of weights: "default"
            set_peft_model_state_dict(model, weights, adapter_name=adapter)

    def save(self, model: Any, folder: Path, adapter: str | None, head: TaskHead) -> None:  # manifest: nothing to add
        xft_peft.save_peft_files(model, adapter or DEFAULT, folder)

    # ----------------------------------------------------------------------------------------- inference
    def attach(self, model: Any, folder: Path, name: str, head: TaskHead) -> Any:
        """All or nothing (xft_peft.attach_package): both files are read and checked before the model changes; the
        adapter is then added, every tensor of the package checked against the adapter's own parameters, key for key
        and shape for shape, and only then loaded. On any failure the model is as it was."""
        from peft import LoraConfig

        config, weights = xft_peft.read_package(Path(folder), LoraConfig, what="LoRA", check=_check_safe_init)
        peft_model = xft_peft.attach_package(model, name, config, weights, Path(folder), detach=self.detach)
        self._layers = None  # new adapter layers may have been injected
        return peft_model

    def detach(self, model: Any, name: str) -> Any:
        self._layers = None
        self._scales.pop(name, None)
        return xft_peft.remove_adapter(model, name)

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
        return xft_peft.base_only(model)

    def route(self, model: Any, names: Sequence[str]) -> dict[str, list[Any]]:
        """Per-row adapter names for peft; rows of one adapter that come adjacent (the router groups them) run as
        one slice of the batch in every LoRA layer (mixed.py) instead of peft's gather and scatter."""
        self._adapter_layers(model)
        return {"adapter_names": ["__base__" if n == BASE_ADAPTER else n for n in names]}

    def combine(self, model: Any, weights: dict[str, float], name: str) -> Any:
        """A new adapter `name` whose update is the weighted sum of the attached adapters' (combine.py)."""
        from xft_lora.combine import combine

        model = combine(model, weights, name)
        self._layers = None  # new adapter layers
        return model

    def merge(self, model: Any, adapter: str, language: str | None = None) -> Any:
        """peft's merge_and_unload of `adapter` alone (at the scale `scale` set), its head copy (`modules_to_save`)
        put in place of the base's head; every other attached adapter is dropped."""
        if adapter not in getattr(model, "peft_config", {}):
            raise KeyError(f"lora: no adapter '{adapter}' attached (attached: {', '.join(getattr(model, 'peft_config', {}))})")
        model.set_adapter(adapter, inference_mode=True)  # modules_to_save unloads the active adapter's copy
        return _unwrapped(model.merge_and_unload(adapter_names=[adapter]))

    def leftovers(self, model: Any) -> list[str]:
        return xft_peft.leftovers(model)


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


def _unwrapped(model: Any) -> Any:
    """The merged model without what peft leaves on it (its config attribute), in eval mode."""
    if "peft_config" in vars(model):
        del model.peft_config
    return model.eval()


# ------------------------------------------------------------------------------------------- attaching
_SAFE_INIT = (True, False, "gaussian")  # other initialisations (pissa, olora, corda, loftq, ...) rewrite base weights


def _check_safe_init(config: Any, folder: Path) -> None:
    """Refuse a LoRA whose loading would change the base model itself, which every adapter on a served base shares."""
    if config.init_lora_weights not in _SAFE_INIT or config.layer_replication:
        raise ValueError(f"{folder / CONFIG}: init_lora_weights={config.init_lora_weights!r} / layer_replication="
                         f"{config.layer_replication!r} change the base model's own weights or layers, which every "
                         "adapter on a served base shares; convert the adapter to plain LoRA first")
