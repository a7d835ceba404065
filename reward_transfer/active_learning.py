"""Stage 4: one round of active-learning pair selection (Algorithm 1 of the paper), as `active_data_selection.py`.

The state is a local DatasetDict: `selected` (L, every pair chosen so far), `rest` (U, the pool not yet chosen)
and `train` (what the next training reads: this round's picks, or all of L under `selection.train_on=all`),
with `al_state.json` (domain, pool size, per-round picks and summaries) beside the splits. Round 1 reads a pair
dataset (its `train` split is the pool); later rounds read and write the state directory.
"""

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from datasets import Dataset, DatasetDict
from omegaconf import DictConfig

from reward_transfer.data import PAIR_COLUMNS, as_pairs, load_table, require_columns, sample_rows
from reward_transfer.errors import UserError
from reward_transfer.hub import push_dataset
from reward_transfer.rerun import refuse_other_settings, result_settings, to_plain
from reward_transfer.selection_schema import (
    RESUMABLE_KEYS,
    SELECTED_INFORMATION,
    STATE_INFO,
    SUMMARY_FILE,
    TRAIN_ON,
)
from reward_transfer.selection_strategies import (
    FEATURE_DIM,
    NEEDS_FEATURES,
    RECORDS_INFORMATION,
    SCORES_NOTHING,
    PoolView,
    StrategyOptions,
    get_strategy,
    information_vectors,
)
from reward_transfer.storage import atomic_directory, ensure_writable, remove_stale_temporaries_of

log = logging.getLogger(__name__)

HISTOGRAM_BINS = 10


@dataclass
class PoolState:
    selected: Dataset
    rest: Dataset
    info: dict[str, Any]
    information: np.ndarray | None = None  # [len(selected), dim]: the record fisher keeps (None: not kept)


def _rows(pairs: Dataset, indices) -> Dataset:
    # In memory: a selection of a loaded dataset would otherwise leave cache files in the input directory.
    return pairs.select(indices, keep_in_memory=True)


def _check_domain(pairs: Dataset, domain: str, source: str) -> None:
    if "domain" not in pairs.column_names or len(pairs) == 0:
        return
    found = set(pairs.unique("domain"))
    if found != {domain}:
        raise UserError(f"{source}: pairs of domain {', '.join(sorted(map(str, found)))}, but domain={domain}")


def load_pool(source: str, domain: str, pool_size: int | None = None, seed: int = 42,
              columns: dict[str, str] | None = None) -> PoolState:
    """The current L and U: from a state directory, or (round 1) the `train` split of a pair dataset, sampled to
    `pool_size` pairs exactly as training samples `dataset.max_examples` (`data.sample_rows`, same seed)."""
    info_path = Path(source).expanduser() / STATE_INFO
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("domain") != domain:
            raise UserError(f"{source}: active-learning state of domain '{info.get('domain')}', "
                            f"but this selection is for domain '{domain}'")
        state = datasets.load_from_disk(str(Path(source).expanduser()))
        missing = {"selected", "rest"} - set(state)
        if missing:
            raise UserError(f"{source}: state without split(s) {', '.join(sorted(missing))}")
        record = Path(source).expanduser() / SELECTED_INFORMATION
        information = np.load(record) if record.is_file() else None
        if information is not None and len(information) != len(state["selected"]):
            raise UserError(f"{record}: {len(information)} rows for {len(state['selected'])} selected pairs")
        return PoolState(state["selected"], state["rest"], info, information)
    pool = as_pairs(load_table(source, "train"), source, columns)
    require_columns(pool, PAIR_COLUMNS, source)
    _check_domain(pool, domain, source)
    if "pair_id" not in pool.column_names:
        log.info("%s has no pair_id column; numbering its train rows 0..%d", source, len(pool) - 1)
        pool = pool.add_column("pair_id", [str(i) for i in range(len(pool))])
    if len(set(pool["pair_id"])) != len(pool):
        raise UserError(f"{source}: pair_id is not unique in the train split")
    if pool_size is not None:
        if pool_size < 1:
            raise UserError(f"dataset.pool_size must be at least 1 (or null), got {pool_size}")
        pool = sample_rows(pool, pool_size, seed, source=source)
    info = {"domain": domain, "pool_source": source, "pool_size": len(pool), "pool_sample": pool_size,
            "pool_seed": seed, "rounds": []}
    return PoolState(_rows(pool, []), pool, info, np.zeros((0, FEATURE_DIM)))


