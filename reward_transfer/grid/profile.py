"""The config schema of `reproduce.py`: the profile (what the grid is), the executor (what runs it), the run."""

from dataclasses import dataclass, field
from typing import Any

from reward_transfer import run_layout as layout
from reward_transfer.config import register_schema


@dataclass
class ModelsProfile:
    sft: dict[str, str] = field(default_factory=dict)  # domain → SFT model of the ground-truth RM
    general: str = "???"  # the general-purpose RM


@dataclass
class SftProfile:
    train: bool = False  # true: SFT each domain's model here (train_sft_model.py) instead of models.sft's
    base: dict[str, str] = field(default_factory=dict)  # domain → the causal LM that SFT starts from
    # With train=true: the share of each domain's problems generation reserves for SFT (dataset.sft_share), so the
    # SFT base and the reward-model data are disjoint by construction (SFT excludes the rest, recorded with the data).
    share: float = 0.1


@dataclass
class SizesProfile:
    full: int | None = None  # N_T: training pairs of the ground-truth RM (null: the whole train split)
    subsets: list[int] = field(default_factory=list)  # Table 1's fine-tuning sizes (the largest = full)
    eval_max_examples: int | None = None  # evaluation pairs per domain (null: the whole eval split)


@dataclass
class ActiveLearningProfile:
    rounds: int = 3
    pairs_per_round: int = 2500
    max_to_look_at: int | None = 40000
    strategies: list[str] = field(default_factory=lambda: ["margin", "random"])
    random_subsets: bool = True  # also fine-tune the general RM once on k·n random pairs (`<d>_2.5k`, ...)
    train_on: str = "new"  # new: fine-tune last round's model on the new picks | all: retrain the start on L
    # Each strategy's chain once per seed (selection and training seeded with it; the report gives mean curves with
    # 95% intervals over seeds and eval pairs). Empty: one chain per strategy, seeded with profile.seed.
    seeds: list[int] = field(default_factory=list)


@dataclass
class ProfileConfig:
    name: str = "???"
    domains: list[str] = field(default_factory=lambda: list(layout.PAPER_DOMAINS))
    seed: int = 42  # every step of the grid gets this seed (the AL pool is the training sample by construction)
    launcher: str = ""  # e.g. "accelerate launch --config_file=deepspeed/1_1GPU.yaml"
    python: str = "python"
    tiny_models: str | None = None  # build the tiny offline models into this directory first
    offline: bool = False  # force the Hugging Face libraries offline
    # The throughput table (benchmarks/throughput/<device>.json) the dry run's cost estimate reads (null: none).
    device: str | None = None
    cpu_threads: int | None = None  # torch/OpenMP threads (null: torch's default, one per core)
    models: ModelsProfile = field(default_factory=ModelsProfile)
    sft: SftProfile = field(default_factory=SftProfile)
    sizes: SizesProfile = field(default_factory=SizesProfile)
    active_learning: ActiveLearningProfile = field(default_factory=ActiveLearningProfile)
    # Beyond the paper. benchmarks: each a name (rewardbench | rewardbench2 | best_of_k: its published dataset) or
    # {name, name_or_path, split} (another copy), evaluated with every final model (eval.py mode=<name>).
    # baselines: merge_sft = the general RM's backbone interpolated toward each domain's SFT model
    # (interpolate_reward_model.py; λ: overrides.merge_sft=[weight=…]), no pairs.
    benchmarks: list[Any] = field(default_factory=list)
    baselines: list[str] = field(default_factory=list)
    # Domain → an existing pair dataset (Hub name or directory with train/eval splits, e.g. the published
    # eth-dl-rewards/pref-data-math) used instead of generating one: no generate step, no best-of-n (no candidates).
    pair_data: dict[str, str] = field(default_factory=dict)
    # The named config of each stage whose configs are per domain (`{domain}` replaced): generate, sft.
    config_names: dict[str, str] = field(default_factory=dict)
    # Step kind → extra overrides every step of that kind gets: generate, sft, truth, finetune, cross,
    # active_learning (training), select, eval, best_of_n, merge_sft, benchmark.
    overrides: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class ExecutorConfig:
    """What runs the steps; each option of configs/reproduce/executor/ fills the fields it uses."""

    name: str = "???"  # inprocess | subprocess | local | ray | slurm
    # local, ray: steps run side by side. On CPUs: up to max_parallel at once. On GPUs: each of `gpus` takes up to
    # steps_per_gpu steps at once (their CUDA_VISIBLE_DEVICES set), CPU-only steps beside them.
    max_parallel: int = 1
    gpus: list[int] = field(default_factory=list)
    steps_per_gpu: int = 1
    # ray: null starts a local Ray; "auto" or "ray://host:port" joins a running cluster.
    address: str | None = None
    num_cpus: int | None = None  # a local Ray's CPUs (null: all)
    # slurm (through submitit): one sbatch job per step, dependencies as afterok.
    partition: str | None = None
    account: str | None = None
    time_min: int = 720  # per step
    gpus_per_step: int = 1
    cpus_per_step: int = 8
    mem_gb: int | None = None
    sbatch: dict[str, Any] = field(default_factory=dict)  # extra sbatch options, e.g. {qos: high, constraint: h200}
    wait: bool = True  # wait for the jobs and report them; false: submit and exit (rerun to see where they are)
    poll_s: float = 10.0


@dataclass
class ReproduceConfig:
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    output_dir: str = "outputs/reproduce/${profile.name}"
    dry_run: bool = False
    only: Any = field(default_factory=list)  # step/group patterns to run (fnmatch), e.g. [generate, "eval/*"]
    skip: Any = field(default_factory=list)  # step/group patterns to leave out
    best_of_n: bool = True
    paper: bool = False  # the report puts the paper's numbers beside ours
    overwrite: bool = False  # a step whose settings changed replaces its finished output (else: refused)


register_schema("reproduce", ReproduceConfig)
