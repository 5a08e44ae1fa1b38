"""Adapter packages: the strategy's own files and xft's manifest `xft.json`, written atomically.

The strategy decides what its files are (peft's adapter_config.json + adapter_model.safetensors for LoRA, a
whole model for full fine-tuning, a plugin's own format); this module only writes the folder atomically, reads
the manifest, builds the head and strategy a package names, and checks that a package fits the base in memory.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Mapping

from xft_core.adapters.manifest import MANIFEST, AdapterError, Manifest, base_fingerprint
from xft_core.hooks import Strategy, StrategySpec, TaskHead
from xft_core.util.files import atomic_folder, atomic_write_json
from xft_core.util.fingerprint import FingerprintWarning, weights_fingerprint

PICKLE_SUFFIXES = (".bin", ".pt", ".pkl", ".pth")


def save_package(folder: Path, *, model: Any, strategy: Strategy, adapter: str | None, head: TaskHead,
                 manifest: Mapping[str, Any]) -> Path:
    """Write one adapter package atomically: the strategy's files, then the manifest (last)."""
    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        extra = strategy.save(model, tmp, adapter, head) or {}
        atomic_write_json(tmp / MANIFEST, {**manifest, **extra, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return folder


# ----------------------------------------------------------------------------------------------- loading
@dataclass
class Base:
    """A base model loaded once with a task head on it, ready to carry adapters."""

    model: Any
    tokenizer: Any
    head: TaskHead
    model_path: Path
    fingerprint: str
    manifest: Manifest  # the manifest that described it (task, labels, base reference)
    pm: Any


def head_from_manifest(manifest: Manifest, pm: Any) -> TaskHead:
    from xft_core.config import build_options
    from xft_core.hooks.manager import get_spec

    spec = get_spec(pm, "task_heads", manifest.data["task"], config_key=f"{MANIFEST}: task")
    head = spec.build(build_options(spec.options, manifest.data.get("task_options", {}), key="task_options"))
    head.load_label_info(manifest.data)
    return head


def strategy_from_manifest(manifest: Manifest, pm: Any) -> tuple[StrategySpec, Strategy]:
    """(spec, built strategy) of the strategy that trained this package."""
    from xft_core.config import build_options
    from xft_core.hooks.manager import get_spec

    spec = get_spec(pm, "strategies", manifest.strategy, config_key=f"{MANIFEST}: strategy")
    return spec, spec.build(build_options(spec.options, manifest.data.get("strategy_options", {}), key="strategy_options"))


def load_base(folder_or_manifest: Path | Manifest, pm: Any = None, *, model: str | None = None,
              device: str | None = None, base_dtype: str | None = None, precision: str = "no") -> Base:
    """Load the base model an adapter package was trained on (or `model`), with the package's task head.
    `base_dtype`: a quantizer's name (nf4) quantizes the base as training did; None: as the package was trained
    (its manifest's `base_dtype`, absent for a float base); a float dtype: not quantized. `precision`: the
    compute dtype of quantized layers (bf16/fp16, else float32)."""
    from xft_core.hooks.manager import get_plugin_manager
    from xft_core.models import load_tokenizer, quiet_transformers, resolve_model
    from xft_core.models.quantize import base_quantizer, quantize_base

    quiet_transformers()
    pm = pm or get_plugin_manager()
    manifest = folder_or_manifest if isinstance(folder_or_manifest, Manifest) else Manifest.read(Path(folder_or_manifest))
    head = head_from_manifest(manifest, pm)
    model_path = resolve_model(model or manifest.data["base_model"], pm)
    tokenizer = load_tokenizer(model_path)
    quantizer = base_quantizer(manifest.data.get("base_dtype") if base_dtype is None else base_dtype, pm,
                               key="base_dtype" if base_dtype is not None else f"{MANIFEST}: base_dtype")
    base_model = head.build_model(model_path, tokenizer)
    if quantizer is not None:
        quantize_base(quantizer, base_model, head.head_modules(base_model), precision, device or "cpu",
                      training=False)
    if device:
        base_model.to(device)
    base_model.eval()
    return Base(base_model, tokenizer, head, model_path, base_fingerprint(model_path), manifest, pm)


def check_base(folder: Path, manifest: Manifest, fingerprint: str, base: str, *, key: str = "") -> None:
    """The package's `base_fingerprint` is `fingerprint` (of the base model `base`); a package without one is
    refused too, since nothing else tells what it was trained on. `key`: the config key that named the package."""
    where = f" (config key: {key})" if key else ""
    want = manifest.data.get("base_fingerprint")
    if not want:
        raise AdapterError(
            f"{folder}: {MANIFEST} has no base_fingerprint{where}, so nothing shows which base model the adapter was "
            "trained on. Train it again with xft (which writes it), or, if you know its base model, add it: "
            f'"base_fingerprint": the output of python -c "from xft_core.adapters import base_fingerprint; '
            f"print(base_fingerprint('BASE_MODEL_FOLDER'))\""
        )
    if want != fingerprint and Path(base).is_dir() and want == weights_fingerprint(Path(base)):
        warnings.warn(FingerprintWarning(
            f"{folder}: its base_fingerprint covers the base model's weights only (saved by an older xft), so its "
            f"config.json and tokenizer are not checked against {base}; save the package again to record them"),
            stacklevel=2)
        return
    if want != fingerprint:
        raise AdapterError(
            f"{folder}: adapter was trained on a different base model{where} (fingerprint {str(want)[:12]}…, "
            f"base '{manifest.data.get('base_model')}'); the base here is {base} ({fingerprint[:12]}…)."
        )


def check_compatible(base: Base, folder: Path) -> Manifest:
    """The package's manifest, after checking it was trained on this base model and task, with no pickle files.
    Every path that attaches a package (`attach`, the router, the transfer matrix) goes through here."""
    manifest = Manifest.read(folder)
    check_base(folder, manifest, base.fingerprint, str(base.model_path))
    if manifest.data.get("task") != base.manifest.data.get("task"):
        raise AdapterError(f"{folder}: task '{manifest.data.get('task')}' does not match the loaded base's task "
                           f"'{base.manifest.data.get('task')}'")
    if manifest.data.get("labels") != base.manifest.data.get("labels"):
        raise AdapterError(f"{folder}: label set {manifest.data.get('labels')} differs from the base's "
                           f"{base.manifest.data.get('labels')}")
    unsafe = pickle_files(Path(folder))
    if unsafe:
        raise AdapterError(f"{folder}: holds pickle files ({', '.join(unsafe)}); xft loads only safetensors")
    return manifest


def pickle_files(folder: Path) -> list[str]:
    """Files anywhere in the package (sub-folders too) whose suffix, in any case, is one torch.load would unpickle
    (`adapter_model.BIN`, `sub/evil.pt`), as paths relative to the package."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.suffix.lower() in PICKLE_SUFFIXES and (p.is_file() or p.is_symlink()))


def check_init_from(folder: Path, model_path: Path, *, task: str = "", label_info: Mapping[str, Any] | None = None,
                    adopted: Collection[str] = (), key: str = "init_from") -> dict[str, Any]:
    """A training run's `init_from` package fits the run before any weights load: trained on the run's base model
    (`model_path`), for the same task (`task`), with the same labels in the same order and the same label details
    (`label_info`, what the run's head records: a tagging scheme, a template), except the keys in `adopted`
    (the head's `adopted_label_info`: taken from the package, no weight depends on them). Returns what the new manifest
    records of it: its path and the sha256 of its files. `key`: the config key errors name."""
    folder = Path(folder)
    manifest = Manifest.read(folder)
    check_base(folder, manifest, base_fingerprint(model_path), str(model_path), key=key)
    where = f"{key} {folder}"
    theirs_task = manifest.data.get("task")
    if task and theirs_task != task:
        raise AdapterError(f"{where}: a package of task {_shown(theirs_task)}; this run trains '{task}'. Start from a "
                           f"'{task}' package of this base model, or leave {key} empty")
    for key, ours in (label_info or {}).items():
        if key in adopted or (key not in manifest.data and key != "labels"):
            continue  # a detail an older package does not record
        theirs = manifest.data.get(key)
        if theirs == ours:
            continue
        if key == "labels" and isinstance(theirs, list) and isinstance(ours, list) and sorted(map(str, theirs)) == sorted(
                map(str, ours)) and len(theirs) == len(ours):
            raise AdapterError(f"{where}: its labels are in the order {_shown(theirs)}, this run's in the order "
                               f"{_shown(ours)}; a label's weights would move to another label. Give the package's "
                               f"order in task_options.labels")
        what = "label set" if key == "labels" else key
        raise AdapterError(f"{where}: its {what} is {_shown(theirs)}; this run's {what} is {_shown(ours)}. Starting "
                           f"from it would carry weights trained for other labels; train from the base model, or "
                           f"start from a package with the same {what}")
    return {"path": str(folder.resolve()), "sha256": package_sha256(folder), "run": manifest.data.get("run"),
            "step": manifest.data.get("step")}


def init_weights_from(strategy: Strategy, model: Any, folder: Path, adapters: list[str]) -> None:
    """`strategy.init_from`, with weights that do not fit the model (another architecture under a copied
    fingerprint, a head of another size) reported as a package error instead of a raw size mismatch or KeyError."""
    from xft_core.util.errors import UserError

    try:
        strategy.init_from(model, Path(folder), adapters)
    except (UserError, OSError):
        raise
    except Exception as exc:
        raise AdapterError(f"init_from {folder}: its weights do not fit this run's model ({type(exc).__name__}: "
                           f"{str(exc)[:300]}); was it trained on this base model, task and strategy?") from exc


def trained_precision(path: Path) -> tuple[str, str]:
    """The precision setting a run's adapters were trained and dev-scored in, and where it was read: the run's
    `config.yaml` (`path` a run folder, its adapters/ folder, or a package inside one), else the package's manifest
    (`precision`); ("no", ...) when neither says. `xft eval`, `predict` and `serve` default to it, so one adapter
    scores the same in all three and in training."""
    from xft_core.config import ConfigError, load_config

    path = Path(path)
    for folder in (path, path.parent, path.parent.parent):
        if (folder / "config.yaml").is_file():
            try:
                return load_config(folder / "config.yaml").training.precision, f"training.precision of {folder / 'config.yaml'}"
            except ConfigError:
                break
    for candidate in (path, *sorted(p for p in path.iterdir() if p.is_dir())) if path.is_dir() else ():
        if (candidate / MANIFEST).is_file():
            try:
                value = Manifest.read(candidate).data.get("precision")
            except AdapterError:
                continue
            if value in ("auto", "no", "bf16", "fp16"):
                return str(value), f"precision of {candidate / MANIFEST}"
    return "no", "no run config or manifest says otherwise"


def package_sha256(folder: Path) -> str:
    """sha256 over every file of a package (relative path, then bytes), in path order."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode("utf-8", "surrogateescape") + b"\0")
        with path.open("rb") as handle:
            while block := handle.read(1 << 22):
                digest.update(block)
    return digest.hexdigest()


def _shown(value: Any) -> str:
    """A manifest value for a message: labels as a list, anything else as JSON, cut short."""
    import json

    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        text = "[" + ", ".join(value) + "]"
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= 200 else text[:200] + "…"


def attach(base: Base, model: Any, folder: Path, name: str) -> Any:
    """Load the package in `folder` onto `model` (the base, or a model already carrying adapters) as `name`,
    through the strategy that saved it; returns the model to run."""
    manifest = check_compatible(base, Path(folder))
    _, strategy = strategy_from_manifest(manifest, base.pm)
    return strategy.attach(model, Path(folder), name, base.head)
