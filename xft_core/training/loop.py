"""The training loop on Accelerate: the sampler picks each batch's language, the strategy activates its adapter,
the head's collated batch goes forward and back; dev evaluation, early stopping and checkpoints on schedule."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from xft_core.config import RunConfig
from xft_core.evaluation.predict import average, predict_rows, score, with_language
from xft_core.hooks.manager import collect
from xft_core.training.calibrate import calibrate_run
from xft_core.training.checkpoints import average_checkpoints, latest_checkpoint, restore_trainable, save_checkpoint
from xft_core.training.outputs import run_summary, save_adapters
from xft_core.training.prepare import check_trackers_started, prepare
from xft_core.training.resume import check_run_folder, open_run_folder, resume_from_checkpoint
from xft_core.training.run import Run
from xft_core.training.sharding import shard, shards_itself, whole_state_dict
from xft_core.util.console import print_line
from xft_core.util.console import progress as progress_bar
from xft_core.util.files import atomic_write_json
from xft_core.util.runfiles import append_metrics, write_metrics_log


def run_loop(config: RunConfig, *, resume: bool = False, pm: Any = None, console: Any = None,
             progress: bool = True) -> Run:
    """One run of a loaded config through the Accelerate loop; returns the finished `Run`. The public entry is
    `xft_core.train` (training/entry.py), which loads the config and sends self-training configs to their rounds."""
    check_run_folder(config, resume)
    started = time.perf_counter()
    run = prepare(config, pm=pm, console=console)
    state = start(run, resume)
    t = config.training
    show = progress and run.accelerator.is_main_process
    with progress_bar(run.console, "loss {task.fields[loss]}", "{task.fields[speed]} ex/s", "{task.fields[language]}",
                      enabled=show) as bar:
        task = bar.add_task(config.name, total=t.max_steps, completed=run.step, loss="-", speed="-", language="")
        while run.step < t.max_steps and not run.should_stop:
            languages = train_step(run, state)
            logs = log_step(run, state, languages, lines=show and not run.console.is_terminal)
            bar.update(task, completed=run.step, loss="-" if state.last_loss is None else f"{state.last_loss:.4f}",
                       speed=f"{state.total_examples / max(state.train_seconds, 1e-9):.1f}", language=languages[-1])
            run.pm.hook.xft_after_step(run=run, step=run.step, logs=logs)
            evaluate_and_save(run, state)
    finish(run, state, started)
    return run


@dataclass
class LoopState:
    """What the loop carries from step to step besides the `Run`: the optimizer and scheduler, the evaluations
    without improvement (early stopping), and the counters behind the logged loss and speed."""

    optimizer: Any
    scheduler: Any
    bad_evals: int = 0
    # since the last log: the logged loss and speed are means over this window. The loss sum and the padding count
    # stay tensors on the device between logs, so a step never waits for the device (no host sync per step)
    window_examples: int = 0
    window_start: float = 0.0
    loss_sum: Any = 0.0
    loss_count: int = 0
    last_loss: float | None = None  # the loss logged last (what the progress bar shows between logs)
    # the whole run
    total_examples: int = 0
    train_seconds: float = 0.0
    tokens: int = 0
    padding: Any = 0


def start(run: Run, resume: bool) -> LoopState:
    """Open the run folder, warn about the data, build the optimizer and scheduler and prepare them with
    Accelerate, restore the newest checkpoint when resuming; then `xft_before_train`."""
    acc, config = run.accelerator, run.config
    if acc.is_main_process:
        open_run_folder(run, resume)
    if config.data_check:
        from xft_core.data.checks import quick_check

        for warning in quick_check(run.train, run.dev, run.head, run.tokenizer, config.training.max_length):
            run.console.print(f"[yellow]data warning:[/] {warning}", soft_wrap=True)
    own_shards = shards_itself(acc)
    if own_shards:  # FSDP2 asked for on CPU processes: torch's fully_shard, before the optimizer sees the parameters
        shard(run.model, acc)
    optimizer = make_optimizer(run.model, config, acc.device.type)
    scheduler = make_scheduler(optimizer, config)
    if own_shards:  # no DDP around a sharded model: FSDP reduces the gradients itself
        optimizer = acc.prepare(optimizer)
    else:  # (under Accelerate's FSDP2, prepare shards the model and moves the optimizer onto the shards)
        run.model, optimizer = acc.prepare(run.model, optimizer)
    state = LoopState(optimizer, scheduler)
    state.bad_evals = resume_from_checkpoint(run, optimizer, scheduler) if resume else 0
    if acc.is_main_process:
        write_metrics_log(run.paths.metrics, run.history)
    run.pm.hook.xft_before_train(run=run)
    check_trackers_started(run)  # training.report_to with no tracking plugin: said, not silent
    run.model.train()
    state.window_start = time.perf_counter()
    return state


def train_step(run: Run, state: LoopState) -> list[str]:
    """One optimizer step over `gradient_accumulation_steps` micro-batches, each of the language the sampler
    picks, trained through that language's adapter; returns the languages."""
    acc, t, model = run.accelerator, run.config.training, run.model
    examples_per_step = t.batch_size * acc.num_processes
    step_start = time.perf_counter()
    languages = []
    for micro in range(t.gradient_accumulation_steps):
        run.sampler.set_progress(run.step / t.max_steps)
        language = run.sampler.next_language()
        languages.append(language)
        run.strategy.activate(acc.unwrap_model(model), run.adapter_for(language), language)
        batch = next_batch(run, language)
        if "attention_mask" in batch:
            mask = batch["attention_mask"]
            state.tokens += mask.numel()
            state.padding = state.padding + (mask.numel() - mask.sum())
        run.sampler.record(language, examples_per_step)
        last = micro == t.gradient_accumulation_steps - 1
        context = acc.no_sync(model) if not last and acc.num_processes > 1 else contextlib.nullcontext()
        with context:
            with acc.autocast():  # a model Accelerate prepared is autocast already; one xft sharded is not
                loss = model(**batch).loss / t.gradient_accumulation_steps
            acc.backward(loss)
        state.loss_sum = state.loss_sum + loss.detach() * t.gradient_accumulation_steps
        state.loss_count += 1
        state.window_examples += examples_per_step
    if t.max_grad_norm > 0:
        acc.clip_grad_norm_(model.parameters(), t.max_grad_norm)
    state.optimizer.step()
    state.scheduler.step()
    state.optimizer.zero_grad(set_to_none=True)
    run.step += 1
    state.total_examples += examples_per_step * t.gradient_accumulation_steps
    state.train_seconds += time.perf_counter() - step_start
    return languages


