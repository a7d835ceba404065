"""The scoring engine shared by evaluation, best-of-n and active-learning selection.

The original scored one pair at a time (batch 1, two forwards per pair). Here each *distinct* conversation is
scored once (generated pair data reuses answers), in length-sorted batches, streamed chunk by chunk so memory
does not grow with the data, and split across processes under `accelerate launch`.
"""

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import gather_object, parse_flag_from_env
from tqdm.auto import tqdm

from reward_transfer.conversations import CUT_NAMES, ScoringEncoded, encode_for_scoring, problem_key
from reward_transfer.errors import UserError
from reward_transfer.models import load_reward_model, reward_token_id, unwrap_model
from reward_transfer.token_cache import TokenCache

__all__ = ["PairScores", "ScoredConversations", "load_reward_model", "model_context", "process_state",
           "score_conversations", "score_pairs", "score_pairs_with_stats", "token_budget_batches"]

log = logging.getLogger(__name__)

# Conversations tokenized, sorted and scored together; bounds memory whatever the number of pairs.
CHUNK_SIZE = 4096
# Padded tokens per forward pass by default (16 conversations of 1024 tokens, or 2 of 8192).
DEFAULT_BATCH_TOKENS = 16384


@dataclass
class ScoredConversations:
    """One score per requested conversation, plus what the scoring had to do to get it."""

    scores: np.ndarray
    cuts: np.ndarray  # per requested conversation: CUT_NONE | CUT_PROMPT | CUT_ANSWER (conversations.py)
    input_hashes: np.ndarray  # per requested conversation: a hash of the token ids scored (pair sides compared)
    distinct: int
    tokens: int
    seconds: float
    budget: int
    tokenized_before: int = 0  # distinct conversations whose ids came from the token cache
    features: np.ndarray | None = None  # per requested conversation, when asked for (`feature_dim`)

    def cut_counts(self, rows: Sequence[int] | None = None) -> dict[str, int]:
        """How many (distinct, or of `rows`) conversations lost the start of their prompt / of their answer."""
        cuts = self.cuts if rows is None else self.cuts[np.asarray(rows, dtype=np.int64)]
        return {name: int((cuts == code).sum()) for code, name in CUT_NAMES.items()}


@dataclass
class PairScores:
    """Chosen and rejected scores of each pair, plus what scoring did to them (see `cut_summary`)."""

    chosen: list[float]
    rejected: list[float]
    distinct: int
    tokens: int
    seconds: float
    budget: int
    cuts: dict[str, int]  # pairs with a side cut at the prompt's start / at the answer's start
    identical_inputs: int  # pairs whose two sides were scored on the same token ids (ties by construction)
    chosen_features: np.ndarray | None = None  # [pairs, feature_dim] when asked for
    rejected_features: np.ndarray | None = None

    def cut_summary(self) -> dict[str, Any]:
        """The record results.json and the selection summary keep: the budget and every pair it cut, and how."""
        return {"length_budget": self.budget, "pairs_cut": self.cuts, "pairs_scored_on_identical_inputs":
                self.identical_inputs}


def process_state() -> PartialState:
    """This process's place among those a launcher started (accelerate, torchrun); one process otherwise.

    Without GPUs, launched processes talk over gloo on the CPU: accelerate would otherwise give each of them
    `DistributedType.NO`, and every process would score everything.
    """
    launched = int(os.environ.get("LOCAL_RANK", -1)) != -1 or int(os.environ.get("WORLD_SIZE", 1)) > 1
    cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or (launched and not torch.cuda.is_available())
    return PartialState(cpu=cpu)


