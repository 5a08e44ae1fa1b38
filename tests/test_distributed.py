"""Several processes. Two CPU ranks (gloo, what Accelerate calls MULTI_CPU) train what one process trains with the
same global batch, per-language adapters included, and only rank 0 writes; the GPU configs of examples/accelerate/
are read by Accelerate and turned into launch environments (no GPU, no deepspeed needed). Sharded training (FSDP2)
has its own file: tests/test_fsdp.py.

Each two-process run is one real launch: `torchrun --nproc_per_node 2 -m xft_core train` (the CPU recipe of
docs/distributed.md), and `accelerate launch --config_file examples/accelerate/ddp_multi_gpu.yaml -m xft_core train`
(the documented GPU command; without GPUs its two ranks form a gloo group). The one-process reference runs in
this process with batch_size x 2.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import tiny_config, write_sentiment_data
from xft_core.config import ConfigError
from xft_core.training.prepare import check_distributed

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "examples" / "accelerate"
STEPS, PER_PROCESS = 8, 4
GLOBAL = 2 * PER_PROCESS
# Tolerances. The two runs do the same arithmetic but for the order of float32 additions: one process reduces the
# 8 rows of a batch inside its matmuls; two processes reduce 4 rows each, and gloo's all-reduce adds the two halves
# of the gradient (and of the logged loss) and halves them. Measured here: logged losses differ by at most 1.5e-7,
# the LoRA weights by 2e-6 after 8 AdamW steps (Adam divides by sqrt(v), which lifts tiny gradient differences).
# The bounds leave about 50x room; a real fault (a rank on the wrong rows, one rank's half logged as the loss, a
# lost or doubled step) moves the loss by more than 1e-3 and the weights by more than 1e-2.
LOSS_TOL, WEIGHT_TOL = 1e-5, 1e-4

# Loaded by every launched process (PYTHONPATH): each rank lists what it opens for writing, renames, creates or
# removes under the runs folder. An audit hook sees Python's own file calls (torch.save, json, os.replace, mkdir);
# safetensors writes from Rust, but into a checkpoint folder that is created and renamed from Python.
AUDIT = '''
import os, sys
_watch, _logs = os.environ.get("XFT_TEST_WATCH"), os.environ.get("XFT_TEST_WRITES")
if _watch and _logs and "RANK" in os.environ:
    _out = open(os.path.join(_logs, "writes-rank" + os.environ["RANK"] + ".txt"), "a", buffering=1)
    _WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    _TWO = ("os.rename", "os.replace", "os.link", "os.symlink")
    _ONE = ("os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate", "os.chmod")

    def _hook(event, args):
        try:
            if event == "open":
                path, mode, flags = args
                paths = [path] if (any(c in mode for c in "wax+") if isinstance(mode, str) else (flags or 0) & _WRITE) else []
            elif event in _TWO:
                paths = list(args[:2])
            elif event in _ONE:
                paths = [args[0]]
            else:
                return
            for path in paths:
                if isinstance(path, (str, bytes, os.PathLike)):
                    path = os.path.abspath(os.fsdecode(path))
                    if path.startswith(_watch):
                        _out.write(event + " " + path + "\\n")
        except Exception:
            pass

    sys.addaudithook(_hook)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(command: list[str], root: Path) -> None:
    """Run a launcher to the end: CPU only, one thread per process, the write audit on."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "XFT_TEST_WATCH": str(root / "runs"),
           "XFT_TEST_WRITES": str(root / "writes"),
           "PYTHONPATH": os.pathsep.join([str(root / "audit"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout[-2000:]}\n{result.stderr[-5000:]}"


def reference(config: dict) -> None:
    """The one-process run, here, on one thread like the launched ranks."""
    import torch

    from xft_core.hooks.manager import make_plugin_manager
    from xft_core.training import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(config, pm=make_plugin_manager(), progress=False)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory) -> Path:
    """runs/{one,two,one-pl,two-pl}: single adapter and per-language adapters, one process and two."""
    import yaml

    root = tmp_path_factory.mktemp("distributed")
    (root / "audit").mkdir()
    (root / "audit" / "sitecustomize.py").write_text(AUDIT)
    (root / "writes").mkdir()
    data = write_sentiment_data(root / "data", vocabulary=2)
    model = tiny_model("gemma3")  # no dropout anywhere (attention_dropout 0, LoRA dropout 0): runs comparable step by step

    def config(name: str, batch_size: int, **over) -> dict:
        return tiny_config(model, data, root / "runs", name=name, sampler="temperature", **over,
                           training={"max_steps": STEPS, "batch_size": batch_size, "save_every": 4, "eval_every": 4,
                                     "cpu": True})

    for name in ("two", "two-pl"):
        path = root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config(name, PER_PROCESS, adapters="per_language" if name == "two-pl" else "single")))
    launch([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
            "-m", "xft_core", "train", str(root / "two.yaml"), "--no-progress"], root)
    launch([sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", "--config_file",
            str(CONFIGS / "ddp_multi_gpu.yaml"), "--num_processes", "2", "--main_process_port", str(free_port()),
            "-m", "xft_core", "train", str(root / "two-pl.yaml"), "--no-progress"], root)
    reference(config("one", GLOBAL))
    reference(config("one-pl", GLOBAL, adapters="per_language"))
    return root


