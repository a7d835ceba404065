"""The config schema of `interpolate_reward_model.py` (apart from `interpolation`: composing imports no torch)."""

from dataclasses import dataclass, field

from reward_transfer.config import PathsConfig, register_schema


@dataclass
class InterpolateRewardModelConfig:
    name: str = "???"  # the result's name; also its default output folder (<paths.root>/models/<name>)
    domain: str | None = None  # the domain whose SFT model the backbone moves toward (for the grid's records)
    paths: PathsConfig = field(default_factory=PathsConfig)
    reward_model: str = "internlm/internlm2-7b-reward"  # the general RM (its head is kept)
    sft_model: str = "???"  # the domain's SFT model: same architecture as the RM's backbone
    # λ: θ = (1 − λ)·θ_RM + λ·θ_SFT on every backbone parameter (DogeRM tunes it per domain; 0 gives the RM back).
    weight: float = 0.5
    trust_remote_code: bool | None = None
    output_dir: str = "${layout:model,${name}}"
    overwrite: bool = False
    seed: int = 42  # every grid step gets the run's seed; interpolation draws nothing


register_schema("interpolate_reward_model", InterpolateRewardModelConfig)
# The result depends on every key but where it goes (plus rerun.COMMON_RESUMABLE_KEYS).
RESUMABLE_KEYS = ("trust_remote_code", "seed")
