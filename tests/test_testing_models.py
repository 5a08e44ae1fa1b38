"""The tiny offline models of `xft_core.testing` load with the Auto classes the toolkit uses and run."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("transformers")

from xft_core.testing import (  # noqa: E402
    DEFAULT_TEXTS,
    FAMILIES,
    MARKER,
    build_tiny_model,
    build_tokenizer,
    tiny_model_cache,
)

ENCODERS = ("bert", "xlm-roberta")
DECODERS = ("gemma3", "qwen2", "llama")
SENTENCES = ["Die Straßenbahn fährt über die Brücke nach München.", "我今天很高兴。"]  # different lengths
AUTO_CLASSES = {
    **{f: ("AutoModel", "AutoModelForSequenceClassification", "AutoModelForTokenClassification") for f in ENCODERS},
    **{f: ("AutoModelForCausalLM", "AutoModelForSequenceClassification", "AutoModelForTokenClassification")
       for f in DECODERS},
    "t5": ("AutoModelForSeq2SeqLM",),
}


@pytest.fixture(scope="module", params=FAMILIES)
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    family = request.param
    folder = build_tiny_model(family, tmp_path_factory.mktemp(family) / "model")
    return family, folder


def _run(model: object, batch: dict, family: str) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        if family == "t5":
            out = model(**batch, decoder_input_ids=torch.zeros((2, 4), dtype=torch.long))
        else:
            out = model(**batch)
    logits = getattr(out, "logits", None)
    return out.last_hidden_state if logits is None else logits


def test_every_family_is_covered() -> None:
    assert set(AUTO_CLASSES) == set(FAMILIES)


def test_loads_with_auto_classes_and_runs(built: tuple[str, Path]) -> None:
    family, folder = built
    tok = tf.AutoTokenizer.from_pretrained(folder)
    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    length = batch["input_ids"].shape[1]
    assert batch["attention_mask"][1].sum() < length  # the short sentence really is padded
    config = tf.AutoConfig.from_pretrained(folder)
    assert config.vocab_size == len(tok) and config.pad_token_id == tok.pad_token_id
    for name in AUTO_CLASSES[family]:
        kwargs = {"num_labels": 3} if "Classification" in name else {}
        model = getattr(tf, name).from_pretrained(folder, **kwargs)
        logits = _run(model, dict(batch), family)
        expected = {
            "AutoModel": (2, length, config.hidden_size),
            "AutoModelForSequenceClassification": (2, 3),
            "AutoModelForTokenClassification": (2, length, 3),
            "AutoModelForCausalLM": (2, length, len(tok)),
            "AutoModelForSeq2SeqLM": (2, 4, len(tok)),
        }[name]
        assert tuple(logits.shape) == expected, name
        assert torch.isfinite(logits).all(), name


def test_words_split_into_several_pieces(built: tuple[str, Path]) -> None:
    _, folder = built
    tok = tf.AutoTokenizer.from_pretrained(folder)
    words = SENTENCES[0].split()
    enc = tok(words, is_split_into_words=True)
    word_ids = [w for w in enc.word_ids() if w is not None]
    assert sorted(set(word_ids)) == list(range(len(words)))
    assert max(word_ids.count(w) for w in set(word_ids)) >= 2
    assert tok.unk_token_id not in tok(SENTENCES)["input_ids"][0]


@pytest.mark.parametrize("family", ENCODERS)
def test_encoder_pairs_have_token_types(family: str, tmp_path: Path) -> None:
    tok = tf.AutoTokenizer.from_pretrained(build_tiny_model(family, tmp_path))
    enc = tok("Guten Morgen", "Buenos días")
    ids, types = enc["input_ids"], enc["token_type_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id and ids.count(tok.sep_token_id) == 2
    first_b = ids.index(tok.sep_token_id) + 1
    assert set(types[:first_b]) == {0} and set(types[first_b:]) == {1}


def test_special_tokens_per_role(built: tuple[str, Path]) -> None:
    family, folder = built
    tok = tf.AutoTokenizer.from_pretrained(folder)
    ids = tok("Hallo Welt")["input_ids"]
    if family in DECODERS:
        assert ids[0] == tok.bos_token_id and tok.eos_token_id is not None
        assert "token_type_ids" not in tok("Hallo Welt")
    elif family == "t5":
        assert ids[-1] == tok.eos_token_id and (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    else:
        assert tok.mask_token_id is not None and tok.pad_token_id is not None


def test_build_is_deterministic(tmp_path: Path) -> None:
    for family in ("bert", "xlm-roberta", "llama"):  # one per tokenizer kind
        a = build_tiny_model(family, tmp_path / f"{family}-a", seed=1)
        b = build_tiny_model(family, tmp_path / f"{family}-b", seed=1)
        c = build_tiny_model(family, tmp_path / f"{family}-c", seed=2)
        for name in ("tokenizer.json", "model.safetensors", "config.json"):
            assert (a / name).read_bytes() == (b / name).read_bytes(), (family, name)
        assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "unigram"])
def test_build_tokenizer_handles_all_scripts(kind: str, tmp_path: Path) -> None:
    tok = build_tokenizer(DEFAULT_TEXTS, tmp_path, kind=kind, role="decoder" if kind == "bpe" else "encoder")
    assert (tmp_path / "tokenizer.json").exists()
    for text in ("Ο καιρός είναι υπέροχος.", "Доброе утро!", "北京是中国的首都。", "¿Cómo estás?"):
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids, (kind, text, tok.convert_ids_to_tokens(ids))


def test_tiny_model_cache_builds_once(tmp_path: Path) -> None:
    folder = tiny_model_cache("llama", tmp_path)
    assert folder == tmp_path / "llama" and (folder / MARKER).exists()
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert tiny_model_cache("llama", tmp_path) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    (folder / MARKER).unlink()  # as if the first build died before finishing
    tiny_model_cache("llama", tmp_path)
    assert (folder / MARKER).exists() and not list(tmp_path.glob(".llama.tmp-*"))
    tf.AutoModelForCausalLM.from_pretrained(folder)
