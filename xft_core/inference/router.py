"""Hot-swap inference: one base model in memory, many adapters on it, each row routed to its language's.

Why this shape:
- The base model is the expensive part; adapters are small. So the base loads once and adapters come and go
  on it through the strategy that saved them (`attach` / `detach`; for LoRA, peft's load and delete).
- Rows of different languages share ONE forward pass when the strategy can route rows (`Strategy.route`; for
  LoRA, peft's `adapter_names=[...]`: each LoRA layer applies every row's own delta), so a mixed batch costs
  about what a single-adapter batch costs. Strategies that cannot mix rows (DoRA, BitFit: `mixed_batch`
  False) are run one adapter group at a time instead (forward.py).
- At most `capacity` adapters are loaded; the least recently used one is evicted and really freed (`detach`,
  drop every reference, a garbage-collector pass, the accelerator's cache emptied; peft issues #738, #957,
  #1639 are users finding memory that never came back). Pinned adapters are never evicted (cache.py).
- Every load is all or nothing: on any failure the model, the loaded set and the registry are exactly as before,
  and the caller gets an `AdapterLoadError` naming the file (cache.py says how).
- `replace` loads the new version under a fresh slot name first and only then switches the name over and
  detaches the old weights, so a failed load leaves the old version answering.
- Versions are content: each package is hashed (sha256 of its files, the manifest aside) and loaded from a
  private copy made while hashing (packages.py), so every prediction carries the `adapter_version` (a counter per
  name) and `adapter_hash` of the very bytes that produced it; a package that changed on disk while evicted comes
  back as a new version.
- One re-entrant lock covers every model mutation and every forward: a server calls `predict` and
  `replace` from worker threads, and adapter registries are not safe to change mid-forward.

Packages are validated eagerly at `register` / `replace` (manifest, base fingerprint, task, labels, no pickle
files, a strategy that can stack onto a shared base) and checked again, from the copy, when their weights load.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from xft_core.adapters import AdapterError, Base, trained_precision
from xft_core.evaluation.calibration import Calibration
from xft_core.hooks import BASE_ADAPTER, ROW_LANGUAGE
from xft_core.inference.cache import AdapterCache, Loaded
from xft_core.inference.fallback import Fallbacks, check_names, collapse, expand, parse_fallback
from xft_core.inference.forward import Forwarding
from xft_core.inference.packages import (
    ADAPTER_NAME,
    AdapterLoadError,
    Package,
    RouterStats,
    content_hash,
    find_packages,
    routes_for,
    staged,
)
from xft_core.util.errors import UserError
from xft_core.util.precision import adapter_scales, device_type, resolve_precision

BASE = BASE_ADAPTER  # per-row adapter name for "the bare base model"
AUTO = "auto"


class Router(Forwarding):
    """Serve many adapters on one base model.

    Example::

        router = Router.from_run("runs/reviews", capacity=4, fallback="en")
        router.predict(["Das ist toll", "c'est nul"], languages="auto")
        # [{"label": "pos", "scores": {...}, "language": "de", "adapter": "de", "adapter_version": 1,
        #   "adapter_hash": "3f2a9c0d81b7"}, ...]
    """

    def __init__(self, base_package_or_model: Base | str | Path, *, capacity: int = 8, fallback: Any = None,
                 pm: Any = None, device: str | None = None, batch_size: int = 32, max_length: int = 256,
                 model: str | None = None, precision: str = "no", scale: float | Mapping[str, float] | None = None,
                 base_dtype: str | None = None):
        from xft_core.adapters import load_base
        from xft_core.hooks.manager import get_plugin_manager

        if capacity < 1:
            raise UserError(f"capacity must be at least 1, got {capacity}")
        if isinstance(base_package_or_model, Base):
            self.base = base_package_or_model
        else:
            # device None: the best one present (a GPU where there is one); base_dtype None: quantized (nf4)
            # where the package was trained over a quantized base
            device = device or device_type(None)
            self.base = load_base(Path(base_package_or_model), pm or get_plugin_manager(), model=model, device=device,
                                  base_dtype=base_dtype, precision=resolve_precision(precision, device))
        self.pm = self.base.pm
        self._strategy_name = ""  # the strategy is built from the first package; every package must share its name
        self._language_adapters = False  # the strategy's spec: what runs depends on the rows' language (MAD-X)
        # adapter scale per language ("*": every other language): 0 = the base model, 1 = the adapter as trained
        self.scales: dict[str, float] = adapter_scales(scale)
        # languages without an adapter: one adapter for all, or a map (language -> adapter, merge, ensemble; fallback.py)
        self.fallbacks = Fallbacks(fallback)
        self.batch_size = batch_size
        # never past what the model takes: a learned position table (BERT, XLM-R) crashes on longer inputs
        limit = getattr(self.base.tokenizer, "model_max_length", None)
        self.max_length = min(max_length, limit) if isinstance(limit, int) and 0 < limit < 10**6 else max_length
        # "bf16"/"fp16": forwards under autocast (bf16 runs several times faster on CPUs with native bf16);
        # "no" keeps full precision, identical to plain peft; "auto" picks bf16 where supported

        self.precision = resolve_precision(precision, next(self.base.model.parameters()).device)
        self.stats = RouterStats()
        self._lock = threading.RLock()
        self._packages: dict[str, Package] = {}
        self._routes: dict[str, str] = {}  # language -> adapter name
        self.cache = AdapterCache(self.base.model, self.base.head, capacity, self.stats)

    @property
    def capacity(self) -> int:
        return self.cache.capacity

    @property
    def fallback(self) -> str | None:
        """The adapter for every language without its own and without an entry in the fallback map ("*")."""
        return self.fallbacks.default

    @fallback.setter
    def fallback(self, name: str | None) -> None:
        routes = {k: v for k, v in self.fallbacks.routes.items() if k != "*"}
        self._set_routes({**routes, **parse_fallback(name)})

    def set_fallback(self, value: Any) -> None:
        """Replace the fallback map: an adapter name for every language without its own, or language (or "*") ->
        adapter, merge, ensemble or nearest (fallback.py). Every adapter it names must be registered; merges made for
        the old map are dropped."""
        self._set_routes(parse_fallback(value))

    def _set_routes(self, routes: dict[str, Any]) -> None:
        with self._lock:
            check_names(routes, list(self._packages))
            self.fallbacks.forget(self)
            self.fallbacks = Fallbacks()
            self.fallbacks.routes = routes

    @classmethod
    def from_run(cls, run_dir: str | Path, **kwargs: Any) -> "Router":
        """A router over every package of a run (or adapters folder, or one package); the base loads once."""
        packages = find_packages(run_dir)
        kwargs.setdefault("precision", trained_precision(Path(run_dir))[0])  # the run's, as `xft eval` scores it
        router = cls(next(iter(packages.values())), **kwargs)
        for name, folder in packages.items():
            router.register(name, folder)
        check_names(router.fallbacks.routes, list(packages))
        return router

    # ---------------------------------------------------------------------------------- registry
    def register(self, name: str, folder: str | Path, *, pin: bool = False) -> None:
        """Record the package in `folder` as adapter `name` (validated now, loaded on first use or `pin`)."""
        if not isinstance(name, str) or not ADAPTER_NAME.fullmatch(name) or name == BASE:
            raise AdapterError(f"adapter name {name!r} must be letters, digits, '_' or '-', at most 64 (and not '{BASE}')")
        with self._lock:
            if name in self._packages:
                raise AdapterError(f"adapter '{name}' is already registered; use replace('{name}', folder) for a new version")
            folder = Path(folder).absolute()  # listed absolute, like the paths PUT takes
            self._packages[name] = self._validate(folder, version=1, digest=content_hash(folder))
            self._routes = routes_for(self._packages)
            if pin:
                try:
                    self.pin(name)
                except BaseException:
                    self.unregister(name)  # all or nothing
                    raise

    def unregister(self, name: str) -> None:
        """Forget `name`, unloading it, pinned or not. The fallback adapter cannot go: the languages it answers for
        would start failing; replace it instead, or set another fallback first."""
        with self._lock:
            self._package(name)
            if name in self.fallbacks.adapters():
                raise AdapterError(f"adapter '{name}' is the fallback for languages without their own adapter; it can be "
                                   "replaced with a new version but not removed while the fallback map names it")
            self.cache.remove(name)
            del self._packages[name]
            self._routes = routes_for(self._packages)

    def registered(self) -> dict[str, Path]:
        with self._lock:
            return {name: package.folder for name, package in self._packages.items()}

    def adapter_languages(self, name: str) -> list[str]:
        return self._package(name).manifest.languages

    def adapter_version(self, name: str) -> int:
        """Counts up from 1 per name: on every `replace`, and when a reload finds the package's files changed."""
        with self._lock:
            return self._package(name).version

    def adapter_hash(self, name: str) -> str:
        """The content hash of the package's files (hex), the one predictions of its current version report."""
        with self._lock:
            return self._package(name).hash

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
            if name in self.cache.pinned:
                raise AdapterError(f"adapter '{name}' is pinned; unpin it before unloading")
            self.cache.remove(name)

    def pin(self, name: str) -> None:
        """Load `name` and keep it loaded whatever the traffic."""
        with self._lock:
            self._package(name)
            pinned = self.cache.pinned
            if name not in pinned and len(pinned) >= self.capacity:
                raise AdapterError(f"cannot pin '{name}': all {self.capacity} cache slots are pinned "
                                   f"({', '.join(sorted(pinned))})")
            self._ensure([name])
            pinned.add(name)

    def unpin(self, name: str) -> None:
        with self._lock:
            self.cache.pinned.discard(name)

    def pinned(self) -> list[str]:
        with self._lock:
            return sorted(self.cache.pinned)

    def loaded(self) -> list[str]:
        """Loaded adapters, least recently used first (the next to be evicted is the first unpinned one)."""
        with self._lock:
            return list(self.cache.loaded)

    def replace(self, name: str, folder: str | Path, *, load: bool = False) -> int:
        """Swap in a new version of `name`; returns its version number. Requests never see it missing.

        A loaded adapter (or any, with `load=True`) gets its new version loaded now, beside the old one, which
        answers until the switch and keeps answering if the load fails; else the new version loads on first use."""
        with self._lock:
            old = self._package(name)
            folder = Path(folder).absolute()
            version = old.version + 1
            if name in self.cache.loaded or load:
                self.cache.check_room(name, set())
                with self._staged(folder) as (copy, digest):
                    package = self._validate(copy, version=version, digest=digest, source=folder)
                    self.cache.add(name, copy, Loaded(self._slot(name, version), version, digest), set())
            else:
                package = self._validate(folder, version=version, digest=content_hash(folder))
            self._packages[name] = package
            self._routes = routes_for(self._packages)
            return package.version

    # ---------------------------------------------------------------------------------- predict
    def predict(self, texts: Sequence[str | Mapping[str, Any]], languages: str | Sequence[str | None] | None = None,
                *, adapters: str | Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One prediction per text: the head's output plus `language`, `adapter`, `adapter_version`, `adapter_hash`.

        `languages`: one code for all rows, one per row, or "auto"/None (detected by the `xft_detect_language`
        plugin among the languages the registered adapters serve). `adapters` names the adapter per row
        directly (BASE for the bare base model). A language without an adapter goes where the fallback map says (an
        adapter, a merge, an ensemble: fallback.py), else BASE."""
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
        with self._lock:
            names = list(explicit) if explicit is not None else [self._route(lang) for lang in resolved]
            rows, names, plan = expand(rows, names, self.fallbacks.ensembles)  # an ensemble: a row per member
            languages_run = [resolved[k] for k, (_, parts) in enumerate(plan) for _ in parts]
            results: list[dict[str, Any] | None] = [None] * len(rows)
            for name in dict.fromkeys(n for n in names if n != BASE):
                self._package(name)
            for group in self.cache.plan(names):
                self._ensure([n for n in group if n != BASE])
                index = [i for i, n in enumerate(names) if n in group]
                outputs = self._run_by_length([rows[i] for i in index], [names[i] for i in index])
                for i, output in zip(index, outputs):
                    entry = self.cache.loaded.get(names[i])  # the weights that answered (None: the bare base)
                    calibration = self._packages[names[i]].calibration if names[i] != BASE else None
                    if calibration is not None:  # the package's label prior for this row's language, if it has one
                        output = calibration.apply([output], languages_run[i])[0]
                    results[i] = {**output, "adapter": names[i], "adapter_version": entry and entry.version,
                                  "adapter_hash": entry and entry.hash}
        return [{**answer, "language": language} for answer, language in zip(collapse(results, plan), resolved)]  # type: ignore[arg-type]

    # ---------------------------------------------------------------------------------- internals
    def row_from_text(self, text: str) -> dict[str, Any]:
        """The task head's input row for a plain text (words for tagging, a source for generation)."""
        return dict(self.base.head.input_row(text))

    @staticmethod
    def _per_row(value: Any, n: int, what: str) -> list[Any]:
        if value is None or isinstance(value, str):
            return [value] * n
        value = list(value)
        if len(value) != n:
            raise UserError(f"{what}: got {len(value)} values for {n} texts")
        return value

    def _package(self, name: str) -> Package:
        try:
            return self._packages[name]
        except KeyError:
            known = ", ".join(sorted(self._packages)) or "none"
            raise AdapterError(f"unknown adapter '{name}' (registered: {known})") from None

    def _validate(self, folder: Path, *, version: int, digest: str, source: Path | None = None) -> Package:
        """The package in `folder` checked against this router's base and strategy; recorded as found at `source`
        (the package's own folder, when `folder` is the private copy it loads from)."""
        from xft_core.adapters import check_compatible, strategy_from_manifest

        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such adapter package folder")
        manifest = check_compatible(self.base, folder)
        spec, strategy = strategy_from_manifest(manifest, self.pm)
        if not spec.stackable:
            raise AdapterError(f"{folder}: strategy '{spec.name}' saves whole models, which cannot be hot-swapped on one "
                               "shared base; serve it with its own process, or train with a stackable strategy such as lora")
        if self.strategy is None:
            self.cache.strategy, self._strategy_name, self._language_adapters = strategy, spec.name, spec.language_adapters
        elif spec.name != self._strategy_name:
            raise AdapterError(f"{folder}: strategy '{spec.name}' differs from the '{self._strategy_name}' packages this router "
                               "serves; one router serves packages of one strategy")
        return Package(source or folder, manifest, version, digest, bool(strategy.mixed_batch), Calibration.read(folder))

    @contextmanager
    def _staged(self, folder: Path) -> Iterator[tuple[Path, str]]:
        """The package copied aside and hashed (packages.staged); whatever fails inside becomes an AdapterLoadError
        that names the package's own files, never the private copy."""
        copy: Path | None = None
        try:
            with staged(folder) as (copy, digest):
                yield copy, digest
        except Exception as exc:
            message = str(exc) if copy is None else str(exc).replace(str(copy), str(folder))
            if not message.startswith(str(folder)):
                message = f"{folder}: {message}"
            raise AdapterLoadError(message) from exc

    def _route(self, language: str | None) -> str:
        if language is not None:
            if language in self._routes:
                return self._routes[language]
            folded = {k.lower(): v for k, v in self._routes.items()}
            if language.lower() in folded:
                return folded[language.lower()]
        return self.fallbacks.route(self, language) or BASE

    def _detect(self, text: str, candidates: list[str]) -> str | None:
        hook = self.pm.hook.xft_detect_language
        if not hook.get_hookimpls():
            raise AdapterError("language 'auto' needs a language-identification plugin (hook xft_detect_language), "
                               "for example the built-in xft_langid (pip install py3langid); or pass languages explicitly")
        return hook(text=text, candidates=candidates or None)

    def _ensure(self, names: list[str]) -> None:
        """Load what is missing (evicting least recently used, unpinned, not-needed-now adapters); touch the rest."""
        for name in names:
            self._package(name)
            if name in self.cache.loaded:
                self.cache.touch(name)
            else:
                self.stats.misses += 1
                self._load(name, set(names))

    def _load(self, name: str, protect: set[str]) -> None:
        """Load `name` from its folder, all or nothing. Files that changed since they were registered (or last
        loaded) are a new version: the counter moves on and the new hash is reported."""
        package = self._packages[name]
        self.cache.check_room(name, protect)
        with self._staged(package.folder) as (copy, digest):
            version = package.version if digest == package.hash else package.version + 1
            package = self._validate(copy, version=version, digest=digest, source=package.folder)
            self.cache.add(name, copy, Loaded(self._slot(name, version), version, digest), protect)
        self._packages[name] = package
        self._routes = routes_for(self._packages)

    @staticmethod
    def _slot(name: str, version: int) -> str:
        return f"{name}__v{version}"  # fresh per version, so old and new can be loaded side by side in `replace`
