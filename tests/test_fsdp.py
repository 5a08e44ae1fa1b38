"""Sharded training (FSDP2) on two CPU processes, launched as docs/distributed.md says for GPUs:
`accelerate launch --config_file examples/accelerate/fsdp.yaml --num_processes 2 -m xft_core train`. Without GPUs
Accelerate builds no FSDP plugin (its ranks are MULTI_CPU), so xft applies torch's `fully_shard` itself over their
gloo group (xft_core/training/sharding.py), and saves, evaluates and resumes through the same gathering code as
under Accelerate's FSDP2 on GPUs. Each run must equal the one-process run with the same global batch: logged losses
within 1e-5, adapter weights within 1e-4 (tests/test_distributed.py explains the bounds), dev metrics equal."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import test_distributed as ddp  # the launch, reference-run and comparison helpers of the DDP tests
import torch

from conftest import tiny_config, write_sentiment_data

AUDIT, CONFIGS, GLOBAL, PER_PROCESS = ddp.AUDIT, ddp.CONFIGS, ddp.GLOBAL, ddp.PER_PROCESS
LOSS_TOL, WEIGHT_TOL = ddp.LOSS_TOL, ddp.WEIGHT_TOL
free_port, launch, metrics_log, reference, weights = ddp.free_port, ddp.launch, ddp.metrics_log, ddp.reference, ddp.weights

STEPS = 8


def _has_fsdp2() -> bool:
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except ImportError:
        return False
    return torch.distributed.is_available()


pytestmark = pytest.mark.skipif(not _has_fsdp2(), reason="needs torch.distributed with FSDP2 (fully_shard)")


def fsdp_launch(config: Path, root: Path, *extra: str) -> None:
    launch([sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", "--config_file", str(CONFIGS / "fsdp.yaml"),
            "--num_processes", "2", "--main_process_port", str(free_port()), "-m", "xft_core", "train", str(config),
            "--no-progress", *extra], root)


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory) -> Path:
    """runs/{fsdp,one}: a single adapter, 4 steps under FSDP then --resume to 8, against 8 steps in one process;
    runs/{fsdp-pl,one-pl}: per-language adapters, 8 steps."""
    import yaml

    root = tmp_path_factory.mktemp("fsdp")
    (root / "audit").mkdir()
    (root / "audit" / "sitecustomize.py").write_text(AUDIT)
    (root / "writes").mkdir()
    data = write_sentiment_data(root / "data", vocabulary=2)
    model = tiny_model("gemma3")

    def config(name: str, batch_size: int, steps: int = STEPS, **over) -> dict:
        # constant learning rate and the uniform sampler: nothing depends on max_steps, so 4 steps resumed to 8
        # train what 8 steps train
        return tiny_config(model, data, root / "runs", name=name, sampler="uniform", **over,
                           training={"max_steps": steps, "batch_size": batch_size, "save_every": 4, "eval_every": 4,
                                     "cpu": True, "lr_scheduler": "constant"})

    (root / "fsdp-4.yaml").write_text(yaml.safe_dump(config("fsdp", PER_PROCESS, steps=4)))
    (root / "fsdp-8.yaml").write_text(yaml.safe_dump(config("fsdp", PER_PROCESS)))
    (root / "fsdp-pl.yaml").write_text(yaml.safe_dump(config("fsdp-pl", PER_PROCESS, adapters="per_language")))
    fsdp_launch(root / "fsdp-4.yaml", root)
    fsdp_launch(root / "fsdp-8.yaml", root, "--resume")
    fsdp_launch(root / "fsdp-pl.yaml", root)
    reference(config("one", GLOBAL))
    reference(config("one-pl", GLOBAL, adapters="per_language"))
    return root


def assert_equal_runs(one: Path, sharded: Path, adapters: list[str]) -> None:
    log_one, log_sharded = metrics_log(one), metrics_log(sharded)
    losses_one = {r["step"]: r["loss"] for r in log_one if "loss" in r}
    losses_sharded = {r["step"]: r["loss"] for r in log_sharded if "loss" in r}
    assert sorted(losses_sharded) == list(range(1, STEPS + 1))
    for step, loss in losses_one.items():
        assert abs(loss - losses_sharded[step]) <= LOSS_TOL, f"step {step}: loss {loss} vs {losses_sharded[step]}"
    evals_one = {r["step"]: r["eval"] for r in log_one if "eval" in r}
    evals_sharded = {r["step"]: r["eval"] for r in log_sharded if "eval" in r}
    assert evals_sharded == evals_one, "every process evaluates through the sharded model: the same dev metrics"
    summary = json.loads((sharded / "run.json").read_text())
    assert (summary["num_processes"], summary["sharding"]) == (2, "fsdp2"), "the parameters really were sharded"
    assert json.loads((one / "run.json").read_text())["sharding"] == "none"
    assert summary["examples_drawn"] == json.loads((one / "run.json").read_text())["examples_drawn"]
    for adapter in adapters:
        w_one, w_sharded = weights(one / "adapters" / adapter), weights(sharded / "adapters" / adapter)
        assert w_one.keys() == w_sharded.keys(), f"adapter {adapter}: the package must hold every tensor, whole"
        assert all(w_one[k].shape == w_sharded[k].shape for k in w_one)
        worst = max(float((w_one[k] - w_sharded[k]).abs().max()) for k in w_one)
        assert worst <= WEIGHT_TOL, f"adapter {adapter}: weights differ by {worst}"


def test_fsdp_trains_saves_evaluates_and_resumes_what_one_process_trains(runs):
    """4 steps under FSDP2, --resume to 8 (every process reads the step-4 checkpoint back into its shards, optimizer
    state included): losses, dev metrics and the saved adapter equal 8 steps in one process."""
    sharded = runs / "runs" / "fsdp"
    assert_equal_runs(runs / "runs" / "one", sharded, ["multilingual"])
    # the checkpoint holds whole tensors and the optimizer state of every parameter, keyed by name
    from safetensors.torch import load_file

    checkpoint = sharded / "checkpoints" / "step-8"
    trainable = load_file(str(checkpoint / "trainable.safetensors"))
    reference_state = load_file(str(runs / "runs" / "one" / "checkpoints" / "step-8" / "trainable.safetensors"))
    assert {k: v.shape for k, v in trainable.items()} == {k: v.shape for k, v in reference_state.items()}
    optimizer = torch.load(checkpoint / "optimizer.pt", weights_only=True)
    assert set(optimizer["state"]) == set(trainable), "one optimizer state per trainable tensor, by name"
    assert all(optimizer["state"][k]["exp_avg"].shape == trainable[k].shape for k in trainable)


def test_fsdp_trains_per_language_adapters(runs):
    sharded = runs / "runs" / "fsdp-pl"
    assert sorted(p.name for p in (sharded / "adapters").iterdir()) == ["de", "en", "ru"]
    assert_equal_runs(runs / "runs" / "one-pl", sharded, ["de", "en", "ru"])


def test_only_the_main_process_writes_under_fsdp(runs):
    rank1 = runs / "writes" / "writes-rank1.txt"
    assert not rank1.exists() or not rank1.read_text(), f"rank 1 wrote:\n{rank1.read_text()[:2000]}"


def test_fsdp1_deepspeed_and_a_4bit_base_under_fsdp_are_refused_with_the_way_out():
    from types import SimpleNamespace

    from xft_core.config import ConfigError, load_config
    from xft_core.training.prepare import check_distributed

    def stand_in(mode: str, version: int | None = None, stage: int | None = None):
        return SimpleNamespace(distributed_type=mode, state=SimpleNamespace(
            fsdp_plugin=SimpleNamespace(fsdp_version=version), deepspeed_plugin=SimpleNamespace(zero_stage=stage)))

    check_distributed(stand_in("FSDP", 2))
    with pytest.raises(ConfigError, match=r"FSDP version 2 only .*FSDP 1.*fsdp_version: 2"):
        check_distributed(stand_in("FSDP", 1))
    with pytest.raises(ConfigError, match=r"DEEPSPEED.*ZeRO-3.*engine.*FSDP2 \(examples/accelerate/fsdp.yaml\)"):
        check_distributed(stand_in("DEEPSPEED", stage=3))
    config = load_config({"name": "q", "model": "m", "data": {"path": "d"}, "training": {"base_dtype": "nf4"}})
    with pytest.raises(ConfigError, match=r"FSDP cannot shard a quantized base.*DDP"):
        check_distributed(stand_in("FSDP", 2), config)
