"""The base fingerprint is the base's identity (issue 20): weights, the config keys that change the computation and
the tokenizer files; its cache cannot be fooled by rewriting weights in the same second at the same size or by
giving a file its old times back (`touch -r`, `cp -p`)."""

from __future__ import annotations

import json
import os
import shutil
import warnings

import pytest

from xft_core.adapters import AdapterError, Manifest, check_base
from xft_core.util.fingerprint import CACHE, FingerprintWarning, base_fingerprint, weights_fingerprint


@pytest.fixture
def base(tiny_model, tmp_path):
    folder = tmp_path / "base"
    shutil.copytree(tiny_model("bert"), folder)
    (folder / CACHE).unlink(missing_ok=True)
    return folder


def rewrite_keeping_size_and_times(path, change) -> None:
    """New bytes of the same length, then the old atime/mtime back (what `touch -r` and `cp -p` do)."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    change(data)
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def test_weights_rewritten_at_the_same_size_and_times_change_the_fingerprint(base):
    first = base_fingerprint(base)
    assert base_fingerprint(base) == first  # cached, stable

    def flip_last_byte(data: bytearray) -> None:
        data[-1] ^= 0x01

    rewrite_keeping_size_and_times(base / "model.safetensors", flip_last_byte)
    assert base_fingerprint(base) != first


def test_a_copy_with_preserved_times_of_other_weights_is_not_taken_from_the_cache(base, tmp_path):
    """`cp -p other/model.safetensors base/`: same name, size and mtime as the cached file, other bytes."""
    first = base_fingerprint(base)
    other = tmp_path / "other.safetensors"
    data = bytearray((base / "model.safetensors").read_bytes())
    data[-1] ^= 0x01
    other.write_bytes(bytes(data))
    before = (base / "model.safetensors").stat()
    os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))
    shutil.copy2(other, base / "model.safetensors")
    assert base_fingerprint(base) != first


@pytest.mark.parametrize("key, value, same", [
    ("hidden_act", "relu", False),  # the case: the scores move, the fingerprint stayed
    ("num_attention_heads", 1, False),
    ("_name_or_path", "/somewhere/else", True),
    ("transformers_version", "9.9.9", True),
    ("use_cache", False, True),
])
def test_config_keys_that_change_the_computation_count_and_bookkeeping_does_not(base, key, value, same):
    first = base_fingerprint(base)
    config = json.loads((base / "config.json").read_text())
    config[key] = value
    (base / "config.json").write_text(json.dumps(config, indent=1))
    assert (base_fingerprint(base) == first) is same


def test_tokenizer_files_count(base):
    first = base_fingerprint(base)
    tokenizer = next(p for p in ("tokenizer.json", "vocab.txt") if (base / p).is_file())
    with (base / tokenizer).open("a") as handle:
        handle.write("\n")
    assert base_fingerprint(base) != first


def test_a_package_of_an_older_xft_with_a_weights_only_fingerprint_is_accepted_with_a_warning(base, tmp_path):
    old = Manifest({"base_fingerprint": weights_fingerprint(base), "base_model": "bert"})
    with pytest.warns(FingerprintWarning, match="covers the base model's weights only"):
        check_base(tmp_path / "pkg", old, base_fingerprint(base), str(base))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_base(tmp_path / "pkg", Manifest({"base_fingerprint": base_fingerprint(base)}), base_fingerprint(base),
                   str(base))
    with pytest.raises(AdapterError, match="different base model"):
        check_base(tmp_path / "pkg", Manifest({"base_fingerprint": "0" * 64}), base_fingerprint(base), str(base))
