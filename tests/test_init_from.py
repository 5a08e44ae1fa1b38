"""`init_from` checks the package against the run before any weights load (issue 20): task, label set and
order, label details (a tagging scheme); a different label set is an error naming both; another architecture
under a copied fingerprint is a package error, not an internal KeyError; the new manifest records the source
package and its hash. Manifests of any shape are refused with an AdapterError or accepted, nothing else."""

from __future__ import annotations

import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_integrity_fingerprint import copy_package, easy_data, package  # noqa: F401 - fixtures

from conftest import tiny_config, write_sentiment_data
from xft_core.adapters import AdapterError, base_fingerprint, check_init_from
from xft_core.adapters.package import package_sha256
from xft_core.config import load_config
from xft_core.training import prepare, train


@pytest.fixture
def no_weights_load(monkeypatch):
    """Fail the test if the package's weights are read: every refusal below must come before."""
    import importlib

    preparing = importlib.import_module("xft_core.training.prepare")  # the package exports a function of that name

    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded before the package was checked")

    monkeypatch.setattr(preparing, "init_weights_from", refuse)


def relabelled(tmp_path, labels: dict[str, str]):
    """The sentiment data with its labels renamed (pos -> politics, neg -> sports, say)."""
    source = write_sentiment_data(tmp_path / "source", vocabulary=2)
    target = tmp_path / "relabelled"
    target.mkdir()
    for path in source.iterdir():
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        path_out = target / path.name
        path_out.write_text("".join(json.dumps({**r, "label": labels.get(r["label"], r["label"])}) + "\n" for r in rows))
    return target


def test_another_label_set_is_refused_naming_both(package, tiny_model, tmp_path, pm, no_weights_load):  # noqa: F811
    data = relabelled(tmp_path, {"pos": "politics", "neg": "sports"})
    config = tiny_config(tiny_model("bert"), data, tmp_path, name="topics", init_from=str(package))
    with pytest.raises(AdapterError) as error:
        prepare(load_config(config), pm=pm)
    message = str(error.value)
    assert f"init_from {package}" in message and "[neg, pos]" in message and "[politics, sports]" in message


def test_another_number_of_labels_is_refused_before_a_size_mismatch(package, tiny_model, tmp_path, pm,  # noqa: F811
                                                                    no_weights_load):
    data = write_sentiment_data(tmp_path / "data", vocabulary=2)
    with (data / "en.train.jsonl").open("a") as handle:
        handle.write(json.dumps({"text": "phone so-so", "label": "neutral"}) + "\n")
    config = tiny_config(tiny_model("bert"), data, tmp_path, name="three", init_from=str(package))
    with pytest.raises(AdapterError, match=r"label set is \[neg, pos\]; this run's label set is \[neg, neutral, pos\]"):
        prepare(load_config(config), pm=pm)


def test_the_same_labels_in_another_order_are_refused(package, tiny_model, easy_data, tmp_path, pm,  # noqa: F811
                                                      no_weights_load):
    config = tiny_config(tiny_model("bert"), easy_data, tmp_path, name="order", init_from=str(package),
                         task_options={"labels": ["pos", "neg"]})
    with pytest.raises(AdapterError, match=r"order \[neg, pos\], this run's in the order \[pos, neg\]"):
        prepare(load_config(config), pm=pm)


def test_a_package_of_another_task_is_refused(package, tiny_model, easy_data, tmp_path, pm, no_weights_load):  # noqa: F811
    other = copy_package(package, tmp_path / "tagger", task="token-classification")
    config = tiny_config(tiny_model("bert"), easy_data, tmp_path, name="task", init_from=str(other))
    with pytest.raises(AdapterError, match="a package of task \"token-classification\"; this run trains 'sequence-"):
        prepare(load_config(config), pm=pm)


def test_another_architecture_with_a_copied_fingerprint_is_a_package_error(package, tiny_model, easy_data, tmp_path,  # noqa: F811
                                                                           pm):
    """Was "internal error, KeyError" (or a raw size mismatch): the weights are checked by loading them."""
    gemma = tiny_model("gemma3")
    forged = copy_package(package, tmp_path / "forged", base_fingerprint=base_fingerprint(gemma))
    config = tiny_config(gemma, easy_data, tmp_path, name="forged", init_from=str(forged))
    with pytest.raises(AdapterError, match=f"init_from {forged}: its weights do not fit this run's model"):
        prepare(load_config(config), pm=pm)


