"""The active-learning loop for one domain and strategy: select → train → merge → evaluate, round after round.

Each step runs in this process on the config its own command line would compose (script config + overrides), so
the loop is the seed README's command sequence without the copy-paste. A step whose output is complete is
skipped on re-run: an interrupted loop resumes at the step (hence round) where it stopped. The loop's own paths
(models, state, outputs) are applied after `overrides.<stage>`, so those cannot break the chaining of rounds.

Layout under `output_root`: `round<k>/state` (the selection state after round k), `round<k>/model` (adapter),
`round<k>/model-merged`; evaluations at `<eval_root>/active_learning_<domain>_<strategy>_round<k>/results.json`.
"""

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from reward_transfer.active_learning import STATE_INFO, STRATEGIES, TRAIN_ON
from reward_transfer.config import register_schema
from reward_transfer.errors import UserError
from reward_transfer.storage import atomic_write_json

log = logging.getLogger(__name__)

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


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
    pool: str | None = None  # round 1's pair dataset; None: the one configs.select_initial names
    output_root: str = "outputs/active_learning/${domain}-${strategy}"
    eval_root: str = "outputs/eval"
    configs: LoopConfigNames = field(default_factory=LoopConfigNames)
    overrides: LoopOverrides = field(default_factory=LoopOverrides)


register_schema("active_learning_loop", ActiveLearningLoopConfig)


def compose_stage(script: str, config_name: str, overrides: list[str]) -> DictConfig:
    """The config `<script>.py --config-name=<config_name> <overrides>` would run with."""
    GlobalHydra.instance().clear()  # the loop's own @hydra.main instance, or the previous step's
    with initialize_config_dir(config_dir=str(CONFIGS / script), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


def eval_name(domain: str, strategy: str, round_number: int) -> str:
    """Name (and eval folder) of round `round_number`'s evaluation."""
    return f"active_learning_{domain}_{strategy}_round{round_number}"


def _round_paths(cfg: DictConfig, k: int) -> dict[str, Path]:
    root = Path(cfg.output_root) / f"round{k}"
    return {"state": root / "state", "model": root / "model", "merged": root / "model-merged",
            "eval": Path(cfg.eval_root) / eval_name(cfg.domain, cfg.strategy, k)}


def _check(cfg: DictConfig) -> None:
    if cfg.strategy not in STRATEGIES:
        raise UserError(f"strategy: '{cfg.strategy}' is not one of {', '.join(STRATEGIES)}")
    if cfg.train_on not in TRAIN_ON:
        raise UserError(f"train_on: '{cfg.train_on}' is not one of {', '.join(TRAIN_ON)}")
    if cfg.rounds < 1:
        raise UserError(f"rounds must be at least 1, got {cfg.rounds}")


def _selection_done(state: Path, k: int) -> bool:
    info = state / STATE_INFO
    return info.is_file() and len(json.loads(info.read_text())["rounds"]) == k


def run_active_learning(cfg: DictConfig) -> list[dict[str, Any]]:
    """Run (or resume) every round; returns one row per round with its evaluation results."""
    from reward_transfer.active_learning import select_pairs
    from reward_transfer.evaluation import evaluate
    from reward_transfer.merging import merge_adapter
    from reward_transfer.training import train_reward_model

    _check(cfg)
    names, extra = cfg.configs, cfg.overrides
    rows = []
    previous_model = cfg.start_model
    for k in range(1, cfg.rounds + 1):
        paths = _round_paths(cfg, k)
        started = time.perf_counter()
        select_overrides = [f"model.model_name_or_path={previous_model}", f"selection.strategy={cfg.strategy}",
                            f"selection.train_on={cfg.train_on}",
                            f"dataset.output_dataset_name_or_path={paths['state']}"]
        pool = _round_paths(cfg, k - 1)["state"] if k > 1 else cfg.pool
        if pool:
            select_overrides.append(f"dataset.dataset_name_or_path={pool}")
        if not _selection_done(paths["state"], k):
            select_pairs(compose_stage("active_data_selection", names.select_initial if k == 1 else names.select,
                                       [*extra.select, *select_overrides]))
        train_from = cfg.start_model if cfg.train_on == "all" else previous_model
        if not (paths["model"] / "log_history.json").is_file():
            train_reward_model(compose_stage("train_reward_model", names.train_initial if k == 1 else names.train, [
                *extra.train, f"model.model_name_or_path={train_from}", f"output_dir={paths['model']}",
                "overwrite=true", f"dataset.datasets=[{{name_or_path:'{paths['state']}',split:train}}]"]))
        if not (paths["merged"] / "config.json").is_file():
            merge_adapter(train_from, str(paths["model"]), output_dir=str(paths["merged"]))
        results_file = paths["eval"] / "results.json"
        if results_file.is_file():
            results = json.loads(results_file.read_text())
        else:
            results = evaluate(compose_stage("eval", names.eval, [
                *extra.eval, f"name={eval_name(cfg.domain, cfg.strategy, k)}",
                f"model.model_name_or_path={paths['merged']}", f"output_dir={paths['eval']}"]))
        previous_model = str(paths["merged"])
        rows.append({"round": k, "pairs_selected": _selected_total(paths["state"]), "accuracy": results["accuracy"],
                     "ci95": results["ci95"], "model": previous_model, "results": str(results_file),
                     "seconds": round(time.perf_counter() - started, 1)})
    atomic_write_json(Path(cfg.output_root) / "loop_summary.json", {"domain": cfg.domain, "strategy": cfg.strategy,
                                                                    "train_on": cfg.train_on, "rounds": rows})
    print(_summary(cfg, rows), flush=True)
    return rows


def _selected_total(state: Path) -> int:
    return json.loads((state / STATE_INFO).read_text())["rounds"][-1]["selected_total"]


def _summary(cfg: DictConfig, rows: list[dict[str, Any]]) -> str:
    lines = [f"== active learning, {cfg.domain}, strategy {cfg.strategy}, train on {cfg.train_on}",
             "round  pairs selected  accuracy  95% CI"]
    for row in rows:
        low, high = row["ci95"]
        lines.append(f"{row['round']:>5}  {row['pairs_selected']:>14}  {row['accuracy']:.4f}    {low:.4f}–{high:.4f}")
    lines.append(f"summary: {Path(cfg.output_root) / 'loop_summary.json'}")
    return "\n".join(lines)
