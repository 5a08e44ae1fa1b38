"""What the router does with a language that has no adapter of its own: the fallback map.

A fallback map sends each such language (or "*", every other one) to one of:

    {"swh": "eng",                                    # one adapter: the best source, say, from sources.json
     "yor": {"merge": {"hau": 0.6, "ibo": 0.4}},      # a merge of adapters: model surgery, by the strategy's combine
     "wol": {"ensemble": ["fra", "eng"]},             # an ensemble: the adapters' probabilities averaged
     "*": {"nearest": "merge", "k": 3}}               # the k adapters of the nearest languages, merged (or "ensemble")

Why three: the best source (ranked on labelled dev data of the language, `xft eval`'s sources.json) needs
labelled data; a merge or an ensemble of the nearest languages' adapters needs none, only a language-distance
table (util/language_distance.py). A merge costs one adapter's forward and is built once per language (a real
package, saved and registered like any other, that plain peft loads); an ensemble costs one forward per member
but needs no model surgery, so it works for every strategy, and it is what the literature found robust for
unseen varieties (Wang et al. 2021, EMEA). benchmarks/fallback.py measures all three against the English adapter.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from xft_core.adapters import AdapterError

KINDS = ("merge", "ensemble", "nearest")
FORMS = ('an adapter name', '{"merge": {adapter: weight, ...}}', '{"ensemble": {adapter: weight, ...}}',
         '{"nearest": "merge" or "ensemble", "k": 3, "table": "uriel" or "cldr"}')
ENSEMBLE = "ensemble:"  # the per-row name of an ensemble route (adapter names hold no ':')


@dataclass(frozen=True)
class Route:
    """Where one language goes: `adapter` (one adapter), `merge`, `ensemble`, or `nearest` (merge or ensemble of the
    k nearest languages' adapters, `how`)."""

    kind: str
    adapters: dict[str, float] = field(default_factory=dict)
    how: str = ""
    k: int = 3
    table: str = "uriel"

    def names(self) -> list[str]:
        return list(self.adapters)


def parse_fallback(value: Any, where: str = "fallback") -> dict[str, Route]:
    """{language or "*": Route} from a Router's `fallback`: None, one adapter name (every language), or a map."""
    if value is None:
        return {}
    if isinstance(value, str):
        return {"*": Route("adapter", {value: 1.0})}
    if not isinstance(value, Mapping):
        raise AdapterError(f"{where}: expected an adapter name or a map of language -> route, got {type(value).__name__}")
    return {str(language): _route(spec, f"{where}.{language}") for language, spec in value.items()}


def _route(spec: Any, where: str) -> Route:
    if isinstance(spec, str):
        return Route("adapter", {spec: 1.0})
    if isinstance(spec, Mapping) and len([k for k in spec if k in KINDS]) == 1:
        kind = next(k for k in spec if k in KINDS)
        extra = sorted(set(spec) - {kind, "k", "table"})
        if not extra and kind == "nearest":
            if spec["nearest"] not in ("merge", "ensemble"):
                raise AdapterError(f"{where}.nearest: {spec['nearest']!r} is not one of: merge, ensemble")
            k = spec.get("k", 3)
            if not isinstance(k, int) or isinstance(k, bool) or k < 1:
                raise AdapterError(f"{where}.k: expected a positive integer, got {k!r}")
            return Route("nearest", how=spec["nearest"], k=k, table=str(spec.get("table", "uriel")))
        if not extra and set(spec) == {kind}:
            return Route(kind, _weights(spec[kind], f"{where}.{kind}"))
    raise AdapterError(f"{where}: {json.dumps(spec, default=str)[:200]} is not a route. Write one of: {'; '.join(FORMS)}")


def _weights(value: Any, where: str) -> dict[str, float]:
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return {name: 1.0 / len(value) for name in value}
    if isinstance(value, Mapping) and value:
        weights = {}
        for name, weight in value.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
                raise AdapterError(f"{where}.{name}: a weight must be a positive number, got {weight!r}")
            weights[str(name)] = float(weight)
        return weights
    raise AdapterError(f"{where}: expected a list of adapter names or a map of adapter -> weight, got {value!r}")


def load_fallback_map(path: str | Path) -> dict[str, Any]:
    """A fallback map from a JSON file: a map as above, or `xft eval`'s sources.json (each target language to its
    best source adapter, `fallback_map` in that file)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AdapterError(f"{path}: cannot read the fallback map ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise AdapterError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(data, dict) and "targets" in data:  # sources.json
        data = data.get("fallback_map") or {}
    if not isinstance(data, dict):
        raise AdapterError(f"{path}: expected a JSON object of language -> route, or the sources.json of `xft eval`")
    parse_fallback(data, str(path))  # errors name the file and key now
    return data


def with_default(path: str | Path | None, default: str | None) -> Any:
    """The fallback a command line asks for: the map in file `path` (if any), with `default` for every other
    language ("*") where given; just `default` without a file."""
    if path is None:
        return default
    routes = load_fallback_map(path)
    return {**routes, "*": default} if default else routes


def check_names(routes: Mapping[str, Route], registered: Sequence[str]) -> None:
    """Every adapter a route names must be registered: the error names the unknown ones and the registered."""
    unknown = sorted({n for r in routes.values() for n in r.names() if n not in registered})
    if unknown:
        where = sorted(lang for lang, r in routes.items() if set(r.names()) & set(unknown))
        raise AdapterError(f"fallback adapter {', '.join(repr(n) for n in unknown)} (for {', '.join(where)}) is not "
                           f"registered; registered adapters: {', '.join(sorted(registered)) or 'none'}")


def merged_name(language: str) -> str:
    """The name a merge for `language` is registered under ('merged-yor')."""
    return "merged-" + re.sub(r"[^A-Za-z0-9_-]", "_", language)[:56]


# ------------------------------------------------------------------------------------------- merging
def build_merge(router: Any, language: str, weights: Mapping[str, float]) -> Path:
    """A package holding the weighted merge of `weights`' adapters (loaded for it, through the strategy's
    `combine`), made on the router's live model and written to a temporary folder; the caller registers it."""
    from xft_core.adapters.package import save_package
    from xft_core.hooks import Combining

    strategy = router.strategy
    if not isinstance(strategy, Combining):
        raise AdapterError(f"strategy '{router._strategy_name}' cannot merge adapters (it has no `combine`); serve "
                           f"'{language}' with an ensemble instead: {{\"ensemble\": {{...}}}} or {{\"nearest\": \"ensemble\"}}")
    router._ensure(list(weights))
    slot = merged_name(language) + "__building"
    model = strategy.combine(router.cache.model, {router.cache.slot(n): float(w) for n, w in weights.items()}, slot)
    router.cache.model = model
    first = router._package(next(iter(weights)))
    manifest = {k: v for k, v in first.manifest.data.items() if k not in ("serves", "metrics", "few_shot", "created")}
    manifest.update(languages=[language], adapter_name=merged_name(language), merged_from={
        name: {"weight": float(w), "adapter_hash": router._package(name).hash} for name, w in weights.items()})
    folder = Path(tempfile.mkdtemp(prefix="xft-merged-")) / merged_name(language)
    try:
        save_package(folder, model=model, strategy=strategy, adapter=slot, head=router.base.head, manifest=manifest)
    finally:
        router.cache.model = strategy.detach(router.cache.model, slot)
    return folder


