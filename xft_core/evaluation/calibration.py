"""Calibration without labels: a per-language correction of a classifier's label prior.

An adapter trained on one language drifts toward some labels in another (an English sentiment adapter answered
"positive" for 599 of 870 French tweets). Both methods estimate, per target language and from text alone, the
log-probability the model gives each label *a priori*, and subtract it from every prediction of that language:

- `batch` (Zhou et al. 2023, "Batch Calibration"): the prior is the mean of the predicted label distributions
  over unlabelled texts of the language, p(y) = 1/N sum_i p(y | x_i);
- `batch-log`: the same unlabelled texts, but the prior is their mean *log*-probability per label (the normalised
  geometric mean of the predicted distributions; in logit space, each label's mean logit is removed). The mean of
  the distributions is pulled most by the texts the model is sure of; the mean of their logs as much by the
  labels it finds very unlikely on some texts;
- `contextual` (Zhao et al. 2021, "Calibrate Before Use"): the prior is the mean distribution over content-free
  inputs ("N/A", "", the mask token) put through the same prompt, with that language's label words;
- `domain` (Fei et al. 2023, "Mitigating Label Biases for In-context Learning", domain-context calibration): the
  mean distribution over 20 inputs of random tokens drawn from the language's unlabelled text, each field as long
  as that field's mean: content-free, but in the language and domain of the rows (tokens, not words, so that
  languages written without spaces are covered).

Calibrated scores are softmax(log p(y | x) - log p(y)): a uniform prior changes nothing. Priors are stored per
language in the adapter package (`calibration.json`) and applied wherever that package answers rows of that
language: `xft eval`, `xft predict`, `xft serve`, `Router` (mixed-language batches included) and the Python API.
The model's raw `logits` are kept; `scores` and `label` are the calibrated ones.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xft_core.adapters import AdapterError
from xft_core.util.errors import UserError
from xft_core.util.languages import normalize

CALIBRATION = "calibration.json"
METHODS = ("batch", "batch-log", "contextual", "domain")
FROM_TEXT = ("batch", "batch-log", "domain")  # the methods that need the language's unlabelled text
ONE_PASS = ("batch", "batch-log")  # the prior is the mean over the unlabelled rows' own predictions
CONTENT_FREE = ("N/A", "", "[MASK]")  # Zhao et al. 2021; the mask placeholder is the tokenizer's own when it has one
DOMAIN_SAMPLES = 20  # Fei et al. 2023


@dataclass
class Calibration:
    """Per-language log priors of one package's labels: {language: {"method", "log_prior", "rows", "from"}}."""

    labels: list[str]
    languages: dict[str, dict[str, Any]] = field(default_factory=dict)

    def prior(self, language: str | None) -> list[float] | None:
        """The log prior for rows of `language` (matched in any ISO 639 form: 'de' finds 'deu'), or None."""
        if not language:
            return None
        entry = self.languages.get(language)
        if entry is None:
            key = normalize(language)
            entry = next((v for k, v in self.languages.items() if normalize(k) == key), None)
        return None if entry is None else list(entry["log_prior"])

    def apply(self, predictions: Sequence[dict[str, Any]], language: str | None) -> list[dict[str, Any]]:
        """`predictions` of rows of `language` with calibrated scores and labels (unchanged without a prior)."""
        prior = self.prior(language)
        if prior is None:
            return list(predictions)
        return [correct(p, self.labels, prior) for p in predictions]

    def to_json(self) -> dict[str, Any]:
        return {"format": 1, "labels": list(self.labels), "languages": self.languages}

    @classmethod
    def read(cls, package: Path) -> Calibration | None:
        """The package's calibration, or None when it has none; a malformed file is an error naming it."""
        import json

        path = Path(package) / CALIBRATION
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            labels = [str(x) for x in data["labels"]]
            languages = {str(k): dict(v) for k, v in data["languages"].items()}
            for language, entry in languages.items():
                if entry.get("method") not in METHODS or len(entry["log_prior"]) != len(labels):
                    raise ValueError(f"language {language!r}: needs a method ({', '.join(METHODS)}) and one log prior per label")
                entry["log_prior"] = [float(x) for x in entry["log_prior"]]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise AdapterError(f"{path}: not a valid calibration file ({exc}); estimate it again with `xft calibrate`, "
                               "or delete it to serve uncalibrated") from None
        return cls(labels, languages)

    @classmethod
    def for_labels(cls, package: Path, labels: Sequence[str]) -> Calibration:
        """The package's calibration to add languages to; a new one when it has none or was estimated for another
        label set (that one starts over)."""
        found = cls.read(package)
        return found if found is not None and found.labels == list(labels) else cls(list(labels))

    def estimate(self, language: str, predictions: Sequence[Mapping[str, Any]], method: str, origin: list[str]) -> None:
        """Store `language`'s prior as `method` estimates it from `predictions` (raw, uncalibrated) of `origin`."""
        self.languages[language] = {"method": method, "log_prior": log_prior(predictions, self.labels, method),
                                    "rows": len(predictions), "from": origin}

    def write(self, package: Path) -> Path:
        from xft_core.util.files import atomic_write_json

        path = Path(package) / CALIBRATION
        atomic_write_json(path, self.to_json())
        return path


