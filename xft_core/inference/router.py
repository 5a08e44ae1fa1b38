"""Hot-swap inference: one base model in memory, many adapters on it, each row routed to its language's.

Why this shape:
- The base model is the expensive part; adapters are small. So the base loads once and adapters come and go
  on it through the strategy that saved them (`attach` / `detach`; for LoRA, peft's load and delete).
- Rows of different languages share ONE forward pass when the strategy can route rows (`Strategy.route`; for
  LoRA, peft's `adapter_names=[...]`: each LoRA layer applies every row's own delta), so a mixed batch costs
  about what a single-adapter batch costs. Strategies that cannot mix rows (DoRA, BitFit: `mixed_batch`
  False) are run one adapter group at a time instead.
- At most `capacity` adapters are loaded; the least recently used one is evicted and really freed (`detach`,
  drop every reference, a garbage-collector pass, the accelerator's cache emptied; peft issues #738, #957,
  #1639 are users finding memory that never came back). Pinned adapters are never evicted.
- `replace` loads the new version under a fresh slot name first and only then switches the name over and
  detaches the old weights, so a failed load leaves the old version answering, and every prediction carries
  the `adapter_version` that produced it.
- One re-entrant lock covers every model mutation and every forward: a server calls `predict` and
  `replace` from worker threads, and adapter registries are not safe to change mid-forward.

Packages are validated eagerly at `register` / `replace` (manifest, base fingerprint, task, labels, no pickle
files, a strategy that can stack onto a shared base) and checked again when their weights load.
"""

from __future__ import annotations

import gc
import re
import threading
import time
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping, Sequence

from xft_core.adapters import AdapterError, Base
from xft_core.evaluation.predict import predict_rows
from xft_core.hooks import BASE_ADAPTER, ROW_LANGUAGE, Strategy
from xft_core.inference.packages import Package, RouterStats, find_packages, routes_for
from xft_core.util.precision import adapter_scales, resolve_precision, scale_for

BASE = BASE_ADAPTER  # per-row adapter name for "the bare base model"
AUTO = "auto"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")  # adapter names may become module keys: no dots


