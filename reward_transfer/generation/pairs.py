"""Preference pairs from scored candidates: every valid (accepted, rejected) pair, deduplicated, then a
seeded, balanced sample of at most k per problem."""

import itertools
import random
from collections import Counter
from collections.abc import Sequence

from reward_transfer.generation.problems import stable_hash


def valid_pairs(responses: Sequence[str], scores: Sequence[float]) -> list[tuple[int, int]]:
    """All (accepted, rejected) index pairs where the accepted candidate scores strictly higher.

    Math scores are 1/0 (correct vs incorrect); code scores are the share of tests passed, so any two
    candidates with different pass counts form a pair. Ties give no pair. A pair whose texts repeat an
    earlier pair's texts exactly (duplicate candidates) is dropped, as is a pair of two identical texts.
    """
    seen: set[tuple[str, str]] = set()
    pairs = []
    for accepted, rejected in itertools.permutations(range(len(responses)), 2):
        if scores[accepted] <= scores[rejected] or responses[accepted] == responses[rejected]:
            continue
        texts = (responses[accepted], responses[rejected])
        if texts not in seen:
            seen.add(texts)
            pairs.append((accepted, rejected))
    return pairs


def balanced_sample(pairs: Sequence[tuple[int, int]], k: int | None, rng: random.Random) -> list[tuple[int, int]]:
    """At most `k` pairs, spreading candidate use: each pick minimises the most-used candidate's count.

    The pairs are shuffled first, so ties are broken at random (seeded), not by candidate order; keeping the
    first k pairs (as the original did) would let the first candidates fill the whole quota.
    """
    if k is None or len(pairs) <= k:
        return list(pairs)
    pool = list(pairs)
    rng.shuffle(pool)
    usage: Counter = Counter()
    chosen = []
    for _ in range(k):
        best = min(range(len(pool)), key=lambda i: (max(usage[pool[i][0]], usage[pool[i][1]]),
                                                    usage[pool[i][0]] + usage[pool[i][1]], i))
        accepted, rejected = pool.pop(best)
        usage[accepted] += 1
        usage[rejected] += 1
        chosen.append((accepted, rejected))
    return chosen


def pair_id(problem: str, accepted: str, rejected: str) -> str:
    """A stable id of a pair: a hash of the problem text and the two responses."""
    return stable_hash("pair", problem, accepted, rejected)


def problem_pairs(problem_id: str, responses: Sequence[str], scores: Sequence[float], k: int | None,
                  seed: int) -> list[tuple[int, int]]:
    """The pairs kept for one problem, in candidate order; the same for the same seed on every run."""
    rng = random.Random(stable_hash("pairs", seed, problem_id))
    return sorted(balanced_sample(valid_pairs(responses, scores), k, rng))
