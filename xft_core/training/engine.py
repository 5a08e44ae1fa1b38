"""The training engine on Hugging Face Accelerate.

It knows only descriptors: the task head turns rows into batches and predictions, the strategy decides
what trains and how it is saved, the sampler picks the language of every batch. One `Run` holds them all.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from xft_core import __version__
from xft_core.config import RunConfig, build_options, load_config, save_config
from xft_core.data import DataError, DataSet, Split, discover, select, validate
from xft_core.training.checkpoints import latest_checkpoint, load_checkpoint, restore_trainable, save_checkpoint
from xft_core.util.files import atomic_write_json
from xft_core.hooks.manager import PluginError, collect, get_plugin_manager, get_spec
from xft_core.hooks.descriptors import ROW_LANGUAGE


@dataclass
class RunPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def adapters(self) -> Path:
        return self.root / "adapters"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def run_info(self) -> Path:
        return self.root / "run.json"


class LanguageStream:
    """Endless shuffled passes over one language's examples; its position and RNG are saveable."""

    def __init__(self, size: int, seed: int):
        self.size = size
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(size)
        self.position = 0
        self.epoch = 0

    def take(self, n: int) -> list[int]:
        out: list[int] = []
        while len(out) < n:
            if self.position >= self.size:
                self._order = self._rng.permutation(self.size)
                self.position = 0
                self.epoch += 1
            step = min(n - len(out), self.size - self.position)
            out.extend(int(i) for i in self._order[self.position : self.position + step])
            self.position += step
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self._rng.bit_generator.state, "order": self._order.tolist(), "position": self.position, "epoch": self.epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]
        self._order = np.array(state["order"], dtype=np.int64)
        self.position = int(state["position"])
        self.epoch = int(state["epoch"])


@dataclass
class Run:
    """Everything one training run holds; returned by `xft_core.train`."""

    config: RunConfig
    paths: RunPaths
    pm: Any
    console: Any = None
    head: Any = None
    strategy: Any = None
    strategy_spec: Any = None
    sampler: Any = None
    model: Any = None
    tokenizer: Any = None
    accelerator: Any = None
    model_path: Path | None = None
    train_languages: list[str] = field(default_factory=list)
    eval_languages: list[str] = field(default_factory=list)
    adapter_names: list[str] = field(default_factory=list)  # per_language: the languages; single: one name
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # last dev metrics per language
    best: dict[str, Any] = field(default_factory=dict)
    should_stop: bool = False
    examples_per_second: float = 0.0
    trainable_parameters: int = 0
    adapter_dirs: dict[str, Path] = field(default_factory=dict)
    wall_seconds: float = 0.0
    last_eval_step: int = -1

    @property
    def per_language(self) -> bool:
        return self.config.adapters == "per_language"

    def adapter_for(self, language: str) -> str | None:
        if self.per_language:
            return language if language in self.adapter_names else None
        return self.adapter_names[0] if self.adapter_names else None


# ------------------------------------------------------------------------------------------------ setup
def resolve_plugins(config: RunConfig, pm: Any) -> tuple[Any, Any, Any, Any, Any]:
    """(strategy spec, strategy, sampler spec, sampler options, head) for a config, with option checks."""
    strategy_spec = get_spec(pm, "strategies", config.strategy, config_key="strategy")
    sampler_spec = get_spec(pm, "samplers", config.sampler, config_key="sampler")
    head_spec = get_spec(pm, "task_heads", config.task, config_key="task")
    strategy = strategy_spec.build(build_options(strategy_spec.options, config.strategy_options, key="strategy_options"))
    sampler_options = build_options(sampler_spec.options, config.sampler_options, key="sampler_options")
    head = head_spec.build(build_options(head_spec.options, config.task_options, key="task_options"))
    if config.adapters == "per_language" and not strategy_spec.per_language:
        able = [n for n, p in collect(pm, "strategies").items() if p.spec.per_language]
        raise PluginError(
            f"Strategy '{config.strategy}' cannot hold one adapter per language (config key: adapters). "
            f"Use adapters: single, or a strategy that can: {', '.join(sorted(able)) or 'none installed'}."
        )
    return strategy_spec, strategy, sampler_spec, sampler_options, head