# ------------------------------------------------------------------------------------------ ensembles
Plan = list[tuple[bool, list[tuple[int, float]]]]


def expand(rows: list[dict], names: list[str], ensembles: Mapping[str, dict[str, float]]
           ) -> tuple[list[dict], list[str], Plan]:
    """Rows whose name is an ensemble become one row per member (all run in the same forwards: a mixed batch);
    returns the rows and names to run and, per original row, whether it is an ensemble and the (index in the run,
    weight) of its answers."""
    run_rows: list[dict] = []
    run_names: list[str] = []
    plan: Plan = []
    for row, name in zip(rows, names):
        members = list(ensembles[name].items()) if name in ensembles else [(name, 1.0)]
        plan.append((name in ensembles, []))
        for member, weight in members:
            plan[-1][1].append((len(run_rows), weight))
            run_rows.append(row)
            run_names.append(member)
    return run_rows, run_names, plan


def collapse(outputs: list[dict], plan: Plan) -> list[dict]:
    """One answer per original row: an ensembled row's label scores are the weighted mean of its members'
    probabilities, its label their argmax; `adapter` names the members ('fra+eng'), `ensemble` lists them."""
    answers = []
    for is_ensemble, parts in plan:
        if not is_ensemble:
            answers.append(outputs[parts[0][0]])
            continue
        members = [(outputs[i], w) for i, w in parts]
        if any(not isinstance(o.get("scores"), Mapping) for o, _ in members):
            raise AdapterError("an ensemble needs a task head whose predictions carry label probabilities ('scores'); "
                               "this one's do not: use a merge or one adapter instead")
        total = sum(w for _, w in members)
        labels = list(members[0][0]["scores"])
        scores = {label: sum(o["scores"][label] * w for o, w in members) / total for label in labels}
        answers.append({"label": max(labels, key=scores.__getitem__), "scores": scores,
                        "adapter": "+".join(o["adapter"] for o, _ in members), "adapter_version": None,
                        "adapter_hash": None,
                        "ensemble": [{"adapter": o["adapter"], "weight": w / total, "adapter_version": o["adapter_version"],
                                      "adapter_hash": o["adapter_hash"]} for o, w in members]})
    return answers


