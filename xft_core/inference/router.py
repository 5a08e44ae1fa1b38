"""Hot-swap inference: one base model in memory, many adapters on it, each row routed to its language's.

Why this shape:
- The base model is the expensive part; adapters are small. So the base loads once and adapters come and go
  on it through peft (`load_adapter` / `delete_adapter`).
- Rows of different languages share ONE forward pass through peft's `adapter_names=[...]` (each LoRA layer
  applies every row's own delta), so a mixed batch costs about what a single-adapter batch costs. Strategies
  that cannot mix rows (DoRA: `mixed_batch` False) are run one adapter group at a time instead.
- At most `capacity` adapters are loaded; the least recently used one is evicted and really freed
  (`delete_adapter`, drop every reference, a garbage-collector pass, the accelerator's cache emptied; peft
  issues #738, #957, #1639 are users finding memory that never came back). Pinned adapters are never evicted.
- `replace` loads the new version under a fresh peft name first and only then switches the name over and
  deletes the old weights, so a failed load leaves the old version answering, and every prediction carries
  the `adapter_version` that produced it.
- One re-entrant lock covers every model mutation and every forward: a server calls `predict` and
  `replace` from worker threads, and peft's adapter dictionaries are not safe to change mid-forward.

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from xft_core.hooks.descriptors import ROW_LANGUAGE
from xft_core.adapters import MANIFEST, AdapterError, Base, Manifest

BASE = "__base__"  # peft's name for "no adapter" in `adapter_names`
AUTO = "auto"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")  # peft adapter names become module keys: no dots


@dataclass
class RouterStats:
    hits: int = 0  # an adapter a request needed was already loaded
    misses: int = 0  # it had to be loaded from disk
    evictions: int = 0
    loads: int = 0
    load_seconds: float = 0.0
    forwards: int = 0  # forward passes (a mixed-language batch is one)
    rows: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Package:
    folder: Path
    manifest: Manifest
    version: int
    mixed_batch: bool


def find_packages(path: str | Path) -> dict[str, Path]:
    """Adapter packages under a run folder (`run/adapters/*`), an adapters folder, or one package folder.

    Names are the folder names (for a run, the languages or "multilingual")."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such folder (give a run folder, its adapters/ folder, or one adapter package)")
    if not path.is_dir():
        raise AdapterError(f"{path}: not a folder (give a run folder, its adapters/ folder, or one adapter package)")
    if (path / MANIFEST).is_file():
        return {path.name: path}
    for parent in (path / "adapters", path):
        if parent.is_dir():
            found = {p.name: p for p in sorted(parent.iterdir()) if p.is_dir() and (p / MANIFEST).is_file()}
            if found:
                return found
    raise AdapterError(f"{path}: holds no xft adapter package (a folder with {MANIFEST}), neither itself nor under adapters/")


