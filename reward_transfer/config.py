"""Config pieces shared by every script's structured-config schema (Hydra + OmegaConf dataclasses)."""

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from reward_transfer import run_layout


@dataclass
class DatasetSpec:
    """One input dataset: a Hub name, a `save_to_disk` directory, or a .jsonl/.json/.parquet/.csv file."""

    name_or_path: str = "???"
    split: str = "train"
    ratio: float = 1.0
    # The dataset's own column names for the pair roles, e.g. {problem: question}; unnamed roles: ours
    # (problem/accepted/rejected), else TRL's and RewardBench's (prompt/chosen/rejected).
    columns: dict[str, str] = field(default_factory=dict)


@dataclass
class PathsConfig:
    """Where a stage's default inputs and outputs live: `${layout:<kind>,<name>}` in a config is that path under
    `root` (reward_transfer/run_layout.py), e.g. `${layout:data,math}` = `<root>/data/pref-data-math`."""

    root: str = "outputs"
    # Token ids of conversations already tokenised, by content (token_cache.py; null: none kept). A cache like the
    # Hugging Face ones: shared by every run on this machine, safe to delete.
    token_cache: str | None = "${oc.env:REWARD_TRANSFER_CACHE,'~/.cache/reward_transfer'}/tokens"


@dataclass
class LoggingConfig:
    wandb: bool = False
    project: str = "reward-transfer"
    run_name: str | None = None


@dataclass
class HubConfig:
    push_to_hub: bool = False
    repo_id: str | None = None
    private: bool = True  # every stage's push creates a private repo unless told otherwise


@dataclass
class ScoringModelConfig:
    """The reward model a scoring stage (evaluation, selection) loads through `load_reward_model`."""

    model_name_or_path: str = "???"
    tokenizer_name_or_path: str | None = None
    trust_remote_code: bool | None = None
    device: str | None = None
    dtype: str = "auto"
    # The length budget of a scored conversation (null: the model's context, as the original scored whole
    # conversations); a longer one loses the start of its prompt, never an answer's end or the reward token.
    max_length: int | None = None


OmegaConf.register_new_resolver("layout", run_layout.config_path, replace=True)


def register_schema(group_name: str, node: type) -> None:
    """Register `node` as `<group_name>_schema` so a YAML can start with `defaults: [<group_name>_schema, _self_]`."""
    ConfigStore.instance().store(name=f"{group_name}_schema", node=node)


def default_list(*items: str) -> list[str]:
    """A dataclass default for a list of strings."""
    return field(default_factory=lambda: list(items))