def metrics_log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def assert_same_training(one: Path, two: Path, adapters: list[str]) -> None:
    """Loss curve, languages, dev metrics, examples drawn and trained weights of two runs agree."""
    log_one, log_two = metrics_log(one), metrics_log(two)
    steps_one = [r for r in log_one if "loss" in r]
    steps_two = [r for r in log_two if "loss" in r]
    assert [r["step"] for r in steps_two] == list(range(1, STEPS + 1))
    assert [r["language"] for r in steps_two] == [r["language"] for r in steps_one], "the sampler drew other languages"
    for a, b in zip(steps_one, steps_two):
        assert abs(a["loss"] - b["loss"]) <= LOSS_TOL, f"step {a['step']}: loss {a['loss']} vs {b['loss']}"
    assert [r["eval"] for r in log_two if "eval" in r] == [r["eval"] for r in log_one if "eval" in r]
    summary_one, summary_two = (json.loads((run / "run.json").read_text()) for run in (one, two))
    assert (summary_one["num_processes"], summary_two["num_processes"]) == (1, 2)
    assert summary_two["dev_metrics"] == summary_one["dev_metrics"]
    drawn = {lang: GLOBAL * sum(r["language"] == lang for r in steps_one) for lang in ("de", "en", "ru")}
    assert summary_one["examples_drawn"] == summary_two["examples_drawn"] == drawn
    for adapter in adapters:
        w_one, w_two = weights(one / "adapters" / adapter), weights(two / "adapters" / adapter)
        assert w_one.keys() == w_two.keys()
        worst = max(float((w_one[k] - w_two[k]).abs().max()) for k in w_one)
        assert worst <= WEIGHT_TOL, f"adapter {adapter}: weights differ by {worst}"


def test_two_processes_train_what_one_process_trains_with_the_same_global_batch(runs):
    assert_same_training(runs / "runs" / "one", runs / "runs" / "two", ["multilingual"])


def test_per_language_adapters_under_two_processes(runs):
    """`adapters: per_language` under DDP (find_unused_parameters: only the batch's language adapter gets gradients):
    one package per language, each what one process trains."""
    two = runs / "runs" / "two-pl"
    assert sorted(p.name for p in (two / "adapters").iterdir()) == ["de", "en", "ru"]
    for language in ("de", "en", "ru"):
        assert json.loads((two / "adapters" / language / "xft.json").read_text())["languages"] == [language]
    assert_same_training(runs / "runs" / "one-pl", two, ["de", "en", "ru"])


@pytest.mark.parametrize("name", ["two", "two-pl"])
def test_only_the_main_process_writes(runs, name):
    run = runs / "runs" / name
    rank0 = (runs / "writes" / "writes-rank0.txt").read_text().splitlines()
    rank1 = runs / "writes" / "writes-rank1.txt"
    assert not rank1.exists() or not rank1.read_text(), f"rank 1 wrote:\n{rank1.read_text()[:2000]}"
    mine = [line for line in rank0 if f"{run}{os.sep}" in line]
    for written in ("metrics.jsonl", "run.json", "config.yaml", "checkpoints"):
        assert any(written in line for line in mine), f"rank 0 did not write {written}"
    # the same files as the one-process run, nothing half-written or doubled
    files = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    reference_run = runs / "runs" / name.replace("two", "one")
    assert files == sorted(str(p.relative_to(reference_run)) for p in reference_run.rglob("*"))
    assert not [f for f in files if ".tmp" in f or ".old-" in f]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-4", "step-8"]
    assert all((run / "checkpoints" / step / "COMPLETE").is_file() for step in ("step-4", "step-8"))
    log = metrics_log(run)
    assert [r["step"] for r in log if "loss" in r] == list(range(1, STEPS + 1)), "one line per logged step"
    assert [r["step"] for r in log if "eval" in r] == [4, 8]
    assert len(log) == STEPS + 2


# ------------------------------------------------------------------------------------ the GPU configs, dry
# file: (distributed_type, num_processes, num_machines, machine_rank)
CASES = {
    "ddp_multi_gpu.yaml": ("MULTI_GPU", 4, 1, 0),
    "fsdp.yaml": ("FSDP", 4, 1, 0),
    "deepspeed_zero2.yaml": ("DEEPSPEED", 4, 1, 0),
    "deepspeed_zero3.yaml": ("DEEPSPEED", 4, 1, 0),
    "two_nodes_node0.yaml": ("MULTI_GPU", 16, 2, 0),
    "two_nodes_node1.yaml": ("MULTI_GPU", 16, 2, 1),
}
ZERO_STAGES = {"deepspeed_zero2.yaml": 2, "deepspeed_zero3.yaml": 3}