def load_data(config: RunConfig, head: Any) -> tuple[DataSet, dict[str, Split], dict[str, Split]]:
    d = config.data
    data = discover(d.path, d.files, d.language_field, d.rows)
    train_languages = list(d.train_languages) or data.languages(d.train_split)
    if not train_languages:
        raise DataError(f"No '{d.train_split}' split found in {d.path or 'data.files'} (config key: data.train_split)")
    train = select(data, d.train_split, train_languages, d.max_train_examples)
    head.fit_labels(row for part in train.values() for row in part.rows if not head.validate_row(row))
    validate(DataSet({d.train_split: train}), head, [d.train_split])
    eval_languages = list(d.eval_languages) or train_languages
    dev = select(data, d.dev_split, eval_languages, d.max_eval_examples, required=False)
    validate(DataSet({d.dev_split: dev}), head, [d.dev_split])
    return data, train, dev


def precision_for(setting: str, cpu: bool) -> str:
    """'auto' is bf16 on CPUs with native bf16 and on GPUs that support it, else full precision."""
    if setting != "auto":
        return setting
    import torch

    if torch.cuda.is_available() and not cpu:
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    try:
        return "bf16" if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported() else "no"
    except (AttributeError, RuntimeError):
        return "no"


def _optimizer(model: Any, config: RunConfig) -> Any:
    import torch

    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim < 2 or "norm" in name.lower() else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": config.training.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.training.learning_rate)


def _scheduler(optimizer: Any, config: RunConfig) -> Any:
    from transformers import get_scheduler

    t = config.training
    name = "constant_with_warmup" if t.lr_scheduler == "constant" else t.lr_scheduler
    return get_scheduler(name, optimizer, num_warmup_steps=int(t.warmup_ratio * t.max_steps), num_training_steps=t.max_steps)


def prepare(config: RunConfig, *, pm: Any = None, console: Any = None) -> Run:
    """Resolve plugins, read and check data, load the model once and apply the strategy."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, set_seed
    from rich.console import Console

    from xft_core.models import load_tokenizer, quiet_transformers, resolve_model

    quiet_transformers()
    pm = pm or get_plugin_manager()
    pm.hook.xft_configure.call_historic(kwargs=dict(config=config))
    run = Run(config=config, paths=RunPaths(config.run_dir), pm=pm, console=console or Console(stderr=True))
    run.strategy_spec, run.strategy, sampler_spec, sampler_options, run.head = resolve_plugins(config, pm)
    data, train, dev = load_data(config, run.head)
    run.train_languages = list(train)
    run.eval_languages = list(config.data.eval_languages) or list(train)
    run.data, run.train, run.dev = data, train, dev  # type: ignore[attr-defined]

    t = config.training
    mixed = precision_for(t.precision, t.cpu)
    # Accelerate keeps one process-wide state; a second run in the same process (Python API, notebooks,
    # tests) may ask for another precision, so start each run from a clean state (the process group stays)
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=False)
    run.accelerator = Accelerator(
        mixed_precision=mixed,
        # without an accelerator, say so: Accelerate then forms a gloo group under torchrun (MULTI_CPU)
        cpu=t.cpu or not _has_accelerator(),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=config.adapters == "per_language")],
    )
    set_seed(t.seed)
    run.model_path = resolve_model(config.model, pm)
    run.tokenizer = load_tokenizer(run.model_path)
    model = run.head.build_model(run.model_path, run.tokenizer)
    run.adapter_names = list(train) if run.per_language else [_single_adapter_name(list(train))]
    model = run.strategy.apply(model, run.head, run.adapter_names if run.per_language else None)
    if config.init_from:
        init = getattr(run.strategy, "init_from", None)
        if init is None:
            raise PluginError(f"Strategy '{config.strategy}' cannot start from a saved adapter (config key: init_from)")
        init(model, Path(config.init_from), run.adapter_names)
    run.model = model
    run.trainable_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    run.features = {lang: run.head.encode(with_language(part.rows, lang), run.tokenizer, t.max_length) for lang, part in train.items()}  # type: ignore[attr-defined]
    run.sampler = sampler_spec.build({lang: len(part) for lang, part in train.items()}, sampler_options, t.seed)
    run.streams = {lang: LanguageStream(len(part), t.seed + i) for i, (lang, part) in enumerate(sorted(train.items()))}  # type: ignore[attr-defined]
    return run


def with_language(rows: list[dict[str, Any]], language: str) -> list[dict[str, Any]]:
    """The rows as a task head sees them: each carries its language under `ROW_LANGUAGE` (for prompts)."""
    return [{**row, ROW_LANGUAGE: language} for row in rows]


def _has_accelerator() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    xpu = getattr(torch, "xpu", None)
    return torch.cuda.is_available() or bool(mps and mps.is_available()) or bool(xpu and xpu.is_available())


def _single_adapter_name(languages: list[str]) -> str:
    return languages[0] if len(languages) == 1 else "multilingual"


# ------------------------------------------------------------------------------------------ evaluation
def score(run_or_head: Any, pm: Any, predictions: list[dict], rows: list[dict]) -> dict[str, float]:
    """The head's metrics (looked up among the `xft_metrics` plugins) for one language."""
    head = getattr(run_or_head, "head", run_or_head)
    metrics = collect(pm, "metrics")
    predicted, reference = head.metric_inputs(predictions, rows)
    out = {}
    for name in head.metric_names:
        if name not in metrics:
            raise PluginError(f"Metric '{name}' asked for by the task head is not installed. Available: {', '.join(sorted(metrics))}")
        out[name] = float(metrics[name].spec.compute(predicted, reference))
    return out


