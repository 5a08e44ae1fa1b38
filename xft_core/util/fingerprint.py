"""The fingerprint of a base model folder: what a package's `base_fingerprint` must match to be attached.

Identity is what changes the computation an adapter was trained against:
- the weight files (`*.safetensors`, `*.bin`, `*.gguf`): names and bytes;
- `config.json`, every key except bookkeeping that changes no result (`IGNORED_CONFIG_KEYS`: the path it was
  loaded from, the transformers version, the stored dtype of weights already hashed, cache and output flags, the
  base's own label names); `hidden_act`, sizes, rope settings all count;
- the tokenizer files (`tokenizer.json`, `tokenizer.model`, `tokenizer_config.json`, `special_tokens_map.json`,
  `added_tokens.json`, `vocab.*`, `merges.txt`, `*.model`): names and bytes.

Hashing a 1 GB weight file takes seconds, so the digest is cached beside the files (`.xft-fingerprint.json`),
keyed per file by name, size, mtime and ctime in nanoseconds, inode and device. The ctime is set by the kernel
on every write and metadata change and cannot be set from user space, so a file rewritten in the same second at
the same size, or given old times back with `touch -r` / `cp -p`, misses the cache and is hashed again.

Packages saved before config and tokenizer counted record the digest of the weights alone
(`weights_fingerprint`); `check_base` accepts that with a warning. docs/security.md says the same for users.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from xft_core.util.files import atomic_write_json

CACHE = ".xft-fingerprint.json"
CACHE_VERSION = 2
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")
TOKENIZER_NAMES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "merges.txt")
IGNORED_CONFIG_KEYS = frozenset({
    "_name_or_path", "transformers_version", "_commit_hash", "torch_dtype", "dtype", "use_cache", "output_attentions",
    "output_hidden_states", "return_dict", "id2label", "label2id", "_attn_implementation", "attn_implementation",
})


class FingerprintWarning(UserWarning):
    """A package whose fingerprint covers the base's weights only (saved by an older xft)."""


def identity_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(weight files, tokenizer files) of a model folder, sorted by name."""
    files = sorted(p for p in Path(folder).iterdir() if p.is_file())
    weights = [p for p in files if p.suffix in WEIGHT_SUFFIXES]
    tokenizer = [p for p in files if p.name in TOKENIZER_NAMES or p.name.startswith("vocab.")
                 or (p.suffix == ".model" and p not in weights)]
    return weights, tokenizer


def base_fingerprint(folder: Path) -> str:
    """sha256 over the base model's weights, the computation keys of its config.json and its tokenizer files."""
    return _fingerprints(Path(folder))["sha256"]


def weights_fingerprint(folder: Path) -> str:
    """sha256 over the weight files alone: the fingerprint packages of xft before 0.2 recorded."""
    return _fingerprints(Path(folder))["weights_sha256"]


def config_identity(folder: Path) -> bytes:
    """config.json as canonical JSON without the bookkeeping keys; b"" without a readable config."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return b""
    if not isinstance(config, dict):
        return b""

    def strip(value: Any) -> Any:  # nested configs (text_config of a multimodal model) have the same keys
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in IGNORED_CONFIG_KEYS}
        return value

    return json.dumps(strip(config), sort_keys=True, ensure_ascii=True).encode("ascii")


def _stamp(path: Path) -> list[Any]:
    info = path.stat()
    return [path.name, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev]


def _fingerprints(folder: Path) -> dict[str, str]:
    weights, tokenizer = identity_files(folder)
    config = folder / "config.json"
    stamp = [_stamp(p) for p in [*weights, *tokenizer, *([config] if config.is_file() else [])]]
    cache = folder / CACHE
    try:
        cached = json.loads(cache.read_text())
        if cached.get("version") == CACHE_VERSION and cached.get("stamp") == stamp:
            return {"sha256": str(cached["sha256"]), "weights_sha256": str(cached["weights_sha256"])}
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    digest = hashlib.sha256()
    for path in weights:
        _update(digest, path)
    weights_only = digest.hexdigest()
    digest.update(b"\0config.json\0" + config_identity(folder))
    for path in tokenizer:
        digest.update(b"\0")
        _update(digest, path)
    value = {"sha256": digest.hexdigest(), "weights_sha256": weights_only}
    try:
        atomic_write_json(cache, {"version": CACHE_VERSION, "stamp": stamp, **value})
    except OSError:
        pass  # a read-only model folder only costs a re-hash next time
    return value


def _update(digest: Any, path: Path) -> None:
    digest.update(path.name.encode())
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
