"""Stage 3: judgment accuracy of a reward model on held-out pairs, and best-of-n reranking of saved candidates.

`evaluate(cfg)` is what `eval.py` runs; `reproduce.py` calls it in-process with the same composed config.
"""

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from reward_transfer.data import PAIR_COLUMNS, load_datasets, load_table, require_columns
from reward_transfer.domains import get_domain
from reward_transfer.domains import known as known_domains
from reward_transfer.errors import UserError
from reward_transfer.evaluation_schema import MODES, RESUMABLE_KEYS
from reward_transfer.rerun import is_complete, result_settings, to_plain, write_settings
from reward_transfer.scoring import (
    load_reward_model,
    process_state,
    score_conversations,
    score_pairs_with_stats,
)
from reward_transfer.storage import atomic_write_json, atomic_write_text, ensure_writable

log = logging.getLogger(__name__)

CANDIDATE_COLUMNS = ("problem_id", "problem", "response", "correct")


def pair_kind(domain: str | None, accepted_score: float | None, rejected_score: float | None) -> str | None:
    """Kind of a pair from its labels, in its domain's words: math `correct_vs_incorrect`; code `pass_vs_fail`,
    `partial_vs_partial`, ... (None: unlabelled, or a domain this project has no verifier for)."""
    if accepted_score is None or rejected_score is None or domain not in known_domains():
        return None
    level = get_domain(domain).level
    return f"{level(accepted_score)}_vs_{level(rejected_score)}"


def bootstrap_ci(outcomes: Sequence[bool], samples: int, seed: int) -> list[float]:
    """95% percentile-bootstrap interval of the share of True outcomes."""
    num = len(outcomes)
    if num == 0 or samples < 1:
        return [float("nan"), float("nan")]
    share = float(np.mean(outcomes))
    # Resampling n 0/1 outcomes with replacement and taking the mean is exactly Binomial(n, share) / n.
    draws = np.random.default_rng(seed).binomial(num, share, size=samples) / num
    low, high = np.percentile(draws, [2.5, 97.5])
    return [float(low), float(high)]


def pair_metrics(chosen: Sequence[float], rejected: Sequence[float], kinds: Sequence[str | None] | None = None,
                 bootstrap_samples: int = 1000, seed: int = 42) -> dict[str, Any]:
    """Judgment accuracy (chosen strictly above rejected; ties never count), ties, margin, CI, per-kind accuracy."""
    chosen_arr, rejected_arr = np.asarray(chosen, dtype=np.float64), np.asarray(rejected, dtype=np.float64)
    wins = chosen_arr > rejected_arr
    ties = chosen_arr == rejected_arr
    num = len(wins)
    metrics: dict[str, Any] = {
        "accuracy": float(wins.mean()) if num else float("nan"),
        "num_pairs": num,
        "correct": int(wins.sum()),
        "ties": int(ties.sum()),
        "mean_margin": float((chosen_arr - rejected_arr).mean()) if num else float("nan"),
        "ci95": bootstrap_ci(wins, bootstrap_samples, seed),
    }
    if kinds is not None and any(kind is not None for kind in kinds):
        by_kind: dict[str, dict[str, Any]] = {}
        for kind in sorted({k for k in kinds if k is not None}):
            mask = np.array([k == kind for k in kinds])
            by_kind[kind] = {"accuracy": float(wins[mask].mean()), "num_pairs": int(mask.sum()),
                             "correct": int(wins[mask].sum()), "ties": int(ties[mask].sum())}
        metrics["accuracy_by_kind"] = by_kind
    return metrics


def check_scoring_budget(cfg: DictConfig) -> None:
    """A scoring stage's length budget leaves room for the chat template and an answer."""
    if cfg.model.max_length is not None and cfg.model.max_length < 32:
        raise UserError(f"model.max_length: {cfg.model.max_length} is too small (at least 32, or null: the model's "
                        "context)")
    if cfg.dataset.max_batch_tokens < 1:
        raise UserError(f"dataset.max_batch_tokens must be at least 1, got {cfg.dataset.max_batch_tokens}")


