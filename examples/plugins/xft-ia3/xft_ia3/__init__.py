"""xft-ia3: an xft plugin adding the strategy `ia3`, the sampler `curriculum` and the transfer-suite recipe `ia3-verbalizer`.

Registered under the entry-point group "xft" as `xft_ia3` (pyproject.toml), so `pip install xft-ia3` is all it
takes; `XFT_BLOCK_PLUGINS=xft_ia3` turns it off. Like xft's built-in plugins it imports only `xft_core.hooks` (and
could use `xft_core.util`) and `xft_peft`, the peft support that ships with xft (wrapping a model, the all-or-nothing
attach, the exact load, peft's files): the strategy writes only what is IA3's own. torch and peft are imported inside
the functions that need them.
"""

from __future__ import annotations

from xft_core.hooks import RecipeSpec, RecipeTask, SamplerSpec, StrategySpec, hookimpl

from xft_ia3.curriculum import CurriculumOptions, CurriculumSampler, curriculum_probabilities
from xft_ia3.options import IA3Options, auto_target_modules
from xft_ia3.strategy import IA3

__version__ = "0.1.0"
__all__ = ["IA3", "CurriculumOptions", "CurriculumSampler", "IA3Options", "auto_target_modules",
           "curriculum_probabilities"]


@hookimpl
def xft_strategies():
    yield StrategySpec(
        name="ia3",
        options=IA3Options,
        build=IA3,
        description="(IA)^3 through peft: learned vectors scale attention keys/values and the feed-forward input; "
                    "the task head trains alongside. target_modules (auto per family), feedforward_modules.",
        per_language=True,  # peft keeps one set of vectors per adapter in one model
        stackable=True,  # packages can be attached to one base side by side (one forward per adapter)
    )


@hookimpl
def xft_samplers():
    yield SamplerSpec(
        name="curriculum",
        options=CurriculumOptions,
        build=lambda sizes, options, seed: CurriculumSampler(sizes, options, seed),
        description="Moves linearly over training from temperature `start` (1: proportional) to `end` (0: uniform): "
                    "q(t) = (1 - t) q_start + t q_end, q_a = p^a / sum p^a.",
    )


def ia3_verbalizer(task: RecipeTask) -> dict:
    """IA3 under prompt-based classification, at the learning rate (IA)^3 vectors need (Liu et al. use 3e-3)."""
    return {"task": "prompt-classification", "strategy": "ia3", "strategy_options": {},
            "task_options": {"template": task.template, "label_words": dict(task.label_words)},
            "training": {"learning_rate": 3e-3}}


@hookimpl
def xft_transfer_recipes():
    yield RecipeSpec(
        name="ia3-verbalizer",
        config=ia3_verbalizer,
        description="(IA)^3 vectors (about 0.02% of the weights) under prompt-based classification: label words "
                    "scored by the LM head",
    )
