"""The pairs a reward-model run trains on: sampled, checked, and tokenised by the scoring protocol of
`conversations` (through the run's token cache), long pairs truncated or dropped."""

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset
from omegaconf import DictConfig, OmegaConf

from reward_transfer.config import DatasetSpec
from reward_transfer.conversations import Encoded, encode_conversation
from reward_transfer.data import PAIR_COLUMNS, load_datasets
from reward_transfer.errors import UserError
from reward_transfer.token_cache import TokenCache

log = logging.getLogger(__name__)


@dataclass
class PairStats:
    """What the length policy did to the pairs; reported in the summary, the model card and training_summary."""

    loaded: int
    kept: int
    truncated: int
    dropped_too_long: int
    dropped_identical: int
    policy: str
    max_length: int
    sides_from_cache: int = 0  # pair sides whose ids an earlier step of the run had tokenised


SCORE_COLUMNS = ("accepted_score", "rejected_score")


def encode_pairs(rows: Dataset, tokenizer: Any, max_length: int, policy: str, scored_token: int | None,
                 cache_root: str | Path | None = None, margin_scale: float = 0.0, **map_options: Any
                 ) -> tuple[Dataset, PairStats]:
    """Token ids of both sides of each pair (the scoring protocol of `conversations`), long pairs handled by
    `policy`; conversations tokenised by an earlier step of the run come from its token cache (`cache_root`).
    `margin_scale` > 0 adds TRL's `margin` column: the scale times the verifier's score gap of the pair."""
    limit = max_length if policy == "truncate" else None
    cache = TokenCache(cache_root, tokenizer, scored_token, f"train:{limit}")

    def side(problem: Any, answer: str) -> Encoded:
        def fresh() -> tuple[list[int], int]:
            item = encode_conversation(tokenizer, problem, answer, limit, scored_token)
            return item.input_ids, int(item.truncated) | (0 if item.fits else 2)

        ids, flag = cache.get(problem, answer, fresh)
        return Encoded(ids, truncated=bool(flag & 1), fits=not flag & 2)

    def encode(row: dict) -> dict:
        chosen, rejected = side(row["problem"], row["accepted"]), side(row["problem"], row["rejected"])
        too_long = not (chosen.fits and rejected.fits) or max(len(chosen.input_ids), len(rejected.input_ids)) > max_length
        encoded = {"chosen_ids": chosen.input_ids, "rejected_ids": rejected.input_ids, "too_long": too_long,
                   "truncated": chosen.truncated or rejected.truncated,
                   "identical": chosen.input_ids == rejected.input_ids,
                   "length": max(len(chosen.input_ids), len(rejected.input_ids))}
        if margin_scale:
            encoded["margin"] = margin_scale * (row["accepted_score"] - row["rejected_score"])
        return encoded

    if margin_scale and not set(SCORE_COLUMNS) <= set(rows.column_names):
        raise UserError(f"train.margin_scale={margin_scale} needs the pairs' {' and '.join(SCORE_COLUMNS)} columns "
                        "(generated pairs have them; this data does not)")

    # The fingerprint is given: datasets would otherwise hash `encode`, the cache's memory-mapped tables included.
    fingerprint = hashlib.sha256(f"{rows._fingerprint}{cache.folder}{limit}{scored_token}".encode()).hexdigest()[:16]
    encoded = rows.map(encode, remove_columns=rows.column_names, desc="Tokenizing pairs", new_fingerprint=fingerprint,
                       **map_options)
    cache.save()
    too_long, truncated, identical = (encoded[c] for c in ("too_long", "truncated", "identical"))
    keep = [i for i in range(len(encoded)) if not too_long[i] and not identical[i]]
    stats = PairStats(
        loaded=len(encoded),
        kept=len(keep),
        truncated=sum(t and not d for t, d in zip(truncated, too_long, strict=True)),
        dropped_too_long=sum(too_long),
        dropped_identical=sum(i and not d for i, d in zip(identical, too_long, strict=True)),
        policy=policy,
        max_length=max_length,
        sides_from_cache=cache.hits,
    )
    # Only what the collators read (+ lengths for the sampler); the trainers keep `margin` out of model(**inputs),
    # where remote-code forwards without **kwargs would break on it.
    kept = encoded.select(keep).select_columns(["chosen_ids", "rejected_ids", "length",
                                                *(["margin"] if margin_scale else [])])
    return kept, stats


def load_pair_rows(cfg: DictConfig) -> Dataset:
    """The sampled pair rows (checked before the model is loaded: a bad dataset fails in seconds, not minutes)."""
    specs = [DatasetSpec(**spec) if isinstance(spec, dict) else spec
             for spec in OmegaConf.to_container(cfg.dataset.datasets, resolve=True)]
    rows = load_datasets(specs, cfg.dataset.max_examples, cfg.seed, required_columns=PAIR_COLUMNS)
    wanted = cfg.dataset.max_examples
    if wanted is not None and len(rows) < wanted:
        if cfg.dataset.refuse_short_data:
            raise UserError(f"dataset.max_examples={wanted} but the data has only {len(rows)} pairs "
                            "(dataset.refuse_short_data=true)")
        log.warning("dataset.max_examples=%d but the data has only %d pairs: training on all of them", wanted, len(rows))
    return rows


def encode_rows(cfg: DictConfig, rows: Dataset, tokenizer: Any, scored_token: int | None, cache_dir: Path
                ) -> tuple[Dataset, PairStats]:
    """`encode_pairs` for a run's config; the encoded pairs are written in the run's checkpoint dir (not beside the
    input data, which may be read-only or shared)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    pairs, stats = encode_pairs(rows, tokenizer, cfg.model.max_length, cfg.dataset.long_pairs, scored_token,
                                cfg.paths.token_cache, cfg.train.margin_scale,
                                cache_file_name=str(cache_dir / "encoded-pairs.arrow"))
    log.info("pairs: %d loaded, %d kept, %d truncated, %d dropped as too long, %d dropped as identical; %d sides "
             "tokenised by an earlier step", stats.loaded, stats.kept, stats.truncated, stats.dropped_too_long,
             stats.dropped_identical, stats.sides_from_cache)
    if stats.kept == 0:
        raise UserError(f"no pair fits model.max_length={cfg.model.max_length} "
                        f"(dataset.long_pairs={cfg.dataset.long_pairs})")
    return pairs, stats
