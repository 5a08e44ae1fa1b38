"""Options of the `ia3` strategy and the modules it scales by default.

(IA)^3 (Liu et al., 2022) learns one vector per adapted layer: attention keys and values are multiplied by it on
their output, the feed-forward down-projection on its input. Vectors start at 1 (the base model exactly).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

# (attention projections scaled on their output, feed-forward projections scaled on their input) per model family,
# as suffixes of module names: Llama/Gemma/Qwen2/Mistral, BERT/XLM-R, T5/mT5.
AUTO_TARGETS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("k_proj", "v_proj"), ("down_proj",)),
    (("attention.self.key", "attention.self.value"), ("output.dense",)),
    (("k", "v"), ("wo",)),
)
NOT_FEEDFORWARD = ("attention.output.dense",)  # BERT's attention output ends like its feed-forward output


@dataclass(frozen=True, kw_only=True)
class IA3Options:
    # module names (or name suffixes, as peft matches them) whose output is scaled; "auto" picks them per family
    target_modules: Literal["auto"] | tuple[str, ...] = "auto"  # "auto" first: a plain string is not a list
    # the subset of target_modules scaled on their input instead (the feed-forward down-projection); with explicit
    # target_modules, list them here too
    feedforward_modules: tuple[str, ...] = ()

    def __post_init__(self):
        if self.target_modules != "auto":
            if not self.target_modules or not all(isinstance(m, str) and m for m in self.target_modules):
                raise ValueError(f"ia3: target_modules must be 'auto' or a non-empty list of module names, "
                                 f"got {self.target_modules!r}")
            missing = [m for m in self.feedforward_modules if m not in self.target_modules]
            if missing:
                raise ValueError(f"ia3: feedforward_modules must be a subset of target_modules; not in target_modules: "
                                 f"{', '.join(missing)}")
        elif self.feedforward_modules:
            raise ValueError("ia3: feedforward_modules needs explicit target_modules (with 'auto' both are chosen per "
                             "model family)")


def _ends(name: str, suffix: str) -> bool:
    return name == suffix or name.endswith("." + suffix)


def auto_target_modules(model: Any, exclude: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """(target module names, feed-forward module names) of this model, full names: the first family of AUTO_TARGETS
    whose attention projections occur; modules under `exclude` (the task head) are left out."""
    import torch

    linear = [name for name, module in model.named_modules()
              if isinstance(module, torch.nn.Linear) and not any(_ends(name, e) or f"{e}." in name for e in exclude)]
    for attention, feedforward in AUTO_TARGETS:
        scaled_output = [n for n in linear if any(_ends(n, s) for s in attention)]
        scaled_input = [n for n in linear if any(_ends(n, s) for s in feedforward)
                        and not any(_ends(n, s) for s in NOT_FEEDFORWARD)]
        if scaled_output and scaled_input:
            return scaled_output + scaled_input, scaled_input
    short = sorted({n.rsplit(".", 1)[-1] for n in linear})
    raise ValueError("ia3: target_modules 'auto' found no known key/value and feed-forward projections in this model "
                     f"(linear layers: {', '.join(short[:12])}). Set strategy_options.target_modules and "
                     "strategy_options.feedforward_modules.")