def _check_request(cfg: DictConfig, pool: PoolState, source: str) -> None:
    n, cap = cfg.dataset.pairs_to_select, cfg.dataset.max_to_look_at
    get_strategy(cfg.selection.strategy)  # an unknown name: one line listing the known ones
    if cfg.selection.train_on not in TRAIN_ON:
        raise UserError(f"selection.train_on: '{cfg.selection.train_on}' is not one of {', '.join(TRAIN_ON)}")
    if len(pool.rest) == 0:
        raise UserError(f"{source}: the pool of unselected pairs is empty")
    if n < 1:
        raise UserError(f"dataset.pairs_to_select must be at least 1, got {n}")
    if n > len(pool.rest):
        raise UserError(f"dataset.pairs_to_select={n} but only {len(pool.rest)} pairs are left in the pool ({source})")
    if cap is not None and cap < n:
        raise UserError(f"dataset.max_to_look_at={cap} is smaller than dataset.pairs_to_select={n}")


def _score_pool(cfg: DictConfig, pairs: Dataset, features: bool) -> tuple[PoolView, dict[str, Any]]:
    """The scanned pairs as strategies see them (score gaps; with `features`, each side's projected head input from
    the same pass), and what the length budget did to the pairs (`PairScores.cut_summary`)."""
    from reward_transfer.scoring import (  # torch: only to score
        load_reward_model,
        process_state,
        score_pairs_with_stats,
    )

    model, tokenizer = load_reward_model(
        cfg.model.model_name_or_path, device=cfg.model.device or process_state().device, dtype=cfg.model.dtype,
        tokenizer_name_or_path=cfg.model.tokenizer_name_or_path, trust_remote_code=cfg.model.trust_remote_code)
    scored = score_pairs_with_stats(model, tokenizer, pairs["problem"], pairs["accepted"], pairs["rejected"],
                                    batch_size=cfg.dataset.batch_size, max_length=cfg.model.max_length,
                                    max_batch_tokens=cfg.dataset.max_batch_tokens, token_cache=cfg.paths.token_cache,
                                    feature_dim=FEATURE_DIM if features else None)
    chosen, rejected = np.asarray(scored.chosen), np.asarray(scored.rejected)
    view = PoolView(gaps=chosen - rejected, chosen_features=scored.chosen_features,
                    rejected_features=scored.rejected_features, chosen_scores=chosen, rejected_scores=rejected,
                    prompt_ids=np.asarray([p if isinstance(p, str) else json.dumps(p, sort_keys=True)
                                           for p in pairs["problem"]]))
    return view, scored.cut_summary()


@dataclass
class Choice:
    """One round's picks (indices into U), the scanned pairs and their margins (None: chosen without scoring)."""

    picked: np.ndarray
    scanned: np.ndarray
    margins: np.ndarray | None = None
    scoring: dict[str, Any] | None = None  # the length budget and the pairs it cut
    information: np.ndarray | None = None  # the picks' information vectors, for a strategy that keeps them


def choose(cfg: DictConfig, pool: PoolState, rng: np.random.Generator) -> Choice:
    """Scan (a seeded share of) U, score it, and pick this round's pairs by the strategy."""
    n, cap, name, rest = cfg.dataset.pairs_to_select, cfg.dataset.max_to_look_at, cfg.selection.strategy, pool.rest
    strategy = get_strategy(name)
    options = StrategyOptions(cfg.selection.temperature, cfg.selection.ridge, cfg.selection.ensemble,
                              cfg.selection.ucb_beta, cfg.selection.condition_on_selected)
    if name in SCORES_NOTHING:
        return Choice(strategy(PoolView(gaps=np.zeros(len(rest))), n, rng, options), np.arange(len(rest)))
    scanned = rng.permutation(len(rest))[:cap]
    view, scoring = _score_pool(cfg, _rows(rest, scanned), features=name in NEEDS_FEATURES)
    view.selected_information = pool.information
    local = strategy(view, n, rng, options)
    if len(set(local.tolist())) != n:
        raise RuntimeError(f"selection strategy '{name}' picked {len(set(local.tolist()))} distinct pairs, not {n}")
    information = information_vectors(view)[local] if name in RECORDS_INFORMATION else None
    return Choice(scanned[local], scanned, view.margins, scoring, information)


def _histogram(values: np.ndarray, edges: np.ndarray) -> dict[str, Any]:
    counts, _ = np.histogram(values, bins=edges)
    return {"mean": float(values.mean()), "median": float(np.median(values)), "counts": counts.tolist()}


