"""Sharded training (FSDP2): what xft's loop does differently when the parameters are sharded across processes.

Under FSDP2 (`torch.distributed.fsdp.fully_shard`) every parameter is a DTensor holding one process's shard, and the
optimizer state is sharded alike. A forward of the model gathers what it needs by itself, so training and
evaluation (every process evaluates the same rows) run unchanged; what reads or writes whole tensors must gather
them on every process first. This module is that, one place for both ways a model gets sharded:

- on GPUs, Accelerate shards it in `accelerator.prepare` (`fsdp_version: 2`, examples/accelerate/fsdp.yaml);
- on CPU processes Accelerate builds no FSDP plugin (the distributed type stays MULTI_CPU), so when the launch asks
  for FSDP2 (`ACCELERATE_USE_FSDP=true`, `FSDP_VERSION=2`: what `accelerate launch --config_file fsdp.yaml` sets),
  `shard` applies torch's `fully_shard` itself, over the gloo group, to the same layers Accelerate would wrap.

Either way the model holds `FSDPModule`s, and `is_sharded` sends checkpoints, restores and adapter packages through
the gathering functions below (collectives: every process calls them, in the same order):

- `trainable_state`: the trainable tensors, whole (`DTensor.full_tensor`), for checkpoints;
- `load_trainable`: whole tensors (every process reads the checkpoint) back into the shards (`distribute_tensor`);
- `optimizer_state` / `load_optimizer_state`: the optimizer state as one full state dict keyed by parameter names
  (torch.distributed.checkpoint's `get/set_optimizer_state_dict`);
- `whole_state_dict`: while it is open, `model.state_dict()` returns whole trainable tensors, so a strategy's
  `save` (peft's `get_peft_model_state_dict`, transformers' `save_pretrained`) writes complete packages.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator, Mapping

from xft_core.config import ConfigError

WANTS_FSDP = "ACCELERATE_USE_FSDP"


def fsdp_version(accelerator: Any) -> int | None:
    """The FSDP version this launch asks for (None: no FSDP): Accelerate's plugin on GPUs, the launch environment
    on CPU processes (where Accelerate builds no plugin)."""
    plugin = getattr(accelerator.state, "fsdp_plugin", None)
    mode = str(getattr(accelerator.distributed_type, "value", accelerator.distributed_type))
    if mode == "FSDP":
        return int(getattr(plugin, "fsdp_version", 1) or 1)
    if os.environ.get(WANTS_FSDP, "false").lower() == "true" and mode == "MULTI_CPU":
        return int(os.environ.get("FSDP_VERSION", "1") or 1)
    return None


def shards_itself(accelerator: Any) -> bool:
    """xft applies fully_shard itself: FSDP2 asked for on CPU processes."""
    mode = str(getattr(accelerator.distributed_type, "value", accelerator.distributed_type))
    return mode == "MULTI_CPU" and fsdp_version(accelerator) == 2


def check_fsdp(accelerator: Any, quantized: bool) -> None:
    """FSDP2 trains; FSDP1 (flat parameters, summon_full_params) is refused with the way to FSDP2."""
    version = fsdp_version(accelerator)
    if version is None:
        return
    if version != 2:
        raise ConfigError(
            f"xft trains under FSDP version 2 only (the launch asks for FSDP {version}): set `fsdp_version: 2` in the "
            "accelerate config (examples/accelerate/fsdp.yaml), whose per-parameter sharding xft gathers for saving, "
            "evaluation and resume; see docs/distributed.md."
        )
    if quantized:
        raise ConfigError("FSDP cannot shard a quantized base (training.base_dtype: nf4 packs its weights in uint8): "
                          "use DDP (examples/accelerate/ddp_multi_gpu.yaml), each GPU holding the 4-bit base whole.")


def shard(model: Any, accelerator: Any) -> int:
    """torch's fully_shard over every process of the group: each transformer layer (the classes named by
    FSDP_TRANSFORMER_CLS_TO_WRAP, else the model's `_no_split_modules`, as Accelerate wraps), then the root. Frozen
    and trainable weights of different dtypes (a bf16 base under float32 adapters) all-gather in the frozen
    weights' dtype. Returns how many modules were sharded."""
    import torch
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    names = [n.strip() for n in os.environ.get("FSDP_TRANSFORMER_CLS_TO_WRAP", "").split(",") if n.strip()]
    if not names:
        names = sorted({n for m in model.modules() for n in (getattr(m, "_no_split_modules", None) or [])})
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ConfigError(f"FSDP: no layer of {type(model).__name__} to shard (looked for {', '.join(names) or 'none'}); "
                          "name its transformer layer class in fsdp_transformer_layer_cls_to_wrap")
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    frozen = {p.dtype for p in model.parameters() if p.is_floating_point() and not p.requires_grad}
    policy = MixedPrecisionPolicy()
    if len(dtypes) > 1:
        policy = MixedPrecisionPolicy(param_dtype=min(frozen or dtypes, key=lambda d: torch.finfo(d).bits),
                                      reduce_dtype=torch.float32)
    mesh = init_device_mesh(accelerator.device.type, (accelerator.num_processes,))
    reshard = os.environ.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower() != "false"
    for layer in layers:
        fully_shard(layer, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard)
    fully_shard(model, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard)
    return len(layers) + 1


