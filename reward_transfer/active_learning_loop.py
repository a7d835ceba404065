"""The active-learning loop for one domain and strategy: select → train → eval → merge, round after round.

The rounds are the grid's own (`reproduction.GridBuilder.active_learning_chain`): the same steps, names
(`active_learning_<domain>_<strategy>_r<k>`), run-folder layout and rerun rule as `reproduce.py`, run in this
process. `output_root` is a run folder (`models/`, `active_learning/`, `eval/`, `grid.json`), so
`python report.py <output_root>` reports it; an interrupted loop resumes at the step where it stopped.
"""

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from reward_transfer import run_layout as layout
from reward_transfer.active_learning import STATE_INFO, STRATEGIES, TRAIN_ON
from reward_transfer.config import register_schema
from reward_transfer.errors import UserError
from reward_transfer.storage import atomic_write_json


@dataclass
class LoopConfigNames:
    select_initial: str = "???"  # configs/active_data_selection/<name> for round 1
    select: str = "???"  # ... for later rounds
    train_initial: str = "???"  # configs/train_reward_model/<name> for round 1
    train: str = "???"
    eval: str = "???"  # configs/eval/<name>


@dataclass
class LoopOverrides:
    select: list[str] = field(default_factory=list)
    train: list[str] = field(default_factory=list)
    eval: list[str] = field(default_factory=list)


@dataclass
class ActiveLearningLoopConfig:
    domain: str = "???"
    strategy: str = "margin"
    train_on: str = "new"  # new: fine-tune the previous round's model on the new picks | all: start over on L
    rounds: int = 3
    start_model: str = "???"  # scores round 1's pool and is the starting point of round 1's training
    pool: str | None = None  # round 1's pair dataset (its eval split is evaluated); None: what select_initial names
    output_root: str = "outputs/active_learning/${domain}-${strategy}"
    configs: LoopConfigNames = field(default_factory=LoopConfigNames)
    overrides: LoopOverrides = field(default_factory=LoopOverrides)


register_schema("active_learning_loop", ActiveLearningLoopConfig)


def _check(cfg: DictConfig) -> None:
    if cfg.strategy not in STRATEGIES:
        raise UserError(f"strategy: '{cfg.strategy}' is not one of {', '.join(STRATEGIES)}")
    if cfg.train_on not in TRAIN_ON:
        raise UserError(f"train_on: '{cfg.train_on}' is not one of {', '.join(TRAIN_ON)}")
    if cfg.rounds < 1:
        raise UserError(f"rounds must be at least 1, got {cfg.rounds}")


def loop_profile(cfg: DictConfig) -> Any:
    """The grid profile of one loop: one domain, one strategy, the loop's configs and overrides; pool size, pairs
    per round and scan cap as the round-1 selection config sets them."""
    from reward_transfer.reproduction import (
        ActiveLearningProfile,
        ModelsProfile,
        ProfileConfig,
        SizesProfile,
        Step,
        compose_configs,
    )

    names, extra = cfg.configs, cfg.overrides
    select, evaluation = compose_configs([
        Step("select", "", "active_data_selection", names.select_initial, list(extra.select)),
        Step("eval", "", "eval", names.eval, list(extra.eval))])
    return ProfileConfig(
        name=f"active_learning_loop {cfg.domain} {cfg.strategy}", domains=[cfg.domain], in_process=True,
        models=ModelsProfile(general=cfg.start_model),
        sizes=SizesProfile(full=select.dataset.pool_size, eval_max_examples=evaluation.dataset.max_examples),
        active_learning=ActiveLearningProfile(
            rounds=cfg.rounds, pairs_per_round=select.dataset.pairs_to_select,
            max_to_look_at=select.dataset.max_to_look_at, strategies=[cfg.strategy], random_subsets=False,
            train_on=cfg.train_on),
        pair_data={cfg.domain: cfg.pool or select.dataset.dataset_name_or_path},
        config_names={"select_initial": names.select_initial, "select": names.select,
                      "train_al_initial": names.train_initial, "train_al": names.train, "eval_al": names.eval},
        overrides={"select": list(extra.select), "train_al": list(extra.train), "eval": list(extra.eval)},
    )


def run_active_learning(cfg: DictConfig) -> list[dict[str, Any]]:
    """Run (or resume) every round; returns one row per round with its evaluation results."""
    from reward_transfer.reproduction import GridBuilder, grid_summary, run_steps

    _check(cfg)
    run = Path(cfg.output_root)
    profile = loop_profile(cfg)
    builder = GridBuilder(profile, run, best_of_n=False)
    builder.active_learning_chain(cfg.domain, cfg.strategy)
    started = time.perf_counter()
    atomic_write_json(layout.grid_file(run), grid_summary(profile, builder.cells))
    run_steps(builder.steps, profile, run)
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