def _kind_shares(pairs: Dataset, domain: str) -> dict[str, float]:
    from reward_transfer.evaluation import pair_kind

    if not {"accepted_score", "rejected_score"} <= set(pairs.column_names) or len(pairs) == 0:
        return {}
    counts = Counter(pair_kind(domain, a, r) for a, r in zip(pairs["accepted_score"], pairs["rejected_score"],
                                                             strict=True))
    return {kind: count / len(pairs) for kind, count in sorted(counts.items())}


def summarize(domain: str, picked: Dataset, scanned: Dataset, picked_margins: np.ndarray | None,
              scanned_margins: np.ndarray | None) -> dict[str, Any]:
    """Margin histogram and pair-kind shares of the chosen pairs beside those of the scanned pool."""
    summary: dict[str, Any] = {"pair_kinds": {"selected": _kind_shares(picked, domain),
                                              "scanned": _kind_shares(scanned, domain)}}
    if scanned_margins is not None and picked_margins is not None:
        edges = np.histogram_bin_edges(scanned_margins, bins=HISTOGRAM_BINS)
        summary["margin"] = {"bin_edges": edges.tolist(), "selected": _histogram(picked_margins, edges),
                             "scanned": _histogram(scanned_margins, edges)}
    return summary


def _check_conservation(info: dict[str, Any], selected: Dataset, rest: Dataset) -> None:
    selected_ids, rest_ids = set(selected["pair_id"]), set(rest["pair_id"])
    if (len(selected_ids) != len(selected) or len(rest_ids) != len(rest) or selected_ids & rest_ids
            or len(selected) + len(rest) != info["pool_size"]):
        raise RuntimeError("active-learning state lost or duplicated pairs; nothing was written")


def finished_round(cfg: DictConfig, source: str, target: str, round_number: int,
                   settings: dict) -> dict[str, Any] | None:
    """The rerun rule for a state: the summary of this very round when `target` already holds it (None: select).

    A target holding other rounds (e.g. rounds 1–2 when this selection makes round 1) or this round made with other
    settings is refused in one line unless `overwrite=true`; reading and writing one directory (the original code's
    layout) advances it by a round.
    """
    target_path = Path(target).expanduser()
    remove_stale_temporaries_of(target_path)
    if cfg.overwrite or not target_path.is_dir() or not any(target_path.iterdir()):
        return None
    if target_path.resolve() == Path(source).expanduser().resolve():
        return None
    info_path = target_path / STATE_INFO
    if not info_path.is_file():
        raise UserError(f"dataset.output_dataset_name_or_path: {target} holds files that are not an active-learning "
                        "state; choose another directory or set overwrite=true")
    rounds = json.loads(info_path.read_text())["rounds"]
    if len(rounds) != round_number:
        held = "round 1" if len(rounds) == 1 else f"rounds 1–{len(rounds)}"
        raise UserError(f"dataset.output_dataset_name_or_path: {target} holds {held}, but this selection makes "
                        f"round {round_number}; choose another directory or set overwrite=true to replace it")
    refuse_other_settings("active_data_selection", target_path, rounds[-1].get("settings", {}), settings)
    print(f"active_data_selection: {target} already holds round {round_number} with these settings; "
          "nothing to do", flush=True)
    return {k: v for k, v in rounds[-1].items() if k not in ("pair_ids", "settings")}