def log_step(run: Run, state: LoopState, languages: list[str], *, lines: bool = False) -> dict[str, Any]:
    """The step's record (for the bar and `xft_after_step`); every `log_every` steps and at the last step it also
    holds the mean loss and the speed since the last log and goes to metrics.jsonl (and, with `lines`, to the
    console as a line: a live bar does not render into a log file or pipe). Only those steps read the loss from
    the device: the others never wait for it."""
    t = run.config.training
    logs: dict[str, Any] = {"step": run.step, "lr": state.scheduler.get_last_lr()[0], "language": languages[-1]}
    if run.step % max(t.log_every, 1) == 0 or run.step == t.max_steps:
        # the one host sync of the window: the mean over processes (each holds the loss of its share only; the
        # global batch is what is logged) of the mean over the window's micro-batches
        total = state.loss_sum
        if hasattr(total, "detach"):
            total = float(run.accelerator.reduce(total.detach(), reduction="mean"))
        logs["loss"] = state.last_loss = total / max(state.loss_count, 1)
        elapsed = time.perf_counter() - state.window_start
        logs["examples_per_second"] = state.window_examples / elapsed if elapsed > 0 else 0.0
        logs["examples_seen"] = dict(run.sampler.counts)
        log(run, logs)
        if lines:
            print_line(run.console, f"step {run.step}/{t.max_steps} loss {logs['loss']:.4f} "
                                    f"{logs['examples_per_second']:.1f} ex/s lr {logs['lr']:.2e}")
        state.window_examples, state.window_start = 0, time.perf_counter()
        state.loss_sum, state.loss_count = 0.0, 0
    return logs


