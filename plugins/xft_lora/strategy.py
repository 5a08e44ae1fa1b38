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
from xft_lora.mixed import install as install_contiguous
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
        self._layers: tuple[Any, list[Any]] | None = None  # (model, its adapter layers) for `_switch`

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
        if self._training:
            if model.active_adapter == name:
                return
            model.set_adapter(name)
            _make_all_trainable(model, list(model.peft_config))
        else:
            self._switch(model, name)

    def _switch(self, model: Any, name: str) -> None:
        """Make `name` the active adapter without peft's `set_adapter`, which walks every module of the model and
        re-sets requires_grad on each adapter tensor (about 4 ms on Gemma 3 270M): at inference nothing trains, so
        only the active name changes, on the adapter layers found once per attached set (about 130 on that model).
        Always done, even when peft's model-level name already matches: adding an adapter moves the head copy
        (modules_to_save) to the new one without changing that name."""
        from peft.utils import AuxiliaryTrainingWrapper

        if name not in model.peft_config:
            raise KeyError(f"lora: no adapter '{name}' attached (attached: {', '.join(model.peft_config)})")
        # what peft's set_adapter leaves, less the requires_grad flags; written into each layer's __dict__, where
        # nn.Module.__setattr__ would put it after checking parameters, buffers and submodules (~1 us a layer)
        for module in self._adapter_layers(model):
            if isinstance(module, AuxiliaryTrainingWrapper):  # the head copy (modules_to_save)
                wanted = module.check_set_adapter(name)
                module.__dict__["_active_adapter"] = wanted if wanted in module._adapters else []
            else:
                module.__dict__["_active_adapter"] = [name]
        model.base_model.active_adapter = name

    def _adapter_layers(self, model: Any) -> list[Any]:
        """The adapter layers and head copies of `model`, found once per attached set (attach/detach reset it);
        the LoRA layers among them get the sliced mixed-batch path then."""
        from peft.tuners.tuners_utils import BaseTunerLayer
        from peft.utils import AuxiliaryTrainingWrapper

        if self._layers is None or self._layers[0] is not model:
            found = [m for m in model.modules() if isinstance(m, (BaseTunerLayer, AuxiliaryTrainingWrapper))]
            install_contiguous(found)  # mixed batches: each adapter's adjacent rows as one slice (mixed.py)
            self._layers = (model, found)
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
        save_peft_files(model, adapter or DEFAULT, folder)

    # ----------------------------------------------------------------------------------------- inference
    def attach(self, model: Any, folder: Path, name: str, head: TaskHead) -> Any:
        """All or nothing: both files are read and checked before the model changes; the adapter is then added
        (on the bare base, peft injects its layers in place), every tensor of the package checked against the
        adapter's own parameters, key for key and shape for shape, and only then loaded. On any failure the new
        adapter is deleted again, and a PeftModel made here is unwrapped back to the untouched base."""
        from peft import PeftModel, get_peft_model

        folder = Path(folder)
        config, weights = _read_lora(folder)
        created = not isinstance(model, PeftModel)
        flags = {p: p.requires_grad for p in model.parameters()} if created else {}
        peft_model = None if created else model
        try:
            if peft_model is None:
                peft_model = get_peft_model(model, config, adapter_name=name)  # injects into `model` in place
            else:
                peft_model.add_adapter(name, config)
            _load_exactly(peft_model, name, weights, folder)
        except BaseException:
            if peft_model is not None and name in peft_model.peft_config:
                peft_model = self.detach(peft_model, name)  # the last adapter out unwraps a PeftModel made here
            if created:
                _strip_lora(model)  # whatever a failed injection left in the base
                for parameter, flag in flags.items():
                    parameter.requires_grad_(flag)
            raise
        peft_model.eval()
        self._layers = None  # new adapter layers may have been injected
        return peft_model

    def detach(self, model: Any, name: str) -> Any:
        model.delete_adapter(name)
        self._layers = None
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
        """Per-row adapter names for peft; rows of one adapter that come adjacent (the router groups them) run as
        one slice of the batch in every LoRA layer (mixed.py) instead of peft's gather and scatter."""
        self._adapter_layers(model)
        return {"adapter_names": ["__base__" if n == BASE_ADAPTER else n for n in names]}

    def merge(self, model: Any, adapter: str, language: str | None = None) -> Any:
        """peft's merge_and_unload of `adapter` alone (at the scale `scale` set), its head copy (`modules_to_save`)
        put in place of the base's head; every other attached adapter is dropped."""
        if adapter not in getattr(model, "peft_config", {}):
            raise KeyError(f"lora: no adapter '{adapter}' attached (attached: {', '.join(getattr(model, 'peft_config', {}))})")
        model.set_adapter(adapter, inference_mode=True)  # modules_to_save unloads the active adapter's copy
        return _unwrapped(model.merge_and_unload(adapter_names=[adapter]))


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


