"""xft_peft: what every strategy built on peft needs, written once, for built-in and third-party plugins alike.

Not a plugin (it registers nothing): a support library beside the plugin API. A strategy plugin may import it as it
imports `xft_core.hooks` and `xft_core.util`; the engine never does (`xft_core` imports no peft, an import-linter
contract). It holds the all-or-nothing attach (`attach_package`), the exact load that refuses a package whose tensors
are not exactly the adapter's (`load_exactly`), reading a package without touching a model (`read_package`), saving
peft's own two files (`save_peft_files`), and wrapping a model with one adapter per language (`wrap`). Every
function imports peft when called, so importing xft_peft costs nothing until a strategy uses it.

Example (the heart of a strategy's `attach`, as `xft_lora` and the example plugin `xft_ia3` write it)::

    from peft import IA3Config
    from xft_peft import attach_package, read_package

    def attach(self, model, folder, name, head):
        config, weights = read_package(Path(folder), IA3Config, what="IA3")
        return attach_package(model, name, config, weights, Path(folder), detach=self.detach)
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any, Callable, ContextManager, Sequence

__all__ = ["CONFIG", "DEFAULT", "TASK_TYPES", "WEIGHTS", "attach_package", "base_only", "load_exactly",
           "leftovers", "make_all_trainable", "read_package", "remove_adapter", "save_peft_files", "strip_peft", "wrap"]

DEFAULT = "default"  # peft's adapter name for a single set of weights
WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"
TASK_TYPES = {  # xft head kinds (TaskHead.model_kind) -> peft TaskType names (heads of other kinds get no task type)
    "sequence-classification": "SEQ_CLS",
    "token-classification": "TOKEN_CLS",
    "causal-lm": "CAUSAL_LM",
    "seq2seq": "SEQ_2_SEQ_LM",
}


# ------------------------------------------------------------------------------------------------ training
def wrap(model: Any, config: Any, adapters: Sequence[str] | None) -> Any:
    """`model` as a PeftModel with one adapter per name (each its own copy of `config`; none: peft's "default"),
    the first active, every adapter's tensors trainable."""
    from peft import get_peft_model

    names = list(adapters) if adapters else [DEFAULT]
    peft_model = get_peft_model(model, copy.deepcopy(config), adapter_name=names[0])
    for name in names[1:]:
        peft_model.add_adapter(name, copy.deepcopy(config))
    peft_model.set_adapter(names[0])
    make_all_trainable(peft_model, names)
    return peft_model


def make_all_trainable(model: Any, names: Sequence[str]) -> None:
    """peft's set_adapter freezes inactive adapters; keep every adapter's tensors in the optimizer (an inactive one
    simply gets no gradient), so the set of trainable tensors, and so what checkpoints save by name, never changes."""
    markers = tuple(f".{n}" for n in names)
    for name, parameter in model.named_parameters():
        if any(name.endswith(m) or f"{m}." in name for m in markers):
            parameter.requires_grad = True


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


# ------------------------------------------------------------------------------------------------ packages
def read_package(folder: Path, config_type: type, *, what: str,
                 check: Callable[[Any, Path], None] | None = None) -> tuple[Any, dict[str, Any]]:
    """The package's peft config (of `config_type`, in inference mode) and its tensors, read without touching any
    model; every error names the file. `what` names the kind in messages ("LoRA"); `check(config, folder)` may refuse
    a config this strategy cannot serve."""
    from peft import PeftConfig
    from safetensors.torch import load_file

    folder = Path(folder)
    for file in (CONFIG, WEIGHTS):
        if not (folder / file).is_file():
            raise FileNotFoundError(f"{folder / file}: missing (a {what} package holds {CONFIG} and {WEIGHTS})")
    try:
        config = PeftConfig.from_pretrained(str(folder))
    except Exception as exc:
        raise ValueError(f"{folder / CONFIG}: not a readable peft config ({type(exc).__name__}: {exc})") from None
    if not isinstance(config, config_type):
        raise ValueError(f"{folder / CONFIG}: peft type {getattr(config, 'peft_type', '?')}, not {what}")
    if check is not None:
        check(config, folder)
    config.inference_mode = True
    try:
        weights = load_file(str(folder / WEIGHTS), device="cpu")
    except Exception as exc:
        raise ValueError(f"{folder / WEIGHTS}: not a readable safetensors file ({type(exc).__name__}: {exc})") from None
    if not weights:
        raise ValueError(f"{folder / WEIGHTS}: holds no tensors")
    return config, weights


def load_exactly(model: Any, name: str, weights: dict[str, Any], folder: Path) -> None:
    """Load `weights` into adapter `name` only if they are exactly its tensors: none missing, none of another shape,
    none extra, all floating point. peft alone would load an extra key that names a base weight into the base
    (changing what every other adapter computes) and leave a missing one at its initial value (a silently different
    adapter)."""
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
        raise ValueError(f"{Path(folder) / WEIGHTS}: the weights do not fit this model: {'; '.join(problems)}")
    result = set_peft_model_state_dict(model, weights, adapter_name=name)
    left = [k for k in result.missing_keys if f".{name}." in k or k.endswith(f".{name}")]
    if left:
        raise ValueError(f"{Path(folder) / WEIGHTS}: {len(left)} of the adapter's tensors were not loaded (first: {left[0]})")


# ------------------------------------------------------------------------------------------------ inference
def attach_package(model: Any, name: str, config: Any, weights: dict[str, Any], folder: Path, *,
                   detach: Callable[[Any, str], Any] | None = None,
                   load: Callable[[Any, str, dict[str, Any], Path], None] = load_exactly) -> Any:
    """Adapter `name` (`config`, `weights`: see `read_package`) added to `model`, all or nothing, in eval mode.

    On the bare base peft injects its layers in place and a PeftModel is returned; on a PeftModel the adapter is added
    beside the others. `load(peft_model, name, weights, folder)` then loads the tensors (by default `load_exactly`).
    On any failure the new adapter is removed again (through `detach`, the strategy's own, so it can forget what it
    keeps per adapter; by default `remove_adapter`), a PeftModel made here is unwrapped, whatever a failed injection
    left in the base is put back, and every parameter's requires_grad is what it was."""
    from peft import PeftModel, get_peft_model

    detach = detach or remove_adapter
    created = not isinstance(model, PeftModel)
    if not created and name in model.peft_config:
        raise ValueError(f"an adapter named '{name}' is already attached (attached: {', '.join(model.peft_config)})")
    flags = {p: p.requires_grad for p in model.parameters()} if created else {}
    peft_model = None if created else model
    try:
        if peft_model is None:
            peft_model = get_peft_model(model, config, adapter_name=name)  # injects into `model` in place
        else:
            peft_model.add_adapter(name, config)
        load(peft_model, name, weights, Path(folder))
    except BaseException:
        if peft_model is not None and name in peft_model.peft_config:
            peft_model = detach(peft_model, name)  # the last adapter out unwraps a PeftModel made here
        if created:
            strip_peft(model)
            for parameter, flag in flags.items():
                parameter.requires_grad_(flag)
        raise
    return peft_model.eval()


def remove_adapter(model: Any, name: str) -> Any:
    """Delete adapter `name`; with none left, the bare base (peft cannot load into or run a PeftModel without
    adapters), else the PeftModel with a remaining adapter active if `name` was."""
    model.delete_adapter(name)
    if not model.peft_config:
        base = model.unload()
        if "peft_config" in vars(base):
            del base.peft_config
        return base
    if model.active_adapter not in model.peft_config:
        model.set_adapter(next(iter(model.peft_config)), inference_mode=True)
    return model


def strip_peft(model: Any) -> None:
    """Put back every module a (failed) peft injection wrapped in `model`, and drop the config it left."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils import AuxiliaryTrainingWrapper

    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, (BaseTunerLayer, AuxiliaryTrainingWrapper)):
                setattr(module, child_name, child.get_base_layer())
    if "peft_config" in vars(model):
        del model.peft_config


def base_only(model: Any) -> ContextManager[Any]:
    """The bare base for the block's duration (peft's `disable_adapter`); a model without adapters as it is."""
    from peft import PeftModel

    return model.disable_adapter() if isinstance(model, PeftModel) else contextlib.nullcontext()


def leftovers(model: Any) -> list[str]:
    """What of peft is still in `model` (`Strategy.leftovers`, asked after `merge`): the names of peft's layers and
    wrappers, and its config attribute; empty for a plain model."""
    from peft import PeftModel
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils import AuxiliaryTrainingWrapper

    found = [name or "the model itself" for name, module in model.named_modules()
             if isinstance(module, (PeftModel, BaseTunerLayer, AuxiliaryTrainingWrapper))]
    return found + (["attribute peft_config"] if "peft_config" in vars(model) else [])
