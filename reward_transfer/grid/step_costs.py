"""The work each kind of step asks for (problems sampled, tokens trained, pairs scored), read from its composed
config and the run's data where it already exists, priced by a throughput table: one estimator per stage."""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from reward_transfer import run_layout as layout
from reward_transfer.grid.profile import ProfileConfig
from reward_transfer.grid.step import Step
from reward_transfer.grid.throughput import CHARS_PER_TOKEN, Throughput
from reward_transfer.memory_plan import GIB, ModelShape, plan_memory


@dataclass
class StepCost:
    name: str
    kind: str  # the step's group
    gpu_s: float  # time the step keeps a GPU busy
    wall_s: float  # time the step takes alone
    disk_gb: float
    work: str  # what the figures were computed from


@dataclass
class GridContext:
    """What estimators look up beyond their own config: the profile, the run folder, the other steps' configs."""

    profile: ProfileConfig
    run: Path
    table: Throughput
    configs: dict[str, DictConfig]  # step name → composed config (Hydra steps)
    steps: dict[str, Step]
    measured: dict[str, list[float] | None] = field(default_factory=dict)  # domain → sides' tokens in the run's data

    def generation(self, domain: str) -> DictConfig | None:
        return self.configs.get(f"generate/{domain}")

    def problems(self, domain: str) -> int:
        """Problems the domain's generation reads (its max_examples, else the table's count of the whole source)."""
        generation = self.generation(domain)
        return (generation.dataset.max_examples if generation is not None else None) or self.table("problems", domain)

    def pair_tokens(self, domain: str, max_length: int | None = None) -> tuple[float, str]:
        """Tokens per pair (both sides, prompts included, each side cut at `max_length`): the run's own data once
        generated, else the table's."""
        if domain not in self.measured:
            self.measured[domain] = _measured_side_tokens(layout.data_dir(self.run, domain))
        sides = self.measured[domain]
        if sides is None:
            return self.table("pair_tokens", domain), "table"
        cap = max_length or float("inf")
        return sum(min(side, cap) for side in sides) / max(len(sides) / 2, 1), "the run's own pairs"

    def split_size(self, domain: str, split: str) -> int:
        """Pairs in a split of the domain's data: on disk once generated, else what the configs ask for."""
        data = layout.data_dir(self.run, domain)
        if (data / split).is_dir():
            from datasets import load_from_disk

            return len(load_from_disk(str(data / split)))
        generation = self.generation(domain)
        if split == "eval":
            return generation.dataset.eval_pairs if generation is not None and generation.dataset.eval_pairs else 9000
        return self.profile.sizes.full or 60000


def _measured_side_tokens(data: Path, sample: int = 2000) -> list[float] | None:
    """Estimated tokens of both sides of the first `sample` training pairs (characters / CHARS_PER_TOKEN)."""
    if not (data / "train").is_dir():
        return None
    from datasets import load_from_disk

    rows = load_from_disk(str(data / "train"))
    rows = rows.select(range(min(sample, len(rows))))
    return [(len(str(row["problem"])) + len(row[side])) / CHARS_PER_TOKEN for row in rows
            for side in ("accepted", "rejected")]


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


def generate_cost(step: Step, cfg: DictConfig, ctx: GridContext) -> StepCost:
    table, domain = ctx.table, cfg.dataset.ground_truth_type
    problems = int(ctx.problems(domain) * (1 - cfg.dataset.sft_share))
    samples = problems * cfg.generation.num_samples_per_problem
    gpu = samples * table("answer_tokens", domain) / table("generate_output_tokens_per_s") + table("model_load_s")
    labelling = samples * table("label_s_per_candidate", domain) / table("cpu_workers")
    disk = table("disk_gb")
    return StepCost(step.name, step.group, gpu, max(gpu, labelling), disk["candidates_per_100k"] * samples / 1e5,
                    f"{problems} problems x {cfg.generation.num_samples_per_problem} candidates; "
                    f"labelling {_hours(labelling)} of CPU, overlapped with sampling")


def sft_cost(step: Step, cfg: DictConfig, ctx: GridContext) -> StepCost:
    table, domain = ctx.table, cfg.domain
    problems = cfg.dataset.num_problems or ctx.problems(domain) * ctx.profile.sft.share
    examples = problems * (1 - cfg.dataset.held_out) * (cfg.dataset.solutions_per_problem or 1)
    tokens = examples * ctx.table("pair_tokens", domain) / 2 * cfg.train.epochs
    gpu = tokens / table("sft_train_tokens_per_s") + table("model_load_s")
    return StepCost(step.name, step.group, gpu, gpu, table("disk_gb")["merged_model"],
                    f"{int(examples)} solutions x {table('pair_tokens', domain) / 2:.0f} tokens")


def _training_pairs(cfg: DictConfig, ctx: GridContext) -> int:
    if cfg.dataset.max_examples:
        return cfg.dataset.max_examples
    source = str(cfg.dataset.datasets[0].name_or_path)
    for name, other in ctx.configs.items():
        if ctx.steps[name].script == "active_data_selection" and other.dataset.output_dataset_name_or_path == source:
            rounds = 1 if other.selection.train_on == "new" else _round_of(name, ctx)
            return other.dataset.pairs_to_select * rounds
    return ctx.split_size(cfg.domain, "train")


