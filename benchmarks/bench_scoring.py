"""Pairs/s of `score_pairs` against the original method (batch 1, two forwards per pair, no sorting).

Same model, same pairs, one run. The pairs are drawn like generated data: `--pairs-per-problem` pairs per
problem from `--candidates` candidate answers of varied length, so answers repeat across pairs.

    python benchmarks/bench_scoring.py                      # tiny offline RM on CPU, fp32
    python benchmarks/bench_scoring.py --threads 1          # on a CPU shared with other jobs
    python benchmarks/bench_scoring.py --model internlm/internlm2-7b-reward --device cuda --dtype bf16
"""

import argparse
import itertools
import random
import time

import numpy as np
import torch

from reward_transfer.conversations import encode_for_scoring
from reward_transfer.models import reward_token_id
from reward_transfer.scoring import load_reward_model, model_context, score_pairs_with_stats
from reward_transfer.tiny import CORPUS, ensure_tiny_models


def make_pairs(problems: int, candidates: int, pairs_per_problem: int, seed: int) -> tuple[list, list, list]:
    """(problems, accepted, rejected): distinct candidate pairs per problem, answers 20–600 words long."""
    rng = random.Random(seed)
    words = CORPUS.split()
    rows: tuple[list, list, list] = ([], [], [])
    for p in range(problems):
        problem = f"Problem {p}: " + " ".join(rng.choices(words, k=rng.randint(15, 60)))
        answers = [" ".join(rng.choices(words, k=rng.randint(20, 600))) for _ in range(candidates)]
        for first, second in rng.sample(list(itertools.combinations(range(candidates), 2)), pairs_per_problem):
            rows[0].append(problem)
            rows[1].append(answers[first])
            rows[2].append(answers[second])
    return rows


def score_original(model, tokenizer, problems, accepted, rejected, budget: int) -> tuple[list, list, int]:
    """The original evaluation loop: each pair, chosen then rejected, one unpadded forward each (same protocol)."""
    device = next(model.parameters()).device
    extra = reward_token_id(model)
    chosen, rejected_scores, tokens = [], [], 0
    with torch.inference_mode():
        for problem, good, bad in zip(problems, accepted, rejected, strict=True):
            for answer, out in ((good, chosen), (bad, rejected_scores)):
                ids = encode_for_scoring(tokenizer, problem, answer, budget, extra).input_ids
                tokens += len(ids)
                out.append(model(input_ids=torch.tensor([ids], device=device)).logits[0, 0].float().item())
    return chosen, rejected_scores, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="reward model (default: the tiny offline RM)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: GPU if any)")
    parser.add_argument("--dtype", default=None, help="fp32, bf16, ... (default: bf16 on capable GPUs, else fp32)")
    parser.add_argument("--problems", type=int, default=40)
    parser.add_argument("--candidates", type=int, default=6)
    parser.add_argument("--pairs-per-problem", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=None, help="length budget (default: the model's context)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 avoids thread thrashing on a busy shared machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model_path = args.model or str(ensure_tiny_models()["rm"])
    model, tokenizer = load_reward_model(model_path, device=args.device, dtype=args.dtype)
    problems, accepted, rejected = make_pairs(args.problems, args.candidates, args.pairs_per_problem, args.seed)
    num_pairs = len(problems)
    print(f"model {model_path} on {next(model.parameters()).device} in {next(model.parameters()).dtype}; "
          f"{num_pairs} pairs ({args.pairs_per_problem} per problem from {args.candidates} candidates)")

    score_pairs_with_stats(model, tokenizer, problems[:8], accepted[:8], rejected[:8], progress=False)  # warm-up
    started = time.perf_counter()
    budget = args.max_length or model_context(model, tokenizer)
    base_chosen, base_rejected, base_tokens = score_original(model, tokenizer, problems, accepted, rejected, budget)
    base_seconds = time.perf_counter() - started
    ours = score_pairs_with_stats(model, tokenizer, problems, accepted, rejected, batch_size=args.batch_size,
                                  max_length=args.max_length, progress=False)

    diff = float(np.max(np.abs(np.r_[ours.chosen, ours.rejected] - np.r_[base_chosen, base_rejected])))
    base_rate, our_rate = num_pairs / base_seconds, num_pairs / ours.seconds
    print(f"original (batch 1, 2 forwards/pair): {base_rate:8.1f} pairs/s  {base_tokens / base_seconds:10.0f} tokens/s"
          f"  ({base_seconds:.1f} s, {base_tokens} tokens)")
    print(f"score_pairs (batch {args.batch_size}, sorted, deduped): {our_rate:8.1f} pairs/s  "
          f"{ours.tokens / ours.seconds:10.0f} tokens/s  ({ours.seconds:.1f} s, {ours.tokens} tokens, "
          f"{ours.distinct} distinct conversations of {2 * num_pairs})")
    print(f"speed-up: {our_rate / base_rate:.2f}x   max |score difference|: {diff:.2e}")
    if diff > 1e-4 and next(model.parameters()).dtype == torch.float32:
        raise SystemExit(f"scores differ by {diff:.2e} > 1e-4")


if __name__ == "__main__":
    main()