def evaluate_dev(run: Run) -> dict[str, dict[str, float]]:
    model = run.accelerator.unwrap_model(run.model)
    results: dict[str, dict[str, float]] = {}
    for language, part in run.dev.items():  # type: ignore[attr-defined]
        adapter = run.adapter_for(language)
        if run.per_language and adapter is None:
            continue
        run.strategy.activate(model, adapter if run.per_language else None)
        with run.accelerator.autocast():  # the training precision; generation does not pass the wrapped forward
            predictions = run.head.predict(
                model, run.tokenizer, with_language(part.rows, language), batch_size=run.config.training.eval_batch_size,
                max_length=run.config.training.max_length,
            )
        results[language] = score(run, run.pm, predictions, part.rows)
    return results


def average(metrics: Mapping[str, Mapping[str, float]], name: str) -> float:
    values = [m[name] for m in metrics.values() if name in m]
    return sum(values) / len(values) if values else float("nan")


# ---------------------------------------------------------------------------------------------- training
def _next_batch(run: Run, language: str) -> dict[str, Any]:
    """The next batch of `language`: the global batch is drawn identically on every process; each takes its share."""
    acc = run.accelerator
    size = run.config.training.batch_size
    indices = run.streams[language].take(size * acc.num_processes)  # type: ignore[attr-defined]
    mine = indices[acc.process_index :: acc.num_processes]
    features = run.features[language]  # type: ignore[attr-defined]
    batch = run.head.collate([features[i] for i in mine], run.tokenizer)
    return {k: v.to(acc.device) for k, v in batch.items()}


def _progress(run: Run, enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[speed]} ex/s"),
        TextColumn("{task.fields[language]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=run.console,
        disable=not enabled,
        transient=False,
    )


