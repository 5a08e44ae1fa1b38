"""Built-in strategy `lora`: low-rank adapters through peft, one shared adapter or one per language.

Adapters are saved in peft's own format (adapter_config.json + adapter_model.safetensors), so plain
`peft.PeftModel.from_pretrained(base, folder)` loads them; the task head trains alongside as a
`modules_to_save` module and travels inside the adapter file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

from xft_core.hooks.spec import hookimpl
from xft_core.hooks.descriptors import StrategySpec

# Projection names by model family, most specific first: Llama/Gemma/Qwen2/Mistral, BERT/XLM-R, T5/mT5, GPT-2.
AUTO_TARGETS: tuple[tuple[str, ...], ...] = (
    ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    ("query", "key", "value", "dense"),
    ("q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo"),
    ("c_attn", "c_proj", "c_fc"),
)


@dataclass(frozen=True, kw_only=True)
class LoraOptions:
    r: int = 8
    alpha: float = 16
    dropout: float = 0.0
    target_modules: list[str] | Literal["auto", "all-linear"] = "auto"
    use_dora: bool = False
    use_rslora: bool = False
    bias: Literal["none", "lora_only", "all"] = "none"
    # adapt only the top N transformer layers (0 = all): backward then stops at the lowest adapted layer,
    # which on a CPU cuts a training step by about the share of layers left out
    top_layers: int = 0

    def __post_init__(self):
        if self.top_layers < 0:
            raise ValueError(f"lora: top_layers must be >= 0 (0 = every layer), got {self.top_layers}")
        if self.r <= 0:
            raise ValueError(f"lora: r must be a positive integer, got {self.r}")
        if self.alpha <= 0:
            raise ValueError(f"lora: alpha must be positive, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"lora: dropout must be in [0, 1), got {self.dropout}")


def auto_target_modules(model: Any, exclude: Sequence[str] = ()) -> list[str]:
    """The attention and MLP projection names of this model's family (the first family whose names occur)."""
    import torch

    linear_names = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not any(name == e or name.startswith(e + ".") for e in exclude):
            linear_names.add(name.rsplit(".", 1)[-1])
    for family in AUTO_TARGETS:
        found = [n for n in family if n in linear_names]
        if len(found) >= 2:
            return found
    raise ValueError(
        "lora: target_modules 'auto' found no known projection names in this model "
        f"(linear layers: {', '.join(sorted(linear_names)[:12])}). Set strategy_options.target_modules."
    )


class Lora:
    def __init__(self, options: LoraOptions):
        self.options = options
        # peft runs rows of different adapters in one forward (adapter_names) for LoRA, not for DoRA
        self.mixed_batch = not options.use_dora

    def _config(self, model: Any, head: Any) -> Any:
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
            task_type=head.lora_task_type(),
        )

    def apply(self, model: Any, head: Any, languages: Sequence[str] | None) -> Any:
        from peft import get_peft_model

        import copy

        config = self._config(model, head)
        names = list(languages) if languages else ["default"]
        peft_model = get_peft_model(model, copy.deepcopy(config), adapter_name=names[0])
        for name in names[1:]:
            peft_model.add_adapter(name, copy.deepcopy(config))
        self._make_all_trainable(peft_model, names)
        peft_model.set_adapter(names[0])
        self._make_all_trainable(peft_model, names)
        return peft_model

    @staticmethod
    def _make_all_trainable(model: Any, names: Sequence[str]) -> None:
        # peft's set_adapter freezes inactive adapters; keep every adapter's parameters in the optimizer
        # (an inactive one simply gets no gradient), so the set of trainable tensors never changes.
        markers = tuple(f".{n}." for n in names)
        for name, parameter in model.named_parameters():
            if any(m in name for m in markers):
                parameter.requires_grad = True

    def activate(self, model: Any, language: str | None) -> None:
        name = language or "default"
        if model.active_adapter != name:
            model.set_adapter(name)
            self._make_all_trainable(model, list(model.peft_config))

    def init_from(self, model: Any, folder: Path, languages: Sequence[str]) -> None:
        """Start every language adapter from a saved (multilingual) adapter."""
        from peft.utils import load_peft_weights, set_peft_model_state_dict

        weights = load_peft_weights(str(folder), device="cpu")
        for language in languages:
            set_peft_model_state_dict(model, weights, adapter_name=language)

    def save(self, model: Any, folder: Path, language: str | None) -> None:
        import copy

        from peft.utils import get_peft_model_state_dict
        from safetensors.torch import save_file

        name = language or "default"
        state = get_peft_model_state_dict(model, adapter_name=name)
        state = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
        save_file(state, str(Path(folder) / "adapter_model.safetensors"), metadata={"format": "pt"})
        config = copy.deepcopy(model.peft_config[name])
        config.inference_mode = True
        config.save_pretrained(str(folder))

    def load(self, base_model: Any, folder: Path, name: str) -> Any:
        from peft import PeftModel

        if isinstance(base_model, PeftModel):
            base_model.load_adapter(str(folder), adapter_name=name, is_trainable=False)
            return base_model
        return PeftModel.from_pretrained(base_model, str(folder), adapter_name=name, is_trainable=False)


def _build(options: LoraOptions) -> Lora:
    return Lora(options)


@hookimpl
def xft_strategies():
    yield StrategySpec(
        name="lora",
        options=LoraOptions,
        build=_build,
        description="LoRA adapters (peft); r, alpha, dropout, target_modules (auto per family), DoRA, rsLoRA.",
        per_language=True,
        mixed_batch=True,
        stackable=True,
    )