class Router:
    """Serve many adapters on one base model.

    Example::

        router = Router.from_run("runs/reviews", capacity=4, fallback="en")
        router.predict(["Das ist toll", "c'est nul"], languages="auto")
        # [{"label": "pos", "scores": {...}, "language": "de", "adapter": "de", "adapter_version": 1, ...}, ...]
    """

    def __init__(self, base_package_or_model: Base | str | Path, *, capacity: int = 8, fallback: str | None = None,
                 pm: Any = None, device: str | None = None, batch_size: int = 32, max_length: int = 256,
                 model: str | None = None, precision: str = "no", scale: float | Mapping[str, float] | None = None):
        from xft_core.adapters import load_base
        from xft_core.hooks.manager import get_plugin_manager

        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        if isinstance(base_package_or_model, Base):
            self.base = base_package_or_model
        else:
            self.base = load_base(Path(base_package_or_model), pm or get_plugin_manager(), model=model, device=device)
        self.pm = self.base.pm
        self.model: Any = self.base.model  # the base, or the strategy's model carrying the loaded adapters
        self.strategy: Strategy | None = None  # built from the first package; every package must share its name
        self._strategy_name = ""
        self._language_adapters = False  # the strategy's spec: what runs depends on the rows' language (MAD-X)
        # adapter scale per language ("*": every other language): 0 = the base model, 1 = the adapter as trained
        self.scales: dict[str, float] = adapter_scales(scale)
        self.capacity = capacity
        self.fallback = fallback
        self.batch_size = batch_size
        self.max_length = max_length
        # "bf16"/"fp16": forwards under autocast (bf16 runs several times faster on CPUs with native bf16);
        # "no" keeps full precision, identical to plain peft; "auto" picks bf16 where supported

        self.precision = resolve_precision(precision, next(self.base.model.parameters()).device)
        self.stats = RouterStats()
        self._lock = threading.RLock()
        self._packages: dict[str, Package] = {}
        self._loaded: OrderedDict[str, str] = OrderedDict()  # name -> slot name on the model, least recent first
        self._pinned: set[str] = set()
        self._routes: dict[str, str] = {}  # language -> adapter name

    @classmethod
    def from_run(cls, run_dir: str | Path, **kwargs: Any) -> "Router":
        """A router over every package of a run (or adapters folder, or one package); the base loads once."""
        packages = find_packages(run_dir)
        router = cls(next(iter(packages.values())), **kwargs)
        for name, folder in packages.items():
            router.register(name, folder)
        if router.fallback is not None and router.fallback not in router._packages:
            raise AdapterError(f"fallback adapter '{router.fallback}' is not among the packages: {', '.join(packages)}")
        return router

    # ---------------------------------------------------------------------------------- registry
    def register(self, name: str, folder: str | Path, *, pin: bool = False) -> None:
        """Record the package in `folder` as adapter `name` (validated now, loaded on first use or `pin`)."""
        if not isinstance(name, str) or not _NAME.match(name) or name == BASE:
            raise AdapterError(f"adapter name {name!r} must be letters, digits, '_' or '-' (and not '{BASE}')")
        with self._lock:
            if name in self._packages:
                raise AdapterError(f"adapter '{name}' is already registered; use replace('{name}', folder) for a new version")
            package = self._validate(Path(folder), version=1)
            self._packages[name] = package
            self._routes = routes_for(self._packages)
        if pin:
            self.pin(name)

    def unregister(self, name: str) -> None:
        with self._lock:
            self._package(name)
            self._pinned.discard(name)
            if name in self._loaded:
                self._delete(self._loaded.pop(name))
            del self._packages[name]
            self._routes = routes_for(self._packages)

    def registered(self) -> dict[str, Path]:
        with self._lock:
            return {name: package.folder for name, package in self._packages.items()}

    def adapter_languages(self, name: str) -> list[str]:
        return self._package(name).manifest.languages

    def adapter_version(self, name: str) -> int:
        return self._package(name).version

    def routes(self) -> dict[str, str]:
        """Which adapter serves each language."""
        with self._lock:
            return dict(self._routes)

    # ------------------------------------------------------------------------------------- cache
    def load(self, name: str) -> None:
        """Make sure `name` is loaded (a hit only refreshes its place in the LRU order)."""
        with self._lock:
            self._ensure([name])

    def unload(self, name: str) -> None:
        with self._lock:
            self._package(name)
            if name in self._pinned:
                raise AdapterError(f"adapter '{name}' is pinned; unpin it before unloading")
            if name in self._loaded:
                self._delete(self._loaded.pop(name))

    def pin(self, name: str) -> None:
        """Load `name` and keep it loaded whatever the traffic."""
        with self._lock:
            self._package(name)
            if name not in self._pinned and len(self._pinned) >= self.capacity:
                raise AdapterError(f"cannot pin '{name}': all {self.capacity} cache slots are pinned "
                                   f"({', '.join(sorted(self._pinned))})")
            self._ensure([name])
            self._pinned.add(name)

    def unpin(self, name: str) -> None:
        with self._lock:
            self._pinned.discard(name)

    def pinned(self) -> list[str]:
        with self._lock:
            return sorted(self._pinned)

    def loaded(self) -> list[str]:
        """Loaded adapters, least recently used first (the next to be evicted is the first unpinned one)."""
        with self._lock:
            return list(self._loaded)

    def replace(self, name: str, folder: str | Path) -> int:
        """Swap in a new version of `name`; returns its version number. Requests never see it missing."""
        with self._lock:
            old = self._package(name)
            package = self._validate(Path(folder), version=old.version + 1)
            if name in self._loaded:
                fresh = self._slot(name, package.version)
                self._attach(package.folder, fresh)  # the old version keeps answering if this fails
                previous = self._loaded[name]
                self._packages[name], self._loaded[name] = package, fresh
                self._delete(previous)
            else:
                self._packages[name] = package
            self._routes = routes_for(self._packages)
            return package.version

    # ---------------------------------------------------------------------------------- predict
    def predict(self, texts: Sequence[str | Mapping[str, Any]], languages: str | Sequence[str | None] | None = None,
                *, adapters: str | Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One prediction per text: the head's output plus `language`, `adapter` and `adapter_version`.

        `languages`: one code for all rows, one per row, or "auto"/None (detected by the `xft_detect_language`
        plugin among the languages the registered adapters serve). `adapters` names the adapter per row
        directly (BASE for the bare base model). A language without an adapter goes to `fallback`, else BASE."""
        rows = [dict(t) if isinstance(t, Mapping) else self.row_from_text(t) for t in texts]
        if not rows:
            return []
        wanted = self._per_row(languages, len(rows), "languages")
        explicit = self._per_row(adapters, len(rows), "adapters") if adapters is not None else None
        with self._lock:
            candidates = sorted(self._routes)
        detect = explicit is None  # rows with a named adapter need no language
        resolved = [self._detect(self._text_of(row), candidates) if detect and lang in (None, AUTO) else lang
                    for row, lang in zip(rows, wanted)]
        for row, language in zip(rows, resolved):
            if language and language != AUTO:
                row.setdefault(ROW_LANGUAGE, language)  # heads such as translation put it in their prompt
        results: list[dict[str, Any] | None] = [None] * len(rows)
        with self._lock:
            names = list(explicit) if explicit is not None else [self._route(lang) for lang in resolved]
            for name in set(names) - {BASE}:
                self._package(name)
            for group in self._plan(names):
                self._ensure([n for n in group if n != BASE])
                index = [i for i, n in enumerate(names) if n in group]
                outputs = self._run_by_length([rows[i] for i in index], [names[i] for i in index])
                for i, output in zip(index, outputs):
                    version = self._packages[names[i]].version if names[i] != BASE else None
                    results[i] = {**output, "language": resolved[i], "adapter": names[i], "adapter_version": version}
        return results  # type: ignore[return-value]

    # ---------------------------------------------------------------------------------- internals
    def row_from_text(self, text: str) -> dict[str, Any]:
        """The task head's input row for a plain text (words for tagging, a source for generation)."""
        return dict(self.base.head.input_row(text))

    def _text_of(self, row: Mapping[str, Any]) -> str:
        return str(self.base.head.input_text(row))

    @staticmethod
    def _per_row(value: Any, n: int, what: str) -> list[Any]:
        if value is None or isinstance(value, str):
            return [value] * n
        value = list(value)
        if len(value) != n:
            raise ValueError(f"{what}: got {len(value)} values for {n} texts")
        return value

    def _package(self, name: str) -> Package:
        try:
            return self._packages[name]
        except KeyError:
            known = ", ".join(sorted(self._packages)) or "none"
            raise AdapterError(f"unknown adapter '{name}' (registered: {known})") from None

    def _validate(self, folder: Path, *, version: int) -> Package:
        from xft_core.adapters import check_compatible, strategy_from_manifest

        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such adapter package folder")
        manifest = check_compatible(self.base, folder)
        spec, strategy = strategy_from_manifest(manifest, self.pm)
        if not spec.stackable:
            raise AdapterError(f"{folder}: strategy '{spec.name}' saves whole models, which cannot be hot-swapped on one "
                               "shared base; serve it with its own process, or train with a stackable strategy such as lora")
        if self.strategy is None:
            self.strategy, self._strategy_name, self._language_adapters = strategy, spec.name, spec.language_adapters
        elif spec.name != self._strategy_name:
            raise AdapterError(f"{folder}: strategy '{spec.name}' differs from the '{self._strategy_name}' packages this router "
                               "serves; one router serves packages of one strategy")
        return Package(folder, manifest, version, bool(strategy.mixed_batch))

    def _route(self, language: str | None) -> str:
        if language is not None:
            if language in self._routes:
                return self._routes[language]
            folded = {k.lower(): v for k, v in self._routes.items()}
            if language.lower() in folded:
                return folded[language.lower()]
        if self.fallback is not None:
            self._package(self.fallback)
            return self.fallback
        return BASE

    def _detect(self, text: str, candidates: list[str]) -> str | None:
        hook = self.pm.hook.xft_detect_language
        if not hook.get_hookimpls():
            raise AdapterError("language 'auto' needs a language-identification plugin (hook xft_detect_language), "
                               "for example the built-in xft_langid (pip install py3langid); or pass languages explicitly")
        return hook(text=text, candidates=candidates or None)

    def _plan(self, names: list[str]) -> list[set[str]]:
        """Split the adapters one batch needs into groups that fit in the cache together."""
        needed = list(dict.fromkeys(n for n in names if n != BASE))
        pinned = [n for n in needed if n in self._pinned]
        others = [n for n in needed if n not in self._pinned]
        room = self.capacity - len(self._pinned)
        if others and room < 1:
            raise AdapterError(f"adapter cache is full of pinned adapters ({', '.join(sorted(self._pinned))}); "
                               f"raise capacity above {self.capacity} or unpin one")
        chunks = [others[i : i + room] for i in range(0, len(others), max(room, 1))] or [[]]
        groups = [set(chunk) for chunk in chunks]
        groups[0] |= set(pinned) | ({BASE} if BASE in names else set())
        return groups

    def _ensure(self, names: list[str]) -> None:
        """Load what is missing (evicting least recently used, unpinned, not-needed-now adapters); touch the rest."""
        for name in names:
            package = self._package(name)
            if name in self._loaded:
                self.stats.hits += 1
                self._loaded.move_to_end(name)
                continue
            self.stats.misses += 1
            while len(self._loaded) >= self.capacity:
                self._evict(protect=set(names))
            slot = self._slot(name, package.version)
            self._attach(package.folder, slot)
            self._loaded[name] = slot

    def _evict(self, protect: set[str]) -> None:
        for name in self._loaded:
            if name not in self._pinned and name not in protect:
                self._delete(self._loaded.pop(name))
                self.stats.evictions += 1
                return
        raise AdapterError(f"adapter cache full ({self.capacity}): every loaded adapter is pinned or needed by this batch; "
                           "raise capacity or unpin one")

    @staticmethod
    def _slot(name: str, version: int) -> str:
        return f"{name}__v{version}"  # fresh per version, so old and new can be loaded side by side in `replace`

    def _attach(self, folder: Path, slot: str) -> None:
        from xft_core.adapters import check_compatible

        assert self.strategy is not None  # set by the first registered package
        started = time.perf_counter()
        check_compatible(self.base, folder)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = self.strategy.attach(self.model, folder, slot, self.base.head)
        self.model.eval()
        self.stats.loads += 1
        self.stats.load_seconds += time.perf_counter() - started

    def _delete(self, slot: str) -> None:
        """Remove one adapter's weights from the model and let the memory go."""
        assert self.strategy is not None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "adapter X was active, setting Y active" is expected here
            self.model = self.strategy.detach(self.model, slot)
        # For LoRA, peft 0.21 holds no reference cycles through a deleted adapter, so reference counting frees its
        # tensors at once (tests/test_router.py checks this with weak references); a young-generation pass
        # catches small cycles for ~1 ms, where a full collection costs 0.1-0.3 s in a process holding torch
        # and transformers, too much to pay per eviction. Unloading the last adapter (rare) gets the full one.
        gc.collect() if not self._loaded else gc.collect(1)
        if next(self.base.model.parameters()).device.type == "cuda":
            import torch

            torch.cuda.empty_cache()  # hand the freed blocks back, so other processes (and nvidia-smi) see them

    def _run_by_length(self, rows: list[dict], names: list[str]) -> list[dict]:
        """More rows than one forward takes: order them by token count first, so each forward pads its rows
        to a similar length instead of to the longest of the whole request (often half the compute)."""
        if len(rows) <= self.batch_size:
            return self._run(rows, names)
        texts = [self._text_of(row) for row in rows]
        lengths = [len(ids) for ids in self.base.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        order = sorted(range(len(rows)), key=lengths.__getitem__)
        outputs: list[dict | None] = [None] * len(rows)
        for i, output in zip(order, self._run([rows[i] for i in order], [names[i] for i in order])):
            outputs[i] = output
        return outputs  # type: ignore[return-value]

    def _run(self, rows: list[dict], names: list[str]) -> list[dict]:
        """Forward `rows`, each through its adapter: one pass when they can mix, else one per group of rows that
        share an adapter (and, for language-adapter strategies or per-language scales, a language)."""
        by_language = self._language_adapters or len(self.scales) > 1
        keys = [(name, row.get(ROW_LANGUAGE) if by_language and name != BASE else None) for row, name in zip(rows, names)]
        distinct = set(keys)
        mixable = not by_language and all(self._packages[n].mixed_batch for n, _ in distinct if n != BASE)
        if len(distinct) == 1 or mixable:
            self.stats.forwards += -(-len(rows) // self.batch_size)
            self.stats.rows += len(rows)
        if not self._loaded:  # nothing attached: only base rows can be here
            return self._predict(self.model, rows)
        assert self.strategy is not None
        if len(distinct) == 1:
            ((name, language),) = distinct
            if name == BASE:
                with self.strategy.base_only(self.model):
                    return self._predict(self.model, rows)
            self._prepare(self._loaded[name], language)
            return self._predict(self.model, rows)
        if mixable:
            for name in {n for n, _ in distinct if n != BASE}:
                self._prepare(self._loaded[name], None, activate=False)
            slots = [BASE if n == BASE else self._loaded[n] for n in names]
            return self._predict(self.model, rows, route=self.strategy.route(self.model, slots))
        outputs: list[dict | None] = [None] * len(rows)
        for key in distinct:
            index = [i for i, k in enumerate(keys) if k == key]
            for i, output in zip(index, self._run([rows[i] for i in index], [key[0]] * len(index))):
                outputs[i] = output
        return outputs  # type: ignore[return-value]

    def _prepare(self, slot: str, language: str | None, *, activate: bool = True) -> None:
        """Scale the adapter for the rows' language (when scales are set) and make it the active one."""
        assert self.strategy is not None
        if self.scales:
            self.strategy.scale(self.model, slot, scale_for(self.scales, language))
        if activate:
            self.strategy.activate(self.model, slot, language)

    def _predict(self, model: Any, rows: list[dict], route: dict[str, list[Any]] | None = None) -> list[dict]:
        return predict_rows(self.base.head, model, self.base.tokenizer, rows, batch_size=self.batch_size,
                            max_length=self.max_length, route=route, precision=self.precision)