def train(
    config: str | Path | Mapping[str, Any] | RunConfig,
    *,
    overrides: Mapping[str, Any] | None = None,
    resume: bool = False,
    pm: Any = None,
    console: Any = None,
    progress: bool = True,
) -> Run:
    """Fine-tune as the config says; returns the finished `Run` (metrics, history, paths).

    Example::

        run = xft_core.train("examples/reviews.yaml", overrides={"training": {"max_steps": 20}})
        print(run.metrics["de"]["macro_f1"], run.adapter_dirs)
    """
    config = load_config(config, overrides)
    started = time.perf_counter()
    run = prepare(config, pm=pm, console=console)
    acc = run.accelerator
    t = config.training
    paths = run.paths
    if acc.is_main_process:
        paths.root.mkdir(parents=True, exist_ok=True)
        if not resume and (latest_checkpoint(paths.checkpoints) or paths.metrics.exists()):
            raise FileExistsError(
                f"Run folder {paths.root} already holds a run. Pass --resume to continue it, "
                "or choose another name (--set name=...) or output_dir."
            )
        save_config(config, paths.config)
    if config.data_check:
        from xft_core.data.checks import quick_check

        for warning in quick_check(run.train, run.dev, run.head, run.tokenizer, t.max_length):  # type: ignore[attr-defined]
            run.console.print(f"[yellow]data warning:[/] {warning}")

    optimizer = _optimizer(run.model, config)
    scheduler = _scheduler(optimizer, config)
    run.model, optimizer = acc.prepare(run.model, optimizer)
    bad_evals = 0
    if resume:
        checkpoint = latest_checkpoint(paths.checkpoints)
        if checkpoint is None:
            run.console.print(f"[yellow]--resume: no complete checkpoint in {paths.checkpoints}; starting from step 0[/]")
        else:
            state = load_checkpoint(run, checkpoint, optimizer, scheduler)
            bad_evals = int(state.get("bad_evals", 0))
            run.history = _read_history(paths.metrics, run.step)
            run.console.print(f"Resumed from {checkpoint} (step {run.step})")
    if acc.is_main_process:
        _write_history(paths.metrics, run.history)
    run.pm.hook.xft_before_train(run=run)

    model = run.model
    model.train()
    window_examples, window_start, loss_sum, loss_count = 0, time.perf_counter(), 0.0, 0
    total_examples, train_seconds = 0, 0.0
    with _progress(run, progress and acc.is_main_process) as bar:
        task = bar.add_task(config.name, total=t.max_steps, completed=run.step, loss="-", speed="-", language="")
        while run.step < t.max_steps and not run.should_stop:
            step_start = time.perf_counter()
            languages = []
            for micro in range(t.gradient_accumulation_steps):
                language = run.sampler.next_language()
                languages.append(language)
                run.strategy.activate(acc.unwrap_model(model), run.adapter_for(language) if run.per_language else None)
                batch = _next_batch(run, language)
                run.sampler.record(language, t.batch_size * acc.num_processes)
                last = micro == t.gradient_accumulation_steps - 1
                context = acc.no_sync(model) if not last and acc.num_processes > 1 else _null()
                with context:
                    loss = model(**batch).loss / t.gradient_accumulation_steps
                    acc.backward(loss)
                loss_sum += float(loss.detach()) * t.gradient_accumulation_steps
                loss_count += 1
                window_examples += t.batch_size * acc.num_processes
            if t.max_grad_norm > 0:
                acc.clip_grad_norm_(model.parameters(), t.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            run.step += 1
            total_examples += t.batch_size * acc.num_processes * t.gradient_accumulation_steps
            train_seconds += time.perf_counter() - step_start

            logs = {"step": run.step, "loss": loss_sum / max(loss_count, 1), "lr": scheduler.get_last_lr()[0], "language": languages[-1]}
            if run.step % max(t.log_every, 1) == 0 or run.step == t.max_steps:
                elapsed = time.perf_counter() - window_start
                logs["examples_per_second"] = window_examples / elapsed if elapsed > 0 else 0.0
                logs["examples_seen"] = dict(run.sampler.counts)
                _log(run, logs)
                if progress and acc.is_main_process and not run.console.is_terminal:
                    # a live bar does not render into a log file or pipe: print the same facts as lines
                    run.console.print(
                        f"step {run.step}/{t.max_steps} loss {logs['loss']:.4f} "
                        f"{logs['examples_per_second']:.1f} ex/s lr {logs['lr']:.2e}",
                        highlight=False,
                    )
                window_examples, window_start = 0, time.perf_counter()
            bar.update(task, completed=run.step, loss=f"{logs['loss']:.4f}", speed=f"{total_examples / max(train_seconds, 1e-9):.1f}", language=languages[-1])
            if "examples_per_second" in logs:  # the logged loss is the mean over the steps since the last log
                loss_sum, loss_count = 0.0, 0
            run.pm.hook.xft_after_step(run=run, step=run.step, logs=logs)

            evaluated = False
            if t.eval_every and run.step % t.eval_every == 0:
                bad_evals = _evaluate_and_track(run, bad_evals)
                evaluated = True
            if (t.save_every and run.step % t.save_every == 0) or (evaluated and run.best.get("step") == run.step and t.load_best_at_end):
                acc.wait_for_everyone()
                path = save_checkpoint(run, optimizer, scheduler, {"bad_evals": bad_evals})
                if run.best.get("step") == run.step:
                    run.best["checkpoint"] = str(path)
    run.examples_per_second = total_examples / train_seconds if train_seconds > 0 else 0.0
    if run.last_eval_step != run.step:
        bad_evals = _evaluate_and_track(run, bad_evals)
    if t.load_best_at_end and run.best.get("checkpoint") and run.best.get("step") != run.step:
        restore_trainable(run, Path(run.best["checkpoint"]))
        run.metrics = run.best["metrics"]
        run.console.print(f"Loaded the best checkpoint (step {run.best['step']}, {run.best['metric']} {run.best['value']:.4f})")
    acc.wait_for_everyone()
    if t.save_every or not latest_checkpoint(paths.checkpoints):
        save_checkpoint(run, optimizer, scheduler, {"bad_evals": bad_evals})
    if acc.is_main_process:
        save_adapters(run)
    run.wall_seconds = time.perf_counter() - started
    if acc.is_main_process:
        atomic_write_json(paths.run_info, run_summary(run))
    run.pm.hook.xft_after_train(run=run)
    return run


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _evaluate_and_track(run: Run, bad_evals: int) -> int:
    """Evaluate on every dev language, log, remember the best, decide early stopping."""
    if not run.dev:  # type: ignore[attr-defined]
        return bad_evals
    metrics = evaluate_dev(run)
    run.metrics = metrics
    run.pm.hook.xft_after_eval(run=run, step=run.step, metrics=metrics)  # may add or adjust metrics
    name = run.config.training.early_stopping_metric or run.head.metric_names[0]
    value = average(metrics, name)
    _log(run, {"step": run.step, "eval": metrics, f"eval_mean_{name}": value})
    run.last_eval_step = run.step
    if not run.best or value > run.best["value"]:
        run.best = {"step": run.step, "metric": name, "value": value, "metrics": metrics, "checkpoint": run.best.get("checkpoint") if run.best else None}
        return 0
    bad_evals += 1
    patience = run.config.training.early_stopping_patience
    if patience and bad_evals >= patience:
        run.console.print(f"Early stopping at step {run.step}: {name} has not improved for {patience} evaluations")
        run.should_stop = True
    return bad_evals


def _log(run: Run, record: dict[str, Any]) -> None:
    run.history.append(record)
    if run.accelerator.is_main_process:
        with run.paths.metrics.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _read_history(path: Path, up_to_step: int) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in records if r.get("step", 0) <= up_to_step]


