"""The structured-config schema of `train_sft_model.py` (apart from `sft`, so composing a config imports no TRL)."""

from dataclasses import dataclass, field

from reward_transfer.config import DatasetSpec, HubConfig, LoggingConfig, PathsConfig, register_schema
from reward_transfer.training_schema import LoraSchema


@dataclass
class SftModelSchema:
    model_name_or_path: str = "internlm/internlm2-7b"  # a causal LM (a reward model is refused)
    tokenizer_name_or_path: str | None = None
    trust_remote_code: bool | None = None
    max_length: int = 2048
    dtype: str | None = None  # null: bf16 on a bf16-capable GPU, fp32 elsewhere
    lora: LoraSchema = field(default_factory=LoraSchema)  # lora.enable=false: full fine-tuning


@dataclass
class SftDataSchema:
    datasets: list[DatasetSpec] = field(default_factory=list)  # the domain's problems, as generation reads them
    columns: dict[str, str] = field(default_factory=dict)  # role → column (the domain's roles, `solution` too)
    keep: dict[str, list[str]] = field(default_factory=dict)  # as generation's: rows whose role has these values
    max_examples: int | None = None  # rows read before filtering (null: all)
    # Pair datasets whose problems never enter SFT (their pairs and candidates, by problem id): the SFT data is
    # disjoint from the reward-model data by construction.
    exclude: list[str] = field(default_factory=lambda: ["${layout:data,${domain}}"])
    num_problems: int | None = None  # SFT problems, a seeded sample of what is left (null: all)
    held_out: float = 0.1  # share of the SFT problems kept out of training to measure the loss on
    solutions_per_problem: int | None = 1  # code: APPS lists several solutions; null: all of them


@dataclass
class SftPromptSchema:
    template: str = "prompt_templates/${domain}.txt"  # the prompt generation sends, `{problem}` replaced
    starter_code_template: str | None = None


@dataclass
class SftTrainSchema:
    learning_rate: float = 2e-5
    lr_scheduler_type: str = "cosine"
    warmup_steps: float = 0.03  # a float in [0, 1) is a share of the steps (transformers 5)
    per_device_train_batch_size: int = 2
    gradient_accumulation_steps: int = 16
    epochs: float = 1.0
    max_steps: int = -1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = True
    logging_steps: int = 10
    save_steps: int = 200
    save_total_limit: int = 2
    resume: bool = False


@dataclass
class TrainSftModelConfig:
    name: str = "???"
    domain: str = "???"
    paths: PathsConfig = field(default_factory=PathsConfig)
    output_dir: str = "${layout:model,${name}}"
    overwrite: bool = False
    seed: int = 42
    model: SftModelSchema = field(default_factory=SftModelSchema)
    dataset: SftDataSchema = field(default_factory=SftDataSchema)
    prompt: SftPromptSchema = field(default_factory=SftPromptSchema)
    train: SftTrainSchema = field(default_factory=SftTrainSchema)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    huggingface: HubConfig = field(default_factory=HubConfig)


# How fast, where or how often a run checkpoints, never the model it produces (plus rerun.COMMON_RESUMABLE_KEYS).
RESUMABLE_KEYS = ("train.resume", "train.logging_steps", "train.save_steps", "train.save_total_limit",
                  "train.gradient_checkpointing")

register_schema("train_sft_model", TrainSftModelConfig)