class Router:
    """Serve many adapters on one base model.

    Example::

        router = Router.from_run("runs/reviews", capacity=4, fallback="en")
        router.predict(["Das ist toll", "c'est nul"], languages="auto")
        # [{"label": "pos", "scores": {...}, "language": "de", "adapter": "de", "adapter_version": 1, ...}, ...]
    """

    def __init__(self, base_package_or_model: Base | str | Path, *, capacity: int = 8, fallback: str | None = None,
                 pm: Any = None, device: str | None = None, batch_size: int = 32, max_length: int = 256,
                 model: str | None = None, precision: str = "no"):
        from xft_core.adapters import load_base
        from xft_core.hooks.manager import get_plugin_manager

        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        if isinstance(base_package_or_model, Base):
            self.base = base_package_or_model
        else:
            self.base = load_base(Path(base_package_or_model), pm or get_plugin_manager(), model=model, device=device)
        self.pm = self.base.pm
        self.capacity = capacity
        self.fallback = fallback
        self.batch_size = batch_size
        self.max_length = max_length
        # "bf16"/"fp16": forwards under autocast (bf16 runs several times faster on CPUs with native bf16);
        # "no" keeps full precision, identical to plain peft; "auto" picks bf16 where supported
        from xft_core.training.engine import precision_for

        self.precision = precision_for(precision, cpu=device in (None, "cpu"))
        self.stats = RouterStats()
        self._lock = threading.RLock()
        self._packages: dict[str, _Package] = {}
        self._loaded: OrderedDict[str, str] = OrderedDict()  # name -> peft adapter name, least recent first
        self._pinned: set[str] = set()
        self._routes: dict[str, str] = {}  # language -> adapter name
        self._peft: Any = None  # the PeftModel once an adapter is loaded; None while the base runs bare

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
            self._routes = _routes_for(self._packages)
        if pin:
            self.pin(name)

    def unregister(self, name: str) -> None:
        with self._lock:
            self._package(name)
            self._pinned.discard(name)
            if name in self._loaded:
                self._delete(self._loaded.pop(name))
            del self._packages[name]
            self._routes = _routes_for(self._packages)

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
                raise AdapterError(f"cannot pin '{name}': all {self.capacity} cache slots are pinned ({', '.join(sorted(self._pinned))})")
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
                fresh = self._peft_name(name, package.version)
                self._attach(package.folder, fresh)  # the old version keeps answering if this fails
                previous = self._loaded[name]
                self._packages[name], self._loaded[name] = package, fresh
                self._delete(previous)
            else:
                self._packages[name] = package
            self._routes = _routes_for(self._packages)
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
        """The task head's input row for a plain text (a head may define `input_row`, e.g. words for tagging)."""
        build = getattr(self.base.head, "input_row", None)
        return dict(build(text)) if build else {self._text_field: text}

    def _text_of(self, row: Mapping[str, Any]) -> str:
        read = getattr(self.base.head, "input_text", None)
        return str(read(row)) if read else str(row.get(self._text_field, ""))

    @property
    def _text_field(self) -> str:
        return getattr(getattr(self.base.head, "options", None), "text_field", "text")

    @staticmethod
    def _per_row(value: Any, n: int, what: str) -> list[Any]:
        if value is None or isinstance(value, str):
            return [value] * n
        value = list(value)
        if len(value) != n:
            raise ValueError(f"{what}: got {len(value)} values for {n} texts")
        return value

    def _package(self, name: str) -> _Package:
        try:
            return self._packages[name]
        except KeyError:
            known = ", ".join(sorted(self._packages)) or "none"
            raise AdapterError(f"unknown adapter '{name}' (registered: {known})") from None

    def _validate(self, folder: Path, *, version: int) -> _Package:
        from xft_core.adapters import check_compatible, strategy_from_manifest

        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such adapter package folder")
        manifest = check_compatible(self.base, folder)
        spec, strategy = strategy_from_manifest(manifest, self.pm)
        if not spec.stackable:
            raise AdapterError(f"{folder}: strategy '{spec.name}' saves whole models, which cannot be hot-swapped on one "
                               "shared base; serve it with its own process, or train with a stackable strategy such as lora")
        return _Package(folder, manifest, version, bool(getattr(strategy, "mixed_batch", spec.mixed_batch)))

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
            peft_name = self._peft_name(name, package.version)
            self._attach(package.folder, peft_name)
            self._loaded[name] = peft_name

    def _evict(self, protect: set[str]) -> None:
        for name in self._loaded:
            if name not in self._pinned and name not in protect:
                self._delete(self._loaded.pop(name))
                self.stats.evictions += 1
                return
        raise AdapterError(f"adapter cache full ({self.capacity}): every loaded adapter is pinned or needed by this batch; "
                           "raise capacity or unpin one")

    @staticmethod
    def _peft_name(name: str, version: int) -> str:
        return f"{name}__v{version}"  # fresh per version, so old and new can be loaded side by side in `replace`

    def _attach(self, folder: Path, peft_name: str) -> None:
        from xft_core.adapters import attach

        started = time.perf_counter()
        model = self._peft if self._peft is not None else self.base.model
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._peft = attach(self.base, model, folder, peft_name)
        self._peft.eval()
        self.stats.loads += 1
        self.stats.load_seconds += time.perf_counter() - started

    def _delete(self, peft_name: str) -> None:
        """Remove one adapter's weights from the model and let the memory go."""
        peft = self._peft
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "adapter X was active, setting Y active" is expected here
            peft.delete_adapter(peft_name)
            if not peft.peft_config:
                # peft cannot load into or run a PeftModel without adapters: unwrap back to the bare base
                peft.unload()
                if hasattr(self.base.model, "peft_config"):
                    del self.base.model.peft_config
                self._peft = None
            elif peft.active_adapter not in peft.peft_config:
                peft.set_adapter(next(iter(peft.peft_config)), inference_mode=True)
        unwrapped = self._peft is None
        del peft
        # peft 0.21 holds no reference cycles through a deleted LoRA adapter, so reference counting frees its
        # tensors at once (tests/test_router.py checks this with weak references); a young-generation pass
        # catches small cycles for ~1 ms, where a full collection costs 0.1-0.3 s in a process holding torch
        # and transformers, too much to pay per eviction. Unwrapping the PeftModel (rare) gets the full one.
        gc.collect() if unwrapped else gc.collect(1)
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
        """Forward `rows`, each through its adapter, in the router's precision."""
        if self.precision not in ("bf16", "fp16"):
            return self._forward(rows, names)
        import torch

        device = next(self.base.model.parameters()).device.type
        with torch.autocast(device, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16):
            return self._forward(rows, names)

    def _forward(self, rows: list[dict], names: list[str]) -> list[dict]:
        """Forward `rows`, each through its adapter: one pass when they can mix, else one per adapter."""
        distinct = set(names)
        kwargs = dict(batch_size=self.batch_size, max_length=self.max_length)
        head, tokenizer = self.base.head, self.base.tokenizer
        mixable = all(self._packages[n].mixed_batch for n in distinct - {BASE})
        if len(distinct) == 1 or mixable:
            self.stats.forwards += -(-len(rows) // self.batch_size)
            self.stats.rows += len(rows)
        if self._peft is None:  # nothing loaded: only base rows can be here
            return head.predict(self.base.model, tokenizer, rows, **kwargs)
        if len(distinct) == 1:
            (only,) = distinct
            if only == BASE:
                with self._peft.disable_adapter():
                    return head.predict(self._peft, tokenizer, rows, **kwargs)
            peft_name = self._loaded[only]
            if self._peft.active_adapter != peft_name:
                self._peft.set_adapter(peft_name, inference_mode=True)
            return head.predict(self._peft, tokenizer, rows, **kwargs)
        if mixable:
            adapter_names = [BASE if n == BASE else self._loaded[n] for n in names]
            return head.predict(self._peft, tokenizer, rows, adapter_names=adapter_names, **kwargs)
        outputs: list[dict | None] = [None] * len(rows)
        for name in distinct:
            index = [i for i, n in enumerate(names) if n == name]
            for i, output in zip(index, self._forward([rows[i] for i in index], [name] * len(index))):
                outputs[i] = output
        return outputs  # type: ignore[return-value]


def _routes_for(packages: Mapping[str, _Package]) -> dict[str, str]:
    """Language -> adapter. A single-language package beats a multilingual one covering the language; among
    several single-language packages for one language, the one named after it wins, else the first registered
    (the others, say a candidate `de-v2` next to `de`, answer when named per row with `adapters=[...]`)."""
    routes: dict[str, str] = {}
    for single in (False, True):
        claimed: dict[str, str] = {}
        for name, package in packages.items():
            languages = package.manifest.languages
            if (len(languages) == 1) != single:
                continue
            for language in languages:
                if language not in claimed or name == language:
                    claimed[language] = name
        routes.update(claimed)
    return routes

