"""The `prompt-tuning` strategy: a trained soft prompt in front of every input, the base model frozen (peft).

Prompt tuning (Lester et al. 2021) learns `num_virtual_tokens` input embeddings and nothing else (plus a new task
head where the head has one); Tu et al. (EMNLP 2022 Findings) find it transfers across languages much better than
fine-tuning with 0.1-0.3% of the parameters, because the frozen multilingual model cannot overfit the training
language. Packages are peft's own files, so plain `peft.PeftModel.from_pretrained(base, folder)` loads them.

What peft cannot do here, and what the strategy does instead:
- one soft prompt per row in one forward: there is none (`mixed_batch` False, `route` refuses); the router runs
  one forward per adapter, and several packages can sit on one base (`attach` / `detach`, like LoRA's);
- `disable_adapter` for prompt learning assumes a generation model and would leave a trained head on: `base_only`
  runs the base model's own forward with every head copy switched back to the original;
- a soft prompt adds tokens, it does not change weights, so it has no interpolation toward the base (`scale`).

A plugin of its own (entry point `xft_prompt_tuning`): it shares no code with `xft_lora`, only peft's files
through `xft_peft`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager, Iterator, Sequence

from xft_core.hooks import RecipeSpec, RecipeTask, StrategySpec, TaskHead, hookimpl
from xft_peft import CONFIG, DEFAULT, WEIGHTS, save_peft_files

PROMPT_KEY = "prompt_embeddings"  # peft's key for the soft prompt in adapter_model.safetensors
TASK_TYPES = {  # xft head kinds -> peft TaskType names
    "prompt-classification": "SEQ_CLS",
    "sequence-classification": "SEQ_CLS",
    "causal-lm": "CAUSAL_LM",
    "token-classification": "TOKEN_CLS",
    "seq2seq": "SEQ_2_SEQ_LM",
}


@dataclass(frozen=True, kw_only=True)
class PromptTuningOptions:
    num_virtual_tokens: int = 20  # soft-prompt length; about 0.1% of a 270M model's parameters at 20
    init_text: str = ""  # "": random init; else the soft prompt starts as the embeddings of this text's tokens

    def __post_init__(self) -> None:
        n = self.num_virtual_tokens
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"prompt-tuning: num_virtual_tokens must be a positive integer, got {n!r}")
        if not isinstance(self.init_text, str):
            raise ValueError(f"prompt-tuning: init_text must be a string ('' for random init), got {self.init_text!r}")


class PromptTuning:
    mixed_batch = False  # peft prepends one soft prompt to the whole batch

    def __init__(self, options: PromptTuningOptions):
        self.options = options
        self._training = False  # set by `apply`: activation keeps the trained head copies trainable

    # ------------------------------------------------------------------------------------------ training
    def config(self, model: Any, head: TaskHead) -> Any:
        """The peft PromptTuningConfig for this model and head, after refusing what cannot work."""
        from peft import PromptTuningConfig

        kind = head.model_kind
        if kind not in TASK_TYPES:
            raise ValueError(f"prompt-tuning: task head kind '{kind}' has no peft task type; prompt tuning supports "
                             f"{', '.join(TASK_TYPES)} (config key: task)")
        _refuse_unsupported(model, kind)
        head_modules = head.head_modules(model)
        text = self.options.init_text
        return PromptTuningConfig(
            task_type=TASK_TYPES[kind],
            num_virtual_tokens=self.options.num_virtual_tokens,
            prompt_tuning_init="TEXT" if text else "RANDOM",
            prompt_tuning_init_text=text or None,
            tokenizer_name_or_path=_tokenizer_folder(model) if text else None,
            modules_to_save=list(head_modules) or None,
        )

    def apply(self, model: Any, head: TaskHead, adapters: Sequence[str] | None) -> Any:
        from peft import get_peft_model

        if adapters:
            raise ValueError("prompt-tuning trains one soft prompt for all languages (config key: adapters: single)")
        peft_model = get_peft_model(model, self.config(model, head), adapter_name=DEFAULT)
        self._training = True
        return peft_model

    def activate(self, model: Any, adapter: str | None, language: str | None = None) -> None:
        if adapter in (None, DEFAULT) or model.active_adapter == adapter:
            return
        if adapter not in model.peft_config:
            raise KeyError(f"prompt-tuning: adapter '{adapter}' is not attached (attached: {', '.join(model.peft_config)})")
        model.set_adapter(adapter, inference_mode=not self._training)

    def init_from(self, model: Any, folder: Path, adapters: Sequence[str]) -> None:
        """Start the soft prompt (and head copies) from a saved prompt-tuning package (config key: init_from)."""
        from peft.utils import set_peft_model_state_dict

        config, weights = _read_package(Path(folder), _token_dim(model), what="init_from")
        ours = model.peft_config[model.active_adapter]
        if config.num_virtual_tokens != ours.num_virtual_tokens:
            raise ValueError(f"{folder}: soft prompt of {config.num_virtual_tokens} virtual tokens; this run has "
                             f"{ours.num_virtual_tokens} (strategy_options.num_virtual_tokens; config key: init_from)")
        set_peft_model_state_dict(model, weights, adapter_name=model.active_adapter)

    def save(self, model: Any, folder: Path, adapter: str | None, head: TaskHead) -> None:
        save_peft_files(model, adapter or model.active_adapter, folder)

    # ----------------------------------------------------------------------------------------- inference
    def attach(self, model: Any, folder: Path, name: str, head: TaskHead) -> Any:
        from peft import PeftModel

        folder = Path(folder)
        _read_package(folder, _token_dim(model), what="attach")  # a truncated or foreign package fails here
        if isinstance(model, PeftModel):
            if name in model.peft_config:
                raise ValueError(f"prompt-tuning: an adapter named '{name}' is already attached")
            try:
                model.load_adapter(str(folder), adapter_name=name, is_trainable=False)
            except BaseException:
                if name in model.peft_config:
                    model.delete_adapter(name)
                raise
            return model
        _refuse_unsupported(model, head.model_kind)
        frozen = {n: p.requires_grad for n, p in model.named_parameters()}
        try:
            return PeftModel.from_pretrained(model, str(folder), adapter_name=name, is_trainable=False)
        except BaseException:
            _strip_head_copies(model)
            for n, p in model.named_parameters():
                p.requires_grad_(frozen.get(n, p.requires_grad))
            raise

    def detach(self, model: Any, name: str) -> Any:
        model.delete_adapter(name)
        if not model.peft_config:
            # a PeftModel without adapters cannot run or load: back to the bare base, head copies removed
            base = model.base_model
            _strip_head_copies(base)
            return base
        if model.active_adapter not in model.peft_config:
            model.set_adapter(next(iter(model.peft_config)), inference_mode=True)
        return model

    def scale(self, model: Any, adapter: str, factor: float) -> None:
        if factor == 1.0:  # the adapter as trained
            return
        raise NotImplementedError(
            f"prompt-tuning: cannot scale adapter '{adapter}' by {factor:g}: a soft prompt adds input tokens and changes "
            "no weight, so there is no interpolation toward the base model (WiSE-FT). Evaluate the base itself "
            "(include_base / adapter '__base__') and leave scale unset for prompt-tuning packages."
        )

    def base_only(self, model: Any) -> ContextManager[Any]:
        return _base_only(model)

    def route(self, model: Any, names: Sequence[str]) -> dict[str, list[Any]]:
        raise NotImplementedError("prompt-tuning cannot mix soft prompts within one forward (mixed_batch is False); "
                                  "run one forward per adapter after activate()")

    def merge(self, model: Any, adapter: str, language: str | None = None) -> Any:
        raise NotImplementedError(
            f"prompt-tuning: adapter '{adapter}' cannot be merged into the model's weights: a soft prompt is "
            f"{self.options.num_virtual_tokens} trained input embeddings put in front of every input, not a change of "
            "any weight. Serve the package with xft (xft serve / xft predict), or load it with "
            "peft.PeftModel.from_pretrained(base, package) where plain peft is wanted."
        )


# ---------------------------------------------------------------------------------------------- helpers
def _refuse_unsupported(model: Any, kind: str) -> None:
    """Refuse up front the combinations where the soft prompt (which arrives as inputs_embeds) cannot work."""
    config = getattr(model, "config", None)
    if kind == "prompt-classification" and getattr(model, "masked", False):
        raise ValueError(
            "prompt-tuning with task prompt-classification needs a decoder: on an encoder (masked LM) the label words "
            "are scored at the mask token, found from input_ids, and a soft prompt replaces input_ids by inputs_embeds. "
            "Use a decoder model, or strategy lora on this encoder."
        )
    if kind == "token-classification":
        raise ValueError(
            "prompt-tuning with task token-classification: peft prepends the soft prompt to the token states, so the model "
            "returns num_virtual_tokens more tag scores than the words have labels (training fails, predictions shift "
            "onto the wrong words). Use strategy lora for tagging."
        )
    if kind == "sequence-classification" and type(model).__name__.endswith("ForSequenceClassification") and config is not None:
        from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

        if config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES or getattr(config, "is_encoder_decoder", False):
            raise ValueError(
                f"prompt-tuning with task sequence-classification on {type(model).__name__}: transformers finds the last "
                "real token of a decoder from input_ids, which a soft prompt replaces by inputs_embeds, so rows would be "
                "read at padding. Set task_options.pooling: mean, or use task prompt-classification (answers at the "
                "last real token from the attention mask), or an encoder."
            )


def _tokenizer_folder(model: Any) -> str:
    """The folder the model was loaded from, which holds its tokenizer (for `init_text`)."""
    from transformers import AutoTokenizer

    config = getattr(model, "config", None)
    path = getattr(config, "_name_or_path", "") or getattr(model, "name_or_path", "")
    if not path:
        raise ValueError("prompt-tuning: init_text needs the model's tokenizer, but the model does not say which folder "
                         "it was loaded from (config._name_or_path is empty). Set strategy_options.init_text: '' "
                         "(random init) or load the model from a local folder with its tokenizer.")
    try:
        AutoTokenizer.from_pretrained(str(path))
    except Exception as exc:
        raise ValueError(f"prompt-tuning: init_text needs the model's tokenizer, which is not loadable from {path} "
                         f"(config._name_or_path; {type(exc).__name__}: {exc}). Set strategy_options.init_text: '' "
                         "(random init) or load the model from a folder that holds its tokenizer.") from None
    return str(path)


def _token_dim(model: Any) -> int:
    embeddings = getattr(model, "word_embeddings", None)  # a PeftModel's; else the bare base's
    if embeddings is None:
        embeddings = model.get_input_embeddings()
    return int(embeddings.weight.shape[1])


def _read_package(folder: Path, token_dim: int, *, what: str) -> tuple[Any, dict[str, Any]]:
    """(peft config, weights) of a prompt-tuning package, checked against a model of width `token_dim`."""
    from peft import PeftConfig
    from safetensors.torch import load_file

    if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
        raise FileNotFoundError(f"{folder}: missing {CONFIG} or {WEIGHTS} (a prompt-tuning package; {what})")
    try:
        config = PeftConfig.from_pretrained(str(folder))
        weights = load_file(str(folder / WEIGHTS), device="cpu")
    except Exception as exc:
        raise ValueError(f"{folder}: cannot read the prompt-tuning package ({type(exc).__name__}: {exc})") from None
    kind = str(getattr(config.peft_type, "value", config.peft_type))
    if kind != "PROMPT_TUNING":
        raise ValueError(f"{folder}: a {kind} package, not prompt tuning ({what} of strategy prompt-tuning)")
    prompt = weights.get(PROMPT_KEY)
    rows = config.num_virtual_tokens * (config.num_transformer_submodules or 1)
    if prompt is None or tuple(prompt.shape) != (rows, token_dim):
        found = "none" if prompt is None else tuple(prompt.shape)
        raise ValueError(f"{folder}: {WEIGHTS} holds soft prompt {found}; expected ({rows}, {token_dim}) for "
                         f"{config.num_virtual_tokens} virtual tokens on this model")
    return config, weights


def _strip_head_copies(model: Any) -> None:
    """Put every module peft wrapped as `modules_to_save` back as it was (the base's own head)."""
    from peft.utils.other import AuxiliaryTrainingWrapper

    wrapped = [(n, m) for n, m in model.named_modules() if isinstance(m, AuxiliaryTrainingWrapper)]
    for name, wrapper in wrapped:
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, leaf, wrapper.original_module)


