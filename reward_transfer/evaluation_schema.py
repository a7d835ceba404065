"""The config schema of `eval.py` (apart from `evaluation`, so composing a config imports no torch)."""

from dataclasses import dataclass, field

from reward_transfer.config import (
    DatasetSpec,
    LoggingConfig,
    PathsConfig,
    ScoringModelConfig,
    register_schema,
)

# pairs: judgment accuracy | best_of_n: rerank saved candidates | the field's benchmarks (benchmark_eval.py).
MODES = ("pairs", "best_of_n", "rewardbench", "rewardbench2", "best_of_k")


@dataclass
class EvalDatasetConfig:
    # Default: the eval split of the domain's pairs (<paths.root>/data/pref-data-<domain>, ~9k pairs on the paper run).
    datasets: list[DatasetSpec] = field(default_factory=lambda: [DatasetSpec("${layout:data,${domain}}", "eval")])
    max_examples: int | None = None  # null: every pair; a seeded sample otherwise
    batch_size: int = 16  # conversations per forward pass at most
    max_batch_tokens: int = 16384  # padded tokens per forward pass at most (long conversations: smaller batches)


@dataclass
class BestOfNConfig:
    candidates: str | None = None  # None: `<first dataset dir>/candidates`, where generation saves them
    split: str = "eval"


@dataclass
class EvalConfig:
    name: str = "???"  # the evaluated model's name; also the default model and output folder
    domain: str | None = None  # the domain of the evaluation pairs (the default data; its pair kinds)
    mode: str = "pairs"  # one of MODES; rewardbench, rewardbench2, best_of_k read dataset.datasets in their layout
    paths: PathsConfig = field(default_factory=PathsConfig)
    model: ScoringModelConfig = field(default_factory=lambda: ScoringModelConfig("${layout:model,${name}}"))
    dataset: EvalDatasetConfig = field(default_factory=EvalDatasetConfig)
    best_of_n: BestOfNConfig = field(default_factory=BestOfNConfig)
    output_dir: str = "${layout:eval,${name}}"
    save_scores: bool = True
    bootstrap_samples: int = 1000
    seed: int = 42
    overwrite: bool = False
    logging: LoggingConfig = field(default_factory=LoggingConfig)


register_schema("eval", EvalConfig)
# How fast or where an evaluation runs, never its results (plus rerun.COMMON_RESUMABLE_KEYS).
RESUMABLE_KEYS = ("dataset.batch_size", "dataset.max_batch_tokens", "model.device", "save_scores")
