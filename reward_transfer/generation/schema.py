"""The structured-config schema of `generate_preference_data.py`: every key is declared, so a typo is an error."""

from dataclasses import dataclass, field

from reward_transfer.config import DatasetSpec, HubConfig, LoggingConfig, PathsConfig, register_schema


@dataclass
class GenerationDatasetConfig:
    datasets: list[DatasetSpec] = field(default_factory=list)
    max_examples: int | None = None
    ground_truth_type: str = "math"  # a registered domain (reward_transfer/domains/): math, code, mcq, ...
    # Problems held out for the eval split; eval_size (a count) wins over eval_fraction when both are set.
    eval_fraction: float | None = 0.1
    eval_size: int | None = None
    # The eval split sized by pairs (wins over both): problems join it in the seeded split order until it holds
    # this many pairs. Problems whose candidates all pass or all fail give none, so a problem count can't fix it.
    eval_pairs: int | None = None
    # The dataset's own column of each role the domain reads (role → column), e.g. {problem: question}; unnamed
    # roles use the domain's defaults (math: problem, solution; code: question, input_output, starter_code;
    # mcq: question, options, answer, category).
    columns: dict[str, str] = field(default_factory=dict)
    # Keep only rows whose column of a role has one of the values, e.g. {category: [physics, chemistry]}.
    keep: dict[str, list[str]] = field(default_factory=dict)
    # The share of the usable problems reserved for supervised fine-tuning (train_sft_model.py), drawn by a seeded
    # hash rank and never sampled here; the output records the rest (problem_partition.json), which SFT excludes.
    sft_share: float = 0.0


@dataclass
class ModelConfig:
    model_name_or_path: str = "meta-llama/Llama-3.1-8B-Instruct"
    trust_remote_code: bool = False
    dtype: str = "auto"


@dataclass
class PromptConfig:
    template: str = "prompt_templates/${dataset.ground_truth_type}.txt"  # `{problem}` is replaced by the problem text
    starter_code_template: str | None = None  # appended when a code problem has starter code
    system_prompt: str | None = None


@dataclass
class GenerationConfig:
    # The paper's sampling: Llama-3.1-8B-Instruct through vLLM, temperature 0.9, top_k 10000, top_p 1.0, up to 4096
    # new tokens; 8 candidates per math problem, 16 per code problem (the domain's config says).
    backend: str = "vllm"  # vllm | transformers | openai | replay
    num_samples_per_problem: int = 8
    temperature: float = 0.9
    top_k: int = 10000  # <= 0: no top-k filtering (and none sent to an OpenAI-compatible server)
    top_p: float = 1.0
    max_new_tokens: int = 4096
    problems_per_batch: int = 256  # problems generated and committed to disk together
    # vllm
    tensor_parallel_size: int | None = None  # None: all visible GPUs
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    # openai-compatible server
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str = "OPENAI_API_KEY"  # read from this variable; local servers need none
    served_model_name: str | None = None  # None: model.model_name_or_path
    concurrency: int = 16
    request_timeout_s: float = 600.0
    max_retries: int = 2
    # replay
    replay_path: str | None = None
    replay_missing: str = "error"  # error | skip: what to do with problems absent from the replay file
    replay_delay_s: float = 0.0  # sleep per problem; only to make runs slow for interruption tests/demos


@dataclass
class VerifierConfig:
    math_timeout_s: float = 5.0
    code_timeout_s: float = 4.0
    code_memory_mb: int = 1024
    workers: int | None = None  # None: all CPU cores


@dataclass
class PreferenceConfig:
    max_number_of_preferences_per_problem: int = 4


@dataclass
class GeneratePreferenceDataConfig:
    dataset: GenerationDatasetConfig = field(default_factory=GenerationDatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    verifier: VerifierConfig = field(default_factory=VerifierConfig)
    preference: PreferenceConfig = field(default_factory=PreferenceConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    huggingface: HubConfig = field(default_factory=HubConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    output_dir: str = "${layout:data,${dataset.ground_truth_type}}"  # <paths.root>/data/pref-data-<domain>
    overwrite: bool = False
    seed: int = 42
    progress: bool = True


# Keys that change how fast or where a run goes, never which candidates or pairs it produces:
# they may differ between a run and its resumption.
RESUMABLE_KEYS = (
    "generation.problems_per_batch",
    "generation.concurrency",
    "generation.request_timeout_s",
    "generation.max_retries",
    "generation.replay_delay_s",
    "generation.gpu_memory_utilization",
    "generation.tensor_parallel_size",
    "generation.api_key_env",
    "generation.base_url",
    "verifier.workers",
)  # plus rerun.COMMON_RESUMABLE_KEYS (output_dir, overwrite, logging, huggingface, progress)

register_schema("generate_preference_data", GeneratePreferenceDataConfig)
