"""Several source languages: the transfer matrix ranks every adapter per target language (best source = best not
trained on it) into the report and sources.json; `data.best_sources` trains from a target's k best sources;
`xft eval`'s sources.json is a fallback map the router reads; errors name the key and the valid choices."""

from __future__ import annotations

import json

import pytest

from conftest import tiny_config
from xft_core.config import ConfigError, load_config
from xft_core.evaluation import MatrixRow, TransferMatrix, write_reports
from xft_core.evaluation.ranking import best_sources, source_ranking


def matrix(metric: str = "macro_f1", higher: bool = True) -> TransferMatrix:
    def row(language: str, cells: dict[str, float]) -> MatrixRow:
        return MatrixRow(f"{language} (zero-shot)", "adapter", [language], {"*": f"/runs/{language}/adapters/{language}"},
                         language, {lang: {metric: v} for lang, v in cells.items()})

    rows = [MatrixRow("base (no adapter)", "base", [], cells={"swh": {metric: 0.99}}),
            row("eng", {"eng": 0.9, "deu": 0.7, "swh": 0.5}),
            row("deu", {"eng": 0.6, "deu": 0.95, "swh": 0.55}),
            row("fra", {"eng": 0.65, "deu": 0.72, "swh": 0.4})]
    return TransferMatrix(["eng", "deu", "swh"], rows, [metric], "dev", "prompt-classification", "tiny",
                          {"eng": 10, "deu": 10, "swh": 10}, {metric: higher})


def test_each_target_gets_its_best_source_and_the_full_ranking():
    ranking = source_ranking(matrix())
    swh = ranking["targets"]["swh"]
    assert [e["adapter"] for e in swh["ranking"]] == ["deu", "eng", "fra"]  # the base row is not a source
    assert swh["best_source"] == "deu" and swh["ranking"][0]["score"] == 0.55
    deu = ranking["targets"]["deu"]
    assert deu["ranking"][0] == {**deu["ranking"][0], "adapter": "deu", "own": True}
    assert deu["best_source"] == "fra"  # its own adapter is not a source of it
    assert ranking["fallback_map"] == {"eng": "fra", "deu": "fra", "swh": "deu"}
    assert (ranking["metric"], ranking["split"], ranking["greater_is_better"]) == ("macro_f1", "dev", True)
    lower = source_ranking(matrix("loss", higher=False))["targets"]["swh"]
    assert [e["adapter"] for e in lower["ranking"]] == ["fra", "eng", "deu"]


def test_the_report_holds_the_ranking_and_sources_json(tmp_path):
    paths = write_reports(matrix(), tmp_path / "report")
    data = json.loads(paths["sources"].read_text())
    assert data["targets"]["swh"]["best_source"] == "deu" and data["format"] == "xft-sources/1"
    text = paths["md"].read_text()
    assert "## Best sources per language (macro_f1 on the dev split)" in text
    assert "| swh | deu | deu 0.55, eng 0.5, fra 0.4 |" in text


def test_best_sources_reads_the_k_best_and_names_what_is_wrong(tmp_path):
    path = write_reports(matrix(), tmp_path)["sources"]
    assert best_sources(path, "swh", 2) == ["deu", "eng"]
    assert best_sources(path, "deu", 5) == ["fra", "eng"]  # never its own language
    with pytest.raises(ConfigError, match="data.best_sources.target: 'yor' is not ranked .*ranked targets: deu, eng, swh"):
        best_sources(path, "yor", 2)
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a sources.json written by `xft eval`"):
        best_sources(tmp_path / "other.json", "swh", 2)
    with pytest.raises(ConfigError, match="data.best_sources.ranking: cannot read"):
        best_sources(tmp_path / "missing.json", "swh", 2)


@pytest.mark.parametrize("best, message", [
    ({"target": "swh", "k": 2, "ranking": "s.json", "top": 1}, r"unknown key\(s\) top. Valid keys: target .*; k .*; ranking"),
    ({"k": 2, "ranking": "s.json"}, "data.best_sources.target is required"),
    ({"target": "swh", "k": 0, "ranking": "s.json"}, "data.best_sources.k must be a positive integer"),
])
def test_the_config_key_is_checked(best, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        load_config({"data": {"path": str(tmp_path), "best_sources": best}})
    with pytest.raises(ConfigError, match="data.best_sources and data.train_languages exclude each other"):
        load_config({"data": {"path": str(tmp_path), "train_languages": ["en"],
                              "best_sources": {"target": "swh", "ranking": "s.json"}}})


def test_a_run_trains_on_the_k_best_sources_of_a_target(tiny_model, sentiment_data, pm, tmp_path):
    from xft_core.training import train

    sources = {"format": "xft-sources/1", "targets": {"ru": {"best_source": "de", "ranking": [
        {"adapter": "ru", "languages": ["ru"], "score": 0.9, "own": True},
        {"adapter": "de", "languages": ["de"], "score": 0.8, "own": False},
        {"adapter": "multi", "languages": ["en", "de"], "score": 0.7, "own": False},
        {"adapter": "en", "languages": ["en"], "score": 0.6, "own": False}]}}}
    (tmp_path / "sources.json").write_text(json.dumps(sources))
    config = tiny_config(tiny_model("bert"), sentiment_data, tmp_path / "runs", training={"max_steps": 2})
    config["data"] = {"path": str(sentiment_data), "best_sources": {"target": "ru", "k": 2,
                                                                    "ranking": str(tmp_path / "sources.json")}}
    run = train(config, pm=pm, progress=False)
    assert json.loads((run.paths.root / "run.json").read_text())["train_languages"] == ["de", "en"]


def test_eval_of_a_per_language_run_writes_a_fallback_map_the_router_reads(tiny_model, sentiment_data, pm, tmp_path):
    from xft_core.evaluation import evaluate
    from xft_core.inference.fallback import load_fallback_map
    from xft_core.inference.router import Router
    from xft_core.training import train

    config = tiny_config(tiny_model("bert"), sentiment_data, tmp_path / "runs", adapters="per_language",
                         sampler="round_robin", training={"max_steps": 3})
    root = train(config, pm=pm, progress=False).paths.root
    result = evaluate(root, split="dev", each_adapter=True, pm=pm, progress=False, curves=False)
    ranking = json.loads(result.paths["sources"].read_text())
    assert set(ranking["targets"]) == {"en", "de", "ru"} and ranking["split"] == "dev"
    for language, target in ranking["targets"].items():
        assert [e["adapter"] for e in target["ranking"] if e["own"]] == [language]
        assert target["best_source"] in {"en", "de", "ru"} - {language}
    router = Router.from_run(root, pm=pm)
    router.unregister("ru")
    router.set_fallback({"ru": load_fallback_map(result.paths["sources"])["ru"]})
    assert router.predict(["x"], "ru")[0]["adapter"] == ranking["targets"]["ru"]["best_source"]