def _round_of(select_step: str, ctx: GridContext) -> int:
    """Which round a selection step makes (its chain of earlier selections, through their states)."""
    rounds, source = 1, ctx.configs[select_step].dataset.dataset_name_or_path
    producers = {str(c.dataset.output_dataset_name_or_path): c for n, c in ctx.configs.items()
                 if ctx.steps[n].script == "active_data_selection"}
    while str(source) in producers:
        rounds, source = rounds + 1, producers[str(source)].dataset.dataset_name_or_path
    return rounds


def training_slowdown(cfg: DictConfig, ctx: GridContext) -> tuple[float, str]:
    """How much slower than the table's rate (padding-free, no checkpointing) this run's settings train."""
    table = ctx.table
    checkpointing = cfg.train.gradient_checkpointing
    if cfg.train.fit_to_memory:
        plan = plan_memory(ModelShape(**table("model_shape")), int(table("memory_gib") * GIB),
                           cfg.train.per_device_train_batch_size * cfg.train.gradient_accumulation_steps,
                           cfg.model.max_length)
        checkpointing = plan is None or plan.gradient_checkpointing
    slowdown = table("checkpointing_slowdown") if checkpointing else 1.0
    if not cfg.train.padding_free:
        slowdown *= table("padding_free_speedup")
    return slowdown, ("checkpointing" if checkpointing else "no checkpointing") + (
        ", padding-free" if cfg.train.padding_free else ", padded")


def train_cost(step: Step, cfg: DictConfig, ctx: GridContext) -> StepCost:
    table = ctx.table
    pairs = _training_pairs(cfg, ctx)
    per_pair, source = ctx.pair_tokens(cfg.domain, cfg.model.max_length)
    slowdown, how = training_slowdown(cfg, ctx)
    gpu = pairs * per_pair * cfg.train.epochs * slowdown / table("rm_train_tokens_per_s") + table("model_load_s")
    return StepCost(step.name, step.group, gpu, gpu, table("disk_gb")["adapter"],
                    f"{pairs} pairs x {per_pair:.0f} tokens ({source}); {how}")


def _scoring(step: Step, conversations: float, tokens_each: float, ctx: GridContext, what: str) -> StepCost:
    table = ctx.table
    gpu = conversations * tokens_each / table("score_tokens_per_s") + table("model_load_s")
    return StepCost(step.name, step.group, gpu, gpu, 0.0, what)


def eval_cost(step: Step, cfg: DictConfig, ctx: GridContext) -> StepCost:
    table, domain = ctx.table, cfg.domain
    if cfg.mode in table("benchmark_conversations"):
        conversations = table("benchmark_conversations", cfg.mode)
        return _scoring(step, conversations, table("benchmark_tokens"), ctx,
                        f"{cfg.mode}: {conversations} conversations (table)")
    per_pair, source = ctx.pair_tokens(domain)
    if cfg.mode == "best_of_n":
        generation = ctx.generation(domain)
        samples = generation.generation.num_samples_per_problem if generation is not None else 8
        problems = ctx.split_size(domain, "eval") / table("pairs_per_problem", domain)
        return _scoring(step, problems * samples, per_pair / 2, ctx,
                        f"{problems:.0f} problems x {samples} candidates ({source} lengths)")
    pairs = cfg.dataset.max_examples or ctx.split_size(domain, "eval")
    distinct = table("distinct_share", domain)
    return _scoring(step, 2 * pairs * distinct, per_pair / 2, ctx,
                    f"{pairs} pairs, {distinct:.0%} of their sides distinct ({source} lengths)")


def select_cost(step: Step, cfg: DictConfig, ctx: GridContext) -> StepCost:
    if cfg.selection.strategy == "random":
        return StepCost(step.name, step.group, 0.0, 10.0, 0.0, "random picks: nothing scored")
    domain = cfg.domain
    pool = cfg.dataset.pool_size or ctx.split_size(domain, "train")
    pool -= cfg.dataset.pairs_to_select * (_round_of(step.name, ctx) - 1)
    scanned = min(pool, cfg.dataset.max_to_look_at or pool)
    per_pair, source = ctx.pair_tokens(domain)
    distinct = ctx.table("distinct_share", domain)
    return _scoring(step, 2 * scanned * distinct, per_pair / 2, ctx, f"{scanned} pool pairs scored ({source} lengths)")


def merge_cost(step: Step, _cfg: Any, ctx: GridContext) -> StepCost:
    return StepCost(step.name, step.group, 0.0, ctx.table("merge_s"), ctx.table("disk_gb")["merged_model"],
                    "load, fold the adapter in, write (CPU)")


def interpolate_cost(step: Step, _cfg: Any, ctx: GridContext) -> StepCost:
    return StepCost(step.name, step.group, 0.0, ctx.table("merge_s"), ctx.table("disk_gb")["merged_model"],
                    "load two models, interpolate the backbone, write (CPU)")


def free_cost(step: Step, _cfg: Any, _ctx: GridContext) -> StepCost:
    return StepCost(step.name, step.group, 0.0, 30.0, 0.0, "no GPU")


ESTIMATORS: dict[str, Callable[[Step, Any, GridContext], StepCost]] = {
    "generate_preference_data": generate_cost, "train_sft_model": sft_cost, "train_reward_model": train_cost,
    "eval": eval_cost, "active_data_selection": select_cost, "merge_peft_model": merge_cost, "report": free_cost,
    "interpolate_reward_model": interpolate_cost,
    "tiny": free_cost,
}