def select_pairs(cfg: DictConfig) -> dict[str, Any]:
    """Run one selection round: score U (up to `max_to_look_at`), pick pairs, write the new state atomically."""
    from reward_transfer.scoring import process_state

    source, target = cfg.dataset.dataset_name_or_path, cfg.dataset.output_dataset_name_or_path
    ensure_writable(Path(target).expanduser(), "dataset.output_dataset_name_or_path", parent=True)
    pool_seed = cfg.seed if cfg.dataset.pool_seed is None else cfg.dataset.pool_seed
    pool = load_pool(source, cfg.domain, cfg.dataset.pool_size, pool_seed, dict(cfg.dataset.columns))
    _check_request(cfg, pool, source)
    round_number = len(pool.info["rounds"]) + 1
    settings = to_plain(result_settings(cfg, RESUMABLE_KEYS))
    done = finished_round(cfg, source, target, round_number, settings)
    if done is not None:
        return done
    rng = np.random.default_rng([cfg.seed, round_number])
    choice = choose(cfg, pool, rng)
    picked, margins, scanned = choice.picked, choice.margins, choice.scanned

    picked_set = set(picked.tolist())
    chosen = _rows(pool.rest, picked)
    rest = _rows(pool.rest, [i for i in range(len(pool.rest)) if i not in picked_set])
    selected = datasets.concatenate_datasets([pool.selected, chosen]) if len(pool.selected) else chosen
    _check_conservation(pool.info, selected, rest)
    margin_of = None if margins is None else dict(zip(scanned.tolist(), margins.tolist(), strict=True))
    summary = {
        "round": round_number,
        "model": cfg.model.model_name_or_path if margins is not None else None,
        "strategy": cfg.selection.strategy,
        "temperature": cfg.selection.temperature,
        "train_on": cfg.selection.train_on,
        "seed": cfg.seed,
        "pool_left_before": len(pool.rest),
        "scanned": len(scanned),
        "selected_this_round": len(chosen),
        **({"scoring": choice.scoring} if choice.scoring else {}),
        "selected_total": len(selected),
        "pool_left_after": len(rest),
        **summarize(cfg.domain, chosen, _rows(pool.rest, scanned) if margins is not None else pool.rest,
                    None if margin_of is None else np.array([margin_of[i] for i in picked.tolist()]), margins),
    }
    info = dict(pool.info)
    info["rounds"] = [*pool.info["rounds"], {**summary, "pair_ids": list(chosen["pair_id"]), "settings": settings}]
    state = DatasetDict({"train": chosen if cfg.selection.train_on == "new" else selected,
                         "selected": selected, "rest": rest})
    # Kept only while every selected pair has its row (a chain of one strategy that records them).
    information = None if pool.information is None or choice.information is None else np.vstack(
        [pool.information, choice.information])
    if process_state().is_main_process:
        _write_state(state, info, summary, target, information)
        if cfg.huggingface.push_to_hub:
            push_dataset(state, cfg.huggingface.repo_id, cfg.huggingface.private,
                         retry="push the state directory with `datasets.load_from_disk(...).push_to_hub`")
        print(_summary_text(summary, target), flush=True)
    return summary


def _write_state(state: DatasetDict, info: dict[str, Any], summary: dict[str, Any], target: str,
                 information: np.ndarray | None) -> None:
    # Loaded splits may be memory-mapped from `target` itself: everything is written to a temporary directory
    # first, which then replaces `target` in one rename.
    with atomic_directory(Path(target).expanduser()) as tmp:
        # An empty split gets 0 shards by default, which `load_from_disk` cannot read back.
        state.save_to_disk(str(tmp), num_shards={split: 1 for split, rows in state.items() if len(rows) == 0})
        (tmp / STATE_INFO).write_text(json.dumps(info, indent=2) + "\n")
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        if information is not None:
            np.save(tmp / SELECTED_INFORMATION, information.astype(np.float32))


def _summary_text(summary: dict[str, Any], target: str) -> str:
    lines = [
        f"== active-learning round {summary['round']} ({summary['strategy']}"
        + (f", T={summary['temperature']}" if summary["strategy"] == "margin" else "") + ")",
        f"pool left {summary['pool_left_before']} → scanned {summary['scanned']} → selected "
        f"{summary['selected_this_round']} (total {summary['selected_total']}, left {summary['pool_left_after']})",
    ]
    if "scoring" in summary:
        from reward_transfer.evaluation import describe_cuts

        lines.append(f"scoring: length budget {summary['scoring']['length_budget']} tokens, "
                     f"{describe_cuts(summary['scoring'])}")
    if "margin" in summary:
        margin = summary["margin"]
        lines.append(f"margin: selected mean {margin['selected']['mean']:.4f} median {margin['selected']['median']:.4f}"
                     f" | scanned mean {margin['scanned']['mean']:.4f} median {margin['scanned']['median']:.4f}")
        lines.append("  histogram (selected / scanned):")
        edges = margin["bin_edges"]
        for k, (ours, theirs) in enumerate(zip(margin["selected"]["counts"], margin["scanned"]["counts"],
                                               strict=True)):
            lines.append(f"  [{edges[k]:8.4f}, {edges[k + 1]:8.4f})  {ours:6d} / {theirs:6d}")
    for kind, share in summary["pair_kinds"]["selected"].items():
        scanned = summary["pair_kinds"]["scanned"].get(kind, 0.0)
        lines.append(f"  {kind:<22} {share:6.1%} of selected, {scanned:6.1%} of scanned")
    lines.append(f"state: {target}")
    return "\n".join(lines)
