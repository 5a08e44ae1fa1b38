"""Tiny, randomly initialised models of every supported family, built offline.

The test suite, benchmarks and examples need real checkpoints of each family (config, weights, fast
tokenizer in one folder) but must never reach the Hugging Face Hub. Everything here is trained or
initialised locally from a seed, so folders are small (< 1 MB) and reproducible.
"""

from __future__ import annotations

import bisect
import json
import os
import shutil
import string
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:  # heavy imports stay out of module import time
    from transformers import PreTrainedTokenizerFast

FAMILIES = ("bert", "xlm-roberta", "gemma3", "qwen2", "llama", "t5")
MARKER = ".xft-tiny-model-complete"
MAX_LEN = 128
_BPE_SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
              r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")

# (tokenizer kind, tokenizer role) per family; the role decides special tokens and post-processing.
_TOKENIZER = {
    "bert": ("wordpiece", "encoder"),
    "xlm-roberta": ("unigram", "encoder"),
    "gemma3": ("bpe", "decoder"),
    "qwen2": ("bpe", "decoder"),
    "llama": ("bpe", "decoder"),
    "t5": ("unigram", "seq2seq"),
}
_SPECIALS = {  # listed in vocabulary order: ids 0, 1, 2, ...
    "encoder": {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                "mask_token": "[MASK]"},
    "decoder": {"pad_token": "<pad>", "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>"},
    "seq2seq": {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"},
}

DEFAULT_TEXTS: tuple[str, ...] = (
    "The weather is lovely today.", "My brother reads newspapers every morning.",
    "We travelled to the mountains by train.", "This restaurant serves unbelievable dumplings.",
    "Scientists discovered an extraordinary phenomenon.", "Please close the window before leaving.",
    "Children were playing football in the park.", "The international conference starts tomorrow.",
    "Ich habe heute keine Zeit für Fußball.", "Die Straßenbahn fährt über die Brücke.",
    "Wir möchten ein Frühstück mit Käse bestellen.", "Das Wetter in München ist wunderschön.",
    "Meine Großmutter erzählt spannende Geschichten.", "Der Bundesverkehrswegeplan wurde veröffentlicht.",
    "Können Sie mir bitte helfen?", "Überall blühen die Äpfel im Frühling.",
    "¿Dónde está la estación de autobuses?", "Mañana vamos a la playa con mis niños.",
    "La canción fue muy emocionante.", "El pingüino nadó rápidamente en el océano.",
    "Mi corazón está lleno de alegría.", "Los estudiantes aprendieron matemáticas.",
    "La organización internacional publicó un informe.", "¡Qué día más bonito!",
    "我今天很高兴。", "北京是中国的首都。", "我们明天去图书馆学习。", "这个饭馆的饺子非常好吃。",
    "科学家发现了一个新现象。", "请在离开之前关上窗户。", "孩子们在公园里踢足球。", "国际会议明天开始。",
    "Сегодня прекрасная погода.", "Мой брат читает газеты каждое утро.",
    "Мы поехали в горы на поезде.", "Москва — столица России.", "Пожалуйста, закройте окно.",
    "Учёные обнаружили необычное явление.", "Дети играли в футбол в парке.",
    "Международная конференция начинается завтра.",
    "Ο καιρός είναι υπέροχος σήμερα.", "Ο αδελφός μου διαβάζει εφημερίδες.",
    "Ταξιδέψαμε στα βουνά με το τρένο.", "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
    "Παρακαλώ κλείστε το παράθυρο.", "Οι επιστήμονες ανακάλυψαν ένα φαινόμενο.",
    "Τα παιδιά έπαιζαν ποδόσφαιρο στο πάρκο.", "Το διεθνές συνέδριο ξεκινά αύριο.",
    "Tiny models make tests fast.", "Cross-lingual transfer works surprisingly well.",
    "Kleine Modelle machen Tests schnell.", "Los modelos pequeños hacen pruebas rápidas.",
    "小模型让测试更快。", "Маленькие модели ускоряют тесты.", "Τα μικρά μοντέλα επιταχύνουν τις δοκιμές.",
    "Good morning, how are you?", "Guten Morgen, wie geht es dir?", "Buenos días, ¿cómo estás?",
    "早上好，你好吗？", "Доброе утро, как дела?", "Καλημέρα, τι κάνεις;",
)


def _train(kind: str, texts: list[str], vocab_size: int, names: list[str], unk: str) -> Any:
    """Train a `tokenizers.Tokenizer` reproducibly: the same texts always give the same vocabulary and ids."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    ascii_alnum = list(string.ascii_letters + string.digits)  # so plain English never hits the unknown token
    if kind == "bpe":
        # The Qwen2 / Llama 3 byte-level pipeline. AutoTokenizer forces `Qwen2Tokenizer` on qwen2 folders,
        # which rebuilds exactly this pipeline, so the saved tokenizer and the reloaded one agree.
        tok = Tokenizer(models.BPE())
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(_BPE_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(texts, trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=names, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False))
        return tok
    if kind == "wordpiece":
        # WordPieceTrainer numbers "##x" pieces in hash order, so ties give a different vocabulary on every
        # run. The BPE trainer is reproducible: learn the pieces with it, then derive the WordPiece vocabulary
        # (every character in both forms plus the pieces BPE uses word-initially / inside words).
        norm = normalizers.BertNormalizer(handle_chinese_chars=True, strip_accents=False, lowercase=False)
        pre = pre_tokenizers.BertPreTokenizer()  # keeps case and accents; isolates CJK characters
        bpe = Tokenizer(models.BPE(unk_token=unk))
        bpe.normalizer, bpe.pre_tokenizer = norm, pre
        bpe.train_from_iterator(texts, trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=names, initial_alphabet=ascii_alnum, show_progress=False))
        chars = sorted(t for t in bpe.get_vocab() if len(t) == 1 and t not in names)
        pieces = set(chars) | {"##" + c for c in chars}
        for text in texts:
            for word, _ in pre.pre_tokenize_str(norm.normalize_str(text)):
                toks = [t.value for t in bpe.model.tokenize(word)]
                pieces.update([toks[0]] + ["##" + t for t in toks[1:]])
        vocab = {t: i for i, t in enumerate(names + sorted(pieces - set(names)))}
        tok = Tokenizer(models.WordPiece(vocab, unk_token=unk, max_input_chars_per_word=100))
        tok.normalizer, tok.pre_tokenizer, tok.decoder = norm, pre, decoders.WordPiece()
        return tok
    if kind == "unigram":
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        tok.train_from_iterator(texts, trainers.UnigramTrainer(
            vocab_size=vocab_size, special_tokens=names, unk_token=unk, initial_alphabet=ascii_alnum,
            show_progress=False))
        # Make ids and segmentations identical on every run: the trainer's scores carry ~1e-10 of run-to-run
        # noise (rounded away below), and the characters it appends for full coverage get the scores
        # min + k * 1e-4 with k in hash order (found as scores 1e-4 from another; re-dealt alphabetically).
        scores = {p: sc for p, sc in json.loads(tok.to_str())["model"]["vocab"] if p not in names}
        ordered = sorted(scores.values())

        def near(x: float) -> bool:
            i = bisect.bisect_left(ordered, x - 1e-8)
            return i < len(ordered) and ordered[i] <= x + 1e-8

        tail = sorted(p for p, sc in scores.items() if near(sc + 1e-4) or near(sc - 1e-4))
        scores.update(zip(tail, sorted((scores[p] for p in tail), reverse=True)))
        ranked = sorted(((p, round(sc, 4)) for p, sc in scores.items()), key=lambda ps: (-ps[1], ps[0]))
        vocab = [(name, 0.0) for name in names] + ranked
        tok.model = models.Unigram(vocab, unk_id=names.index(unk), byte_fallback=False)
        return tok
    raise ValueError(f"unknown tokenizer kind {kind!r}; expected 'wordpiece', 'bpe' or 'unigram'")


def build_tokenizer(texts: Iterable[str], folder: str | Path, *, kind: str = "wordpiece", vocab_size: int = 400,
                    role: str = "encoder") -> PreTrainedTokenizerFast:
    """Train a small sub-word tokenizer on `texts` and save it; small vocabularies force real word splits.

    kind: "wordpiece" (BERT-style; its vocabulary ends up larger than `vocab_size` because it holds the
    "##" forms too), "bpe" (byte-level, never unknown) or "unigram" (SentencePiece-style).
    role: "encoder" ([CLS] A [SEP] B [SEP] with token types), "decoder" (<bos> prepended) or "seq2seq"
    (T5-style, </s> appended).
    """
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    if role not in _SPECIALS:
        raise ValueError(f"unknown tokenizer role {role!r}; expected one of {sorted(_SPECIALS)}")
    specials = _SPECIALS[role]
    names = list(specials.values())
    tok = _train(kind, list(texts), vocab_size, names, specials["unk_token"])

    ids = {name: tok.token_to_id(name) for name in names}
    if role == "encoder":
        cls, sep = specials["cls_token"], specials["sep_token"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, ids[cls]), (sep, ids[sep])])
        input_names = ["input_ids", "token_type_ids", "attention_mask"]
    elif role == "decoder":
        bos = specials["bos_token"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos}:1 $B:1", special_tokens=[(bos, ids[bos])])
        input_names = ["input_ids", "attention_mask"]
    else:
        eos = specials["eos_token"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"$A {eos}", pair=f"$A {eos} $B:1 {eos}:1", special_tokens=[(eos, ids[eos])])
        input_names = ["input_ids", "attention_mask"]

    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=MAX_LEN,
                                   model_input_names=input_names, **specials)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(folder)
    return fast


def _config(family: str, tok: PreTrainedTokenizerFast) -> Any:
    """The tiny config of `family`, with vocabulary and special ids taken from the tokenizer."""
    import transformers as tf

    common = dict(vocab_size=len(tok), pad_token_id=tok.pad_token_id)
    decoder = dict(common, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                   num_key_value_heads=1, max_position_embeddings=MAX_LEN, bos_token_id=tok.bos_token_id,
                   eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    encoder = dict(common, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                   type_vocab_size=2, max_position_embeddings=MAX_LEN,
                   # at the usual 0.02 a 32-wide random encoder maps every input to nearly the same [CLS]
                   # vector, and adapters on top of it cannot learn within a test's few steps
                   initializer_range=0.2)
    if family == "bert":
        return tf.BertConfig(**encoder)
    if family == "xlm-roberta":
        # RoBERTa positions start at pad_token_id + 1, so the table needs that many extra rows.
        encoder["max_position_embeddings"] = MAX_LEN + tok.pad_token_id + 1
        return tf.XLMRobertaConfig(**encoder, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id)
    if family == "gemma3":
        # Defaults are sized for the 1B+ checkpoints (head_dim 256, window 4096, 5 local : 1 global layers);
        # one sliding and one full layer keep both attention paths exercised.
        return tf.Gemma3TextConfig(**decoder, head_dim=16, query_pre_attn_scalar=16, sliding_window=16,
                                   layer_types=["sliding_attention", "full_attention"])
    if family == "qwen2":
        return tf.Qwen2Config(**decoder)
    if family == "llama":
        return tf.LlamaConfig(**decoder)
    if family == "t5":
        return tf.T5Config(**common, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=2,
                           num_heads=2, relative_attention_num_buckets=8, eos_token_id=tok.eos_token_id,
                           decoder_start_token_id=tok.pad_token_id)
    raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")


def build_tiny_model(family: str, folder: str | Path, *, texts: Iterable[str] | None = None, seed: int = 0,
                     masked_lm: bool = False) -> Path:
    """Save a tiny random base model of `family` plus its tokenizer into `folder`; return `folder`.

    Decoders are saved with their LM head, seq2seq models whole; encoders as the bare body, or with a masked-LM
    head when `masked_lm` (what prompt-classification needs)."""
    import torch
    import transformers as tf

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    folder = Path(folder)
    kind, role = _TOKENIZER[family]
    tok = build_tokenizer(DEFAULT_TEXTS if texts is None else texts, folder, kind=kind, role=role)
    config = _config(family, tok)
    auto = {"decoder": tf.AutoModelForCausalLM, "seq2seq": tf.AutoModelForSeq2SeqLM}.get(
        role, tf.AutoModelForMaskedLM if masked_lm else tf.AutoModel)
    with torch.random.fork_rng(devices=[]):  # deterministic weights without disturbing the caller's RNG
        torch.manual_seed(seed)
        model = auto.from_config(config)
    model.save_pretrained(folder)
    return folder


def tiny_model_cache(family: str, root: str | Path) -> Path:
    """Build `family` once into root/family and reuse it; the marker is written last, so a build that died
    half-way is redone, and the build goes to a private folder that is renamed into place (parallel-safe)."""
    target = Path(root) / family
    if (target / MARKER).exists():
        return target
    tmp = Path(root) / f".{family}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    build_tiny_model(family, tmp)
    (tmp / MARKER).write_text("ok\n")
    if target.exists() and not (target / MARKER).exists():
        shutil.rmtree(target, ignore_errors=True)  # left by a build that died before its marker
    try:
        tmp.rename(target)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# ------------------------------------------------------------------------------------------ plugin managers
def plugin_manager(*plugins: Any, builtins: bool | Iterable[str] = True) -> Any:
    """A fresh plugin manager for a test: xft's built-in plugins registered by hand, then `plugins`.

    No entry-point scan and no discovery controls: whatever else is installed, and whatever XFT_BLOCK_PLUGINS or
    XFT_DISABLE_PLUGIN_AUTOLOAD say, the manager holds exactly xft's own plugins and the ones given, so a test
    reads the same everywhere. The built-ins are the entry points of xft's own distribution (group "xft"), by
    their entry-point names (`xft_lora`, `xft_samplers`, ...) and with xft as their distribution; `builtins` may
    name the ones to register, or be False for none.

    Each plugin is a module, a class or an object with `@hookimpl` functions, registered under its `__name__` (for
    an object: its class's), or a `(name, plugin)` pair to choose the name::

        pm = plugin_manager(xft_ia3)                          # built-ins + the plugin module
        pm = plugin_manager(("mine", Mine()), builtins=["xft_classification", "xft_samplers"])
    """
    from importlib import metadata

    from xft_core.hooks.manager import ENTRY_POINT_GROUP, make_plugin_manager

    pm = make_plugin_manager(autoload=False)
    for name, _ in pm.list_name_plugin():  # names blocked through XFT_BLOCK_PLUGINS: a test decides for itself
        if name is not None and pm.is_blocked(name):
            pm.unblock(name)
    if builtins is not False:
        try:
            distribution = metadata.distribution("xft")
        except metadata.PackageNotFoundError:
            raise RuntimeError("plugin_manager: xft's built-in plugins are the entry points of the installed xft "
                               "distribution; install xft (pip install -e . in a checkout)") from None
        wanted = None if builtins is True else set(builtins)
        points = [ep for ep in distribution.entry_points if ep.group == ENTRY_POINT_GROUP]
        unknown = sorted(wanted - {ep.name for ep in points}) if wanted is not None else []
        if unknown:
            raise ValueError(f"plugin_manager: no built-in plugin {', '.join(unknown)}; "
                             f"built-ins: {', '.join(sorted(ep.name for ep in points))}")
        for ep in points:
            if wanted is None or ep.name in wanted:
                pm.register(ep.load(), name=ep.name)
                pm.distributions[ep.name] = (distribution.metadata["Name"], distribution.version)
    for item in plugins:
        name, plugin = item if isinstance(item, tuple) else (None, item)
        if name is None:
            name = getattr(plugin, "__name__", None) or type(plugin).__name__
        pm.register(plugin, name=name)
    pm.check_pending()
    return pm
