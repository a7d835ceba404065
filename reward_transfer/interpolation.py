"""The baseline a reviewer asks for: a domain reward model without a single preference pair, by weight
interpolation (DogeRM, Lin et al., EMNLP 2024): the general RM's backbone moved toward the domain's SFT model,
θ = (1 − λ)·θ_RM + λ·θ_SFT for every backbone parameter, the RM's reward head kept. Both models must share the
architecture (same backbone parameter names and shapes), else it is refused in one line.

`interpolate_reward_model(cfg)` is the stage function behind `interpolate_reward_model.py`; the result is a
standalone reward model directory, written like a merge (`merging.save_standalone`).
"""

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from reward_transfer.errors import UserError
from reward_transfer.merging import save_standalone, stored_dtype
from reward_transfer.models import load_causal_lm, load_reward_model, unwrap_model
from reward_transfer.rerun import is_complete
from reward_transfer.storage import ensure_writable

log = logging.getLogger(__name__)


def backbone(model: torch.nn.Module) -> torch.nn.Module:
    """The transformer body under a model's head (`base_model_prefix`: `model` for LLaMA and InternLM2)."""
    base = unwrap_model(model)
    return getattr(base, base.base_model_prefix)


def interpolate(reward_model: torch.nn.Module, sft_model: torch.nn.Module, weight: float, names: tuple[str, str]
                ) -> None:
    """Move the reward model's backbone toward the SFT model's by `weight`, in place."""
    target, source = backbone(reward_model).state_dict(), backbone(sft_model).state_dict()
    missing = sorted(set(target) ^ set(source))
    mismatched = [key for key in target if key in source and target[key].shape != source[key].shape]
    if missing or mismatched:
        first = missing[0] if missing else f"{mismatched[0]} {tuple(target[mismatched[0]].shape)} vs " \
                                           f"{tuple(source[mismatched[0]].shape)}"
        raise UserError(f"cannot interpolate {names[0]} toward {names[1]}: different architectures "
                        f"({len(missing) + len(mismatched)} backbone parameters differ, first: {first})")
    with torch.no_grad():
        for key, value in target.items():
            if value.is_floating_point():
                value.mul_(1 - weight).add_(source[key].to(value.dtype), alpha=weight)


def interpolate_reward_model(cfg: DictConfig) -> Path:
    """Write the general RM with its backbone interpolated toward the SFT model to `cfg.output_dir`."""
    if not 0.0 <= cfg.weight <= 1.0:
        raise UserError(f"weight: λ must lie in [0, 1], got {cfg.weight}")
    target = Path(cfg.output_dir)
    ensure_writable(target, "output_dir", parent=True)
    settings = {"reward_model": cfg.reward_model, "sft_model": cfg.sft_model, "weight": cfg.weight}
    if is_complete("interpolate_reward_model", target, settings, cfg.overwrite, (target / "config.json").is_file()):
        return target
    reward, tokenizer = load_reward_model(cfg.reward_model, device="cpu", dtype=torch.float32,
                                          trust_remote_code=cfg.trust_remote_code)
    sft = load_causal_lm(cfg.sft_model, device="cpu", dtype="float32", trust_remote_code=cfg.trust_remote_code)
    interpolate(reward, sft, cfg.weight, (cfg.reward_model, cfg.sft_model))
    del sft
    save_standalone(reward.to(stored_dtype(cfg.reward_model)), tokenizer, cfg.reward_model, target, settings,
                    {"interpolated": {"reward_model": cfg.reward_model, "sft_model": cfg.sft_model,
                                      "weight": cfg.weight}},
                    f"The reward model `{cfg.reward_model}` with its backbone interpolated toward `{cfg.sft_model}` "
                    f"(λ = {cfg.weight}, DogeRM's recipe); no preference data.")
    print(f"interpolated {cfg.reward_model} toward {cfg.sft_model} (λ = {cfg.weight}) -> {target}", flush=True)
    return target
