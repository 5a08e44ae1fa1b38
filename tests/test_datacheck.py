"""Data checks find every planted problem at its file and line, and nothing else that matters.

Real text from the shared SIB-200 subset (eng, deu, fra, zho: the first 200 training rows, all 99 dev rows),
with planted problems: an exact duplicate, a duplicate with another label, a near duplicate, a train row
copied into dev, and a sentence of the wrong language in two files.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from xft_core.cli.main import main
from xft_core.data import DataError, discover, select
from xft_core.data.checks import check, language_detector, normalise, quick_check, similarity, subset
from xft_core.hooks import RowFields, TaskHeadSpec, hookimpl
from xft_core.hooks.manager import make_plugin_manager
from xft_core.util.languages import language_name, normalize, same_language

SIB200 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sib200"
needs_sib200 = pytest.mark.skipif(not SIB200.is_dir(), reason=f"shared SIB-200 data not found at {SIB200}")
LANGUAGES = ("eng", "deu", "fra", "zho")
ENGLISH = "The committee announced on Tuesday that the new bridge across the river would open to traffic next spring."
GERMAN = "Die Regierung hat am Dienstag angekündigt, dass die neue Brücke über den Fluss im nächsten Frühjahr öffnet."


def _read(path: Path, n: int) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:n]]


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _change_one_word(text: str) -> str:
    """Replace the first word of 5+ letters with another word and alter the punctuation."""
    word = next(w for w in re.findall(r"\w+", text) if len(w) >= 5 and w.isalpha())
    changed = text.replace(word, "Quelque", 1)
    return changed.replace(",", ";").rstrip(".") + " !"


def fresh_manager(*modules):
    """A plugin manager with only the given plugins registered (no entry-point scan)."""
    pm = make_plugin_manager(autoload=False)
    for module in modules:
        pm.register(module, name=module.__name__)
    return pm


@pytest.fixture(scope="module")
def plugins():
    """The built-in task heads and language ID, registered by hand."""
    import xft_classification
    import xft_generation
    import xft_langid
    import xft_tagging

    return fresh_manager(xft_classification, xft_generation, xft_tagging, xft_langid)


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, dict]:
    """The folder and what was planted: {name: (kind, file, line, other file, other line)} (lines 1-based)."""
    if not SIB200.is_dir():
        pytest.skip(f"shared SIB-200 data not found at {SIB200}")
    folder = tmp_path_factory.mktemp("sib200-planted")
    rows = {(lang, split): _read(SIB200 / f"{lang}.{split}.jsonl", 200) for lang in LANGUAGES for split in ("train", "dev")}
    eng, deu, fra, zho = (rows[(lang, "train")] for lang in LANGUAGES)
    eng[149] = dict(eng[9])  # exact duplicate: eng.train line 150 = line 10
    zho[119] = {"text": zho[4]["text"], "label": "sports" if zho[4]["label"] != "sports" else "travel"}  # same text, new label
    source = next(i for i in range(19, 40) if len(fra[i]["text"]) > 120)
    fra[159] = {"text": _change_one_word(fra[source]["text"]), "label": fra[source]["label"]}  # near duplicate
    rows[("deu", "dev")][49] = dict(deu[29])  # leak: deu.dev line 50 = deu.train line 30
    deu[99] = {"text": ENGLISH, "label": deu[99]["label"]}  # wrong language
    fra[69] = {"text": GERMAN, "label": fra[69]["label"]}
    for (lang, split), part in rows.items():
        _write(folder / f"{lang}.{split}.jsonl", part)

    def f(lang, split):
        return str(folder / f"{lang}.{split}.jsonl")

    expected = {
        "exact": ("duplicate", f("eng", "train"), 150, f("eng", "train"), 10),
        "same text, new label (duplicate)": ("duplicate", f("zho", "train"), 120, f("zho", "train"), 5),
        "same text, new label": ("conflicting_labels", f("zho", "train"), 120, f("zho", "train"), 5),
        "near": ("near_duplicate", f("fra", "train"), 160, f("fra", "train"), source + 1),
        "leak": ("duplicate_across_splits", f("deu", "dev"), 50, f("deu", "train"), 30),
        "english in deu": ("wrong_language", f("deu", "train"), 100, None, None),
        "german in fra": ("wrong_language", f("fra", "train"), 70, None, None),
    }
    return folder, expected


@pytest.fixture(scope="module")
def report(planted, plugins):
    pytest.importorskip("py3langid")
    return check(discover(planted[0]), pm=plugins)


def _as_tuples(findings) -> set[tuple]:
    return {(f.kind, f.file, f.line, *((f.other["file"], f.other["line"]) if f.other else (None, None))) for f in findings}


# --------------------------------------------------------------------------------------- Python API
def test_every_planted_problem_is_found_at_its_file_and_line(planted, report):
    _, expected = planted
    found = _as_tuples(f for f in report.findings if f.kind != "ambiguous_language")
    missing = {name: item for name, item in expected.items() if item not in found}
    assert not missing, f"planted problems not found: {missing}"
    assert found == set(expected.values()), f"unexpected findings: {found - set(expected.values())}"


def test_wrong_language_names_the_detected_language(report):
    detected = {Path(f.file).name: f.detail["detected"] for f in report.of("wrong_language")}
    assert detected == {"deu.train.jsonl": "en", "fra.train.jsonl": "de"}
    assert all(f.detail["expected_probability"] < 0.05 for f in report.of("wrong_language"))


def test_counts_per_language_and_split_match_the_files(planted, report):
    folder, _ = planted
    by = {(p.language, p.split): p for p in report.parts}
    assert set(by) == {(lang, split) for lang in LANGUAGES for split in ("train", "dev")}
    for (lang, split), part in by.items():
        rows = _read(folder / f"{lang}.{split}.jsonl", 10_000)
        assert part.rows == len(rows) == (200 if split == "train" else 99)
        assert part.labels == dict(sorted(Counter(r["label"] for r in rows).items()))
        assert part.langid == "checked" and part.langid_checked + part.langid_not_judged == part.rows


def test_parallel_data_is_recognised_and_translations_are_not_duplicates(report):
    assert report.parallel
    assert not report.of("cross_language_duplicate")


def test_near_duplicates_ignore_case_punctuation_digits_and_spaces():
    assert normalise("Hello, World! 42 times.") == normalise("hello world times") == "helloworldtimes"
    assert normalise("नमस्ते, दुनिया") == "नमस्तेदुनिया"  # combining vowel signs are kept
    assert similarity(normalise("The cat sat on the mat, quietly."), normalise("The dog sat on the mat quietly!")) > 0.85


def test_languages_compare_in_one_scheme():
    assert normalize("eng") == normalize("en") == normalize("en-US") == normalize("eng_Latn") == normalize("ENG") == "en"
    assert same_language("zho", "wuu") and same_language("ind", "ms") and same_language("arb", "ar")
    assert not same_language("deu", "en") and not same_language("xho", "zu")


def test_languages_unknown_to_py3langid_are_not_checkable(plugins):
    pytest.importorskip("py3langid")
    detector = language_detector(plugins)
    assert detector.knows("deu") and detector.knows("quy") and detector.knows("grn")
    assert not detector.knows("ayr") and not detector.knows("wol")


def test_subset_matches_languages_in_either_iso_scheme(planted):
    data = subset(discover(planted[0]), ["train"], ["en", "de"])
    assert list(data.splits) == ["train"] and sorted(data.splits["train"]) == ["deu", "eng"]
    with pytest.raises(DataError, match="No data for language.*xx.*Languages: deu, eng, fra, zho"):
        subset(discover(planted[0]), None, ["xx"])


def test_a_detector_plugin_answers_through_the_hook(tmp_path):
    class Umlauts:
        @hookimpl
        def xft_detect_language(self, text, candidates):
            if candidates:
                return candidates[0] if candidates[0] in ("de", "en") else None
            return "de" if re.search("[äöüß]", text) else "en"

    pm = make_plugin_manager(autoload=False)
    pm.register(Umlauts(), name="umlauts")
    _write(tmp_path / "en.train.jsonl", [{"text": "a long enough English sentence, number one"},
                                         {"text": "Größere Brücken über die Flüsse werden gebaut"}])
    _write(tmp_path / "de.train.jsonl", [{"text": "Schöne Grüße aus München an alle Leser"}])
    report = check(discover(tmp_path), fields=RowFields(text="text"), pm=pm)
    assert "umlauts" in report.detector and "xft_detect_language" in report.detector
    assert _as_tuples(report.of("wrong_language")) == {("wrong_language", str(tmp_path / "en.train.jsonl"), 2, None, None)}


def test_non_parallel_data_flags_the_same_text_under_two_languages(tmp_path):
    shared = "This sentence was filed under two languages by mistake."
    _write(tmp_path / "en.train.jsonl", [{"text": shared, "label": "a"}, {"text": "Another English sentence.", "label": "b"}])
    _write(tmp_path / "de.train.jsonl", [{"text": shared, "label": "a"}])
    report = check(discover(tmp_path), fields=RowFields(text="text", label="label"), detector=None)
    assert not report.parallel
    assert _as_tuples(report.of("cross_language_duplicate")) == {
        ("cross_language_duplicate", str(tmp_path / "en.train.jsonl"), 1, str(tmp_path / "de.train.jsonl"), 1)
    }


# ------------------------------------------------------------------------------------------ quick check
class _WhitespaceTokenizer:
    def __call__(self, texts, pairs=None, truncation=False, is_split_into_words=False):
        return {"input_ids": [t.split() for t in texts]}


def test_quick_check_warns_about_duplicates_leaks_and_long_rows_with_file_and_line(planted):
    folder, expected = planted
    data = discover(folder)
    train, dev = select(data, "train", list(LANGUAGES)), select(data, "dev", list(LANGUAGES), required=False)
    head = SimpleNamespace(fields=RowFields(text="text", pair="text_pair", label="label"))
    warnings = quick_check(train, dev, head, _WhitespaceTokenizer(), max_length=40)
    text = "\n".join(warnings)
    for kind, file, line, other_file, other_line in expected.values():
        if kind in ("duplicate", "duplicate_across_splits", "conflicting_labels"):
            assert f"{file} line {line}, repeating {other_file} line {other_line}" in text
    assert re.search(r"eng: \d+ of 200 train texts are longer than max_length=40 tokens", text)
    assert "near duplicate" not in text and "language ID" not in text


# ------------------------------------------------------------------------------------------------- CLI
def test_cli_reports_and_writes_every_finding(planted, tmp_path, capsys):
    pytest.importorskip("py3langid")
    folder, expected = planted
    out = tmp_path / "check.json"
    assert main(["data", "check", str(folder), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "deu.train.jsonl:100" in printed and "fra.train.jsonl:160" in printed and str(out) in printed.replace("\n", "")
    written = json.loads(out.read_text(encoding="utf-8"))
    found = {(f["kind"], f["file"], f["line"], (f["other"] or {}).get("file"), (f["other"] or {}).get("line"))
             for f in written["findings"] if f["kind"] != "ambiguous_language"}
    assert found == set(expected.values())
    assert written["totals"]["rows"] == 4 * (200 + 99) and written["parallel"] is True


def test_cli_filters_splits_and_languages(planted, tmp_path):
    out = tmp_path / "check.json"
    argv = ["data", "check", str(planted[0]), "--split", "train", "--languages", "en,fr", "--no-langid", "--out", str(out)]
    assert main(argv) == 0
    written = json.loads(out.read_text(encoding="utf-8"))
    assert {(p["language"], p["split"]) for p in written["parts"]} == {("eng", "train"), ("fra", "train")}
    assert {f["kind"] for f in written["findings"]} == {"duplicate", "near_duplicate"}


def test_cli_reads_the_data_section_of_a_run_config(planted, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"data:\n  path: {planted[0]}\n  train_languages: [deu]\n", encoding="utf-8")
    out = tmp_path / "check.json"
    assert main(["data", "check", str(config), "--no-langid", "--out", str(out)]) == 0
    written = json.loads(out.read_text(encoding="utf-8"))
    assert {p["language"] for p in written["parts"]} == {"deu"}
    assert [f["kind"] for f in written["findings"]] == ["duplicate_across_splits"]


def test_cli_exits_2_on_unreadable_data_naming_file_and_line(tmp_path, capsys):
    (tmp_path / "en.train.jsonl").write_text('{"text": "fine"}\n{"text": broken\n', encoding="utf-8")
    assert main(["data", "check", str(tmp_path), "--out", str(tmp_path / "out.json")]) == 2
    assert re.search(r"en\.train\.jsonl line 2: not valid JSON", capsys.readouterr().err.replace("\n", ""))
    assert not (tmp_path / "out.json").exists()


def test_cli_counts_tokens_with_the_model_tokenizer(tiny_model, tmp_path):
    from xft_core.models import load_tokenizer

    folder = tiny_model("bert")
    texts = ["good phone " * 30, "bad lamp", "lovely book " * 2]
    _write(tmp_path / "en.train.jsonl", [{"text": t, "label": "x"} for t in texts])
    out = tmp_path / "check.json"
    assert main(["data", "check", str(tmp_path), "--model", str(folder), "--max-length", "16", "--no-langid",
                 "--out", str(out)]) == 0
    over = [f for f in json.loads(out.read_text(encoding="utf-8"))["findings"] if f["kind"] == "over_length"]
    assert [(f["line"], f["detail"]["tokens"]) for f in over] == [(1, len(load_tokenizer(folder)(texts[0])["input_ids"]))]


def test_token_tagging_rows_count_tags_and_compare_tokens(tmp_path, plugins):
    rows = [{"tokens": ["Show", "All"], "tags": ["VERB", "PRON"]}, {"tokens": ["Show", "All"], "tags": ["VERB", "DET"]},
            {"tokens": ["Hello"], "tags": ["INTJ"]}]
    _write(tmp_path / "en.train.jsonl", rows)
    report = check(discover(tmp_path), pm=plugins, detector=None)
    assert report.fields == RowFields(text="tokens", tags="tags")
    assert report.parts[0].tags == {"DET": 1, "INTJ": 1, "PRON": 1, "VERB": 2}
    assert [(f.kind, f.line, f.other["line"]) for f in report.findings] == [("duplicate", 2, 1), ("conflicting_labels", 2, 1)]


@needs_sib200
def test_full_sib200_check_reads_every_language_and_names_the_uncheckable(tmp_path):
    pytest.importorskip("py3langid")
    assert main(["data", "check", str(SIB200), "--out", str(tmp_path / "sib200.json"), "--examples", "0"]) == 0
    written = json.loads((tmp_path / "sib200.json").read_text(encoding="utf-8"))
    assert written["totals"]["rows"] == 40 * 1004
    assert {p["language"] for p in written["parts"] if p["langid"] == "not checkable"} == {"ayr", "wol"}


# ------------------------------------------------------------------------------ language ID through hooks
def test_wrong_language_verdicts_come_from_a_scores_plugin(tmp_path):
    """The check asks `xft_language_scores`: clearly another language is wrong, a weak lead a close call."""
    asked = []

    class Scores:
        @hookimpl
        def xft_language_scores(self, text):
            asked.append(text)
            if text.startswith("CLEAR"):
                return {"deu": 0.97, "eng": 0.01, "fra": 0.02}
            if text.startswith("CLOSE"):
                return {"deu": 0.5, "eng": 0.3, "fra": 0.2}
            return {"eng": 0.9, "deu": 0.05, "fra": 0.05}

    class Codes:  # answers too, but scores are asked first
        @hookimpl
        def xft_detect_language(self, text, candidates):
            return "fr"

    pm = make_plugin_manager(autoload=False)
    pm.register(Scores(), name="scores")
    pm.register(Codes(), name="codes")
    rows = ["An ordinary English sentence about the weather.", "CLEAR: a sentence the plugin calls German.",
            "CLOSE: a sentence the plugin hesitates about.", "short"]
    _write(tmp_path / "en.train.jsonl", [{"text": t} for t in rows])
    report = check(discover(tmp_path), fields=RowFields(text="text"), pm=pm, near_threshold=None)
    verdicts = [(f.kind, f.line, f.detail["detected"], f.detail["expected_probability"]) for f in report.findings]
    assert verdicts == [("wrong_language", 2, "deu", 0.01), ("ambiguous_language", 3, "deu", 0.3)]
    assert "xft_language_scores hook (scores)" in report.detector
    assert "short" not in asked and report.parts[0].langid_not_judged == 1 and report.parts[0].detected == {"eng": 1, "deu": 2}


def test_languages_the_scores_never_name_are_not_checkable(tmp_path):
    class Scores:
        @hookimpl
        def xft_language_scores(self, text):
            return {"en": 0.6, "zh": 0.4}  # relatives count: a file of Cantonese is checkable through Chinese

    pm = make_plugin_manager(autoload=False)
    pm.register(Scores(), name="scores")
    for language in ("eng", "yue", "wol"):
        _write(tmp_path / f"{language}.train.jsonl", [{"text": "A sentence long enough to be judged by language ID."}])
    report = check(discover(tmp_path), fields=RowFields(text="text"), pm=pm, near_threshold=None)
    assert {p.language: p.langid for p in report.parts} == {"eng": "checked", "yue": "checked", "wol": "not checkable"}


def test_without_language_plugins_language_id_is_skipped(tmp_path):
    _write(tmp_path / "en.train.jsonl", [{"text": "Ein deutscher Satz in einer englischen Datei, lang genug."}])
    report = check(discover(tmp_path), fields=RowFields(text="text"), pm=make_plugin_manager(autoload=False))
    assert report.detector is None and report.parts[0].langid == "off" and not report.findings


def test_langid_plugin_scores_sum_to_one():
    pytest.importorskip("py3langid")
    import xft_langid

    scores = xft_langid.scores(GERMAN)
    assert max(scores, key=scores.get) == "de" and abs(sum(scores.values()) - 1) < 1e-3
    assert xft_langid.scores("   ") is None
    assert xft_langid.to_label("pbt") == "ps" and xft_langid.to_label("tgl") == "tl" and xft_langid.to_label("zsm") == "ms"


# ------------------------------------------------------------------------------------ fields from the head
class _QuestionHead:
    """A task head of a plugin: rows of `question` and `answer`, as its RowFields say."""

    fields = RowFields(text="question", target="answer")

    def validate_row(self, row):
        return None if "question" in row and "answer" in row else "missing field 'question' or 'answer'"


def test_fields_come_from_the_task_head_that_accepts_the_rows(tmp_path):
    class Questions:
        @hookimpl
        def xft_task_heads(self):
            yield TaskHeadSpec(name="qa", build=lambda options: _QuestionHead())

    import xft_classification

    pm = fresh_manager(xft_classification)
    pm.register(Questions(), name="questions")
    rows = [{"question": "Where is the station?", "answer": "Left."}, {"question": "Where is the station?", "answer": "Right."},
            {"question": "Where is the station?", "answer": "Left."}]
    _write(tmp_path / "en.train.jsonl", rows)
    report = check(discover(tmp_path), pm=pm, detector=None)
    assert report.fields == RowFields(text="question", target="answer")
    assert [(f.kind, f.line, f.other["line"]) for f in report.findings] == [("duplicate", 3, 1)]  # line 2: another answer


def test_no_task_head_accepting_the_rows_is_an_error_naming_each_head(tmp_path, plugins):
    _write(tmp_path / "en.train.jsonl", [{"premise": "A man sleeps.", "hypothesis": "Nobody sleeps.", "label": "contradiction"}])
    with pytest.raises(DataError) as error:
        check(discover(tmp_path), pm=plugins, detector=None)
    message = str(error.value)
    assert "--task NAME (one of: causal-lm, language-modeling, seq2seq, sequence-classification, token-classification)" in message
    assert re.search(r"sequence-classification: .*en\.train\.jsonl line 1: missing field 'text'", message)


def test_classification_pair_field_counts_only_when_rows_have_it(tmp_path, plugins):
    _write(tmp_path / "en.train.jsonl", [{"text": "one", "label": "a"}, {"text": "two", "label": "b"}])
    assert check(discover(tmp_path), pm=plugins, detector=None).fields == RowFields(text="text", label="label")


def test_cli_task_option_names_the_head(tmp_path):
    _write(tmp_path / "en.train.jsonl", [{"source": "Hallo Welt, wie geht es?", "target": "Hello world, how are you?"}] * 2)
    out = tmp_path / "check.json"
    assert main(["data", "check", str(tmp_path), "--task", "seq2seq", "--no-langid", "--out", str(out)]) == 0
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["task"] == "seq2seq" and written["fields"]["target"] == "target"
    assert [(f["kind"], f["line"]) for f in written["findings"]] == [("duplicate", 2)]


def test_cli_unknown_task_lists_the_heads(tmp_path, capsys):
    _write(tmp_path / "en.train.jsonl", [{"text": "x", "label": "a"}])
    assert main(["data", "check", str(tmp_path), "--task", "nope", "--out", str(tmp_path / "out.json")]) == 2
    assert re.search(r"Unknown task head 'nope' \(config key: --task\)\. Available: .*sequence-classification",
                     capsys.readouterr().err)


def test_cli_sees_the_inline_rows_of_a_run_config(tmp_path):
    config = tmp_path / "run.yaml"
    rows = [{"text": "Inline rows are data too.", "label": "a"}] * 2
    config.write_text(json.dumps({"data": {"rows": {"train": {"en": rows}}}}), encoding="utf-8")  # JSON is YAML
    out = tmp_path / "check.json"
    assert main(["data", "check", str(config), "--no-langid", "--out", str(out)]) == 0
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["totals"]["rows"] == 2 and written["task"] == "prompt-classification", "the default task"
    assert [(f["kind"], f["file"], f["line"]) for f in written["findings"]] == [("duplicate", "data.rows.train.en", 2)]


# ------------------------------------------------------------------------------------------ language codes
@pytest.mark.parametrize("codes, expected", [
    (("en", "eng", "en-US", "eng_Latn"), "en"),  # 639-1, 639-3, BCP 47, FLORES
    (("de", "deu", "ger", "de-AT"), "de"),  # 639-2/B too
    (("zh", "zho", "chi", "cmn", "zho_Hans", "zh-Hant"), "zh"),  # the dominant member names the macrolanguage
    (("ar", "ara", "arb", "arb_Arab"), "ar"),
    (("ms", "msa", "zsm"), "ms"),
    (("fa", "fas", "per", "pes"), "fa"),
    (("yue",), "yue"),
    (("arq",), "arq"),
])
def test_normalize_gives_one_code_per_language(codes, expected):
    assert [normalize(c) for c in codes] == [expected] * len(codes)


def test_same_language_includes_macrolanguage_relatives():
    related = [("zh", "yue"), ("zho", "wuu"), ("yue", "wuu"), ("ar", "arz"), ("arz", "ary"), ("ms", "id"), ("zsm", "ind"),
               ("hr", "sr"), ("bs", "hrv"), ("no", "nn"), ("nob", "nno"), ("fa", "prs"), ("qu", "quy"), ("gn", "gug")]
    assert all(same_language(a, b) and same_language(b, a) for a, b in related)
    assert not any(same_language(a, b) for a, b in [("de", "en"), ("xh", "zu"), ("da", "nb"), ("hi", "ur"), ("ru", "uk")])


def test_language_names_in_english():
    names = {c: language_name(c)
             for c in ("de", "deu", "ger", "zho", "cmn", "arq", "pt-BR", "zh_Hant", "swh", "yue", "xx-unknown")}
    assert names == {"de": "German", "deu": "German", "ger": "German", "zho": "Chinese", "cmn": "Chinese",
                     "arq": "Algerian Arabic", "pt-BR": "Portuguese", "zh_Hant": "Chinese", "swh": "Swahili",
                     "yue": "Cantonese", "xx-unknown": "xx-unknown"}
    assert language_name("deu", {"de": "Deutsch"}) == language_name("de", {"deu": "Deutsch"}) == "Deutsch"


def test_every_tatoeba_language_has_a_name():
    tatoeba = SIB200.parent / "tatoeba"
    if not tatoeba.is_dir():
        pytest.skip(f"shared Tatoeba data not found at {tatoeba}")
    codes = sorted({f.name.split(".")[0] for f in tatoeba.glob("*.jsonl")})
    unnamed = [c for c in codes if language_name(c) == c]
    assert len(codes) > 100 and not unnamed