def _forward_scores(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    # No KV cache: scoring never decodes, and remote code written for transformers 4 (InternLM2) builds its
    # cache through `DynamicCache.from_legacy_cache`, which transformers 5 removed.
    output = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    logits = output.logits if hasattr(output, "logits") else output[0]
    if logits.dim() == 2:
        logits = logits[:, 0]
    return logits.float()


class HeadFeatures:
    """The reward head's input at each row's scored position (the last attended token of a right-padded row),
    projected to `dim` dimensions by a fixed seeded Gaussian matrix: the features selection strategies use, taken
    from the scoring pass itself."""

    def __init__(self, model, dim: int):
        from reward_transfer.models import reward_head_name

        self.head = getattr(unwrap_model(model), reward_head_name(model))
        hidden = next(m for m in self.head.modules() if isinstance(m, torch.nn.Linear)).in_features
        generator = torch.Generator().manual_seed(0)
        self.projection = torch.randn(hidden, dim, generator=generator) / dim ** 0.5
        self.captured: list[torch.Tensor] = []

    def __enter__(self) -> "HeadFeatures":
        self.handle = self.head.register_forward_hook(lambda _m, inputs, _o: self.captured.append(inputs[0]))
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()

    def take(self, attention_mask: torch.Tensor) -> np.ndarray:
        hidden = self.captured.pop()
        self.captured.clear()
        ends = attention_mask.sum(dim=1) - 1
        rows = hidden[torch.arange(hidden.shape[0], device=hidden.device), ends].float()
        return (rows @ self.projection.to(rows.device)).cpu().numpy()


def token_budget_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int) -> list[list[int]]:
    """Indices, longest first, in batches of at most `batch_size` rows whose padded size (rows × longest row) stays
    within `max_batch_tokens`; a row longer than that alone is a batch of one. Long conversations never share a
    batch that would run out of memory, short ones fill theirs."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for index in order:
        if batches and len(batches[-1]) < batch_size and (len(batches[-1]) + 1) * lengths[batches[-1][0]] \
                <= max_batch_tokens:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


def _pad(rows: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # Right padding: the scored token (rightmost non-pad, or the end of the attention mask) is unchanged
    # by the padding, so batched scores equal one-at-a-time scores.
    width = max(len(ids) for ids in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, ids in enumerate(rows):
        input_ids[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, :len(ids)] = 1
    return input_ids.to(device), attention_mask.to(device)


def _prepare(model, tokenizer) -> int:
    """Make batched scoring well defined: a pad id known to model and tokenizer; returns that id."""
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        raise UserError("tokenizer has no pad token; load it with reward_transfer.models.load_tokenizer")
    config = unwrap_model(model).config.get_text_config()
    if config.pad_token_id is None:
        config.pad_token_id = pad_id
    if config.pad_token_id != pad_id:
        raise UserError(
            f"model pad_token_id {config.pad_token_id} differs from the tokenizer's {pad_id}: "
            "the scored token position would be wrong in a padded batch"
        )
    return pad_id


def model_context(model, tokenizer) -> int:
    """The longest input the model takes: its config's `max_position_embeddings` (else the tokenizer's limit)."""
    config = unwrap_model(model).config.get_text_config()
    for value in (getattr(config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)):
        if isinstance(value, int) and 0 < value < 10_000_000:
            return value
    raise UserError("the model's context length is unknown (no max_position_embeddings): set model.max_length")


@dataclass
class _Shard:
    scores: np.ndarray
    cuts: np.ndarray
    hashes: np.ndarray
    tokens: int
    cached: int = 0  # conversations whose ids came from the token cache
    features: np.ndarray | None = None  # [conversations, feature_dim]: projected head inputs (HeadFeatures)


def _score_shard(model, tokenizer, conversations: list[tuple[str, str]], batch_size: int, budget: int,
                 max_batch_tokens: int, advance, cache: TokenCache, feature_dim: int | None = None) -> _Shard:
    """Scores of `conversations` (in order), how each was cut to the budget, a hash of its ids, tokens scored."""
    pad_id = _prepare(model, tokenizer)
    token_to_append = reward_token_id(model)

    def encode(problem, answer) -> ScoringEncoded:
        def fresh() -> tuple[list[int], int]:
            item = encode_for_scoring(tokenizer, problem, answer, budget, token_to_append)
            return item.input_ids, item.cut

        return ScoringEncoded(*cache.get(problem, answer, fresh))

    device = next(model.parameters()).device
    shard = _Shard(np.empty(len(conversations)), np.zeros(len(conversations), dtype=np.int8),
                   np.empty(len(conversations), dtype=np.uint64), 0,
                   features=None if not feature_dim else np.empty((len(conversations), feature_dim), np.float32))
    features = HeadFeatures(model, feature_dim) if feature_dim else contextlib.nullcontext()
    with torch.inference_mode(), features:
        for chunk_start in range(0, len(conversations), CHUNK_SIZE):
            chunk = range(chunk_start, min(chunk_start + CHUNK_SIZE, len(conversations)))
            encoded = [encode(*conversations[i]) for i in chunk]
            cache.save()
            shard.cached = cache.hits
            for offset, item in zip(chunk, encoded, strict=True):
                shard.cuts[offset] = item.cut
                shard.hashes[offset] = _ids_hash(item.input_ids)
            for batch in token_budget_batches([len(e.input_ids) for e in encoded], batch_size, max_batch_tokens):
                rows = [encoded[i].input_ids for i in batch]
                shard.tokens += sum(len(ids) for ids in rows)
                input_ids, attention_mask = _pad(rows, pad_id, device)
                where = [chunk[i] for i in batch]
                shard.scores[where] = _forward_scores(model, input_ids, attention_mask).cpu().numpy()
                if feature_dim:
                    shard.features[where] = features.take(attention_mask)
                advance(len(batch))
    return shard


def _ids_hash(ids: list[int]) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.blake2b(np.asarray(ids, dtype=np.int64).tobytes(), digest_size=8)
                                    .digest(), "little"))


def score_conversations(
    model,
    tokenizer,
    problems: Sequence[str],
    answers: Sequence[str],
    batch_size: int = 16,
    max_length: int | None = None,
    max_batch_tokens: int = DEFAULT_BATCH_TOKENS,
    progress: bool = True,
    num_pairs: int | None = None,
    token_cache: str | Path | None = None,
    feature_dim: int | None = None,
) -> ScoredConversations:
    """Reward of each (problem, answer) conversation; duplicates are scored once, results come back in order.

    `max_length`: the length budget (None: the model's context); a longer conversation loses the start of its
    prompt (`conversations.encode_for_scoring`). Batches hold at most `batch_size` conversations and
    `max_batch_tokens` padded tokens. Under `accelerate launch` each process scores a strided share of the
    distinct conversations and every process receives all scores. Non-finite scores (a broken model) raise
    UserError. `num_pairs` (when the conversations are pair sides) turns the progress bar's rate into pairs/s.
    `token_cache`: the folder of the run's token cache (token_cache.py; None: tokenise everything here).
    `feature_dim`: also return each conversation's head input, projected to that many dimensions (`HeadFeatures`).
    """
    if len(problems) != len(answers):
        raise ValueError(f"{len(problems)} problems but {len(answers)} answers")
    if batch_size < 1 or max_batch_tokens < 1:
        raise UserError(f"batch_size and max_batch_tokens must be at least 1, got {batch_size}, {max_batch_tokens}")
    started = time.perf_counter()
    budget = max_length or model_context(model, tokenizer)
    distinct_index: dict[tuple[str, str], int] = {}
    distinct = []
    slot = np.empty(len(problems), dtype=np.int64)
    for row, (problem, answer) in enumerate(zip(problems, answers, strict=True)):
        key = (problem_key(problem), answer)
        if key not in distinct_index:
            distinct_index[key] = len(distinct)
            distinct.append((problem, answer))
        slot[row] = distinct_index[key]
    del distinct_index

    state = process_state()
    mine = [distinct[i] for i in range(state.process_index, len(distinct), state.num_processes)]
    bar = tqdm(total=len(distinct), unit="conv", desc="scoring", dynamic_ncols=True,
               disable=not progress or not state.is_main_process)

    def advance(done: int) -> None:
        bar.update(done * state.num_processes)  # the other processes move at about the same pace
        if num_pairs:
            pairs_done = num_pairs * bar.n / len(distinct)
            bar.set_postfix_str(f"{pairs_done / max(time.perf_counter() - started, 1e-9):.1f} pairs/s")

    was_training = model.training
    model.eval()
    try:
        cache = TokenCache(token_cache, tokenizer, reward_token_id(model), f"score:{budget}")
        shard = _score_shard(model, tokenizer, mine, batch_size, budget, max_batch_tokens, advance, cache,
                             feature_dim)
    finally:
        bar.close()
        model.train(was_training)

    shares = gather_object([(state.process_index, shard)])
    merged = _Shard(np.empty(len(distinct)), np.zeros(len(distinct), dtype=np.int8),
                    np.empty(len(distinct), dtype=np.uint64), sum(share.tokens for _, share in shares),
                    features=None if not feature_dim else np.empty((len(distinct), feature_dim), np.float32))
    for rank, share in shares:
        merged.scores[rank::state.num_processes] = share.scores
        merged.cuts[rank::state.num_processes] = share.cuts
        merged.hashes[rank::state.num_processes] = share.hashes
        if feature_dim:
            merged.features[rank::state.num_processes] = share.features
    bad = np.flatnonzero(~np.isfinite(merged.scores))
    if len(bad):
        raise UserError(
            f"the reward model gave non-finite scores (NaN/inf) for {len(bad)} of {len(merged.scores)} "
            f"conversations (first: answer starting {distinct[bad[0]][1][:60]!r}); refusing to use them"
        )
    return ScoredConversations(scores=merged.scores[slot], cuts=merged.cuts[slot], input_hashes=merged.hashes[slot],
                               distinct=len(distinct), tokens=merged.tokens, seconds=time.perf_counter() - started,
                               budget=budget, tokenized_before=sum(share.cached for _, share in shares),
                               features=None if merged.features is None else merged.features[slot])


def score_pairs_with_stats(model, tokenizer, problems: Sequence[str], accepted: Sequence[str],
                           rejected: Sequence[str], batch_size: int = 16, max_length: int | None = None,
                           max_batch_tokens: int = DEFAULT_BATCH_TOKENS, progress: bool = True,
                           token_cache: str | Path | None = None, feature_dim: int | None = None) -> PairScores:
    """`score_pairs` plus what scoring did: distinct conversations, tokens, time, the pairs the budget cut."""
    if not len(problems) == len(accepted) == len(rejected):
        raise ValueError("problems, accepted and rejected must have the same length")
    num = len(problems)
    scored = score_conversations(
        model, tokenizer, [*problems, *problems], [*accepted, *rejected], batch_size=batch_size,
        max_length=max_length, max_batch_tokens=max_batch_tokens, progress=progress, num_pairs=num,
        token_cache=token_cache, feature_dim=feature_dim,
    )
    sides = scored.cuts.reshape(2, num)
    cuts = {name: int((sides == code).any(axis=0).sum()) for code, name in CUT_NAMES.items()}
    identical = int((scored.input_hashes[:num] == scored.input_hashes[num:]).sum())
    if any(cuts.values()) or identical:
        log.warning("of %d pairs, %d longer than the %d-token budget were scored without the start of their prompt "
                    "and %d without the start of an answer (prompt dropped); %d scored on identical inputs", num,
                    cuts["prompt_start"], scored.budget, cuts["answer_start"], identical)
    return PairScores(
        chosen=scored.scores[:num].tolist(), rejected=scored.scores[num:].tolist(), distinct=scored.distinct,
        tokens=scored.tokens, seconds=scored.seconds, budget=scored.budget, cuts=cuts, identical_inputs=identical,
        chosen_features=None if scored.features is None else scored.features[:num],
        rejected_features=None if scored.features is None else scored.features[num:],
    )


def score_pairs(model, tokenizer, problems: Sequence[str], accepted: Sequence[str], rejected: Sequence[str],
                batch_size: int = 16, max_length: int | None = None) -> tuple[list[float], list[float]]:
    """Rewards of the chosen and of the rejected answer of each pair, in fp32 precision, in input order."""
    scores = score_pairs_with_stats(model, tokenizer, problems, accepted, rejected, batch_size, max_length)
    return scores.chosen, scores.rejected