def _write_history(path: Path, records: list[dict[str, Any]]) -> None:
    from xft_core.util.files import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def manifest_for(run: Run, language: str | None, languages: list[str]) -> dict[str, Any]:
    from xft_core.adapters import base_fingerprint

    return {
        "xft_version": __version__,
        "format": 1,
        "base_model": run.config.model,
        "base_fingerprint": base_fingerprint(run.model_path),
        "task": run.config.task,
        "task_options": dict(run.config.task_options),
        **run.head.label_info(),
        "languages": languages,
        "adapter_name": language or run.adapter_names[0],
        "strategy": run.config.strategy,
        "strategy_options": dict(run.config.strategy_options),
        "metrics": {lang: run.metrics[lang] for lang in languages if lang in run.metrics},
        "dev_metrics_all": run.metrics if not run.per_language else {},
        "run": run.config.name,
        "step": run.step,
    }


def save_adapters(run: Run) -> dict[str, Path]:
    from xft_core.adapters import save_package

    model = run.accelerator.unwrap_model(run.model)
    if run.per_language:
        targets = [(lang, lang, [lang]) for lang in run.adapter_names]
    else:
        targets = [(run.adapter_names[0], None, run.train_languages)]
    for name, language, languages in targets:
        folder = run.paths.adapters / name
        save_package(folder, model=model, strategy=run.strategy, language=language, head=run.head, manifest=manifest_for(run, language, languages))
        run.adapter_dirs[name] = folder
    return run.adapter_dirs


def run_summary(run: Run) -> dict[str, Any]:
    return {
        "name": run.config.name,
        "steps": run.step,
        "wall_seconds": round(run.wall_seconds, 2),
        "examples_per_second": round(run.examples_per_second, 2),
        "trainable_parameters": run.trainable_parameters,
        "train_languages": run.train_languages,
        "examples_drawn": dict(run.sampler.counts),
        "dev_metrics": run.metrics,
        "best": {k: v for k, v in run.best.items() if k != "metrics"},
        "adapters": {k: str(v) for k, v in run.adapter_dirs.items()},
        "model_path": str(run.model_path),
        "precision": run.accelerator.mixed_precision,
        "device": str(run.accelerator.device),
        "num_processes": run.accelerator.num_processes,
        "xft_version": __version__,
    }
