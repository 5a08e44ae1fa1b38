"""MAD-X's language adapters: finding the packages, mapping their module paths onto the task model, loading them."""

from __future__ import annotations

import copy
import json
import re
import warnings
from pathlib import Path
from typing import Any

from xft_core.util.fingerprint import base_fingerprint

MANIFEST = "xft.json"  # xft's package manifest: base fingerprint, task, languages
PREFIX = "base_model.model."  # peft's key prefix for a wrapped transformers model


def find_language_adapters(path: str | Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """language -> (package folder, manifest) for the language adapters of a run, its adapters/ folder or one package."""
    if not str(path):
        raise ValueError("madx: strategy_options.language_adapters must name a run of language adapters (task: "
                         "language-modeling, strategy: lora, adapters: per_language) or its adapters/ folder")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"madx: {root}: no such folder (strategy_options.language_adapters)")
    parent = root / "adapters" if (root / "adapters").is_dir() else root
    candidates = [root] if (root / MANIFEST).is_file() else sorted(p for p in parent.iterdir() if (p / MANIFEST).is_file())
    if not candidates:
        raise FileNotFoundError(f"madx: {root} holds no adapter package ({MANIFEST}), neither under adapters/ nor itself "
                                "(strategy_options.language_adapters)")
    found: dict[str, tuple[Path, dict[str, Any]]] = {}
    for folder in candidates:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        languages = list(manifest.get("languages") or [])
        if len(languages) != 1:
            raise ValueError(f"madx: {folder}: a language adapter serves one language, this package serves "
                             f"{', '.join(languages) or 'none'}; train language adapters with adapters: per_language")
        if manifest.get("strategy") != "lora":
            raise ValueError(f"madx: {folder}: strategy '{manifest.get('strategy')}', not lora; language adapters are "
                             "LoRA packages (task: language-modeling, strategy: lora)")
        if languages[0] in found:
            raise ValueError(f"madx: two language adapters for '{languages[0]}': {found[languages[0]][0]} and {folder}")
        found[languages[0]] = (folder, manifest)
    if len({safe_name(lang) for lang in found}) != len(found):
        raise ValueError(f"madx: language codes {', '.join(found)} collide once made safe for folder names")
    return found


def transformer_body(model: Any) -> tuple[str, str]:
    """(path of the transformer body in `model`, the prefix a language model keeps that body under)."""
    import torch

    path, module = [], model
    while True:
        prefix = getattr(module, "base_model_prefix", "")
        child = getattr(module, prefix, None) if prefix else None
        if not isinstance(child, torch.nn.Module) or child is module:
            break
        path.append(prefix)
        module = child
    return ".".join(path), str(getattr(type(module), "base_model_prefix", ""))


def map_module(path: str, names: set[str], body: tuple[str, str], where: Path) -> str | None:
    """The task model's module for the language model's module `path`; None for a module outside the body."""
    body_path, lm_prefix = body
    inside = bool(lm_prefix) and path.startswith(lm_prefix + ".")
    relative = path[len(lm_prefix) + 1 :] if inside else path
    exact = f"{body_path}.{relative}" if body_path else relative
    if inside and exact in names:
        return exact
    matches = sorted(n for n in names if n == relative or n.endswith("." + relative))
    if len(matches) == 1:
        return matches[0]
    if not matches and not inside:
        return None  # the language model's own head (an encoder's masked-LM transform): the task model has its own
    found = f"several: {', '.join(matches[:4])}" if matches else "none"
    raise ValueError(f"madx: {where}: the language adapter's module '{path}' maps to {found} of the task model's "
                     f"modules (task model body: '{body_path or '(root)'}'); language adapters must be trained on the "
                     "same base model as the task")


def read_language_adapter(folder: Path, names: set[str], body: tuple[str, str]) -> tuple[Any, dict]:
    """(LoraConfig for the task model, peft-format weights keyed by the task model's module paths)."""
    from peft import LoraConfig, PeftConfig
    from peft.utils import load_peft_weights

    config = PeftConfig.from_pretrained(str(folder))
    if not isinstance(config, LoraConfig):
        raise ValueError(f"madx: {folder}: a {config.peft_type} adapter, not LoRA; language adapters are LoRA packages")
    unsupported = [k for k in ("modules_to_save", "rank_pattern", "alpha_pattern", "target_parameters",
                               "trainable_token_indices") if getattr(config, k, None)] + ["bias"] * (config.bias != "none")
    if unsupported:
        raise ValueError(f"madx: {folder}: a language adapter must hold only LoRA matrices; it sets {', '.join(unsupported)}")
    weights, mapped, skipped = {}, {}, set()
    for key, tensor in load_peft_weights(str(folder), device="cpu").items():
        if not key.startswith(PREFIX) or ".lora_" not in key:
            raise ValueError(f"madx: {folder}: '{key}' is not a LoRA weight; a language adapter holds only LoRA weights")
        path, parameter = key[len(PREFIX) :].split(".lora_", 1)
        if path not in mapped:
            mapped[path] = map_module(path, names, body, folder)
        if mapped[path] is None:
            skipped.add(path)
            continue
        weights[f"{PREFIX}{mapped[path]}.lora_{parameter}"] = tensor
    if not weights:
        raise ValueError(f"madx: {folder}: none of the language adapter's modules is in the task model's body")
    if skipped:
        warnings.warn(f"madx: {folder.name}: LoRA on the language model's own head ({', '.join(sorted(skipped)[:3])}) is "
                      "left out: the task model has its own head", stacklevel=3)
    config = copy.deepcopy(config)
    config.target_modules = {m for m in mapped.values() if m}
    config.layers_to_transform = config.layers_pattern = config.modules_to_save = config.exclude_modules = None
    config.task_type = None  # a language adapter serves any task; peft's task classes would give it a head
    return config, weights


def add_language_adapter(model: Any, slot: str, config: Any, weights: dict[str, Any], folder: Path) -> None:
    """Add a frozen language adapter as `slot`; every one of its LoRA tensors must be filled."""
    from peft import PeftModel
    from peft.utils import set_peft_model_state_dict

    # the base class's add_adapter: peft's sequence classifier would give every added adapter its own copy of the head
    PeftModel.add_adapter(model, slot, config)
    for name, parameter in model.named_parameters():
        if f".{slot}." in name:
            parameter.requires_grad = False
    result = set_peft_model_state_dict(model, weights, adapter_name=slot)
    missing = [k for k in result.missing_keys if f".{slot}." in k and ".lora_" in k]
    if result.unexpected_keys or missing:
        raise ValueError(f"madx: {folder}: the language adapter does not fit the task model "
                         f"(unexpected: {result.unexpected_keys[:2]}, missing: {missing[:2]})")


def check_same_base(model: Any, packages: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    """The language adapters' xft.json base_fingerprint is the task model's (the folder it was loaded from)."""
    folder = Path(str(getattr(model, "name_or_path", "") or "."))
    wanted = {lang: m["base_fingerprint"] for lang, (_, m) in packages.items() if m.get("base_fingerprint")}
    if not wanted or not folder.is_dir():
        return
    have = base_fingerprint(folder)
    for language, want in wanted.items():
        if want != have:
            raise ValueError(f"madx: the '{language}' language adapter ({packages[language][0]}) was trained on another "
                             f"base model (fingerprint {want[:12]}…) than the task model {folder} ({have[:12]}…)")


def safe_name(language: str) -> str:  # a language code as a folder and adapter name
    return re.sub(r"[^A-Za-z0-9_-]", "_", language)
