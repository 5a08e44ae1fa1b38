"""`--to merged`: the base model with the adapter folded into its weights, as a plain Hugging Face folder.

The package's own strategy does the merging (`Strategy.merge`: LoRA's merge_and_unload, full fine-tuning's
weights, a plugin's own), so this module never needs to know what a strategy is. What it saves must be loadable
by a transformers Auto class, which `xft-export.json` names:

- a transformers model (classifier, tagger, causal or seq2seq LM) is saved as it is, labels in its config;
- a wrapper whose every weight lives in one transformers LM inside it (the `prompt-classification` head, label
  words scored by the LM's own head) is saved as that LM, and the record says how to score: the prompt template,
  the label words' token ids per language, and at which position the LM answers (docs/export.md);
- any other model class (say `pooling: mean`'s MeanPoolClassifier) is refused: no Auto class could rebuild it from
  the folder, so the consumer would silently get a different model. `--to torchscript` exports those.

An adapter trained over a 4-bit base (`training.base_dtype: nf4`, QLoRA) is merged into the full-precision base
(de-quantized), and the record's `dequantized` says so: merging into 4-bit weights would round most of the update
away.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xft_core.adapters import Base, Manifest, check_compatible, load_base, strategy_from_manifest
from xft_core.adapters.manifest import MANIFEST
from xft_core.export.sources import EXPORT_INFO, ExportError, check_out, export_record
from xft_core.util.files import atomic_folder, atomic_write_json

# transformers Auto classes and the mapping (in transformers.models.auto.modeling_auto) naming the classes each loads
AUTO_CLASSES = (
    ("AutoModelForSequenceClassification", "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES"),
    ("AutoModelForTokenClassification", "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES"),
    ("AutoModelForCausalLM", "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES"),
    ("AutoModelForSeq2SeqLM", "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES"),
    ("AutoModelForMaskedLM", "MODEL_FOR_MASKED_LM_MAPPING_NAMES"),
)


def merged_model(package: Path, pm: Any = None, language: str | None = None) -> tuple[Any, Base, Manifest, Any]:
    """(the merged plain model, the loaded base with its head and tokenizer, the package's manifest, the strategy's
    spec). An adapter trained over a quantized base (nf4) is merged into the full-precision base weights (module
    docstring)."""
    base = load_base(package, pm, base_dtype=merge_dtype(Manifest.read(package), pm))
    manifest = check_compatible(base, package)
    spec, strategy = strategy_from_manifest(manifest, base.pm)
    if not callable(getattr(strategy, "merge", None)):
        raise ExportError(f"{package}: strategy '{spec.name}' has no `merge` method (Strategy protocol), so its adapter "
                          "cannot be folded into the weights; update the plugin that provides it")
    if language is not None and not spec.language_adapters:
        raise ExportError(f"{package}: --language {language} picks a language adapter, but strategy '{spec.name}' has "
                          "none (one set of weights serves every language); drop --language")
    model = strategy.attach(base.model, package, package.name, base.head)
    try:
        merged = strategy.merge(model, package.name, language)
    except NotImplementedError as exc:
        raise ExportError(f"{package}: cannot export --to merged: {exc}") from None
    leftovers = getattr(strategy, "leftovers", None)
    left = list(leftovers(merged)) if callable(leftovers) else []
    if left:
        shown = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
        raise ExportError(f"{package}: strategy '{spec.name}' merge() returned a model still holding its own machinery "
                          f"({shown}); it must return a plain transformers model (a bug in the plugin that provides "
                          "the strategy)")
    base.model = merged
    return merged.eval(), base, manifest, spec


def merge_dtype(manifest: Manifest, pm: Any) -> str | None:
    """The base_dtype to load the base in for merging: as trained (None), unless the adapter was trained over a
    quantized base that cannot take a merge (4-bit NF4: adding the update to 4-bit weights would round it away and
    leave a model no Auto class loads without its quantizer), then float32: the full-precision base, dequantized."""
    from xft_core.models.quantize import base_quantizer

    quantizer = base_quantizer(manifest.data.get("base_dtype"), pm, key=f"{MANIFEST}: base_dtype")
    return "float32" if quantizer is not None and not quantizer.mergeable else None


def dequantized_note(manifest: Manifest) -> str | None:
    """What the export record and the CLI say when a quantized base's adapter was merged into full precision."""
    trained = manifest.data.get("base_dtype")
    if not trained:
        return None
    return (f"the adapter was trained over a {trained} (quantized) base; it is merged into the full-precision base "
            f"weights, the usual export of QLoRA adapters, so the merged model's outputs differ slightly from the "
            f"{trained} base's with the adapter (xft serve and xft eval run the package over the {trained} base)")