# ------------------------------------------------------------------------------------- the router's map
class Fallbacks:
    """A router's fallback map, and the merges and ensembles it made for the languages it served."""

    def __init__(self, value: Any = None):
        self.routes = parse_fallback(value)
        self.ensembles: dict[str, dict[str, float]] = {}  # ENSEMBLE + language -> members
        self.merges: dict[str, tuple[dict[str, float], str]] = {}  # language -> (members, registered name)

    @property
    def default(self) -> str | None:
        """The one adapter for every other language ("*"), where that is what the map says."""
        route = self.routes.get("*")
        return route.names()[0] if route is not None and route.kind == "adapter" else None

    def adapters(self) -> set[str]:
        """Adapters the map names (they cannot be unregistered while it does)."""
        return {name for route in self.routes.values() for name in route.names()}

    def route(self, router: Any, language: str | None) -> str | None:
        """The adapter name (or ENSEMBLE + language) for a language without its own adapter; None: no route."""
        folded = {k.lower(): v for k, v in self.routes.items()}
        route = self.routes.get(language or "*") or folded.get((language or "*").lower()) or self.routes.get("*")
        if route is None:
            return None
        weights = route.adapters
        how = route.kind
        if how == "nearest":
            if language is None:
                return None
            from xft_core.util.language_distance import LanguageDistanceError, nearest

            candidates = {name: router.adapter_languages(name) for name in router.registered()
                          if name not in {merged for _, merged in self.merges.values()}}
            try:
                weights = nearest(language, candidates, route.k, route.table)
            except LanguageDistanceError as exc:
                raise AdapterError(f"fallback for '{language}': {exc}") from None
            how = route.how
        for name in weights:
            router._package(name)  # unknown: an error naming the registered ones
        if how == "adapter":
            return next(iter(weights))
        if how == "ensemble":
            self.ensembles[ENSEMBLE + language if language else ENSEMBLE + "*"] = dict(weights)
            return ENSEMBLE + (language or "*")
        return self._merge(router, language or "*", dict(weights))

    def _merge(self, router: Any, language: str, weights: dict[str, float]) -> str:
        made = self.merges.get(language)
        if made is not None and made[0] == weights and made[1] in router.registered():
            return made[1]
        name = merged_name(language)
        if name in router.registered():
            if made is None:
                raise AdapterError(f"cannot merge adapters for '{language}': an adapter named '{name}' is registered")
            self.forget(router, language)
        folder = build_merge(router, language, weights)
        router.register(name, folder)
        self.merges[language] = (weights, name)
        return name

    def forget(self, router: Any, language: str | None = None) -> None:
        """Unregister the merges made for `language` (None: all) and delete their folders."""
        import shutil

        for lang in [language] if language is not None else list(self.merges):
            _, name = self.merges.pop(lang, ({}, ""))
            if name in router.registered():
                folder = router.registered()[name]
                router.unregister(name)
                shutil.rmtree(folder.parent, ignore_errors=True)
