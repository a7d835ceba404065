"""The scoring engine shared by evaluation, best-of-n and active-learning selection.

The original scored one pair at a time (batch 1, two forwards per pair). Here each *distinct* conversation is
scored once (generated pair data reuses answers), in length-sorted batches, streamed chunk by chunk so memory
does not grow with the data, and split across processes under `accelerate launch`.
"""

import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import gather_object, parse_flag_from_env
from tqdm.auto import tqdm

from reward_transfer.conversations import encode_conversation, problem_key
from reward_transfer.errors import UserError
from reward_transfer.models import load_reward_model, reward_token_id, unwrap_model

__all__ = ["PairScores", "ScoredConversations", "load_reward_model", "process_state", "score_conversations",
           "score_pairs", "score_pairs_with_stats"]

log = logging.getLogger(__name__)

# Conversations tokenized, sorted and scored together; bounds memory whatever the number of pairs.
CHUNK_SIZE = 4096


@dataclass
class ScoredConversations:
    """One score per requested conversation, plus what the scoring had to do to get it."""

    scores: np.ndarray
    distinct: int
    truncated: int
    tokens: int
    seconds: float


@dataclass
class PairScores:
    """Chosen and rejected scores of each pair, plus the scoring statistics."""

    chosen: list[float]
    rejected: list[float]
    distinct: int
    truncated: int
    tokens: int
    seconds: float


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


def _batches(order: Sequence[int], batch_size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


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


def _score_shard(model, tokenizer, conversations: list[tuple[str, str]], batch_size: int, max_length: int,
                 advance) -> tuple[np.ndarray, int, int]:
    """Scores of `conversations` (in order), how many were truncated, and the tokens scored."""
    pad_id = _prepare(model, tokenizer)
    token_to_append = reward_token_id(model)
    device = next(model.parameters()).device
    scores = np.empty(len(conversations), dtype=np.float64)
    truncated = tokens = 0
    with torch.inference_mode():
        for chunk_start in range(0, len(conversations), CHUNK_SIZE):
            chunk = range(chunk_start, min(chunk_start + CHUNK_SIZE, len(conversations)))
            encoded = []
            for index in chunk:
                item = encode_conversation(tokenizer, *conversations[index], max_length=max_length,
                                           reward_token_id=token_to_append)
                truncated += item.truncated
                # A prompt alone longer than max_length: training drops such a pair, scoring still owes a
                # score, so it reads the first max_length tokens.
                encoded.append(item.input_ids[:max_length])
            # Longest first: padding stays small and an out-of-memory batch shows up at once.
            order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
            for batch in _batches(order, batch_size):
                rows = [encoded[i] for i in batch]
                tokens += sum(len(ids) for ids in rows)
                scores[[chunk[i] for i in batch]] = _forward_scores(model, *_pad(rows, pad_id, device)).cpu().numpy()
                advance(len(batch))
    return scores, truncated, tokens


def score_conversations(
    model,
    tokenizer,
    problems: Sequence[str],
    answers: Sequence[str],
    batch_size: int = 16,
    max_length: int = 1024,
    progress: bool = True,
    num_pairs: int | None = None,
) -> ScoredConversations:
    """Reward of each (problem, answer) conversation; duplicates are scored once, results come back in order.

    Under `accelerate launch` each process scores a strided share of the distinct conversations and every
    process receives all scores. Non-finite scores (a broken model) raise UserError. `num_pairs` (when the
    conversations are pair sides) turns the progress bar's rate into pairs/s.
    """
    if len(problems) != len(answers):
        raise ValueError(f"{len(problems)} problems but {len(answers)} answers")
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}")
    started = time.perf_counter()
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
        my_scores, truncated, tokens = _score_shard(model, tokenizer, mine, batch_size, max_length, advance)
    finally:
        bar.close()
        model.train(was_training)

    shares = gather_object([(state.process_index, my_scores, truncated, tokens)])
    scores = np.empty(len(distinct), dtype=np.float64)
    for rank, values, _, _ in shares:
        scores[rank::state.num_processes] = values
    bad = np.flatnonzero(~np.isfinite(scores))
    if len(bad):
        raise UserError(
            f"the reward model gave non-finite scores (NaN/inf) for {len(bad)} of {len(scores)} conversations "
            f"(first: answer starting {distinct[bad[0]][1][:60]!r}); refusing to use them"
        )
    return ScoredConversations(
        scores=scores[slot],
        distinct=len(distinct),
        truncated=sum(share[2] for share in shares),
        tokens=sum(share[3] for share in shares),
        seconds=time.perf_counter() - started,
    )


def score_pairs_with_stats(model, tokenizer, problems: Sequence[str], accepted: Sequence[str],
                           rejected: Sequence[str], batch_size: int = 16, max_length: int = 1024,
                           progress: bool = True) -> PairScores:
    """`score_pairs` plus the statistics (distinct conversations, truncated, tokens, time) for reports."""
    if not len(problems) == len(accepted) == len(rejected):
        raise ValueError("problems, accepted and rejected must have the same length")
    num = len(problems)
    scored = score_conversations(
        model, tokenizer, [*problems, *problems], [*accepted, *rejected], batch_size=batch_size,
        max_length=max_length, progress=progress, num_pairs=num,
    )
    if scored.truncated:
        log.info("%d of %d distinct conversations were longer than %d tokens and had their answer cut",
                 scored.truncated, scored.distinct, max_length)
    return PairScores(
        chosen=scored.scores[:num].tolist(), rejected=scored.scores[num:].tolist(), distinct=scored.distinct,
        truncated=scored.truncated, tokens=scored.tokens, seconds=scored.seconds,
    )


def score_pairs(model, tokenizer, problems: Sequence[str], accepted: Sequence[str], rejected: Sequence[str],
                batch_size: int = 16, max_length: int = 1024) -> tuple[list[float], list[float]]:
    """Rewards of the chosen and of the rejected answer of each pair, in fp32 precision, in input order."""
    scores = score_pairs_with_stats(model, tokenizer, problems, accepted, rejected, batch_size, max_length)
    return scores.chosen, scores.rejected