def auto_class(model: Any) -> str | None:
    """The transformers Auto class that rebuilds `model` from a saved folder, or None (not a transformers class)."""
    from transformers.models.auto import modeling_auto

    if not type(model).__module__.startswith("transformers."):
        return None
    name = type(model).__name__
    for auto, mapping in AUTO_CLASSES:
        for value in getattr(modeling_auto, mapping, {}).values():
            if name == value or (isinstance(value, (tuple, list)) and name in value):
                return auto
    return None


def inner_lm(model: Any) -> Any:
    """The transformers model inside a wrapper that holds every weight of the wrapper (its `base_model_prefix`
    child), or None."""
    prefix = getattr(model, "base_model_prefix", "")
    inner = getattr(model, prefix, None) if prefix else None
    if inner is None or auto_class(inner) is None:
        return None
    return inner if {id(p) for p in model.parameters()} == {id(p) for p in inner.parameters()} else None


def saved_form(merged: Any, base: Base, package: Path) -> tuple[Any, dict[str, Any]]:
    """(the model to save, what the record says of it: Auto class, and how to score for a wrapped LM)."""
    auto = auto_class(merged)
    if auto is not None:
        return merged, {"auto_class": auto, "model_class": type(merged).__name__}
    lm = inner_lm(merged)
    kind = f"{type(merged).__name__} ({type(merged).__module__})"
    if lm is None:
        raise ExportError(
            f"{package}: the merged model is a {kind}, not a transformers model class, so no Auto class could rebuild it "
            "from a saved folder (a consumer would load a different model). Export --to torchscript instead (a traced "
            "model that needs only torch), or serve the package with xft"
        )
    lm_auto = str(auto_class(lm))
    return lm, {"auto_class": lm_auto, "model_class": type(lm).__name__, "wrapped_by": kind,
                "scoring": scoring(base, lm_auto)}


def scoring(base: Base, lm_auto: str) -> dict[str, Any]:
    """How a label-word head scores with the saved LM: the LM's logits at the answer position, at each label's
    token id (per language; "*" for a language without its own words), one score per label in `labels` order."""
    head, tokenizer = base.head, base.tokenizer
    masked = lm_auto == "AutoModelForMaskedLM"
    info: dict[str, Any] = {
        "answer_position": "the mask token" if masked else "the last real (non-padding) token",
        "labels": list(getattr(head, "labels", []) or []),
    }
    template_for = getattr(head, "template_for", None)
    if callable(template_for):
        info["template"] = template_for(False)
        info["pair_template"] = template_for(True)
    label_token_ids = getattr(head, "label_token_ids", None)
    if callable(label_token_ids):
        languages = [None, *base.manifest.serves]
        info["label_token_ids"] = {language or "*": [int(i) for i in label_token_ids(tokenizer, language)]
                                   for language in languages}
    return info


def export_merged(package: Path, out: Path, *, pm: Any = None, language: str | None = None) -> dict[str, Any]:
    check_out(out, package)
    merged, base, manifest, spec = merged_model(package, pm, language)
    model, described = saved_form(merged, base, package)
    record = export_record(package, manifest, "merged", **described)
    note = dequantized_note(manifest)
    if note:
        record["dequantized"] = note
    if spec.language_adapters:  # None: the strategy's default (madx: the source language's adapter)
        record["language_adapter"] = language
    config = getattr(model, "config", None)
    if getattr(config, "id2label", None) and "labels" in record:
        record["id2label"] = {str(k): v for k, v in config.id2label.items()}
    with atomic_folder(out) as tmp:
        model.save_pretrained(tmp)
        base.tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / EXPORT_INFO, record)
    return record
