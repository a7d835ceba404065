"""Fold a trained LoRA adapter (and its reward head) into its base: a standalone reward model directory.

The merged directory loads with `load_reward_model` like any reward model (remote-code files copied where the
base needs them) and scores like base+adapter; the next stage (cross-domain runs, the next AL round) starts
from it.
"""

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from reward_transfer.errors import UserError
from reward_transfer.hub import push_folder
from reward_transfer.models import (
    REWARD_MODEL_INFO,
    adapter_config_or_reason,
    load_reward_model,
    read_reward_model_info,
    reward_head_name,
    reward_token_id,
)
from reward_transfer.remote_code import write_legacy_rope_scaling
from reward_transfer.rerun import is_complete, write_settings
from reward_transfer.storage import atomic_directory, atomic_write_json, atomic_write_text, ensure_writable

log = logging.getLogger(__name__)


def default_output_dir(model_name: str) -> Path:
    """`<adapter dir>-merged` beside a local adapter; `outputs/models/<name>-merged` for a Hub adapter."""
    local = Path(model_name).expanduser()
    if local.exists() or model_name.startswith((".", "/", "~")):
        return local.parent / f"{local.name}-merged"
    return Path("outputs/models") / f"{model_name.rstrip('/').split('/')[-1]}-merged"


def stored_dtype(base_model: str) -> torch.dtype:
    """The dtype the base checkpoint is stored in, read from its config.json (fp32 when it says nothing)."""
    local = Path(base_model).expanduser() / "config.json"
    try:
        if local.is_file():
            config = json.loads(local.read_text())
        else:
            from huggingface_hub import hf_hub_download

            config = json.loads(Path(hf_hub_download(base_model, "config.json")).read_text())
    except Exception:  # unreadable or offline: fp32 is always exact
        return torch.float32
    dtype = getattr(torch, str(config.get("dtype") or config.get("torch_dtype") or "float32"), None)
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


def copy_remote_code(base_model: str, target: Path) -> None:
    """Remote-code modules the base needs (save_pretrained copies the model's own module, not always every file)."""
    source = Path(base_model).expanduser()
    if not source.is_dir():
        return
    for module in source.glob("*.py"):
        if not (target / module.name).exists():
            shutil.copy2(module, target / module.name)


def merge_adapter(base_model: str | None, model_name: str, output_dir: str | Path | None = None,
                  push_to_hub: bool = False, repo_id: str | None = None, private: bool = True,
                  overwrite: bool = False) -> Path:
    """Merge adapter `model_name` into `base_model` (None: the adapter's own base); write the standalone RM.

    The rerun rule of every stage: a finished merge of the same adapter and base is kept ("already complete"),
    another one in `output_dir` is refused unless `overwrite`.
    """
    adapter_config, reason = adapter_config_or_reason(model_name)
    if adapter_config is None:
        raise UserError(f"--model_name {model_name} {reason}")
    info = read_reward_model_info(model_name)
    base = base_model or info.get("base_model") or adapter_config.get("base_model_name_or_path")
    target = Path(output_dir) if output_dir else default_output_dir(model_name)
    ensure_writable(target, "--output_dir", parent=True)
    settings = {"adapter": str(model_name), "base_model": str(base)}
    if is_complete("merge_peft_model", target, settings, overwrite, (target / "config.json").is_file()):
        _push(target, push_to_hub, repo_id, private, model_name)
        return target
    # Merged in fp32 on the CPU (exact), saved in the base's own dtype.
    model, tokenizer = load_reward_model(model_name, device="cpu", dtype=torch.float32, base_model=base, merge=True)
    head = reward_head_name(model)
    save_standalone(model.to(stored_dtype(base)), tokenizer, base, target, settings,
                    {"merged_from": {"adapter": model_name, "base_model": base,
                                     **{k: v for k, v in info.items() if k not in ("base_model", "adapter")}}},
                    f"Standalone reward model: LoRA adapter `{model_name}` (reward head `{head}` included) merged "
                    f"into `{base}`.")
    log.info("merged %s into %s -> %s", model_name, base, target)
    print(f"merged {model_name} (head '{head}') into {base} -> {target}", flush=True)
    _push(target, push_to_hub, repo_id, private, model_name)
    return target


def save_standalone(model: torch.nn.Module, tokenizer: Any, base: str, target: Path, settings: dict,
                    provenance: dict, description: str) -> None:
    """Write a standalone reward model directory atomically: weights, tokenizer, the base's remote code, the run
    settings, `reward_model.json` (head, reward token and `provenance`) and a model card."""
    with atomic_directory(target) as staging:
        model.save_pretrained(staging)
        write_legacy_rope_scaling(staging)
        tokenizer.save_pretrained(staging)
        copy_remote_code(base, staging)
        write_settings(staging, settings)
        atomic_write_json(staging / REWARD_MODEL_INFO, {"init": "reward_model", "head": reward_head_name(model),
                                                        "reward_token_id": reward_token_id(model), **provenance})
        atomic_write_text(staging / "README.md", f"""---
tags: [reward-model]
base_model: {base}
---
# {target.name}

{description}
Load with `reward_transfer.models.load_reward_model("{target}")`.
""")


def _push(target: Path, push_to_hub: bool, repo_id: str | None, private: bool, model_name: str) -> None:
    if push_to_hub:
        push_folder(target, repo_id or target.name, private, f"merge {model_name}",
                    retry="rerun the same command (the finished merge is kept; only the push is redone)")