def evaluate_and_save(run: Run, state: LoopState) -> None:
    """Evaluate every `eval_every` steps; save a checkpoint every `save_every` steps, and whenever this step's
    evaluation is the best so far and the best is to be loaded at the end."""
    t = run.config.training
    evaluated = False
    if t.eval_every and run.step % t.eval_every == 0:
        state.bad_evals = evaluate_and_track(run, state.bad_evals)
        evaluated = True
    if ((t.save_every and run.step % t.save_every == 0)
            or (evaluated and run.best.get("step") == run.step and t.load_best_at_end)):
        run.accelerator.wait_for_everyone()
        path = save_checkpoint(run, state.optimizer, state.scheduler, {"bad_evals": state.bad_evals})
        if run.best.get("step") == run.step:
            run.best["checkpoint"] = str(path)


def finish(run: Run, state: LoopState, started: float) -> None:
    """After the last step: a last evaluation, the best checkpoint's weights back (load_best_at_end), a last
    checkpoint, checkpoint averaging, the adapter packages and run.json; then `xft_after_train`."""
    acc, t, paths = run.accelerator, run.config.training, run.paths
    state.train_seconds += drain(acc.device)  # the steps still queued on a GPU count as training time
    run.examples_per_second = state.total_examples / state.train_seconds if state.train_seconds > 0 else 0.0
    run.padding_share = float(state.padding) / state.tokens if state.tokens else 0.0
    if run.last_eval_step != run.step:
        state.bad_evals = evaluate_and_track(run, state.bad_evals)
    if t.load_best_at_end and run.best.get("checkpoint") and run.best.get("step") != run.step:
        restore_trainable(run, Path(run.best["checkpoint"]))
        run.metrics = run.best["metrics"]
        run.console.print(f"Loaded the best checkpoint (step {run.best['step']}, {run.best['metric']} {run.best['value']:.4f})")
    acc.wait_for_everyone()
    if t.save_every or not latest_checkpoint(paths.checkpoints):
        save_checkpoint(run, state.optimizer, state.scheduler, {"bad_evals": state.bad_evals})
    if t.average_checkpoints > 1:
        acc.wait_for_everyone()
        run.averaged_steps = average_checkpoints(run, t.average_checkpoints)
        run.metrics = evaluate_dev(run) if run.dev else run.metrics
        log(run, {"step": run.step, "eval": run.metrics, "averaged_checkpoints": run.averaged_steps})
        run.console.print(f"Averaged the trainable weights of the checkpoints of steps {', '.join(map(str, run.averaged_steps))}")
    with whole_state_dict(run.unwrapped_model()):  # gathered on every process where the model is sharded
        if acc.is_main_process:
            save_adapters(run)
    summary = run_summary(run)
    if acc.is_main_process and run.config.calibration.method != "none":  # each language's label prior, into the packages
        summary["calibration"] = calibrate_run(run.config, paths.root, run.data, run.head, list(run.dev), run.pm,
                                               trained=list(run.train), progress=False)
    run.wall_seconds = time.perf_counter() - started
    summary["wall_seconds"] = round(run.wall_seconds, 2)
    if acc.is_main_process:
        atomic_write_json(paths.run_info, summary)
    run.pm.hook.xft_after_train(run=run)


# ------------------------------------------------------------------------------------------------ pieces
def make_optimizer(model: Any, config: RunConfig, device_type: str = "cpu") -> Any:
    """AdamW over the trainable parameters; no weight decay on biases and norms. On a GPU, torch's fused kernel
    (one launch per step instead of a dozen per tensor); on a CPU the for-loop, which measured no slower there
    (benchmarks/train_profile.py, "other AdamW")."""
    import torch

    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim < 2 or "norm" in name.lower() else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": config.training.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    fused = device_type == "cuda" and all(p.dtype == torch.float32 for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=config.training.learning_rate, fused=fused or None)