def correct(prediction: dict[str, Any], labels: Sequence[str], log_prior: Sequence[float]) -> dict[str, Any]:
    """One prediction with softmax(log p(y|x) - log p(y)) as its scores and their argmax as its label."""
    scores = prediction.get("scores")
    if not isinstance(scores, Mapping) or list(scores) != list(labels):
        raise AdapterError(f"calibration is for labels {', '.join(labels)}, but the prediction scores "
                           f"{', '.join(scores or ())}: estimate it again for this adapter")
    shifted = [math.log(max(float(scores[label]), 1e-38)) - prior for label, prior in zip(labels, log_prior)]
    top = max(shifted)
    weights = [math.exp(v - top) for v in shifted]
    total = sum(weights)
    new = {label: w / total for label, w in zip(labels, weights)}
    best = max(range(len(labels)), key=lambda i: shifted[i])
    return {**prediction, "label": labels[best], "scores": new}


def log_prior(predictions: Sequence[Mapping[str, Any]], labels: Sequence[str], method: str = "batch") -> list[float]:
    """The log prior `method` subtracts: log of the mean predicted distribution (`batch`, `contextual`, `domain`),
    or the normalised mean log-probability (`batch-log`)."""
    if not predictions:
        raise UserError("no predictions to estimate a prior from (no unlabelled rows for this language?)")
    if method == "batch-log":
        means = [sum(math.log(max(float(p["scores"][label]), 1e-38)) for p in predictions) / len(predictions)
                 for label in labels]
        top = max(means)
        norm = top + math.log(sum(math.exp(m - top) for m in means))
        return [m - norm for m in means]
    means = [sum(float(p["scores"][label]) for p in predictions) / len(predictions) for label in labels]
    return [math.log(max(m, 1e-38)) for m in means]


