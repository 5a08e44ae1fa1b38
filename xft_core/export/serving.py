"""`--to vllm` / `--to lorax`: a generation LoRA adapter in the folder layout their LoRA loaders read.

Both read peft's own two files, which an xft LoRA package already holds; the export checks, file by file, that
they are what the loaders accept (so that a server does not refuse them, or worse, silently serve a different
model), sets `base_model_name_or_path` to the base the adapter was trained on, and writes a README with the serve
command. What was checked, against which source (read 2025; the line of code or doc named beside each check):

vLLM (vllm/lora/peft_helper.py PEFTHelper, vllm/lora/lora_model.py LoRAModel.from_local_checkpoint,
vllm/lora/utils.py parse_fine_tuned_lora_name, vllm/config/lora.py LoRAConfig, docs/features/lora.md):
- the folder holds adapter_config.json and adapter_model.safetensors (else .bin/.pt, which we never write);
- adapter_config.json has r, lora_alpha, target_modules (required by PEFTHelper.from_dict);
- modules_to_save is None ("vLLM only supports modules_to_save being None"), use_dora false ("vLLM does not yet
  support DoRA"), bias "none" (adapter bias needs bias support the server may not have, and newer vLLM parses no
  bias tensors);
- every tensor is named `base_model.model.<module>.lora_A.weight` / `.lora_B.weight` (anything else: "is unsupported
  LoRA weight"), and every module is a linear layer of the model (vLLM wraps LinearBase layers; embedding LoRA goes
  with the extra-vocabulary support vLLM is phasing out);
- r <= 512, the largest `--max-lora-rank` vLLM accepts (1, 8, 16, 32, 64, 128, 256, 320, 512; default 16);
- modules without LoRA weights are reset per adapter (model_manager activate_adapter), so adapting only the top
  layers (`top_layers`) is served as trained.

LoRAX (server/lorax_server/adapters/lora.py LoraConfig.load + map_weights_for_model + LoraWeights.load,
server/lorax_server/utils/adapter.py load_module_map, server/lorax_server/utils/sources/local.py,
docs/models/adapters/index.md "Local", docs/models/adapters/lora.md):
- a local adapter_id is the absolute path of a folder with adapter_config.json and adapter_model.safetensors; every
  `*.safetensors` file in it is loaded as adapter weights, so the export holds exactly one;
- the config is read by peft's LoraConfig (r, lora_alpha, target_modules, fan_in_fan_out, use_rslora only): DoRA,
  modules_to_save, rank_pattern/alpha_pattern and bias would be silently ignored, so they are refused;
- tensors are looked up as `base_model.model.<module>.lora_A.weight` / `.lora_B.weight`; a layer type without
  weights in some layer is dropped for every layer (LoraWeights.load returns None), so an adapter of only the top
  layers is refused;
- `base_model_name_or_path` different from `--model-id` triggers an architecture check and a warning: the README's
  command passes the same path.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from xft_core.adapters import Manifest, base_fingerprint, check_base, head_from_manifest
from xft_core.export.sources import EXPORT_INFO, ExportError, check_out, export_record
from xft_core.util.files import atomic_folder, atomic_write_json, atomic_write_text

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
VLLM_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vllm/config/lora.py MaxLoRARanks
PREFIX = "base_model.model."
TENSOR = re.compile(r"^base_model\.model\.(?P<module>.+)\.(?P<part>lora_A|lora_B)\.weight$")
SERVERS = {"vllm": "vLLM", "lorax": "LoRAX"}


def export_lora_server(package: Path, out: Path, to: str, *, pm: Any = None) -> dict[str, Any]:
    from xft_core.hooks.manager import get_plugin_manager
    from xft_core.models import resolve_model

    server = SERVERS[to]
    check_out(out, package)
    pm = pm or get_plugin_manager()
    manifest = Manifest.read(package)
    head = head_from_manifest(manifest, pm)
    _check_task(package, manifest, head, server)
    config = _read_config(package, manifest, server)
    model_path = resolve_model(manifest.data["base_model"], pm)
    check_base(package, manifest, base_fingerprint(model_path), str(model_path))
    modules = _check_weights(package, config, model_path, to)
    config.update(base_model_name_or_path=str(Path(model_path).resolve()), inference_mode=True)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{manifest.data.get('run') or 'xft'}-{package.name}").strip("-")
    prompt = getattr(head, "template", None)
    record = export_record(package, manifest, to, server=server, lora_name=name, base_model_path=config[
        "base_model_name_or_path"], r=config["r"], target_modules=sorted({m.rsplit(".", 1)[-1] for m in modules}),
        prompt_template=prompt if isinstance(prompt, str) else None, files=[CONFIG, WEIGHTS, "README.md", EXPORT_INFO])
    with atomic_folder(out) as tmp:
        atomic_write_json(tmp / CONFIG, config)
        shutil.copyfile(package / WEIGHTS, tmp / WEIGHTS)
        atomic_write_text(tmp / "README.md", readme(to, record, Path(out).resolve()))
        atomic_write_json(tmp / EXPORT_INFO, record)
    return record


# ------------------------------------------------------------------------------------------------ checks
def _check_task(package: Path, manifest: Manifest, head: Any, server: str) -> None:
    if head.model_kind != "causal-lm":
        raise ExportError(
            f"{package}: {server} serves LoRA adapters of text-generation models (task kind causal-lm); this package is "
            f"task '{manifest.data.get('task')}' (kind {head.model_kind}), which {server} cannot run. Export it "
            "--to merged (a Hugging Face folder) or --to torchscript (classification), or serve it with xft serve"
        )
    extra = sorted(p.name for p in package.iterdir() if p.name not in (CONFIG, WEIGHTS, "xft.json"))
    if not (package / CONFIG).is_file() or not (package / WEIGHTS).is_file() or extra:
        what = f"holds {', '.join(extra)}" if extra else f"has no {CONFIG} + {WEIGHTS}"
        raise ExportError(
            f"{package}: {server} applies one peft LoRA adapter ({CONFIG} + {WEIGHTS}) per request; this package of "
            f"strategy '{manifest.strategy}' {what}. Train with strategy lora, or export --to merged"
        )


def _read_config(package: Path, manifest: Manifest, server: str) -> dict[str, Any]:
    try:
        config = json.loads((package / CONFIG).read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ExportError(f"{package / CONFIG}: not valid JSON ({exc})") from None
    where = f"{package / CONFIG}"
    if config.get("peft_type") != "LORA" or config.get("task_type") != "CAUSAL_LM":
        raise ExportError(f"{where}: peft_type {config.get('peft_type')!r}, task_type {config.get('task_type')!r}; "
                          f"{server} loads LORA adapters of causal language models (CAUSAL_LM)")
    missing = [k for k in ("r", "lora_alpha", "target_modules") if config.get(k) in (None, "", [])]
    unsupported = {
        "use_dora": (config.get("use_dora"), "DoRA (strategy_options.use_dora)"),
        "modules_to_save": (config.get("modules_to_save"), "extra trained modules saved whole (a task head)"),
        "bias": (config.get("bias", "none") != "none", f"trained biases (strategy_options.bias: {config.get('bias')})"),
        "rank_pattern": (config.get("rank_pattern"), "per-module ranks"),
        "alpha_pattern": (config.get("alpha_pattern"), "per-module alphas"),
        "layer_replication": (config.get("layer_replication"), "replicated layers"),
    }
    found = [f"{key} ({what})" for key, (value, what) in unsupported.items() if value]
    if missing:
        raise ExportError(f"{where}: missing {', '.join(missing)} ({server} reads r, lora_alpha and target_modules)")
    if found:
        raise ExportError(f"{where}: {server} does not support {'; '.join(found)}. Train a plain LoRA adapter (strategy "
                          "lora without these options), or export --to merged")
    if int(config["r"]) > VLLM_RANKS[-1]:
        raise ExportError(f"{where}: rank r={config['r']} is above {VLLM_RANKS[-1]}, the largest --max-lora-rank vLLM "
                          "accepts (LoRAX pads ranks for the same kernels); train with a smaller r or export --to merged")
    return dict(config)


def _check_weights(package: Path, config: dict[str, Any], model_path: Path, to: str) -> list[str]:
    """The adapted module names, after checking every tensor's name and shape against the base model's own linear
    layers (built on the meta device: no weights are read)."""
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM

    server = SERVERS[to]
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    bad = []
    with safe_open(str(package / WEIGHTS), framework="pt") as handle:
        for key in handle.keys():
            match = TENSOR.match(key)
            if match is None:
                bad.append(key)
                continue
            shapes.setdefault(match["module"], {})[match["part"]] = tuple(handle.get_slice(key).get_shape())
    if bad or not shapes:
        raise ExportError(f"{package / WEIGHTS}: {len(bad)} tensors {server} cannot read (first: {bad[0] if bad else 'none'}; "
                          f"it reads only {PREFIX}<module>.lora_A.weight / .lora_B.weight)")
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_path))
    linear = {name: module for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    outside = [model.get_output_embeddings(), model.get_input_embeddings()]
    r = int(config["r"])
    for module, parts in sorted(shapes.items()):
        layer = linear.get(module)
        if layer is None or any(layer is m for m in outside):
            raise ExportError(f"{package / WEIGHTS}: LoRA on '{module}', which is not a linear layer inside "
                              f"{type(model).__name__} ({server} adapts linear projections, not embeddings or the LM head)")
        want = {"lora_A": (r, layer.in_features), "lora_B": (layer.out_features, r)}
        if parts != want:
            raise ExportError(f"{package / WEIGHTS}: '{module}' has LoRA tensors {parts}, expected {want} for r={r}")
    if to == "lorax":
        for suffix in sorted({m.rsplit(".", 1)[-1] for m in shapes}):
            every = [n for n in linear if n.rsplit(".", 1)[-1] == suffix]
            if len(every) != len([m for m in shapes if m.rsplit(".", 1)[-1] == suffix]):
                raise ExportError(f"{package / WEIGHTS}: '{suffix}' is adapted in some layers only (strategy_options."
                                  "top_layers); LoRAX drops a module type for every layer when one layer lacks it, so it "
                                  "would serve the base model. Export --to vllm (which serves it), or --to merged")
    return sorted(shapes)


# ------------------------------------------------------------------------------------------------ README
def max_lora_rank(r: int) -> int:
    return next(rank for rank in VLLM_RANKS if rank >= r)


def readme(to: str, record: dict[str, Any], out: Path) -> str:
    base, name, r = record["base_model_path"], record["lora_name"], int(record["r"])
    prompt = record.get("prompt_template")
    head = [f"# {record['adapter']} ({record.get('run') or 'xft'}) for {record['server']}", "",
            f"A LoRA adapter exported by xft from `{record['source_package']}` (step {record.get('step')}), trained on "
            f"the base model `{base}` (fingerprint {str(record.get('base_fingerprint'))[:12]}...). Serve it on exactly "
            "that base.", "",
            f"Files: `{CONFIG}` (peft LoraConfig, `base_model_name_or_path` set to the base) and `{WEIGHTS}` (tensors "
            f"`{PREFIX}<module>.lora_A.weight` / `.lora_B.weight`), the layout {record['server']}'s LoRA loader reads; "
            f"`{EXPORT_INFO}` says where it came from. Rank r={r}, modules: {', '.join(record['target_modules'])}.", ""]
    if prompt:
        head += [f"The adapter learned prompts of this form (the task's template): `{prompt!r}`; send the same.", ""]
    if to == "vllm":
        body = ["## Serve with vLLM", "", "```bash",
                f"vllm serve {base} --enable-lora --max-lora-rank {max_lora_rank(r)} --lora-modules {name}={out}", "```",
                "", "Then ask for the adapter by name:", "", "```bash",
                "curl http://localhost:8000/v1/completions -H 'Content-Type: application/json' \\",
                f"  -d '{{\"model\": \"{name}\", \"prompt\": \"...\", \"max_tokens\": 64, \"temperature\": 0}}'", "```", "",
                "Offline: `LLM(model=BASE, enable_lora=True, max_lora_rank=...)` and "
                f"`llm.generate(prompts, params, lora_request=LoRARequest(\"{name}\", 1, \"{out}\"))`.",
                "See https://docs.vllm.ai/en/latest/features/lora.html."]
    else:
        body = ["## Serve with LoRAX", "", "```bash", f"lorax-launcher --model-id {base}", "```", "",
                "(or the container: `docker run --gpus all --shm-size 1g -p 8080:80 -v BASE:BASE -v ADAPTER:ADAPTER "
                "ghcr.io/predibase/lorax:main --model-id BASE`, with both folders mounted at the same paths). The adapter "
                "is loaded per request from this folder (an absolute path, `adapter_source: local`):", "", "```bash",
                "curl http://127.0.0.1:8080/generate -X POST -H 'Content-Type: application/json' \\",
                f"  -d '{{\"inputs\": \"...\", \"parameters\": {{\"adapter_id\": \"{out}\", \"adapter_source\": \"local\", "
                "\"max_new_tokens\": 64}}'", "```", "",
                "LoRAX loads adapters dynamically for the architectures it supports (its docs/models/base_models.md); "
                "check that the base's architecture is one of them. See https://loraexchange.ai/models/adapters/."]
    return "\n".join(head + body) + "\n"
