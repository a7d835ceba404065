"""`eval.py mode=rewardbench | rewardbench2 | best_of_k`: a reward model on the field's benchmarks, read from the
Hub or local files in each benchmark's published column layout, scored by the one scoring engine and by the rules
of `benchmarks.py`."""

from collections.abc import Callable
from typing import Any

from datasets import Dataset
from omegaconf import DictConfig

from reward_transfer import benchmarks
from reward_transfer.data import as_pairs, load_table, require_columns, sample_rows
from reward_transfer.errors import UserError

# Each benchmark's columns as its dataset card lists them (what this project reads of them).
LAYOUTS = {
    "rewardbench": ("prompt", "chosen", "rejected", "subset"),  # allenai/reward-bench, split filtered
    "rewardbench2": ("id", "prompt", "chosen", "rejected", "num_correct", "subset"),  # allenai/reward-bench-2, test
    "best_of_k": ("prompt", "scores"),  # lmarena-ai/PPE-*-Best-of-K: + response_1..response_K
}


def _table(cfg: DictConfig, benchmark: str) -> Dataset:
    if len(cfg.dataset.datasets) != 1:
        raise UserError(f"mode={benchmark}: dataset.datasets must name the one benchmark dataset")
    spec = cfg.dataset.datasets[0]
    table = load_table(str(spec.name_or_path), spec.split)
    require_columns(table, LAYOUTS[benchmark], str(spec.name_or_path))
    return sample_rows(table, cfg.dataset.max_examples, cfg.seed, str(spec.name_or_path)) \
        if cfg.dataset.max_examples else table


def _responses(table: Dataset) -> list[str]:
    """best_of_k's response columns, response_1..response_K in order."""
    names = sorted((c for c in table.column_names if c.startswith("response_") and c[9:].isdigit()),
                   key=lambda c: int(c[9:]))
    if not names:
        raise UserError("mode=best_of_k: the data has no response_1..response_K columns")
    return names


def evaluate_benchmark(cfg: DictConfig, score: Callable[[list, list], list[float]]) -> dict[str, Any]:
    """The benchmark `cfg.mode` names: `score(prompts, answers)` gives one reward per conversation."""
    benchmark, table = cfg.mode, _table(cfg, cfg.mode)
    if benchmark == "rewardbench":
        pairs = as_pairs(table, str(cfg.dataset.datasets[0].name_or_path))
        scores = score([*pairs["problem"], *pairs["problem"]], [*pairs["accepted"], *pairs["rejected"]])
        result = benchmarks.rewardbench_v1(scores[:len(pairs)], scores[len(pairs):], table["subset"],
                                           cfg.bootstrap_samples, cfg.seed)
        return {"benchmark": benchmark, **result}
    if benchmark == "rewardbench2":
        completions = [list(c) + list(r) for c, r in zip(table["chosen"], table["rejected"], strict=True)]
    else:
        columns = _responses(table)
        completions = [[row[c] for c in columns] for row in table]
    prompts = [p for p, group in zip(table["prompt"], completions, strict=True) for _ in group]
    flat = score(prompts, [answer for group in completions for answer in group])
    grouped, start = [], 0
    for group in completions:
        grouped.append(flat[start:start + len(group)])
        start += len(group)
    if benchmark == "rewardbench2":
        result = benchmarks.rewardbench_v2(table["id"], table["subset"], grouped, table["num_correct"],
                                           cfg.bootstrap_samples, cfg.seed)
    else:
        subsets = table["category"] if "category" in table.column_names else ["all"] * len(table)
        result = benchmarks.best_of_k(subsets, grouped, table["scores"], cfg.bootstrap_samples, cfg.seed)
    return {"benchmark": benchmark, **result}