def launch_command(name: str) -> str:
    return f"accelerate launch --config_file examples/accelerate/{name} -m xft_core train examples/sib200.yaml"


def test_every_config_is_checked_and_documented():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(CASES)
    readme = (CONFIGS / "README.md").read_text()
    guide = (ROOT / "docs" / "distributed.md").read_text()
    for name in CASES:
        assert launch_command(name) in readme, f"README.md lacks the launch command of {name}"
        assert launch_command(name) in (CONFIGS / name).read_text(), f"{name} lacks its launch command"
        assert f"examples/accelerate/{name}" in guide or name in guide
    assert "torchrun --nproc_per_node 2 -m xft_core train" in guide


@pytest.mark.parametrize("name", sorted(CASES))
def test_accelerate_reads_the_config(name):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.utils import ComputeEnvironment

    mode, processes, machines, rank = CASES[name]
    config = load_config_from_file(str(CONFIGS / name))  # unknown keys or values raise here
    assert isinstance(config, ClusterConfig)
    assert config.compute_environment == ComputeEnvironment.LOCAL_MACHINE
    assert (config.distributed_type.value, config.num_processes, config.num_machines, config.machine_rank) == (
        mode, processes, machines, rank)
    assert config.mixed_precision == "bf16" and not config.use_cpu
    if mode == "FSDP":
        fsdp = config.fsdp_config
        assert (fsdp["fsdp_version"], fsdp["fsdp_auto_wrap_policy"]) == (2, "TRANSFORMER_BASED_WRAP"), "xft trains FSDP2"
    if mode == "DEEPSPEED":
        assert config.deepspeed_config["zero_stage"] == ZERO_STAGES[name]
    if machines > 1:
        assert config.main_process_ip and config.main_process_port


@pytest.mark.parametrize("name", sorted(CASES))
def test_accelerate_turns_the_config_into_a_launch(name, monkeypatch):
    """What `accelerate launch` does before it starts anything: its own argument checks, the environment of each
    process (accelerate.utils.launch) and torchrun's launch config; then the plugin the processes would build."""
    import torch.distributed.run as torchrun
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import DistributedType, patch_environment
    from accelerate.utils.launch import _filter_args, prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # torchrun would set it in this process otherwise
    mode, processes, machines, rank = CASES[name]
    port = free_port()  # the main machine's port must be free, or accelerate refuses the launch
    argv = launch_command(name).split()[2:]
    args = launch_command_parser().parse_args(argv[:2] + ["--main_process_port", str(port)] + argv[2:])
    args, defaults, precision_from_config = _validate_launch_command(args)
    assert (args.multi_gpu, args.use_fsdp, args.use_deepspeed) == (mode == "MULTI_GPU", mode == "FSDP", mode == "DEEPSPEED")
    if args.use_deepspeed:  # what launch_command does before deepspeed_launcher; building the env needs no deepspeed
        fields = [*defaults.deepspeed_config, *(["mixed_precision"] if precision_from_config else [])]
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        _, env = prepare_deepspeed_cmd_env(args)
    else:
        env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    torchrun_args = _filter_args(args, torchrun.get_args_parser(),
                                 ["--training_script", args.training_script, "--training_script_args", args.training_script_args])
    launch, command, command_args = torchrun.config_from_args(torchrun_args)
    assert (launch.nproc_per_node, launch.min_nodes, launch.max_nodes) == (processes // machines, machines, machines)
    assert launch.rdzv_configs["rank"] == rank
    assert launch.rdzv_endpoint.endswith(f":{port}")
    assert command == sys.executable and command_args == ["-u", "-m", "xft_core", "train", "examples/sib200.yaml"]

    stand_in = SimpleNamespace(distributed_type=DistributedType(mode),
                               state=SimpleNamespace(deepspeed_plugin=None, fsdp_plugin=None))
    if mode == "FSDP":  # the FSDP plugin itself needs a GPU to be built: a stand-in with the version it would read
        assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
        assert env["FSDP_TRANSFORMER_CLS_TO_WRAP"] == "Gemma3DecoderLayer"
        stand_in.state.fsdp_plugin = SimpleNamespace(fsdp_version=int(env["FSDP_VERSION"]))
    if mode == "DEEPSPEED":
        from accelerate.utils import DeepSpeedPlugin

        with patch_environment(**{k: v for k, v in env.items() if k.startswith("ACCELERATE_")}):
            plugin = DeepSpeedPlugin()
        assert plugin.zero_stage == ZERO_STAGES[name] == plugin.deepspeed_config["zero_optimization"]["stage"]
        stand_in.state.deepspeed_plugin = plugin
    if mode == "DEEPSPEED":  # xft refuses what it would save wrongly, before any weights load
        with pytest.raises(ConfigError, match=f"{mode}.*docs/distributed.md"):
            check_distributed(stand_in)
    else:  # DDP, and FSDP2 (tests/test_fsdp.py trains under this very file on CPU processes)
        check_distributed(stand_in)
