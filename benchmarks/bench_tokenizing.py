"""Tokenise once: a step's pairs tokenised afresh against the same pairs read from the run's token cache.

The tokenizer is the InternLM2 stand-in's: the slow SentencePiece class of InternLM2's published remote code (with
a tiny vocabulary), as the paper's models load it. Pairs have log-normal answer lengths. Prints the seconds of each
way and the ratio, and checks the ids agree.
"""

import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datasets import Dataset

from reward_transfer.models import load_reward_model, reward_token_id
from reward_transfer.tiny_internlm2 import build_tiny_internlm2
from reward_transfer.training_data import encode_pairs

PAIRS = 2000
WORDS = ["the", "answer", "is", "so", "we", "have", "x", "=", "5,", "2x", "+", "3", "13.", "\\frac{1}{2}",
         "print(sum(values))", "for", "i", "in", "range(n):", "\\boxed{42}", "since", "\\sqrt{16}", "4"]


def pairs(seed: int = 0) -> Dataset:
    rng = random.Random(seed)

    def answer() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(max(3, min(int(rng.lognormvariate(4.3, 0.8)), 700))))

    return Dataset.from_list([{"problem": f"What is {rng.randint(1, 99)} + {rng.randint(1, 99)}?",
                               "accepted": answer(), "rejected": answer()} for _ in range(PAIRS)])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model, tokenizer = load_reward_model(str(build_tiny_internlm2(Path(tmp) / "rm")), device="cpu")
        token, data = reward_token_id(model), pairs()
        started = time.perf_counter()
        fresh, _ = encode_pairs(data, tokenizer, 1024, "truncate", token, Path(tmp) / "cache")
        first = time.perf_counter() - started
        started = time.perf_counter()
        cached, stats = encode_pairs(data, tokenizer, 1024, "truncate", token, Path(tmp) / "cache")
        again = time.perf_counter() - started
    same = fresh["chosen_ids"] == cached["chosen_ids"] and fresh["rejected_ids"] == cached["rejected_ids"]
    print(f"\n{PAIRS} pairs, {type(tokenizer).__name__} (InternLM2's slow SentencePiece class), max length 1024")
    print(f"tokenised afresh (and written to the cache): {first:6.2f} s")
    print(f"read from the token cache:                   {again:6.2f} s ({stats.sides_from_cache} sides)")
    print(f"speed-up: {first / again:.1f}x; same ids: {same}")


if __name__ == "__main__":
    main()
