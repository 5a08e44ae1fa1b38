"""README's plain-peft snippet, run as written (issue 20): it is read from README.md, so a change there that breaks
it fails here. On a tiny run of the default task (prompt-classification, the `sentiment` template of
examples/reviews.yaml) it must load the adapter's trained weights and give xft's own scores."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import tiny_config, write_sentiment_data
from xft_core.training import train

README = Path(__file__).resolve().parents[1] / "README.md"
ADAPTER = "runs/reviews-per-language/adapters/de"


def snippet() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("An adapter folder loads with plain peft")
    code = re.search(r"```python\n(.*?)```", text[start:], flags=re.S)
    assert code, "README: no python block after 'An adapter folder loads with plain peft'"
    return code.group(1)


@pytest.fixture(scope="module")
def run(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    data = write_sentiment_data(root / "data", sizes={"en": 16, "de": 16}, dev=4)
    config = tiny_config(tiny_model("gemma3"), data, root / "runs", name="reviews-per-language",
                         task="prompt-classification", task_options={"template": "sentiment"}, adapters="per_language",
                         sampler="round_robin", training={"max_steps": 6, "learning_rate": 5e-2})
    return train(config, progress=False)


def test_the_readme_snippet_loads_the_default_recipes_adapter_and_scores_as_xft_does(run, tiny_model):
    from xft_core.inference.router import Router

    code = snippet()
    assert f'"{ADAPTER}"' in code and "base_folder" in code
    namespace = {"base_folder": str(tiny_model("gemma3"))}
    exec(compile(code.replace(f'"{ADAPTER}"', repr(str(run.adapter_dirs["de"]))), str(README), "exec"), namespace)
    scores = dict(zip(namespace["labels"], namespace["logits"].softmax(-1).tolist()))

    text = re.search(r'prompt = "(.*?)\\nSentiment:"', code).group(1)
    router = Router.from_run(run.paths.root, precision="no")
    expected = router.predict([router.row_from_text(text)], ["de"])[0]["scores"]
    assert scores.keys() == expected.keys() == {"neg", "pos"}
    assert max(abs(scores[k] - expected[k]) for k in scores) < 1e-4, (scores, expected)
    bare = router.predict([router.row_from_text(text)], ["xx"])[0]["scores"]  # no adapter: the base model's answer
    assert max(abs(scores[k] - bare[k]) for k in scores) > 1e-4, "the adapter's weights were not loaded"
