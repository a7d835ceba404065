"""The active-learning loop for one domain and strategy: select → train → eval → merge, round after round.

The rounds are the grid's own (`grid.plan.plan_active_learning`): the same steps, names
(`active_learning_<domain>_<strategy>_r<k>`), run-folder layout and rerun rule as `reproduce.py`, run by the in-process
executor. `output_root` is a run folder (`models/`, `active_learning/`, `eval/`, `grid.json`), so
`python report.py <output_root>` reports it; an interrupted loop resumes at the step where it stopped.
"""

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from reward_transfer import run_layout as layout
from reward_transfer.config import PathsConfig, register_schema
from reward_transfer.errors import UserError
from reward_transfer.selection_schema import STATE_INFO, TRAIN_ON
from reward_transfer.selection_strategies import get_strategy
from reward_transfer.storage import atomic_write_json


@dataclass
class LoopOverrides:
    """Extra overrides of every step of a kind, e.g. select: [dataset.batch_size=32]."""

    select: list[str] = field(default_factory=list)
    train: list[str] = field(default_factory=list)
    eval: list[str] = field(default_factory=list)


@dataclass
class ActiveLearningLoopConfig:
    domain: str = "???"
    strategy: str = "margin"  # a strategy of selection_strategies.py: margin, argmin, random (the baseline), fisher, …
    train_on: str = "new"  # new: fine-tune the previous round's merged model on the new picks | all: start over on L
    rounds: int = 3
    pairs_per_round: int = 2500
    max_to_look_at: int | None = 40000  # pool pairs scored per round (null: all)
    pool_size: int | None = 60000  # round 1's pool: the ground truth's training sample of this size (null: all)
    start_model: str = "internlm/internlm2-7b-reward"  # scores round 1's pool and is round 1's starting point
    pool: str | None = None  # round 1's pair dataset (null: <paths.root>/data/pref-data-<domain>); its eval split
    eval_max_examples: int | None = None  # evaluation pairs per round (null: the whole eval split)
    seed: int = 42
    paths: PathsConfig = field(default_factory=PathsConfig)
    output_root: str = "${paths.root}/active_learning/${domain}-${strategy}"
    overrides: LoopOverrides = field(default_factory=LoopOverrides)


register_schema("active_learning_loop", ActiveLearningLoopConfig)


def _check(cfg: DictConfig) -> None:
    get_strategy(cfg.strategy)
    if cfg.train_on not in TRAIN_ON:
        raise UserError(f"train_on: '{cfg.train_on}' is not one of {', '.join(TRAIN_ON)}")
    if cfg.rounds < 1:
        raise UserError(f"rounds must be at least 1, got {cfg.rounds}")


def loop_profile(cfg: DictConfig) -> Any:
    """The grid profile of one loop: one domain, one strategy, the loop's sizes and overrides."""
    from reward_transfer.grid.profile import ActiveLearningProfile, ModelsProfile, ProfileConfig, SizesProfile

    pool = cfg.pool or str(layout.data_dir(Path(cfg.paths.root), cfg.domain))
    return ProfileConfig(
        name=f"active_learning_loop {cfg.domain} {cfg.strategy}", domains=[cfg.domain], seed=cfg.seed,
        models=ModelsProfile(general=cfg.start_model),
        sizes=SizesProfile(full=cfg.pool_size, eval_max_examples=cfg.eval_max_examples),
        active_learning=ActiveLearningProfile(
            rounds=cfg.rounds, pairs_per_round=cfg.pairs_per_round, max_to_look_at=cfg.max_to_look_at,
            strategies=[cfg.strategy], random_subsets=False, train_on=cfg.train_on),
        pair_data={cfg.domain: pool},
        overrides={"select": list(cfg.overrides.select), "active_learning": list(cfg.overrides.train),
                   "eval": list(cfg.overrides.eval)},
    )


def run_active_learning(cfg: DictConfig) -> list[dict[str, Any]]:
    """Run (or resume) every round; returns one row per round with its evaluation results."""
    from reward_transfer.grid.executors.sequential import InProcessExecutor
    from reward_transfer.grid.plan import grid_summary, plan_active_learning
    from reward_transfer.grid.profile import ExecutorConfig

    _check(cfg)
    run = Path(cfg.output_root)
    profile = loop_profile(cfg)
    plan = plan_active_learning(profile, run, cfg.domain, cfg.strategy)
    started = time.perf_counter()
    atomic_write_json(layout.grid_file(run), grid_summary(profile, plan.cells))
    InProcessExecutor(ExecutorConfig(name="inprocess"), profile).run(plan.steps, plan.by_name(), run, overwrite=False)
    rows = []
    for k in range(1, cfg.rounds + 1):
        name = layout.active_learning_name(cfg.domain, cfg.strategy, k)
        results = json.loads((layout.eval_dir(run, name) / "results.json").read_text())
        state = layout.al_state_dir(run, cfg.domain, cfg.strategy, k)
        rows.append({"round": k, "pairs_selected": json.loads((state / STATE_INFO).read_text())["rounds"][-1][
            "selected_total"], "accuracy": results["accuracy"], "ci95": results["ci95"],
            "num_pairs": results["num_pairs"], "model": str(layout.merged_dir(run, name)),
            "results": str(layout.eval_dir(run, name) / "results.json")})
    atomic_write_json(run / "loop_summary.json", {"domain": cfg.domain, "strategy": cfg.strategy,
                                                  "train_on": cfg.train_on, "rounds": rows,
                                                  "seconds": round(time.perf_counter() - started, 1)})
    print(_summary(cfg, rows), flush=True)
    return rows


def _summary(cfg: DictConfig, rows: list[dict[str, Any]]) -> str:
    lines = [f"== active learning, {cfg.domain}, strategy {cfg.strategy}, train on {cfg.train_on}",
             "round  pairs selected  accuracy  95% CI         eval pairs"]
    for row in rows:
        low, high = row["ci95"]
        lines.append(f"{row['round']:>5}  {row['pairs_selected']:>14}  {row['accuracy']:.4f}    "
                     f"{low:.4f}–{high:.4f}  {row['num_pairs']:>10}")
    lines.append(f"summary: {Path(cfg.output_root) / 'loop_summary.json'}; report: python report.py {cfg.output_root}")
    return "\n".join(lines)