@contextlib.contextmanager
def _base_only(model: Any) -> Iterator[Any]:
    """Run the base model's own forward and generate (no soft prompt), every head copy switched back to the original.

    peft's `disable_adapter` swaps forward too, but also swaps `prepare_inputs_for_generation`, which classifiers
    do not have (it then fails), and leaves `modules_to_save` copies on."""
    from peft import PeftModel
    from peft.utils.other import AuxiliaryTrainingWrapper

    if not isinstance(model, PeftModel):
        yield model
        return
    base = model.base_model
    wrappers = [m for m in base.modules() if isinstance(m, AuxiliaryTrainingWrapper)]
    was_disabled = [w.disable_adapters for w in wrappers]
    swapped = [name for name in ("forward", "generate") if hasattr(base, name)]
    own = {name: model.__dict__[name] for name in swapped if name in model.__dict__}
    try:
        for name in swapped:  # instance attributes win over the class's methods (nn.Module calls self.forward)
            setattr(model, name, getattr(base, name))
        for wrapper in wrappers:
            wrapper.enable_adapters(False)
        yield model
    finally:
        for name in swapped:
            if name in own:
                setattr(model, name, own[name])
            else:
                model.__dict__.pop(name, None)
        for wrapper, disabled in zip(wrappers, was_disabled):
            wrapper.enable_adapters(not disabled)


@hookimpl
def xft_strategies():
    yield StrategySpec(
        name="prompt-tuning",
        options=PromptTuningOptions,
        build=PromptTuning,
        description="Soft prompt tuning (peft): num_virtual_tokens trained input embeddings, base frozen, optional "
                    "init_text; ~0.1% of parameters, transfers across languages better than fine-tuning (Tu et al. 2022).",
        per_language=False,
        stackable=True,
    )


@hookimpl
def xft_transfer_recipes():
    def config(task: RecipeTask) -> dict[str, Any]:
        return {"task": "prompt-classification", "strategy": "prompt-tuning", "strategy_options": {"num_virtual_tokens": 20},
                "task_options": {"template": task.template, "label_words": dict(task.label_words)},
                "training": {"learning_rate": 3e-2}}

    yield RecipeSpec(name="prompt-tuning", config=config, default=True,
                     description="a soft prompt of 20 virtual tokens (base frozen), verbalizer scoring")
