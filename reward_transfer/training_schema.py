"""The structured-config schema of `train_reward_model.py` (every key declared: a typo is an error).

Kept apart from `training` so that composing a training config (reproduce.py's dry run, the tests) does not
import TRL and PEFT.
"""

from dataclasses import dataclass, field
from typing import Any

from reward_transfer.config import DatasetSpec, HubConfig, LoggingConfig, PathsConfig, register_schema


@dataclass
class LoraSchema:
    enable: bool = True
    rank: int = 32
    alpha: int = 64
    dropout: float = 0.01
    target_modules: Any = "all-linear"
    bias: str = "none"


@dataclass
class ModelSchema:
    model_name_or_path: str = "internlm/internlm2-7b-reward"  # the general-purpose RM
    tokenizer_name_or_path: str | None = None
    # reward_model: fine-tune an existing RM; causal_lm_new_head: put a new scalar head on a causal LM ("scratch").
    init: str = "reward_model"
    trust_remote_code: bool | None = None
    max_length: int = 1024
    # null: bf16 on a bf16-capable GPU, fp32 elsewhere.
    dtype: str | None = None
    # true reproduces the original code, whose InternLM2 head (`v_head`) was never trained.
    freeze_head: bool = False
    lora: LoraSchema = field(default_factory=LoraSchema)


@dataclass
class DatasetSchema:
    # [{name_or_path, split, ratio}]; default: the train split of the domain's pairs (<paths.root>/data/pref-data-<domain>)
    datasets: list[DatasetSpec] = field(default_factory=lambda: [DatasetSpec("${layout:data,${domain}}", "train")])
    max_examples: int | None = None  # null: all pairs; a seeded prefix, so 20k ⊂ 40k ⊂ 60k
    # What to do when max_examples exceeds the data: false uses all rows (logged), true refuses.
    refuse_short_data: bool = False
    # Pairs longer than model.max_length: truncate the answers (prompt kept) or drop the pair.
    long_pairs: str = "truncate"


@dataclass
class TrainSchema:
    learning_rate: float = 5e-5
    lr_scheduler_type: str = "cosine"
    warmup_steps: float = 0
    per_device_train_batch_size: int = 2
    gradient_accumulation_steps: int = 16
    epochs: float = 1.0
    max_steps: int = -1
    optim: str = "adamw_torch"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = True
    # TRL zeroes every dropout by default, LoRA's too; the paper's LoRA dropout (0.01) needs this false.
    disable_dropout: bool = False
    group_by_length: bool = False  # the paper shuffles
    # Beyond the paper, off by default (TRL's options): a penalty on the mean squared reward (centring), and a margin
    # in the loss, -log σ(r_chosen - r_rejected - margin_scale × (accepted_score - rejected_score)), from the
    # verifier's score gap (code's share of tests passed; needs the generated pairs' score columns).
    center_rewards_coefficient: float | None = None
    margin_scale: float = 0.0
    # On a GPU: micro-batch size and gradient checkpointing chosen from its memory (memory_plan.py), keeping
    # per_device_train_batch_size × gradient_accumulation_steps, the effective batch, as configured.
    fit_to_memory: bool = True
    # Feed each micro-batch's sequences without padding (same pairs, order and loss; see padding_free.py).
    padding_free: bool = True
    logging_steps: int = 10
    save_steps: int = 200
    save_total_limit: int = 2
    resume: bool = False
    dataloader_num_workers: int = 0


@dataclass
class TrainHubConfig(HubConfig):
    push_only: bool = False  # push the finished output_dir and stop (retries a push that failed after training)


# Keys that change how fast or where a run goes, or how often it checkpoints, never the model it produces: a
# finished run or its checkpoints are reused across them (plus rerun.COMMON_RESUMABLE_KEYS).
RESUMABLE_KEYS = ("train.resume", "train.logging_steps", "train.save_steps", "train.save_total_limit",
                  "train.dataloader_num_workers", "train.gradient_checkpointing", "train.padding_free", "train.fit_to_memory")


@dataclass
class TrainRewardModelConfig:
    name: str = "???"  # the run's name; also its default output folder
    domain: str | None = None  # the domain whose pairs it trains on (the default data)
    source: str | None = None  # cross-domain runs: the domain whose ground-truth RM it starts from
    paths: PathsConfig = field(default_factory=PathsConfig)
    output_dir: str = "${layout:model,${name}}"
    overwrite: bool = False
    seed: int = 42
    model: ModelSchema = field(default_factory=ModelSchema)
    dataset: DatasetSchema = field(default_factory=DatasetSchema)
    train: TrainSchema = field(default_factory=TrainSchema)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    huggingface: TrainHubConfig = field(default_factory=TrainHubConfig)


register_schema("train_reward_model", TrainRewardModelConfig)
