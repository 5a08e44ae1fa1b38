"""Everything before the first step: plugins resolved, data read and checked, model loaded once, strategy applied."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xft_core.adapters import Manifest, check_init_from, init_weights_from
from xft_core.config import ConfigError, RunConfig, build_options
from xft_core.config.load import check_max_length
from xft_core.data import DataError, DataSet, Split, select, validate
from xft_core.data.loading import (
    check_label_sets,
    data_source_label,
    dataset_from_config,
    evaluation_languages,
    warn_unread_splits,
)
from xft_core.evaluation.predict import with_language
from xft_core.hooks import AdaptsToData, LanguageSampler, PluginError, SamplerSpec, Strategy, StrategySpec, TaskHead
from xft_core.hooks.manager import collect, get_plugin_manager, get_spec
from xft_core.models.fast_paths import prepare_for_training
from xft_core.models.quantize import FLOAT_DTYPES, base_quantizer, quantize_base
from xft_core.training.run import Run
from xft_core.training.sharding import check_fsdp
from xft_core.training.streams import LanguageStream
from xft_core.util.precision import resolve_precision
from xft_core.util.runfiles import RunPaths


def resolve_plugins(config: RunConfig, pm: Any) -> tuple[StrategySpec, Strategy, SamplerSpec, Any, TaskHead]:
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


def load_data(config: RunConfig, head: TaskHead, pm: Any = None) -> tuple[DataSet, dict[str, Split], dict[str, Split]]:
    """(all data, train rows per language, dev rows per evaluation language), validated by the head. With
    `data.few_shot: K`, the train rows also hold K rows of each evaluation language that has no training data."""
    d = config.data
    data = dataset_from_config(d, pm)
    warn_unread_splits(d, data)
    train_languages = source_languages(config, data)
    if not train_languages:
        raise DataError(f"No '{d.train_split}' split found in {data_source_label(d)} (config key: data.train_split)")
    label_field = getattr(head.fields, "label", None)  # samples of max_*_examples keep each label's share
    train = select(data, d.train_split, train_languages, d.max_train_examples, label_field=label_field)
    if d.few_shot:
        targets = [lang for lang in (d.eval_languages or ()) if lang not in train]
        if not targets:
            raise DataError("data.few_shot needs evaluation languages without training data (config key: data.eval_languages)")
        train.update(few_shot_rows(data, d.train_split, targets, d.few_shot, config.training.seed))
    head.fit_labels(row for part in train.values() for row in part.rows if not head.validate_row(row))
    validate(DataSet({d.train_split: train}), head, [d.train_split])
    check_label_sets({lang: train[lang] for lang in train_languages}, head, d.train_split)
    eval_languages = evaluation_languages(d, data, train_languages, per_language=config.adapters == "per_language")
    dev = select(data, d.dev_split, eval_languages, d.max_eval_examples, required=False, label_field=label_field)
    validate(DataSet({d.dev_split: dev}), head, [d.dev_split])
    return data, train, dev


def source_languages(config: RunConfig, data: DataSet) -> list[str]:
    """The languages trained on with all their rows: `data.train_languages`, the k best sources of a target
    (`data.best_sources`, from `xft eval`'s sources.json), else every language with a train split."""
    best = config.data.best_sources
    if best:
        from xft_core.evaluation.ranking import best_sources

        return best_sources(best["ranking"], best["target"], int(best.get("k", 3)))
    return list(config.data.train_languages) or data.languages(config.data.train_split)


def few_shot_rows(data: DataSet, split: str, languages: list[str], k: int, seed: int) -> dict[str, Split]:
    """K rows of each language's `split`, the same for a given seed whatever else is in the data."""
    import zlib

    import numpy as np

    chosen: dict[str, Split] = {}
    for language in languages:
        part = data.get(split, language)
        if part is None:
            raise DataError(f"data.few_shot: no '{split}' rows for target language '{language}' to draw {k} from "
                            "(few-shot rows come only from the train split, never from dev or test)")
        if len(part) < k:
            raise DataError(f"data.few_shot: {k} rows asked for '{language}', its '{split}' split has {len(part)}")
        rng = np.random.default_rng([seed, zlib.crc32(language.encode())])
        index = sorted(int(i) for i in rng.choice(len(part), size=k, replace=False))
        chosen[language] = Split(language, split, [part.rows[i] for i in index], [part.where[i] for i in index])
    return chosen


def frozen_base_dtype(config: RunConfig, mixed_precision: str) -> Any:
    """The dtype the frozen base weights are kept in (None: leave them as loaded, float32)."""
    import torch

    setting = config.training.base_dtype
    # a quantized base (nf4) keeps its other frozen weights (embeddings, norms) as `auto` would
    if setting not in FLOAT_DTYPES or setting == "auto":
        setting = {"bf16": "bfloat16", "fp16": "float16"}.get(mixed_precision, "float32")
    return None if setting == "float32" else getattr(torch, setting)


def cast_frozen(model: Any, dtype: Any) -> None:
    """Frozen parameters to `dtype` (no cast per matmul under autocast, half the memory traffic); trainable
    ones to float32, so the optimizer updates full-precision weights."""
    import torch

    for parameter in model.parameters():
        if parameter.requires_grad:
            if parameter.dtype != torch.float32:
                parameter.data = parameter.data.float()
        elif parameter.dtype != dtype and parameter.is_floating_point():
            parameter.data = parameter.data.to(dtype)


def make_accelerator(config: RunConfig) -> Any:
    """A fresh Accelerator in the run's precision.

    Accelerate keeps one process-wide state; a second run in the same process (Python API, notebooks, tests) may
    ask for another precision, so each run starts from a clean state (the process group stays)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedDataParallelKwargs

    t = config.training
    cpu = t.cpu or not has_accelerator()
    AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(
        mixed_precision=resolve_precision(t.precision, "cpu" if cpu else None),
        # without an accelerator, say so: Accelerate then forms a gloo group under torchrun (MULTI_CPU)
        cpu=cpu,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=config.adapters == "per_language")],
        log_with=list(t.report_to) or None,  # a tracking plugin starts them in xft_before_train
        project_dir=str(config.run_dir / "trackers") if t.report_to else None,
    )


def check_distributed(accelerator: Any, config: RunConfig | None = None) -> None:
    """Refuse the Accelerate modes xft's loop cannot run correctly (docs/distributed.md). FSDP2 trains: xft gathers
    the shards for saving, evaluation and resume (training/sharding.py); FSDP1 and a quantized base under FSDP are
    refused with the way out. DeepSpeed is refused: its engine steps, accumulates and clips itself and needs a
    DataLoader, and xft would save adapters and checkpoints from the main process's partition alone."""
    mode = str(getattr(accelerator.distributed_type, "value", accelerator.distributed_type))
    quantized = config is not None and config.training.base_dtype not in FLOAT_DTYPES
    check_fsdp(accelerator, quantized)
    if mode != "DEEPSPEED":
        return
    stage = getattr(getattr(accelerator.state, "deepspeed_plugin", None), "zero_stage", None)
    raise ConfigError(
        f"xft does not train under Accelerate's DEEPSPEED (accelerate config: distributed_type: DEEPSPEED): DeepSpeed "
        f"ZeRO-{stage} shards the optimizer state" + (" and the parameters" if stage == 3 else "") + ", steps, "
        "accumulates and clips inside its own engine, and needs a DataLoader that xft's loop does not have. Use FSDP2 "
        "(examples/accelerate/fsdp.yaml) to shard, or DDP (examples/accelerate/ddp_multi_gpu.yaml: a LoRA adapter and "
        "its optimizer state fit on every GPU); see docs/distributed.md."
    )


def has_accelerator() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    xpu = getattr(torch, "xpu", None)
    return torch.cuda.is_available() or bool(mps and mps.is_available()) or bool(xpu and xpu.is_available())


def prepare(config: RunConfig, *, pm: Any = None, console: Any = None) -> Run:
    """Resolve plugins, read and check data, load the model once and apply the strategy."""
    from accelerate.utils import set_seed

    from xft_core.models import load_tokenizer, quiet_transformers, resolve_model
    from xft_core.util.console import console as make_console

    quiet_transformers()
    pm = pm or get_plugin_manager()
    pm.hook.xft_configure.call_historic(kwargs=dict(config=config))
    strategy_spec, strategy, sampler_spec, sampler_options, head = resolve_plugins(config, pm)
    quantizer = check_quantized_base(config, strategy_spec, pm)
    data, train, dev = load_data(config, head, pm)
    t = config.training
    accelerator = make_accelerator(config)
    check_distributed(accelerator, config)
    set_seed(t.seed)
    model_path = resolve_model(config.model, pm)
    check_positions(config, model_path)
    init_from = {}
    if config.init_from:  # before any weights load: another base, task or label set is refused up front
        init_from = check_init_from(Path(config.init_from), model_path, task=config.task, label_info=head.label_info(),
                                     adopted=getattr(head, "adopted_label_info", ()))
    tokenizer = load_tokenizer(model_path)
    per_language = config.adapters == "per_language"
    sources = source_languages(config, data)
    adapter_names = list(train) if per_language else [single_adapter_name(sources)]
    base = head.build_model(model_path, tokenizer)
    if quantizer is not None:  # before the strategy: peft adapts the quantized layers
        quantize_base(quantizer, base, head.head_modules(base), accelerator.mixed_precision, accelerator.device,
                      training=True)
    model = strategy.apply(base, head, adapter_names if per_language else None)
    if config.init_from:
        init_weights_from(strategy, model, Path(config.init_from), adapter_names)
        head.load_label_info(Manifest.read(Path(config.init_from)).data)  # what the head settled there, it keeps
    dtype = frozen_base_dtype(config, accelerator.mixed_precision)
    if dtype is not None:
        cast_frozen(model, dtype)
    if isinstance(head, AdaptsToData):
        note = adapt_head(head, model, tokenizer, train, dev, sources, config, pm, accelerator.mixed_precision)
        if note:
            (console or make_console(stderr=True)).print(note, highlight=False, soft_wrap=True, markup=False)
    prepare_for_training(model, accelerator.device.type)  # written-out RMSNorm; eager attention on CPUs
    features = {lang: head.encode(with_language(part.rows, lang), tokenizer, t.max_length) for lang, part in train.items()}
    sampler: LanguageSampler = sampler_spec.build({lang: len(part) for lang, part in train.items()}, sampler_options, t.seed)
    run = Run(
        config=config, paths=RunPaths(config.run_dir), pm=pm, console=console or make_console(stderr=True), head=head,
        strategy=strategy, strategy_spec=strategy_spec, sampler=sampler, accelerator=accelerator, model_path=model_path,
        tokenizer=tokenizer, model=model, data=data, train=train, dev=dev,
        features=features,
        streams={lang: LanguageStream(len(part), t.seed + i, lengths(features[lang]) if t.group_by_length else None)
                 for i, (lang, part) in enumerate(sorted(train.items()))},
        adapter_names=adapter_names, eval_languages=list(config.data.eval_languages) or list(dict.fromkeys([*train, *dev])),
        few_shot_languages=[lang for lang in train if lang not in sources], init_from=init_from,
    )
    run.trainable_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return run


def adapt_head(head: AdaptsToData, model: Any, tokenizer: Any, train: dict[str, Split], dev: dict[str, Split],
               sources: list[str], config: RunConfig, pm: Any, precision: str) -> str | None:
    """`head.adapt` on the first source language's dev rows (else its first 200 training rows), predicting with the
    model as evaluation does and scoring with the head's primary metric."""
    from xft_core.evaluation.predict import predict_rows, score

    language = sources[0]
    rows = (dev.get(language) or train[language]).rows[:200]
    t = config.training

    def predict(batch: Any) -> list[dict[str, Any]]:
        return predict_rows(head, model, tokenizer, with_language(batch, language), batch_size=t.eval_batch_size,
                            max_length=t.max_length, precision=precision)

    def primary(predictions: Any, references: Any) -> float:
        return score(head, pm, predictions, references)[head.metric_names[0]]

    return head.adapt(rows, predict, primary)


def check_quantized_base(config: RunConfig, strategy_spec: StrategySpec, pm: Any) -> Any:
    """The quantizer `training.base_dtype` names (None for a float dtype), if the strategy can train over it."""
    quantizer = base_quantizer(config.training.base_dtype, pm)
    if quantizer is not None and not strategy_spec.quantized_base:
        able = [n for n, p in collect(pm, "strategies").items() if p.spec.quantized_base]
        raise ConfigError(
            f"Strategy '{config.strategy}' cannot train over a quantized base (config key: training.base_dtype: "
            f"{quantizer.name}): it trains the base's own weights, or was not made for quantized layers. Use a float "
            f"base_dtype, or a strategy that can: {', '.join(sorted(able)) or 'none installed'}."
        )
    return quantizer


def check_positions(config: RunConfig, model_path: Path) -> None:
    """training.max_length (also the length of the evaluations during training) must fit the model's positions;
    checked before any weights load."""
    from transformers import AutoConfig

    try:
        model_config = AutoConfig.from_pretrained(model_path)
    except (OSError, ValueError):  # no readable config.json: building the model says why
        return
    check_max_length(config.training.max_length, model_config, key="training.max_length", model=config.model)


def lengths(features: list[dict[str, Any]]) -> list[int]:
    """Tokens per encoded row (what a batch pads to)."""
    return [len(f["input_ids"]) for f in features]


def single_adapter_name(languages: list[str]) -> str:
    return languages[0] if len(languages) == 1 else "multilingual"


def check_trackers_started(run: Run) -> None:
    """After `xft_before_train`: `training.report_to` names trackers but no plugin started one (the tracking plugin
    is blocked or not installed), so nothing would be reported; a ConfigWarning says so before training starts."""
    report_to = list(run.config.training.report_to)
    if report_to and run.accelerator.is_main_process and not getattr(run.accelerator, "trackers", None):
        import warnings

        from xft_core.config.load import ConfigWarning

        warnings.warn(ConfigWarning(
            f"training.report_to: {', '.join(report_to)}: no plugin started a tracker, so this run reports nothing "
            "there. Trackers are started by a tracking plugin (xft's own is xft_trackers): is it blocked "
            "(XFT_BLOCK_PLUGINS) or not installed? `xft plugins` lists what is installed"), stacklevel=2)
