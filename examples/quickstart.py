"""The classic "fine-tune a multilingual model on two sentences in two languages", done with xft.

Where the hand-written version loads a tokenizer and a model, builds tensors, runs an optimizer step and
forgets to save anything, xft trains a LoRA adapter with the sampler, precision and checkpointing of a
real run, and leaves a peft adapter plus a manifest that `xft predict` and `xft serve` load.

    python examples/quickstart.py                  # the embedded default (Gemma 3 270M)
    python examples/quickstart.py --model ./bert    # any local Hugging Face folder or .gguf file
"""

from __future__ import annotations

import argparse

import xft_core


def main(argv: list[str] | None = None) -> object:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--output-dir", default="runs")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args(argv)

    run = xft_core.train(
        {
            "name": "quickstart",
            "output_dir": args.output_dir,
            "model": args.model,
            "strategy": "lora",
            "data": {
                "rows": {
                    "train": {
                        "en": [{"text": "I love this movie!", "label": "positive"},
                               {"text": "What a waste of time.", "label": "negative"}],
                        "de": [{"text": "Ich liebe diesen Film!", "label": "positive"},
                               {"text": "Was für eine Zeitverschwendung.", "label": "negative"}],
                    }
                }
            },
            "training": {"max_steps": args.steps, "batch_size": 2, "learning_rate": 1e-3, "warmup_ratio": 0.0},
            "data_check": False,
        }
    )
    print(f"trained {run.step} steps; adapter: {run.adapter_dirs['multilingual']}")
    return run


if __name__ == "__main__":
    main()