def is_sharded(model: Any) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # a torch without FSDP2
        return False
    return any(isinstance(m, FSDPModule) for m in model.modules())


def _whole(tensor: Any) -> Any:
    full = getattr(tensor, "full_tensor", None)
    return full() if callable(full) else tensor


def trainable_state(model: Any, main: bool) -> dict[str, Any] | None:
    """{name: whole tensor on the CPU} of the trainable parameters; on a sharded model gathered on every process
    (call it everywhere), else read on the main process alone (None elsewhere)."""
    sharded = is_sharded(model)
    if not main and not sharded:
        return None
    state = {n: _whole(p.detach()).cpu().contiguous().clone() for n, p in model.named_parameters() if p.requires_grad}
    return state if main else None


def load_trainable(model: Any, weights: Mapping[str, Any]) -> None:
    """Copy whole tensors into the model's parameters: into each process's shard where they are sharded (every
    process holds `weights` whole: each read the same file)."""
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in weights.items():
            target = params[name]
            mesh = getattr(target, "device_mesh", None)
            if mesh is not None:
                from torch.distributed.tensor import distribute_tensor

                tensor = distribute_tensor(tensor.to(target.device, target.dtype), mesh, target.placements,
                                           src_data_rank=None)
            target.copy_(tensor)


def _inner(optimizer: Any) -> Any:
    return getattr(optimizer, "optimizer", optimizer)  # Accelerate's AcceleratedOptimizer wraps the torch one


def optimizer_state(model: Any, optimizer: Any, main: bool) -> dict[str, Any] | None:
    """The optimizer's state dict; on a sharded model one full state dict keyed by parameter names, gathered on
    every process (call it everywhere) and returned on the main process."""
    if not is_sharded(model):
        return optimizer.state_dict() if main else None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    state = get_optimizer_state_dict(model, _inner(optimizer),
                                     options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return dict(state) if main else None


def load_optimizer_state(model: Any, optimizer: Any, state: Mapping[str, Any]) -> None:
    """Restore what `optimizer_state` saved: a full state dict keyed by names goes back shard by shard (every
    process read it whole); a plain one (an unsharded run's) through `load_state_dict`."""
    keys = list(state.get("state", {}))
    named = bool(keys) and isinstance(keys[0], str)
    if not named and not is_sharded(model):
        optimizer.load_state_dict(state)
        return
    if not named:
        raise ConfigError("--resume: the checkpoint's optimizer state was written by a run without FSDP (keyed by "
                          "position); a sharded run needs it keyed by parameter names. Resume it without FSDP.")
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, _inner(optimizer), optim_state_dict=dict(state),
                             options=StateDictOptions(full_state_dict=True))


@contextlib.contextmanager
def whole_state_dict(model: Any) -> Iterator[None]:
    """While open, `model.state_dict()` returns the trainable tensors whole (gathered on entry, on every process:
    enter it everywhere); what a strategy's `save` reads. A no-op on a model that is not sharded."""
    if not is_sharded(model):
        yield
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, ignore_frozen_params=True))
    model.state_dict = lambda *args, **kwargs: dict(state)  # an instance attribute, removed on exit
    try:
        yield
    finally:
        del model.state_dict
