"""Micro-batch size and activation checkpointing chosen from the GPU's memory, the effective batch unchanged.

Activation checkpointing recomputes every layer's forward during the backward pass: a third more work for LoRA
training (forward 2N, backward 2N, recompute 2N FLOPs per token of an N-parameter model). On a GPU with room for
the activations it only costs time. `plan_memory` estimates the peak memory of each (micro-batch, checkpointing)
choice from the model's shape and keeps the fastest that fits: no checkpointing before checkpointing, then the
largest micro-batch (fewer, larger kernels). The estimate is deliberately conservative (worst-case lengths, a
fixed headroom); the test suite checks its arithmetic, a GPU run (`make gpu-bench`) its peaks.
"""

import os
from dataclasses import asdict, dataclass
from typing import Any

from reward_transfer.errors import UserError

GIB = 1024**3
HEADROOM = 0.85  # share of the GPU's memory the plan may fill (allocator fragmentation, CUDA context)
CONTEXT_BYTES = 2 * GIB  # CUDA context, cuBLAS workspaces, NCCL buffers


@dataclass(frozen=True)
class ModelShape:
    """What activation memory depends on."""

    parameters: int
    trainable_parameters: int
    hidden_size: int
    intermediate_size: int
    layers: int
    heads: int
    eager_attention: bool  # attention scores materialised (seq × seq per head), as InternLM2's published code does
    dtype_bytes: int = 2

    @classmethod
    def of(cls, model: Any, trainable_parameters: int, dtype_bytes: int) -> "ModelShape":
        config = model.config
        implementation = getattr(config, "_attn_implementation", None) or getattr(config, "attn_implementation", None)
        return cls(parameters=sum(p.numel() for p in model.parameters()), trainable_parameters=trainable_parameters,
                   hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
                   layers=config.num_hidden_layers, heads=config.num_attention_heads,
                   eager_attention=implementation in (None, "eager"), dtype_bytes=dtype_bytes)


@dataclass(frozen=True)
class MemoryPlan:
    micro_batch: int  # pairs per forward per process
    gradient_accumulation_steps: int
    gradient_checkpointing: bool
    estimated_peak_gib: float
    device_gib: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def activation_bytes_per_token(shape: ModelShape, sequence_length: int, checkpointing: bool) -> float:
    """Bytes kept for the backward pass per token, all layers. A LLaMA-style layer under LoRA (with dropout) keeps
    about 16 hidden-size and 5 intermediate-size vectors per token; eager attention adds the scores and their
    fp32 softmax per head. Checkpointing keeps only each layer's input, plus one layer recomputed at a time."""
    per_layer = (16 * shape.hidden_size + 5 * shape.intermediate_size) * shape.dtype_bytes
    if shape.eager_attention:
        per_layer += shape.heads * sequence_length * (2 * shape.dtype_bytes + 4)
    if checkpointing:
        return shape.layers * shape.hidden_size * shape.dtype_bytes + per_layer
    return shape.layers * per_layer


def peak_bytes(shape: ModelShape, micro_batch: int, max_length: int, checkpointing: bool) -> float:
    """Weights, trainable parameters with their gradients and Adam states (fp32), and the activations of
    `micro_batch` pairs whose two sides are both `max_length` long (the worst case)."""
    weights = shape.parameters * shape.dtype_bytes
    trainable = shape.trainable_parameters * (4 + 4 + 8)
    tokens = micro_batch * 2 * max_length
    return CONTEXT_BYTES + weights + trainable + tokens * activation_bytes_per_token(shape, max_length, checkpointing)


def lora_parameters(model: Any, rank: int, head: str) -> int:
    """Parameters LoRA adds at `rank` on every linear layer but the head (the project's `all-linear` targets)."""
    import torch

    return sum(rank * (module.in_features + module.out_features) for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and name.split(".")[-1] != head)


# Set by the local and Ray executors when steps_per_gpu > 1: the share of its GPU's memory a step may plan for.
GPU_SHARE_ENV = "REWARD_TRANSFER_GPU_SHARE"


def gpu_share() -> float:
    """The share of this process's GPU memory it may use (1: the GPU is its own)."""
    raw = os.environ.get(GPU_SHARE_ENV, "1")
    try:
        share = float(raw)
    except ValueError:
        share = 0.0
    if not 0 < share <= 1:
        raise UserError(f"{GPU_SHARE_ENV}={raw}: must be a share of the GPU in (0, 1]")
    return share


def plan_memory(shape: ModelShape, device_bytes: int, pairs_per_process: int, max_length: int,
                max_micro_batch: int = 8) -> MemoryPlan | None:
    """The fastest (micro-batch, checkpointing) whose estimated peak fits; micro-batches divide the pairs each
    process sees per optimizer step, so the effective batch stays what was configured. None: nothing fits."""
    budget = device_bytes * HEADROOM
    sizes = [m for m in range(min(max_micro_batch, pairs_per_process), 0, -1) if pairs_per_process % m == 0]
    for checkpointing in (False, True):
        for micro in sizes:
            peak = peak_bytes(shape, micro, max_length, checkpointing)
            if peak <= budget:
                return MemoryPlan(micro, pairs_per_process // micro, checkpointing, round(peak / GIB, 1),
                                  round(device_bytes / GIB, 1))
    return None
