"""From a run config's `data` section to rows: the one path that training, evaluation and the data check share."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from xft_core.data.readers import DataError, DataSet, Split, discover, warn

if TYPE_CHECKING:
    from xft_core.config import DataConfig


def dataset_from_config(data: DataConfig, pm: Any = None) -> DataSet:
    """Every row the `data` section names: `path` (folder or file), `files` and inline `rows`. A `path` that a data
    source plugin matches (Parquet, a saved `datasets` folder, a Hub id) is read by that source (xft_data_sources);
    any other by the `<lang>.<split>` file reader."""
    if data.path:
        from xft_core.data.source_plugins import check_splits, find_source, read_source, request_for
        from xft_core.hooks.manager import get_plugin_manager

        found = find_source(data.path, pm or get_plugin_manager())
        if found is not None:
            result = discover("", data.files, data.language_field, data.rows)
            read_source(result, found[0], found[1], request_for(data))
            check_splits(result, data, found[0].name)
            return result
    return discover(data.path, data.files, data.language_field, data.rows)


def dataset_from_path(path: str | Path, pm: Any = None) -> DataSet:
    """A data folder, file or source reference given on its own (`xft eval --data`, `xft data check PATH`): read by
    the data source that matches it, else by the `<lang>.<split>` file reader."""
    from xft_core.data.source_plugins import find_source, read_source
    from xft_core.hooks.descriptors import DataRequest
    from xft_core.hooks.manager import get_plugin_manager

    found = find_source(str(path), pm or get_plugin_manager())
    if found is None:
        return discover(path)
    result = DataSet()
    read_source(result, found[0], found[1], DataRequest(reference=str(path)))
    return result


def data_source_label(data: DataConfig) -> str:
    """How to name where the data came from in a message."""
    return data.path or ("data.files" if data.files else "data.rows")


def evaluation_languages(d: DataConfig, data: DataSet, train_languages: list[str], *, per_language: bool) -> list[str]:
    """The languages evaluated during training: `data.eval_languages`; else the train languages and, when those are
    every language with training data (`data.train_languages` unset), each language that has dev data but no
    training data: evaluated zero-shot with one shared adapter, with a DataWarning naming it either way (with
    `adapters: per_language` it has no adapter, so it is neither trained on nor evaluated)."""
    if d.eval_languages:
        with_dev = data.languages(d.dev_split)
        for language in d.eval_languages:
            if language not in with_dev:
                warn(f"data.eval_languages: '{language}' has no '{d.dev_split}' data in {data_source_label(d)}, so it is "
                     f"not evaluated during training (languages with {d.dev_split} data: {', '.join(with_dev) or 'none'}). "
                     f"Add {language}.{d.dev_split}.jsonl, or evaluate it afterwards with `xft eval`")
        return list(d.eval_languages)
    if d.train_languages or d.best_sources:
        return list(train_languages)
    dev_only = [lang for lang in data.languages(d.dev_split) if lang not in train_languages]
    for language in dev_only:
        head = (f"Language '{language}' has '{d.dev_split}' data ({data.files(d.dev_split, language)}) "
                f"but no '{d.train_split}' data")
        if per_language:
            warn(f"{head}: with adapters: per_language it gets no adapter, so it is neither trained on nor evaluated "
                 "(evaluate it with `xft eval`, or use adapters: single to evaluate it zero-shot)")
        else:
            warn(f"{head}: it is not trained on, and is evaluated zero-shot. "
                 "Set data.eval_languages to choose the evaluation languages yourself")
    return list(train_languages) + ([] if per_language else dev_only)


def warn_unread_splits(d: DataConfig, data: DataSet) -> None:
    """A split in the data that training reads under none of its names (`en.training.jsonl` beside `en.train.jsonl`)
    is never read: a DataWarning names its files and the splits the run uses."""
    used = {d.train_split, d.dev_split, d.test_split, d.unlabelled_split}
    for split in sorted(set(data.splits) - used):
        files = list(dict.fromkeys(data.files(split, language) for language in data.languages(split)))
        shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        warn(f"{shown}: split '{split}' is not one this run reads, so its rows are not used. The run trains on "
             f"'{d.train_split}' (data.train_split) and evaluates on '{d.dev_split}' (data.dev_split); `xft eval` reads "
             f"'{d.test_split}' (data.test_split) and unlabelled text comes from '{d.unlabelled_split}'. Rename the "
             f"file, or set the split key to '{split}'")


def check_label_sets(train: Mapping[str, Split], head: Any, split: str = "train") -> None:
    """Compare the label sets of the training languages, for heads with one label per row (`fields.label`).

    - a label spelt two ways that differ only in case or spaces ('Pos', 'pos'): a DataError;
    - a language that shares no label with the other languages (`positiv` vs `positive`, `0/1` vs `neg/pos`): a
      DataError, since merging would give each language its own classes and nothing could transfer;
    - a language that lacks some labels the others have: a DataWarning listing what each language lacks (those
      classes are then learnt from the other languages only, which cross-lingual training is made for).
    """
    field = getattr(getattr(head, "fields", None), "label", None)
    if not field:
        return
    seen: dict[str, Counter[str]] = {}
    for language, part in train.items():
        seen[language] = Counter(str(row[field]).strip() for row in part.rows
                                 if isinstance(row.get(field), (str, int, float)) and str(row[field]).strip())

    def where(language: str) -> str:
        files = list(dict.fromkeys(file for file, _ in train[language].where))
        return f"{language} ({', '.join(files[:2])}{', ...' if len(files) > 2 else ''})"

    spellings: dict[str, dict[str, str]] = {}  # folded label -> {spelling: first language}
    for language, labels in seen.items():
        for label in labels:
            spellings.setdefault(" ".join(label.casefold().split()), {}).setdefault(label, language)
    for variants in spellings.values():
        if len(variants) > 1:
            shown = " and ".join(f"{label!r} in {where(language)}" for label, language in list(variants.items())[:2])
            raise DataError(f"Labels {shown} differ only in case or spaces: one class spelt two ways would train as two. "
                            "Spell it the same in every file")
    if len(seen) < 2:
        return
    for language, labels in seen.items():
        others = set().union(*(set(v) for k, v in seen.items() if k != language))
        if labels and others and not set(labels) & others:
            raise DataError(f"The '{split}' labels of {where(language)} ({', '.join(sorted(labels))}) share none with the "
                            f"other languages ({', '.join(sorted(others))}): merged, every language would only teach its own "
                            "classes and nothing could transfer. Use the same label names in every language")
    union = set().union(*(set(v) for v in seen.values()))
    lacking = {language: sorted(union - set(labels)) for language, labels in seen.items() if union - set(labels)}
    if lacking:
        warn(f"The '{split}' label sets differ by language: "
             + "; ".join(f"{where(language)} has no rows labelled {', '.join(missing)}" for language, missing in lacking.items())
             + ". Those classes are learnt from the other languages only")
