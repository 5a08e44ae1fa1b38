"""How one batch runs once the adapters it needs are loaded (the forward half of `Router`, router.py).

Rows of different adapters share ONE forward pass when the strategy can route rows (`Strategy.route`; for LoRA,
peft's `adapter_names=[...]`); strategies that cannot mix rows (`mixed_batch` False), language-adapter strategies
and per-language scales run one forward per group of rows that share an adapter (and a language). Requests with
more rows than one forward takes are ordered by length first, so each forward pads to a similar length; within a
mixed forward the rows of one adapter are made adjacent (`grouped_by_adapter`).
"""

from __future__ import annotations

from typing import Any

from xft_core.adapters import Base
from xft_core.evaluation.predict import predict_rows
from xft_core.hooks import BASE_ADAPTER, ROW_LANGUAGE, Strategy
from xft_core.inference.cache import AdapterCache
from xft_core.inference.packages import Package, RouterStats
from xft_core.util.precision import scale_for

BASE = BASE_ADAPTER


class Forwarding:
    """The forward half of `Router`: what it reads of the router is declared here."""

    base: Base
    cache: AdapterCache
    stats: RouterStats
    scales: dict[str, float]
    batch_size: int
    max_length: int
    precision: str
    _language_adapters: bool
    _packages: dict[str, Package]

    @property
    def model(self) -> Any:
        """The model that runs: the base, or the strategy's model carrying the loaded adapters."""
        return self.cache.model

    @property
    def strategy(self) -> Strategy | None:
        return self.cache.strategy

    def _text_of(self, row: Any) -> str:
        return str(self.base.head.input_text(row))

    def _run_by_length(self, rows: list[dict], names: list[str]) -> list[dict]:
        """More rows than one forward takes: order them by token count first, so each forward pads its rows
        to a similar length instead of to the longest of the whole request (often half the compute)."""
        if len(rows) <= self.batch_size:
            return self._run(rows, names)
        texts = [self._text_of(row) for row in rows]
        lengths = [len(ids) for ids in self.base.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        order = sorted(range(len(rows)), key=lengths.__getitem__)
        return put_back(order, self._run([rows[i] for i in order], [names[i] for i in order]))

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
        if not self.cache.loaded:  # nothing attached: only base rows can be here
            return self._predict(self.model, rows)
        assert self.strategy is not None
        if len(distinct) == 1:
            ((name, language),) = distinct
            if name == BASE:
                with self.strategy.base_only(self.model):
                    return self._predict(self.model, rows)
            self._prepare(self.cache.slot(name), language)
            return self._predict(self.model, rows)
        if mixable:
            for name in {n for n, _ in distinct if n != BASE}:
                self._prepare(self.cache.slot(name), None, activate=False)
            slots = [BASE if n == BASE else self.cache.slot(n) for n in names]
            order = grouped_by_adapter(slots, self.batch_size)
            return put_back(order, self._predict(self.model, [rows[i] for i in order],
                                                 route=self.strategy.route(self.model, [slots[i] for i in order])))
        taken: list[int] = []
        outputs: list[dict] = []
        for key in distinct:
            index = [i for i, k in enumerate(keys) if k == key]
            taken += index
            outputs += self._run([rows[i] for i in index], [key[0]] * len(index))
        return put_back(taken, outputs)

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


def grouped_by_adapter(slots: list[str], batch_size: int) -> list[int]:
    """Row order for a mixed forward: within each forward of `batch_size` rows (which rows share a forward is
    unchanged, so length grouping holds), the rows of one adapter made adjacent, in order of first appearance.
    A strategy then runs each adapter's rows as one contiguous slice of the batch instead of gathering and
    scattering scattered rows in every adapted layer."""
    order: list[int] = []
    for start in range(0, len(slots), batch_size):
        chunk = range(start, min(start + batch_size, len(slots)))
        first: dict[str, int] = {}
        for i in chunk:
            first.setdefault(slots[i], len(first))
        order += sorted(chunk, key=lambda i: first[slots[i]])
    return order


def put_back(order: list[int], outputs: list[dict]) -> list[dict]:
    """`outputs` of the rows taken in `order` (a permutation of the row indices), back in the rows' own order."""
    back: list[dict | None] = [None] * len(order)
    for i, output in zip(order, outputs):
        back[i] = output
    return back  # type: ignore[return-value]