def describe_cuts(results: dict[str, Any]) -> str:
    """One phrase for what the length budget did to the pairs (results.json / the selection summary)."""
    cut, identical = results["pairs_cut"], results["pairs_scored_on_identical_inputs"]
    if not any(cut.values()) and not identical:
        return "no pair cut"
    return (f"{cut['prompt_start']} pairs cut at the prompt's start, {cut['answer_start']} at an answer's start "
            f"(prompt dropped), {identical} scored on identical inputs")


def _load_model(cfg: DictConfig):
    device = cfg.model.device or process_state().device
    options = {"tokenizer_name_or_path": cfg.model.tokenizer_name_or_path,
               "trust_remote_code": cfg.model.trust_remote_code}
    return load_reward_model(cfg.model.model_name_or_path, device=device, dtype=cfg.model.dtype, **options)


def _check(cfg: DictConfig) -> None:
    if cfg.mode not in MODES:
        raise UserError(f"mode: '{cfg.mode}' is not one of {', '.join(MODES)}")
    if cfg.dataset.batch_size < 1:
        raise UserError(f"dataset.batch_size must be at least 1, got {cfg.dataset.batch_size}")
    check_scoring_budget(cfg)
    if cfg.dataset.max_examples is not None and cfg.dataset.max_examples < 1:
        raise UserError(f"dataset.max_examples must be positive or null, got {cfg.dataset.max_examples}")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Run the evaluation `cfg.mode` asks for, write `output_dir/results.json`, return the results."""
    _check(cfg)
    output_dir = Path(cfg.output_dir)
    ensure_writable(output_dir, "output_dir")
    settings = to_plain(result_settings(cfg, RESUMABLE_KEYS))
    if is_complete("eval", output_dir, settings, cfg.overwrite, (output_dir / "results.json").is_file()):
        return json.loads((output_dir / "results.json").read_text())
    if cfg.mode in BENCHMARK_MODES:
        results = _evaluate_benchmark(cfg)
    else:
        results = _evaluate_best_of_n(cfg) if cfg.mode == "best_of_n" else _evaluate_pairs(cfg)
    results.update({
        "name": cfg.name,
        "mode": cfg.mode,
        "model": cfg.model.model_name_or_path,
        "config": OmegaConf.to_container(cfg, resolve=True),
    })
    if process_state().is_main_process:
        # results.json marks the result complete: it goes first (when replaced) and comes back last.
        (output_dir / "results.json").unlink(missing_ok=True)
        write_settings(output_dir, settings)
        atomic_write_json(output_dir / "results.json", results)
        _log_to_wandb(cfg, results)
        print(_summary(results, output_dir / "results.json"), flush=True)
    return results


BENCHMARK_MODES = ("rewardbench", "rewardbench2", "best_of_k")


def _evaluate_benchmark(cfg: DictConfig) -> dict[str, Any]:
    from reward_transfer.benchmark_eval import evaluate_benchmark

    model, tokenizer = _load_model(cfg)

    def score(prompts: list, answers: list) -> list[float]:
        return score_conversations(model, tokenizer, prompts, answers, batch_size=cfg.dataset.batch_size,
                                   max_length=cfg.model.max_length, max_batch_tokens=cfg.dataset.max_batch_tokens,
                                   token_cache=cfg.paths.token_cache).scores.tolist()

    return evaluate_benchmark(cfg, score)


def _evaluate_pairs(cfg: DictConfig) -> dict[str, Any]:
    pairs = load_datasets(cfg.dataset.datasets, cfg.dataset.max_examples, cfg.seed, required_columns=PAIR_COLUMNS)
    model, tokenizer = _load_model(cfg)
    scored = score_pairs_with_stats(model, tokenizer, pairs["problem"], pairs["accepted"], pairs["rejected"],
                                    batch_size=cfg.dataset.batch_size, max_length=cfg.model.max_length,
                                    max_batch_tokens=cfg.dataset.max_batch_tokens, token_cache=cfg.paths.token_cache)
    kinds = _pair_kinds(pairs, cfg.domain)
    results = pair_metrics(scored.chosen, scored.rejected, kinds, cfg.bootstrap_samples, cfg.seed)
    if "subset" in pairs.column_names:  # RewardBench-style data: accuracy per subset as well
        subsets = pair_metrics(scored.chosen, scored.rejected, [str(s) for s in pairs["subset"]], 0, cfg.seed)
        results["accuracy_by_subset"] = subsets["accuracy_by_kind"]
    results.update({
        "data": [OmegaConf.to_container(spec) for spec in cfg.dataset.datasets],
        "max_examples": cfg.dataset.max_examples,
        "distinct_conversations": scored.distinct,
        **scored.cut_summary(),
        "seconds": round(scored.seconds, 2),
        "pairs_per_second": round(len(pairs) / max(scored.seconds, 1e-9), 2),
    })
    if cfg.save_scores and process_state().is_main_process:
        ids = pairs["pair_id"] if "pair_id" in pairs.column_names else list(range(len(pairs)))
        lines = (json.dumps({"pair_id": pair_id, "kind": kind, "chosen": c, "rejected": r})
                 for pair_id, kind, c, r in zip(ids, kinds or [None] * len(ids), scored.chosen, scored.rejected,
                                                strict=True))
        atomic_write_text(Path(cfg.output_dir) / "scores.jsonl", "\n".join(lines) + "\n")
        results["scores_file"] = str(Path(cfg.output_dir) / "scores.jsonl")
    return results


def _pair_kinds(pairs, domain: str | None) -> list[str | None] | None:
    if not {"accepted_score", "rejected_score"} <= set(pairs.column_names):
        return None
    domains = pairs["domain"] if "domain" in pairs.column_names else [domain] * len(pairs)
    return [pair_kind(d, a, r) for d, a, r in zip(domains, pairs["accepted_score"], pairs["rejected_score"],
                                                   strict=True)]


def candidates_path(cfg: DictConfig) -> str:
    """Where best-of-n reads candidates: `best_of_n.candidates`, else beside the first pair dataset."""
    if cfg.best_of_n.candidates:
        return cfg.best_of_n.candidates
    if not cfg.dataset.datasets:
        raise UserError("mode=best_of_n needs best_of_n.candidates or dataset.datasets[0] (its candidates dir)")
    return str(Path(cfg.dataset.datasets[0].name_or_path) / "candidates")


def best_of_n_metrics(problem_ids: Sequence, candidate_index: Sequence[int], scores: Sequence[float],
                      correct: Sequence[bool], bootstrap_samples: int = 1000, seed: int = 42) -> dict[str, Any]:
    """Per problem, the top-scored candidate (ties: lowest candidate index) against oracle/first/random picks."""
    groups: dict[Any, list[int]] = defaultdict(list)
    for row, problem_id in enumerate(problem_ids):
        groups[problem_id].append(row)
    picked, oracle, first, random_pick = [], [], [], []
    for rows in groups.values():
        rows.sort(key=lambda row: candidate_index[row])
        top = max(rows, key=lambda row: (scores[row], -candidate_index[row]))
        outcomes = [bool(correct[row]) for row in rows]
        picked.append(bool(correct[top]))
        oracle.append(any(outcomes))
        first.append(outcomes[0])
        # The expected outcome of a uniformly random pick, exactly rather than one noisy draw.
        random_pick.append(sum(outcomes) / len(outcomes))
    return {
        "best_of_n_accuracy": float(np.mean(picked)),
        "ci95": bootstrap_ci(picked, bootstrap_samples, seed),
        "oracle_accuracy": float(np.mean(oracle)),
        "first_sample_accuracy": float(np.mean(first)),
        "random_pick_accuracy": float(np.mean(random_pick)),
        "num_problems": len(groups),
        "num_candidates": len(problem_ids),
        "mean_candidates_per_problem": len(problem_ids) / max(1, len(groups)),
    }


def _evaluate_best_of_n(cfg: DictConfig) -> dict[str, Any]:
    source = candidates_path(cfg)
    candidates = load_table(source)
    require_columns(candidates, CANDIDATE_COLUMNS, source)
    if "split" in candidates.column_names:
        candidates = candidates.filter(lambda split: split == cfg.best_of_n.split, input_columns="split",
                                       keep_in_memory=True)
    if len(candidates) == 0:
        raise UserError(f"{source}: no candidates in split '{cfg.best_of_n.split}'")
    if cfg.dataset.max_examples is not None:
        problem_ids = sorted(set(candidates["problem_id"]), key=str)
        shuffled = np.random.default_rng(cfg.seed).permutation(len(problem_ids))
        keep = {problem_ids[i] for i in shuffled[:cfg.dataset.max_examples]}
        candidates = candidates.filter(lambda pid: pid in keep, input_columns="problem_id", keep_in_memory=True)
    indices = candidates["candidate_index"] if "candidate_index" in candidates.column_names else range(len(candidates))
    model, tokenizer = _load_model(cfg)
    scored = score_conversations(model, tokenizer, candidates["problem"], candidates["response"],
                                 batch_size=cfg.dataset.batch_size, max_length=cfg.model.max_length,
                                 max_batch_tokens=cfg.dataset.max_batch_tokens, token_cache=cfg.paths.token_cache)
    results = best_of_n_metrics(candidates["problem_id"], list(indices), scored.scores.tolist(),
                                candidates["correct"], cfg.bootstrap_samples, cfg.seed)
    results.update({
        "accuracy": results["best_of_n_accuracy"],
        "data": source,
        "split": cfg.best_of_n.split,
        "length_budget": scored.budget,
        "candidates_cut": scored.cut_counts(),
        "seconds": round(scored.seconds, 2),
    })
    return results


def _log_to_wandb(cfg: DictConfig, results: dict[str, Any]) -> None:
    if not cfg.logging.wandb:
        return
    import wandb

    run = wandb.init(project=cfg.logging.project, name=cfg.logging.run_name or f"eval-{cfg.name}",
                     config=results["config"], job_type="eval")
    run.log({key: value for key, value in results.items() if isinstance(value, int | float)})
    run.finish()


def _summary(results: dict[str, Any], path: Path) -> str:
    lines = [f"== evaluation {results['name']} ({results['mode']}) — model {results['model']}"]
    if results["mode"] in BENCHMARK_MODES:
        key = "best_of_k" if results["mode"] == "best_of_k" else "score"
        low, high = results[f"{key}_interval"]
        lines.append(f"{key} {results[key]:.4f}  (95% CI {low:.4f}–{high:.4f})")
        for group in ("sections", "subsets"):
            for name, value in results.get(group, {}).items():
                shown = value if isinstance(value, int | float) else value.get(key)
                lines.append(f"  {group[:-1]} {name:<24} {shown:.4f}")
        lines.append(f"results: {path}")
        return "\n".join(lines)
    low, high = results["ci95"]
    if results["mode"] == "best_of_n":
        lines += [
            f"problems {results['num_problems']}, candidates {results['num_candidates']}",
            f"best-of-n {results['best_of_n_accuracy']:.4f}  (95% CI {low:.4f}–{high:.4f})",
            f"oracle {results['oracle_accuracy']:.4f}   first sample {results['first_sample_accuracy']:.4f}   "
            f"random pick {results['random_pick_accuracy']:.4f}",
        ]
    else:
        lines += [
            f"accuracy {results['accuracy']:.4f}  (95% CI {low:.4f}–{high:.4f})   "
            f"{results['correct']}/{results['num_pairs']} pairs, {results['ties']} ties, "
            f"mean margin {results['mean_margin']:.4f}",
            f"{results['distinct_conversations']} distinct conversations, {results['pairs_per_second']} pairs/s; "
            f"length budget {results['length_budget']} tokens: {describe_cuts(results)}",
        ]
        for kind, row in results.get("accuracy_by_kind", {}).items():
            lines.append(f"  {kind:<22} {row['accuracy']:.4f}  ({row['num_pairs']} pairs, {row['ties']} ties)")
        for subset, row in results.get("accuracy_by_subset", {}).items():
            lines.append(f"  subset {subset:<15} {row['accuracy']:.4f}  ({row['num_pairs']} pairs, {row['ties']} ties)")
    lines.append(f"results: {path}")
    return "\n".join(lines)