def make_scheduler(optimizer: Any, config: RunConfig) -> Any:
    from transformers import get_scheduler

    t = config.training
    name = "constant_with_warmup" if t.lr_scheduler == "constant" else t.lr_scheduler
    return get_scheduler(name, optimizer, num_warmup_steps=int(t.warmup_ratio * t.max_steps), num_training_steps=t.max_steps)


def next_batch(run: Run, language: str) -> dict[str, Any]:
    """The next batch of `language`: the global batch is drawn identically on every process; each takes its share."""
    acc = run.accelerator
    indices = run.streams[language].batch(run.config.training.batch_size * acc.num_processes)
    mine = indices[acc.process_index :: acc.num_processes]
    features = run.features[language]
    batch = run.head.collate([features[i] for i in mine], run.tokenizer)
    return to_device(batch, acc.device)


def drain(device: Any) -> float:
    """Wait for the work queued on a GPU (steps never wait for it themselves); the seconds it took."""
    if getattr(device, "type", str(device)) != "cuda":
        return 0.0
    import torch

    started = time.perf_counter()
    torch.cuda.synchronize(device)
    return time.perf_counter() - started


def to_device(batch: Mapping[str, Any], device: Any) -> dict[str, Any]:
    """The batch on `device`; to a GPU from pinned memory without blocking, so the copy overlaps the work the
    device still has queued."""
    if getattr(device, "type", str(device)) != "cuda":
        return {k: v.to(device) for k, v in batch.items()}
    return {k: v.pin_memory().to(device, non_blocking=True) if hasattr(v, "pin_memory") else v for k, v in batch.items()}


def evaluate_dev(run: Run) -> dict[str, dict[str, float]]:
    """The head's metrics on every dev language, each answered by its own adapter (or the single one)."""
    model = run.unwrapped_model()
    results: dict[str, dict[str, float]] = {}
    for language, part in run.dev.items():
        adapter = run.adapter_for(language)
        if run.per_language and adapter is None:
            continue
        run.strategy.activate(model, adapter, language)
        predictions = predict_rows(run.head, model, run.tokenizer, with_language(part.rows, language),
                                   batch_size=run.config.training.eval_batch_size, max_length=run.config.training.max_length,
                                   precision=run.accelerator.mixed_precision)
        results[language] = score(run.head, run.pm, predictions, part.rows)
    return results


def evaluate_and_track(run: Run, bad_evals: int) -> int:
    """Evaluate on every dev language, log, remember the best, decide early stopping."""
    if not run.dev:
        return bad_evals
    metrics = evaluate_dev(run)
    run.metrics = metrics
    run.pm.hook.xft_after_eval(run=run, step=run.step, metrics=metrics)  # may add or adjust metrics
    name = run.config.training.early_stopping_metric or run.head.metric_names[0]
    value = average(metrics, name)
    log(run, {"step": run.step, "eval": metrics, f"eval_mean_{name}": value})
    run.last_eval_step = run.step
    spec = collect(run.pm, "metrics").get(name)
    better = (lambda a, b: a > b) if spec is None or spec.spec.greater_is_better else (lambda a, b: a < b)
    if not run.best or better(value, run.best["value"]):
        run.best = {"step": run.step, "metric": name, "value": value, "metrics": metrics,
                    "checkpoint": run.best.get("checkpoint") if run.best else None}
        return 0
    bad_evals += 1
    patience = run.config.training.early_stopping_patience
    if patience and bad_evals >= patience:
        run.console.print(f"Early stopping at step {run.step}: {name} has not improved for {patience} evaluations")
        run.should_stop = True
    return bad_evals


def log(run: Run, record: dict[str, Any]) -> None:
    run.history.append(record)
    if run.accelerator.is_main_process:
        append_metrics(run.paths.metrics, record)
