"""`--to torchscript`: a classification model with its adapter merged, traced into `model.pt` (needs only torch).

The merged model (`Strategy.merge`, as for `--to merged`) is wrapped to take the tokenizer's tensors positionally
(`input_ids`, `attention_mask`, and `token_type_ids` where the tokenizer makes them) and return the logits, then
traced with `torch.jit.trace` on one padded batch. Tracing records the operations run for that batch; where a model
turns a shape into a Python number, the number is baked in. So the saved file is loaded back and checked against
the merged model on batches of other sizes and lengths (one row, rows without padding, a row cut at `max_length`):
if any logit differs by more than 1e-4, the model is traced again on inputs padded to `max_length` and checked the
same way on inputs padded like that; `xft-export.json` then says `"padding": "max_length"` and a consumer must pad
to it. If that fails too, nothing is written. (The tiny BERT, Qwen2 and Gemma 3 models of the tests trace with
dynamic shapes.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xft_core.adapters import Manifest, head_from_manifest
from xft_core.config.load import position_limit
from xft_core.export.merged import merged_model
from xft_core.export.sources import EXPORT_INFO, ExportError, check_out, export_record
from xft_core.util.files import atomic_folder, atomic_write_json

MODEL_FILE = "model.pt"
TOLERANCE = 1e-4
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
PROBES = (  # texts of different lengths and scripts, for tracing and checking
    "Gut.", "The battery lasts forever and the screen is bright.", "El envío llegó tarde y la caja estaba rota.",
    "电池很好。", "Качество отличное, но доставка была очень медленной.", "ok", "Sehr zufrieden mit dem Kauf, gerne wieder!",
)


def export_torchscript(package: Path, out: Path, *, pm: Any = None, language: str | None = None,
                       max_length: int | None = None) -> dict[str, Any]:
    import torch

    from xft_core.hooks.manager import get_plugin_manager

    check_out(out, package)
    pm = pm or get_plugin_manager()
    manifest = Manifest.read(package)
    kind = head_from_manifest(manifest, pm).model_kind
    if kind != "sequence-classification":
        raise ExportError(f"{package}: --to torchscript exports classifiers (task kind sequence-classification: token "
                          f"ids in, one row of logits out); this package is task '{manifest.data.get('task')}' (kind {kind}). "
                          "Export it --to merged (a Hugging Face folder; for label words it records how to score)")
    max_length = max_length or _run_max_length(package) or 256
    merged, base, manifest, _ = merged_model(package, pm, language)
    limit = position_limit(base.model.config)
    if limit is not None and max_length > limit:
        raise ExportError(f"--max-length {max_length}: the model takes at most {limit} tokens (max_position_embeddings "
                          f"in its config.json); the export is traced and checked up to --max-length, so give {limit} "
                          "or less")
    names = _input_names(base, max_length)
    wrapper = logits_module(merged).eval()
    record = export_record(package, manifest, "torchscript", file=MODEL_FILE, inputs=names, output="logits",
                           max_length=max_length, tolerance=TOLERANCE, dtype=str(next(merged.parameters()).dtype))
    if "labels" in record:
        record["id2label"] = {str(i): label for i, label in enumerate(record["labels"])}
    with atomic_folder(out) as tmp, torch.no_grad():
        for padding in ("dynamic", "max_length"):
            batches = _batches(base, names, max_length, fixed=padding == "max_length")
            _trace(wrapper, batches[0], tmp / MODEL_FILE)
            worst = _check(torch.jit.load(str(tmp / MODEL_FILE), map_location="cpu"), wrapper, batches)
            if worst <= TOLERANCE:
                break
        else:
            raise ExportError(f"{package}: the traced model differs from the merged model by {worst:.2g} (> {TOLERANCE}) "
                              "even on inputs padded to max_length: tracing cannot capture this model; export --to merged")
        record.update(padding=padding, checked={"batches": [list(b[0].shape) for b in batches], "max_abs_diff": worst})
        base.tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / EXPORT_INFO, record)
    return record


def logits_module(model: Any) -> Any:
    """A module taking (input_ids, attention_mask[, token_type_ids]) positionally and returning the logits."""
    import torch

    class LogitsOf(torch.nn.Module):
        def __init__(self, inner: Any):
            super().__init__()
            self.model = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits

    return LogitsOf(model)


def _run_max_length(package: Path) -> int | None:
    """training.max_length of the run the package belongs to, if it is in a run folder."""
    from xft_core.config import ConfigError, load_config
    from xft_core.evaluation.plan import run_root
    from xft_core.util.runfiles import CONFIG

    root = run_root(Path(package))
    try:
        return int(load_config(root / CONFIG).training.max_length) if root is not None else None
    except ConfigError:
        return None


def _input_names(base: Any, max_length: int) -> list[str]:
    """The tensors the head's batches hold that the traced model takes, in its positional order."""
    rows = [base.head.input_row(text) for text in PROBES[:2]]
    batch = base.head.collate(base.head.encode(rows, base.tokenizer, max_length), base.tokenizer)
    if not {"input_ids", "attention_mask"} <= set(batch):
        raise ExportError(f"task '{base.manifest.data.get('task')}': its batches hold {', '.join(batch)}; --to torchscript "
                          "needs input_ids and attention_mask")
    return [n for n in INPUTS if n in batch]


def _batches(base: Any, names: list[str], max_length: int, *, fixed: bool) -> list[tuple[Any, ...]]:
    """Tensors of probe batches as the head encodes them: the first (two rows of different lengths) is traced; the
    others differ in rows, lengths and padding, one row cut at `max_length`. `fixed`: every batch padded to it."""
    long_text = " ".join(PROBES * (max_length // 4 + 1))
    groups = [[PROBES[0], PROBES[1]], [PROBES[5]], [PROBES[2], PROBES[3], PROBES[4]], [PROBES[0], PROBES[0]],
              [long_text, PROBES[6]], list(PROBES[:5])]
    batches = []
    for texts in groups:
        rows = [base.head.input_row(text) for text in texts]
        batch = base.head.collate(base.head.encode(rows, base.tokenizer, max_length), base.tokenizer)
        tensors = [batch[n] for n in names]
        if fixed:
            tensors = [_pad(t, max_length, base.tokenizer.pad_token_id if n == "input_ids" else 0)
                       for n, t in zip(names, tensors)]
        batches.append(tuple(tensors))
    return batches


def _pad(tensor: Any, length: int, value: int) -> Any:
    import torch

    extra = length - tensor.shape[1]
    return torch.cat([tensor, tensor.new_full((tensor.shape[0], extra), value)], dim=1) if extra > 0 else tensor


def _trace(wrapper: Any, example: tuple[Any, ...], path: Path) -> None:
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings name shape-dependent Python values: `_check` decides
        traced = torch.jit.trace(wrapper, example, strict=False, check_trace=False)
    torch.jit.save(traced, str(path))


def _check(loaded: Any, wrapper: Any, batches: list[tuple[Any, ...]]) -> float:
    """The largest absolute logit difference between the loaded file and the merged model over `batches`."""
    worst = 0.0
    for batch in batches:
        expected, got = wrapper(*batch).float(), loaded(*batch).float()
        if got.shape != expected.shape:
            return float("inf")
        worst = max(worst, float((expected - got).abs().max()))
    return worst