def content_free_rows(head: Any, tokenizer: Any, like: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The content-free inputs as this head's rows; where the language's rows are pairs (NLI), both texts."""
    pair = getattr(head.fields, "pair", None)
    pairs = bool(pair) and any(row.get(pair) for row in like)
    mask = getattr(tokenizer, "mask_token", None)
    rows = []
    for text in CONTENT_FREE:
        text = mask if text == "[MASK]" and mask else text
        row = dict(head.input_row(text))
        if pairs:
            row[pair] = text
        rows.append(row)
    return rows


def domain_context_rows(head: Any, tokenizer: Any, rows: Sequence[Mapping[str, Any]], language: str,
                        samples: int = DOMAIN_SAMPLES) -> list[dict[str, Any]]:
    """`samples` rows of random tokens drawn from the tokens of `rows` (one language's unlabelled text), each field
    (the text; its pair, for NLI) as many tokens long as that field's mean; the same rows for the same text."""
    import random
    import zlib

    if not rows:
        raise UserError(f"domain calibration of {language}: no unlabelled rows to draw tokens from")
    pair = getattr(head.fields, "pair", None)
    fields = [head.fields.text] + ([pair] if pair and any(row.get(pair) for row in rows) else [])
    pools = {}
    for name in fields:
        ids = [tokenizer(str(row.get(name) or ""), add_special_tokens=False)["input_ids"] for row in rows]
        pools[name] = ([t for seq in ids for t in seq], max(1, round(sum(map(len, ids)) / len(ids))))
    rng = random.Random(zlib.crc32(f"{language}:{len(rows)}".encode()))
    out = []
    for _ in range(samples):
        texts = {name: tokenizer.decode(rng.choices(pool, k=length)) if pool else "" for name, (pool, length) in pools.items()}
        row = dict(head.input_row(texts[head.fields.text]))
        row.update({name: text for name, text in texts.items() if name != head.fields.text})
        out.append(row)
    return out


def prior_inputs(method: str, head: Any, tokenizer: Any, rows: Sequence[Mapping[str, Any]],
                 language: str) -> list[dict[str, Any]]:
    """The rows whose predictions `method` estimates `language`'s prior from."""
    if method in ONE_PASS:
        return list(rows)
    if method == "domain":
        return domain_context_rows(head, tokenizer, rows, language)
    return content_free_rows(head, tokenizer, rows)


@dataclass
class Estimated:
    """What `calibrate` did: the priors per package and language, and its cost."""

    packages: dict[Path, Calibration]
    forward_rows: int  # rows put through the model to estimate the priors
    seconds: float


def calibrate(sources: str | Path | Sequence[str | Path], data: Any, *, languages: Sequence[str] | None = None,
              split: str | None = None, method: str = "batch", max_rows: int = 500, pm: Any = None,
              batch_size: int = 32, max_length: int | None = None, precision: str | None = None,
              evaluated: Sequence[str] = (), texts: Mapping[str, Any] | None = None, progress: bool = True,
              console: Any = None) -> Estimated:
    """Estimate each language's label prior for every adapter package of `sources` (run folders or packages) and
    store it in the package (`calibration.json`, written atomically; other languages already there are kept).

    `data` is a data folder, file or `DataSet` holding unlabelled text (`<lang>.unlabelled.jsonl|txt`, or the
    split `split`); its rows that repeat an evaluation row (the test split, the dev split of the `evaluated`
    languages) are dropped. `languages` default to every
    language with unlabelled text. `method` is one of `METHODS`; "contextual" needs no data: content-free inputs stand in for it.
    `texts` ({language: Split}) gives the unlabelled rows directly instead of `data`.

    Example::

        calibrate("runs/en-sentiment", "data/", languages=["fr", "ar"])   # then xft eval / serve use it
    """
    from xft_core.adapters import check_compatible, load_base, strategy_from_manifest
    from xft_core.config import DataConfig
    from xft_core.data.loading import dataset_from_path
    from xft_core.data.readers import UNLABELLED_SPLIT, DataError, DataSet
    from xft_core.data.unlabelled import unlabelled_rows
    from xft_core.evaluation.plan import calibration_packages
    from xft_core.evaluation.predict import predict_rows, with_language
    from xft_core.hooks.manager import get_plugin_manager
    from xft_core.util.console import progress as progress_bar
    from xft_core.util.precision import resolve_precision

    if method not in METHODS:
        raise UserError(f"calibration method {method!r} is not one of: {', '.join(METHODS)}")
    started = time.perf_counter()
    pm = pm or get_plugin_manager()
    packages = calibration_packages(sources)
    head = calibrated_head(packages, pm)
    dataset = data if isinstance(data, DataSet) else dataset_from_path(data, pm) if data is not None else DataSet()
    d = DataConfig(path="-", unlabelled_split=split or UNLABELLED_SPLIT)
    if texts is None:
        texts = unlabelled_rows(dataset, d, head, languages, evaluated=evaluated, limit=max_rows)
    wanted = list(languages) if languages is not None else sorted(texts)
    if method in FROM_TEXT:
        missing = [lang for lang in wanted if lang not in texts]
        if missing or not wanted:
            raise DataError(f"{method} calibration needs unlabelled text of {', '.join(missing) or 'some language'} "
                            f"(split '{d.unlabelled_split}': <lang>.{d.unlabelled_split}.jsonl or .txt in {data}); "
                            f"languages with some: {', '.join(dataset.languages(d.unlabelled_split)) or 'none'}. "
                            "Or use method 'contextual'")
    base = load_base(packages[0], pm)
    run_length, run_precision = run_settings(packages[0])
    max_length = max_length or run_length
    precision = resolve_precision(precision or run_precision, "cpu")
    found: dict[Path, Calibration] = {}
    forward = 0
    with progress_bar(console, enabled=progress, transient=True) as bar:
        task = bar.add_task("calibration", total=len(packages) * len(wanted))
        inputs, origins = {}, {}  # the same for every package: drawn and described once per language
        for language in wanted:
            part = texts.get(language)
            inputs[language] = prior_inputs(method, base.head, base.tokenizer, part.rows if part else [], language)
            files = sorted({file for file, _ in part.where}) if part else []
            origins[language] = (files if method in ONE_PASS else
                                 [f"{DOMAIN_SAMPLES} rows of random tokens from {', '.join(files)}"] if method == "domain"
                                 else ["content-free inputs"])
        for package in packages:
            _, strategy = strategy_from_manifest(check_compatible(base, package), pm)
            model = strategy.attach(base.model, package, "xft-calibrate", base.head)
            try:
                calibration = Calibration.for_labels(package, base.head.labels)
                for language in wanted:
                    bar.update(task, description=f"{package.name}: {method} prior of {language}")
                    strategy.activate(model, "xft-calibrate", language)
                    predictions = predict_rows(base.head, model, base.tokenizer, with_language(inputs[language], language),
                                               batch_size=batch_size, max_length=max_length, precision=precision)
                    forward += len(inputs[language])
                    calibration.estimate(language, predictions, method, origins[language])
                    bar.advance(task)
                calibration.write(package)
                found[package] = calibration
            finally:
                base.model = strategy.detach(model, "xft-calibrate")
    return Estimated(found, forward, time.perf_counter() - started)


def calibrated_head(packages: Sequence[Path], pm: Any) -> Any:
    """The task head of the packages, after checking it classifies rows into labels (one label per row, scores per
    label): calibration corrects a label prior, which taggers and generators do not have."""
    from xft_core.adapters import Manifest, head_from_manifest

    manifest = Manifest.read(packages[0])
    head = head_from_manifest(manifest, pm)
    if not getattr(head.fields, "label", None) or not getattr(head, "labels", None):
        raise AdapterError(f"{packages[0]}: the {manifest.data.get('task', '?')} head predicts no label per row, so there is "
                           "no label prior to calibrate (calibration is for classification heads: prompt-classification, "
                           "sequence-classification)")
    return head


def run_settings(package: Path) -> tuple[int, str]:
    """(max_length, precision) of the run a package comes from, as `xft eval` uses them (128 and 'no' outside a run)."""
    from xft_core.config import ConfigError, load_config
    from xft_core.evaluation.plan import run_root
    from xft_core.util.runfiles import CONFIG

    root = run_root(Path(package))
    if root is not None:
        try:
            config = load_config(root / CONFIG)
            return config.training.max_length, config.training.precision
        except ConfigError:
            pass
    return 128, "no"