def test_the_new_manifest_records_the_source_package_and_its_hash(package, tiny_model, easy_data, tmp_path, pm):  # noqa: F811
    config = tiny_config(tiny_model("bert"), easy_data, tmp_path, name="continued", init_from=str(package),
                         training={"max_steps": 1})
    run = train(config, pm=pm, progress=False)
    manifest = json.loads((run.adapter_dirs["multilingual"] / "xft.json").read_text())
    assert manifest["init_from"]["path"] == str(package.resolve())
    assert manifest["init_from"]["sha256"] == package_sha256(package) and len(package_sha256(package)) == 64
    assert manifest["init_from"]["run"] == "shared"


# ------------------------------------------------------------------------------------------ fuzzing
FUZZ = settings(derandomize=True, max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
                    st.sampled_from(["neg", "pos", "sequence-classification", "\ud800", "lora", "bio"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=6)
KEYS = ["task", "labels", "base_fingerprint", "fallback_tag", "scheme", "strategy", "run", "step", "languages"]


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(KEYS), st.one_of(st.none(), values), max_size=4),
       raw=st.one_of(st.none(), st.binary(max_size=40)))
def test_any_manifest_is_accepted_only_when_it_fits_else_an_adapter_error(package, tiny_model, tmp_path_factory,  # noqa: F811
                                                                          changes, raw):
    folder = tmp_path_factory.mktemp("fuzz") / "package"
    shutil.copytree(package, folder)
    manifest = json.loads((folder / "xft.json").read_text())
    for key, value in changes.items():
        manifest[key] = value
    text = json.dumps(manifest, ensure_ascii=False).encode("utf-8", "surrogatepass") if raw is None else raw
    (folder / "xft.json").write_bytes(text)
    ours = {"labels": ["neg", "pos"]}
    model = tiny_model("bert")
    try:
        record = check_init_from(folder, model, task="sequence-classification", label_info=ours)
    except AdapterError as exc:
        str(exc).encode("utf-8")  # printable
        assert str(folder) in str(exc)
        return
    assert raw is None and manifest.get("task") == "sequence-classification" and manifest.get("labels") == ours["labels"]
    assert manifest.get("base_fingerprint") == base_fingerprint(model) and record["sha256"] == package_sha256(folder)


def test_another_tagging_scheme_is_refused_and_an_older_package_without_one_is_not(package, tiny_model, tmp_path):  # noqa: F811
    """A tagger's manifest records its scheme (label_info); plain tags read as BIO would decode other spans."""
    tags = ["B-PER", "I-PER", "O"]
    plain = copy_package(package, tmp_path / "plain", task="token-classification", labels=tags, scheme="plain")
    ours = {"labels": tags, "fallback_tag": "O", "scheme": "bio"}
    with pytest.raises(AdapterError, match="its scheme is \"plain\"; this run's scheme is \"bio\""):
        check_init_from(plain, tiny_model("bert"), task="token-classification", label_info=ours)
    older = copy_package(package, tmp_path / "older", task="token-classification", labels=tags)
    assert check_init_from(older, tiny_model("bert"), task="token-classification", label_info=ours)["sha256"]


def test_a_tagger_adopts_the_packages_fallback_tag_but_not_its_scheme(package, tiny_model, tmp_path):  # noqa: F811
    """The fallback tag is the most frequent training tag: a run on other data (a new language, pseudo-labelled rows)
    counts another one, yet no weight depends on it, so the head lists it in adopted_label_info and the run keeps
    the package's. The scheme still has to match."""
    from xft_tagging import TaggingOptions, TokenClassification

    tags = ["ADJ", "NOUN", "VERB"]
    head = TokenClassification(TaggingOptions(labels=tags))
    head.fit_labels([{"tokens": ["a", "b", "c"], "tags": ["ADJ", "ADJ", "NOUN"]}])
    assert head.label_info()["fallback_tag"] == "ADJ"
    noun = copy_package(package, tmp_path / "noun", task="token-classification", labels=tags, fallback_tag="NOUN",
                        scheme="plain")
    model = tiny_model("bert")
    with pytest.raises(AdapterError, match="its fallback_tag is \"NOUN\""):
        check_init_from(noun, model, task="token-classification", label_info=head.label_info())
    assert check_init_from(noun, model, task="token-classification", label_info=head.label_info(),
                           adopted=head.adopted_label_info)["sha256"]
    bio = copy_package(package, tmp_path / "bio", task="token-classification", labels=tags, fallback_tag="NOUN",
                       scheme="bio")
    with pytest.raises(AdapterError, match="its scheme is \"bio\""):
        check_init_from(bio, model, task="token-classification", label_info=head.label_info(),
                        adopted=head.adopted_label_info)
    head.load_label_info({"labels": tags, "fallback_tag": "NOUN"})
    assert head.label_info()["fallback_tag"] == "NOUN"