def save_peft_files(model: Any, name: str, folder: Path, state: dict[str, Any] | None = None) -> None:
    """peft's own two files for adapter `name` (its weights, or `state`, and its config in inference mode), so
    plain `PeftModel.from_pretrained(base, folder)` loads them."""
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    if state is None:
        state = get_peft_model_state_dict(model, adapter_name=name)
    state = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    save_file(state, str(Path(folder) / WEIGHTS), metadata={"format": "pt"})
    config = copy.deepcopy(model.peft_config[name])
    config.inference_mode = True
    config.save_pretrained(str(folder))


def _unwrapped(model: Any) -> Any:
    """The merged model without what peft leaves on it (its config attribute), in eval mode."""
    if "peft_config" in vars(model):
        del model.peft_config
    return model.eval()


def _make_all_trainable(model: Any, names: Sequence[str]) -> None:
    """peft's set_adapter freezes inactive adapters; keep every adapter's parameters in the optimizer (an
    inactive one simply gets no gradient), so the set of trainable tensors never changes."""
    markers = tuple(f".{n}." for n in names)
    for name, parameter in model.named_parameters():
        if any(m in name for m in markers):
            parameter.requires_grad = True


# ------------------------------------------------------------------------------------------- attaching
_SAFE_INIT = (True, False, "gaussian")  # other initialisations (pissa, olora, corda, loftq, ...) rewrite base weights


def _read_lora(folder: Path) -> tuple[Any, dict[str, Any]]:
    """The package's LoraConfig (inference mode) and tensors, read without touching any model; errors name the file."""
    from peft import LoraConfig, PeftConfig
    from safetensors.torch import load_file

    for file in (CONFIG, WEIGHTS):
        if not (folder / file).is_file():
            raise FileNotFoundError(f"{folder / file}: missing (a LoRA package holds {CONFIG} and {WEIGHTS})")
    try:
        config = PeftConfig.from_pretrained(str(folder))
    except Exception as exc:
        raise ValueError(f"{folder / CONFIG}: not a readable peft config ({type(exc).__name__}: {exc})") from None
    if not isinstance(config, LoraConfig):
        raise ValueError(f"{folder / CONFIG}: peft type {getattr(config, 'peft_type', '?')}, not LORA")
    if config.init_lora_weights not in _SAFE_INIT or config.layer_replication:
        raise ValueError(f"{folder / CONFIG}: init_lora_weights={config.init_lora_weights!r} / layer_replication="
                         f"{config.layer_replication!r} change the base model's own weights or layers, which every "
                         "adapter on a served base shares; convert the adapter to plain LoRA first")
    config.inference_mode = True
    try:
        weights = load_file(str(folder / WEIGHTS), device="cpu")
    except Exception as exc:
        raise ValueError(f"{folder / WEIGHTS}: not a readable safetensors file ({type(exc).__name__}: {exc})") from None
    return config, weights


def _load_exactly(model: Any, name: str, weights: dict[str, Any], folder: Path) -> None:
    """Load `weights` into adapter `name` only if they are exactly its parameters: no tensor missing, none of
    another shape, none extra. peft alone would load an extra key that names a base weight into the base (changing
    what every other adapter computes) and leave a missing one at its initial value (a silently different adapter)."""
    import torch
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

    expected = get_peft_model_state_dict(model, adapter_name=name, save_embedding_layers=False)
    if set(weights) - set(expected):
        # a copy of a base tensor equal to it (peft saves embeddings beside embedding LoRA) changes nothing: skipped
        own = model.state_dict()
        weights = {k: v for k, v in weights.items()
                   if k in expected or not (k in own and own[k].shape == v.shape and torch.equal(own[k].cpu(), v))}
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    shapes = sorted(k for k in set(expected) & set(weights) if tuple(weights[k].shape) != tuple(expected[k].shape))
    kinds = sorted(k for k, v in weights.items() if not v.is_floating_point())
    problems = [f"{len(found)} {what} (first: {found[0]}{detail(found[0])})" for what, found, detail in (
        ("tensors missing", missing, lambda k: ""),
        ("tensors this model has no place for", extra, lambda k: ""),
        ("tensors of the wrong shape", shapes,
         lambda k: f": {tuple(weights[k].shape)} in the file, {tuple(expected[k].shape)} in the model"),
        ("tensors that are not floating point", kinds, lambda k: f": {weights[k].dtype}"),
    ) if found]
    if problems:
        raise ValueError(f"{folder / WEIGHTS}: the weights do not fit this model: {'; '.join(problems)}")
    result = set_peft_model_state_dict(model, weights, adapter_name=name)
    left = [k for k in result.missing_keys if f".{name}." in k or k.endswith(f".{name}")]
    if left:
        raise ValueError(f"{folder / WEIGHTS}: {len(left)} of the adapter's tensors were not loaded (first: {left[0]})")


def _strip_lora(model: Any) -> None:
    """Put back every module a (failed) peft injection wrapped in `model`, and drop the config it left."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils import AuxiliaryTrainingWrapper

    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, (BaseTunerLayer, AuxiliaryTrainingWrapper)):
                setattr(module, child_name, child.get_base_layer())
    if "peft_config" in vars(model):
        del model.peft_config
