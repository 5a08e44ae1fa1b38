"""Which adapter to use for each language: the sources ranked per target language, from a transfer matrix.

With labelled data in several languages the matrix already holds, for every target language, how well each
adapter does on it. Read down a column: the best *source* of a target is the best adapter that was not trained on
it (MasakhaNER 2.0 found the best source beats English by 14 F1 on average over 20 African languages). `xft eval`
writes the ranking into the report folder as `sources.json`:

    {"format": "xft-sources/1", "metric": "macro_f1", "greater_is_better": true, "split": "dev", ...,
     "targets": {"swh": {"best_source": "eng", "ranking": [{"adapter": "eng", "score": 0.61, "own": false, ...}, ...]}},
     "fallback_map": {"swh": "eng", ...}}

`fallback_map` is what `xft serve --fallback-map sources.json` and `Router(fallback=load_fallback_map(...))` read;
`best_sources` is what the config key `data.best_sources` reads to train from a target's k best sources.
Rank on a dev split: ranking on the split you report would choose the adapter on the test rows themselves.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from xft_core.evaluation.matrix import TransferMatrix

SOURCES = "sources.json"
FORMAT = "xft-sources/1"


def source_ranking(matrix: TransferMatrix, metric: str | None = None) -> dict[str, Any]:
    """Per evaluated language: every single adapter's score on it, best first (the primary metric unless `metric`),
    and the best one not trained on it (`best_source`). Rows that are not one package (the base, a per-language row
    that serves each language by its own adapter) are left out: evaluate with each_adapter (`--each-adapter`) to
    rank a per-language run's adapters."""
    metric = metric or matrix.primary
    higher = matrix.greater_is_better.get(metric, True)
    rows = [r for r in matrix.rows if r.kind == "adapter" and "*" in r.adapters]
    targets: dict[str, Any] = {}
    for language in matrix.languages:
        ranked = []
        for row in rows:
            value = row.cells.get(language, {}).get(metric)
            if value is None or math.isnan(value):
                continue
            package = Path(row.adapters["*"])
            ranked.append({"adapter": package.name, "label": row.label, "package": str(package), "run": row.run,
                           "languages": list(row.sources), "score": value,
                           "own": language in row.sources or language in row.few_shot})
        ranked.sort(key=lambda e: (-e["score"] if higher else e["score"], e["adapter"], e["label"]))
        best = next((e["adapter"] for e in ranked if not e["own"]), None)
        targets[language] = {"best_source": best, "ranking": ranked}
    return {"format": FORMAT, "task": matrix.task, "base_model": matrix.base_model, "split": matrix.split,
            "metric": metric, "greater_is_better": higher, "examples": dict(matrix.examples), "targets": targets,
            "fallback_map": {lang: t["best_source"] for lang, t in targets.items() if t["best_source"]}}


def ranking_markdown(ranking: dict[str, Any], top: int = 3) -> list[str]:
    """The report's section: per target, the best source and the next ones with their scores."""
    targets = ranking["targets"]
    if not any(t["ranking"] for t in targets.values()):
        return []
    lines = [f"## Best sources per language ({ranking['metric']} on the {ranking['split']} split)", "",
             "The best adapter not trained on each language, then the full ranking (own adapters marked *); "
             f"the same in `{SOURCES}`, whose `fallback_map` `xft serve --fallback-map` reads.", "",
             "| language | best source | ranking |", "|---|---|---|"]
    for language, target in targets.items():
        shown = ", ".join(f"{e['adapter']}{'*' if e['own'] else ''} {e['score']:.3g}" for e in target["ranking"])
        lines.append(f"| {language} | {target['best_source'] or '-'} | {shown} |")
    split = ranking["split"]
    if split not in ("dev", "validation"):
        lines += ["", f"Ranked on the {split} split: choosing a source by the rows you report it on overstates it; "
                      "rank on a dev split (`xft eval --split dev`) and report on test."]
    return lines + [""]


def best_sources(path: str | Path, target: str, k: int, *, key: str = "data.best_sources") -> list[str]:
    """The training languages of the `k` best sources of `target` in a sources.json (adapters trained on one
    language; the target's own adapters left out), best first."""
    from xft_core.config import ConfigError

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{key}.ranking: cannot read {path} ({exc.strerror or exc}); write it with `xft eval` "
                          f"(the report folder's {SOURCES})") from None
    except ValueError as exc:
        raise ConfigError(f"{key}.ranking: {path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("targets"), dict):
        raise ConfigError(f"{key}.ranking: {path} is not a {SOURCES} written by `xft eval` (format {FORMAT})")
    targets = data["targets"]
    if target not in targets:
        raise ConfigError(f"{key}.target: '{target}' is not ranked in {path}; ranked targets: "
                          f"{', '.join(sorted(targets)) or 'none'}")
    languages: list[str] = []
    for entry in targets[target]["ranking"]:
        if not entry["own"] and len(entry["languages"]) == 1 and entry["languages"][0] not in languages:
            languages.append(entry["languages"][0])
    if not languages:
        raise ConfigError(f"{key}: {path} ranks no one-language source adapter for '{target}'")
    return languages[:k]
