"""Export an adapter package for consumers outside xft (`xft export`, `xft_core.export`).

Four targets, each a folder written atomically with `xft-export.json` (what was exported, from which package):

- `merged`: the base with the adapter folded into its weights (`Strategy.merge`), saved with `save_pretrained` and
  the tokenizer, so any Hugging Face consumer loads it with the Auto class the record names
  (`AutoModelForSequenceClassification.from_pretrained(out)` gives the labels too);
- `vllm`, `lorax`: a generation LoRA adapter (task kind causal-lm, peft LoRA files) in the folder layout their LoRA
  loaders read, checked against what those loaders accept, with a README naming the serve command;
- `torchscript`: a classification model with its adapter merged, traced (`model.pt`) beside its tokenizer, loaded
  back and checked for the merged model's logits on batches of different lengths.

`export` sits beside `training` and `inference` (it imports neither); heavy imports happen inside the targets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xft_core.export.sources import EXPORT_INFO, ExportError, find_package, writable_out

TARGETS = ("merged", "vllm", "lorax", "torchscript")

__all__ = ["EXPORT_INFO", "TARGETS", "ExportError", "Exported", "export", "find_package"]


@dataclass(frozen=True)
class Exported:
    """What `export` wrote: the folder, the target and the record saved as `xft-export.json` in it."""

    path: Path
    to: str
    info: dict[str, Any] = field(default_factory=dict)


def export(source: str | Path, out: str | Path, to: str = "merged", *, adapter: str | None = None,
           language: str | None = None, max_length: int | None = None, pm: Any = None) -> Exported:
    """Export one adapter package of `source` (a run folder, its adapters/ folder, or one package) into `out`.

    `adapter` picks the package among several (a per-language run: `adapter="de"`); `language` picks the language
    adapter merged under the task adapter for strategies with language adapters (madx; default: the source
    language's); `max_length` is the longest input a torchscript export is checked on (default: the run's
    training.max_length, else 256). Errors a user can fix raise `ExportError` (an `AdapterError`), naming the choices.

    Example::

        exported = xft_core.export("runs/reviews", "exports/reviews-de", to="merged", adapter="de")
        model = AutoModelForSequenceClassification.from_pretrained(exported.path)
    """
    if to not in TARGETS:
        raise ExportError(f"unknown export target '{to}'; choose one of: {', '.join(TARGETS)}")
    if max_length is not None and max_length < 1:  # 0 used to become the default silently
        raise ExportError(f"--max-length {max_length}: give the longest input in tokens, at least 1")
    package = find_package(source, adapter)
    try:
        return _export(package, Path(out), to, language=language, max_length=max_length, pm=pm)
    except OSError as exc:
        writable_out(Path(out), exc)  # the hidden temporary folder named as --out
        raise


def _export(package: Path, out: Path, to: str, *, language: str | None, max_length: int | None, pm: Any) -> Exported:
    if to == "merged":
        from xft_core.export.merged import export_merged

        return Exported(Path(out), to, export_merged(package, Path(out), pm=pm, language=language))
    if to == "torchscript":
        from xft_core.export.torchscript import export_torchscript

        return Exported(Path(out), to, export_torchscript(package, Path(out), pm=pm, language=language, max_length=max_length))
    if language is not None:
        raise ExportError(f"language '{language}' applies to merged and torchscript exports of packages with language "
                          f"adapters (madx), not to --to {to}: vLLM and LoRAX apply one LoRA adapter per request")
    from xft_core.export.serving import export_lora_server

    return Exported(Path(out), to, export_lora_server(package, Path(out), to, pm=pm))
