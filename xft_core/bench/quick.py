"""The suite's quick mode: the same code path on a tiny offline model and a few rows, for CI."""

from __future__ import annotations

import dataclasses

from xft_core.bench.tasks import TASKS
from xft_core.bench.transfer import Suite


def quick_suite(suite: Suite) -> Suite:
    """A tiny Gemma-3-like model whose tokenizer knows the tasks' label words, 4 steps, 8 rows per target (16 of the
    source unless --source-max-examples says otherwise), one seed."""
    from xft_core.testing import DEFAULT_TEXTS, build_tiny_model

    folder = suite.out / "tiny-gemma3"
    if not (folder / "config.json").is_file():
        words = {w for task in TASKS.values() for w in task.label_words.values()}
        words |= {"science", "travel", "politics", "sports", "health", "entertainment", "geography",
                  "True", "False", "Neither", "entailment", "neutral", "contradiction"}
        texts = list(DEFAULT_TEXTS) + [f"{word} {word} {word}" for word in sorted(words)] * 20
        build_tiny_model("gemma3", folder, texts=texts)
    return dataclasses.replace(suite, model=str(folder), steps=4, batch_size=4, seeds=suite.seeds[:1], eval_rows=8,
                               source_eval_rows=suite.source_eval_rows or 16, train_rows=32,
                               unlabelled_rows=min(8, suite.unlabelled_rows or 8),
                               language_adapter_steps=min(2, suite.language_adapter_steps))
