"""Pair rules, the balanced per-problem cap, pair ids and the split by problem (pure functions, no I/O)."""

import random
from collections import Counter
from types import SimpleNamespace

import pytest

from reward_transfer.domains.code import parse_tests
from reward_transfer.errors import UserError
from reward_transfer.generation.pairs import balanced_sample, pair_id, problem_pairs, valid_pairs
from reward_transfer.generation.problems import assign_splits, eval_problem_count


def test_math_pairs_are_correct_versus_incorrect_only():
    responses = ["right a", "wrong a", "right b", "wrong b"]
    scores = [1.0, 0.0, 1.0, 0.0]
    pairs = valid_pairs(responses, scores)
    assert sorted(pairs) == [(0, 1), (0, 3), (2, 1), (2, 3)]
    assert all(scores[a] == 1.0 and scores[r] == 0.0 for a, r in pairs)


def test_code_pairs_accept_the_higher_pass_count_and_skip_ties():
    responses = ["all pass", "half pass", "other half", "none pass"]
    scores = [1.0, 0.5, 0.5, 0.0]
    pairs = valid_pairs(responses, scores)
    assert sorted(pairs) == [(0, 1), (0, 2), (0, 3), (1, 3), (2, 3)]
    assert (1, 2) not in pairs and (2, 1) not in pairs


def test_all_equal_scores_give_no_pairs():
    assert valid_pairs(["a", "b", "c"], [1.0, 1.0, 1.0]) == []
    assert valid_pairs(["a", "b"], [0.0, 0.0]) == []


def test_duplicate_candidates_give_no_duplicate_pairs_and_are_removed_before_the_cap():
    responses = ["same right", "same right", "wrong x", "wrong y"]
    scores = [1.0, 1.0, 0.0, 0.0]
    pairs = valid_pairs(responses, scores)
    texts = [(responses[a], responses[r]) for a, r in pairs]
    assert len(texts) == len(set(texts)) == 2
    # Two unique pairs exist; a cap of 2 must return both, not two copies of one.
    capped = problem_pairs("p", responses, scores, k=2, seed=0)
    assert {(responses[a], responses[r]) for a, r in capped} == {("same right", "wrong x"), ("same right", "wrong y")}


def test_identical_texts_with_different_scores_are_never_paired():
    assert valid_pairs(["flaky", "flaky"], [1.0, 0.0]) == []


def test_cap_spreads_candidates_when_a_perfect_spread_exists():
    responses = [f"c{i}" for i in range(8)]
    scores = [1.0] * 4 + [0.0] * 4
    for seed in range(20):
        chosen = problem_pairs("p", responses, scores, k=4, seed=seed)
        usage = Counter(i for pair in chosen for i in pair)
        assert len(chosen) == 4
        assert set(usage.values()) == {1}, f"seed {seed}: {chosen}"


def test_cap_with_one_correct_candidate_uses_distinct_rejected_ones():
    responses = [f"c{i}" for i in range(8)]
    scores = [1.0] + [0.0] * 7
    chosen = problem_pairs("p", responses, scores, k=4, seed=3)
    assert [a for a, _ in chosen] == [0, 0, 0, 0]
    assert len({r for _, r in chosen}) == 4


def test_cap_on_code_candidates_keeps_usage_balanced():
    rng = random.Random(0)
    scores = [rng.randint(0, 6) / 6 for _ in range(16)]
    responses = [f"program {i}" for i in range(16)]
    all_pairs = valid_pairs(responses, scores)
    assert len(all_pairs) > 16
    chosen = balanced_sample(all_pairs, 16, random.Random(1))
    usage = Counter(i for pair in chosen for i in pair)
    # 16 pairs touch 32 candidate slots over 16 candidates: nobody needs more than a few.
    assert max(usage.values()) <= 3
    # Keeping the first k (the original's rule) piles the quota on candidate 0's pairs.
    first_k_usage = Counter(i for pair in all_pairs[:16] for i in pair)
    assert max(first_k_usage.values()) > max(usage.values())


def test_cap_is_seeded_and_not_the_first_k():
    responses = [f"c{i}" for i in range(8)]
    scores = [1.0] * 4 + [0.0] * 4
    first = problem_pairs("p", responses, scores, k=4, seed=1)
    assert first == problem_pairs("p", responses, scores, k=4, seed=1)
    draws = {tuple(problem_pairs("p", responses, scores, k=4, seed=s)) for s in range(10)}
    assert len(draws) > 1
    first_k = tuple(valid_pairs(responses, scores)[:4])  # (0, 4), (0, 5), ...: candidate 0 in every pair
    assert first_k not in draws


def test_no_cap_keeps_every_valid_pair():
    responses = [f"c{i}" for i in range(6)]
    scores = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert len(problem_pairs("p", responses, scores, k=None, seed=0)) == 9


def test_pair_id_is_a_stable_hash_of_the_three_texts():
    assert pair_id("problem", "good", "bad") == pair_id("problem", "good", "bad")
    assert pair_id("problem", "good", "bad") != pair_id("problem", "bad", "good")
    assert pair_id("problem", "good", "bad") != pair_id("problem 2", "good", "bad")
    assert pair_id("p", "good", "bad") == "af29de437e961000"  # pinned: the same on every machine and run


def test_split_is_by_problem_and_seeded():
    ids = [f"id{i}" for i in range(50)]
    splits = assign_splits(ids, 10, seed=42)
    assert Counter(splits.values()) == {"train": 40, "eval": 10}
    assert splits == assign_splits(list(reversed(ids)), 10, seed=42)
    assert splits != assign_splits(ids, 10, seed=7)


def test_eval_size_wins_over_eval_fraction():
    both = SimpleNamespace(eval_size=3, eval_fraction=0.5, eval_pairs=None)
    assert eval_problem_count(both, 100) == 3
    assert eval_problem_count(SimpleNamespace(eval_size=None, eval_fraction=0.25, eval_pairs=None), 100) == 25
    with pytest.raises(UserError, match="eval_size"):
        eval_problem_count(SimpleNamespace(eval_size=10, eval_fraction=None, eval_pairs=None), 10)
    # Sized by pairs, the split is made after labelling: no problem is held out up front.
    assert eval_problem_count(SimpleNamespace(eval_size=3, eval_fraction=0.5, eval_pairs=9000), 100) == 0


def test_tests_must_be_valid_json_with_cases():
    assert parse_tests('{"inputs": ["1\\n"], "outputs": ["2\\n"]}') == {"inputs": ["1\n"], "outputs": ["2\n"]}
    assert parse_tests('{"fn_name": "f", "inputs": [[1]], "outputs": [[2]]}')["fn_name"] == "f"
    for bad in ['{"inputs": [', "", "[]", '{"inputs": [], "outputs": []}', '{"inputs": ["1"], "outputs": []}']:
        assert parse_tests(bad) is None, bad
