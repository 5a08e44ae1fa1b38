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

import contextlib
import copy
from pathlib import Path
from typing import Any, ContextManager, Sequence

from xft_core.hooks import TaskHead

from xft_ia3.options import IA3Options, auto_target_modules

DEFAULT = "default"  # peft's adapter name for a single set of weights
TASK_TYPES = {  # xft head kinds -> peft TaskType names (heads of other kinds get no task type)
    "sequence-classification": "SEQ_CLS",
    "token-classification": "TOKEN_CLS",
    "causal-lm": "CAUSAL_LM",
    "seq2seq": "SEQ_2_SEQ_LM",
}
WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"


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
        from peft import get_peft_model

        config = self.config(model, head)
        names = list(adapters) if adapters else [DEFAULT]
        peft_model = get_peft_model(model, copy.deepcopy(config), adapter_name=names[0])
        for name in names[1:]:
            peft_model.add_adapter(name, copy.deepcopy(config))
        peft_model.set_adapter(names[0])
        _make_all_trainable(peft_model, names)
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
            _make_all_trainable(model, list(model.peft_config))  # the set of trainable tensors never changes
        else:
            model.set_adapter(name, inference_mode=True)

    def init_from(self, model: Any, folder: Path, adapters: Sequence[str]) -> None:
        """Start every adapter from a saved package (config key `init_from`); the package must fit exactly."""
        _, weights = _read_ia3(Path(folder))
        for adapter in [a for a in adapters if a in model.peft_config] or [DEFAULT]:
            _load_exactly(model, adapter, weights, Path(folder))

    def save(self, model: Any, folder: Path, adapter: str | None, head: TaskHead) -> None:  # manifest: nothing to add
        from peft.utils import get_peft_model_state_dict
        from safetensors.torch import save_file

        name = adapter or DEFAULT
        if self._scales.get(name, 1.0) != 1.0:
            raise ValueError(f"ia3: adapter '{name}' is scaled by {self._scales[name]}; scale it back to 1 before saving")
        state = get_peft_model_state_dict(model, adapter_name=name)
        save_file({k: v.detach().to("cpu").contiguous() for k, v in state.items()}, str(Path(folder) / WEIGHTS),
                  metadata={"format": "pt"})
        config = copy.deepcopy(model.peft_config[name])
        config.inference_mode = True
        config.save_pretrained(str(folder))

    # ----------------------------------------------------------------------------------------- inference
    def attach(self, model: Any, folder: Path, name: str, head: TaskHead) -> Any:
        """All or nothing: both files are read and checked before the model changes; the adapter is then added and
        loaded only if the package's tensors are exactly its parameters (names and shapes). On any failure the
        adapter is deleted again and a PeftModel made here is unwrapped back to the untouched base."""
        from peft import PeftModel, get_peft_model

        folder = Path(folder)
        config, weights = _read_ia3(folder)
        if isinstance(model, PeftModel) and name in model.peft_config:
            raise ValueError(f"ia3: an adapter named '{name}' is already attached")
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
                _strip_peft(model)  # whatever a failed injection left in the base
                for parameter, flag in flags.items():
                    parameter.requires_grad_(flag)
            raise
        peft_model.eval()
        return peft_model

    def detach(self, model: Any, name: str) -> Any:
        model.delete_adapter(name)
        self._scales.pop(name, None)
        self._trained.pop(name, None)
        if not model.peft_config:
            # peft cannot load into or run a PeftModel without adapters: unwrap back to the bare base
            base = model.unload()
            if "peft_config" in vars(base):
                del base.peft_config
            return base
        if model.active_adapter not in model.peft_config:
            model.set_adapter(next(iter(model.peft_config)), inference_mode=True)
        return model

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
        from peft import PeftModel

        return model.disable_adapter() if isinstance(model, PeftModel) else contextlib.nullcontext()

    def route(self, model: Any, names: Sequence[str]) -> dict[str, list[Any]]:
        raise NotImplementedError("ia3: peft's IA3 layers run one adapter per forward; rows of different adapters "
                                  "cannot share one (mixed_batch is False)")


def _make_all_trainable(model: Any, names: Sequence[str]) -> None:
    """peft's set_adapter freezes inactive adapters; keep every adapter's tensors in the optimizer (an inactive one
    simply gets no gradient), so that checkpoints save and restore the same tensors by name."""
    markers = tuple(f".{n}" for n in names)
    for name, parameter in model.named_parameters():
        if any(name.endswith(m) or f"{m}." in name for m in markers):
            parameter.requires_grad = True


# ------------------------------------------------------------------------------------------- attaching
def _read_ia3(folder: Path) -> tuple[Any, dict[str, Any]]:
    """The package's IA3Config (inference mode) and tensors, read without touching any model; errors name the file."""
    from peft import IA3Config, PeftConfig
    from safetensors.torch import load_file

    for file in (CONFIG, WEIGHTS):
        if not (folder / file).is_file():
            raise FileNotFoundError(f"{folder / file}: missing (an IA3 package holds {CONFIG} and {WEIGHTS})")
    try:
        config = PeftConfig.from_pretrained(str(folder))
    except Exception as exc:
        raise ValueError(f"{folder / CONFIG}: not a readable peft config ({type(exc).__name__}: {exc})") from None
    if not isinstance(config, IA3Config):
        raise ValueError(f"{folder / CONFIG}: peft type {getattr(config, 'peft_type', '?')}, not IA3")
    config.inference_mode = True
    try:
        weights = load_file(str(folder / WEIGHTS), device="cpu")
    except Exception as exc:
        raise ValueError(f"{folder / WEIGHTS}: not a readable safetensors file ({type(exc).__name__}: {exc})") from None
    if not weights:
        raise ValueError(f"{folder / WEIGHTS}: holds no tensors")
    kinds = sorted(k for k, v in weights.items() if not v.is_floating_point())
    if kinds:
        raise ValueError(f"{folder / WEIGHTS}: {len(kinds)} tensors are not floating point (first: {kinds[0]})")
    return config, weights


def _load_exactly(model: Any, name: str, weights: dict[str, Any], folder: Path) -> None:
    """Load `weights` into adapter `name` only if they are exactly its tensors: none missing, none extra, none of
    another shape (peft alone would load an extra key naming a base weight into the base, and leave a missing one
    at its initial value: a silently different adapter)."""
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

    expected = get_peft_model_state_dict(model, adapter_name=name, save_embedding_layers=False)
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    shapes = sorted(k for k in set(expected) & set(weights) if tuple(weights[k].shape) != tuple(expected[k].shape))
    problems = [f"{len(found)} {what} (first: {found[0]}{detail(found[0])})" for what, found, detail in (
        ("tensors missing", missing, lambda k: ""),
        ("tensors this model has no place for", extra, lambda k: ""),
        ("tensors of the wrong shape", shapes,
         lambda k: f": {tuple(weights[k].shape)} in the file, {tuple(expected[k].shape)} in the model"),
    ) if found]
    if problems:
        raise ValueError(f"{folder / WEIGHTS}: the weights do not fit this model: {'; '.join(problems)}")
    set_peft_model_state_dict(model, weights, adapter_name=name)


def _strip_peft(model: Any) -> None:
    """Put back every module a (failed) peft injection wrapped in `model`, and drop the config it left."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils import AuxiliaryTrainingWrapper

    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, (BaseTunerLayer, AuxiliaryTrainingWrapper)):
                setattr(module, child_name, child.get_base_layer())
    if "peft_config" in vars(model):
        del model.peft_config
