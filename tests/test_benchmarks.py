"""The field's benchmarks scored by their published rules (allenai/reward-bench at 05a9005), tie cases included:
RewardBench v1's strict pairs and count-weighted sections, RewardBench 2's 1/k credit and its Ties subset, and
best-of-K correctness in PPE's shape."""

import math

import numpy as np
import pytest

from reward_transfer.benchmarks import (
    best_of_k,
    best_of_n_credit,
    rb1_sections,
    rewardbench_v1,
    rewardbench_v2,
    ties_score,
)


def test_rewardbench_v1_counts_a_tie_as_wrong_and_weights_sections_by_example_counts():
    result = rewardbench_v1([2.0, 1.0, 1.0, 0.5], [1.0, 1.0, 2.0, 0.0], ["math-prm", "math-prm", "hep-go", "hep-go"],
                            samples=50)
    assert result["subsets"] == {"hep-go": 0.5, "math-prm": 0.5} and result["ties"] == 1
    # math-prm weighs 984 and hep-go 164: Reasoning = (0.5 * 984 + 0.5 * 164) / 1148.
    assert result["sections"] == {"Reasoning": 0.5} and result["score"] == 0.5
    sections = rb1_sections({"math-prm": 1.0, "hep-cpp": 0.0, "hep-go": 0.0, "hep-java": 0.0, "hep-js": 0.0,
                             "hep-python": 0.0, "hep-rust": 0.0})
    assert sections["Reasoning"] == pytest.approx(0.5)  # math counts as much as the six code subsets together
    low, high = result["score_interval"]
    assert 0.0 <= low <= 0.5 <= high <= 1.0


def test_rewardbench_v2_gives_one_over_k_for_a_tie_at_the_top_and_nothing_below_it():
    assert best_of_n_credit([3, 3, 1, 2], [True, False, False, False]) == 0.5  # chosen ties one rejected
    assert best_of_n_credit([1, 3, 3, 2], [True, False, False, False]) == 0.0
    assert best_of_n_credit([5, 1, 1, 1], [True, False, False, False]) == 1.0
    assert best_of_n_credit([2, 2, 2, 2], [True, False, False, False]) == 0.25
    result = rewardbench_v2(["a", "b", "c"], ["Math", "Math", "Focus"], [[3, 3, 1, 2], [1, 3, 3, 2], [5, 1, 1, 1]],
                            [1, 1, 1], samples=50)
    assert result["subsets"] == {"Focus": 1.0, "Math": 0.25} and result["score"] == pytest.approx(0.625)


def test_the_ties_subset_is_scored_by_its_own_rule():
    # Prompt 1: reference set (2 correct, 1 incorrect) and tied set (3 correct of equal worth, 1 incorrect).
    prompts = [("ref:1", [5.0, 4.0, 1.0], 2), ("tied:1", [5.0, 4.5, 4.0, 1.0], 3),
               ("ref:2", [2.0, 3.0], 1), ("tied:2", [3.0, 2.9, 3.1], 2)]  # prompt 2: wrong in both sets
    ref_accuracy, tied_accuracy = 0.5, 0.5
    # Only prompt 1 has a spread among its correct answers (prompt 2's tied set has 2: spread 0.1).
    spread = {"1": 1.0, "2": 0.1}
    margins = {"1": (3.0, 3.0), "2": (-1.0, -0.2)}  # (ref, tied): min(correct) - max(incorrect)
    preferred = np.mean([margins[p][1] > spread[p] for p in ("1", "2")])
    preferred_hard = np.mean([min(margins[p]) > spread[p] for p in ("1", "2")])
    margin_score = np.mean([math.tanh(min(margins[p]) / spread[p] - 1) for p in ("1", "2")])
    expected = 0.3 * tied_accuracy + 0.3 * ref_accuracy + 0.2 * preferred + 0.2 * preferred_hard + 0.01 * margin_score
    assert ties_score(prompts) == pytest.approx(expected)
    result = rewardbench_v2([p for p, _, _ in prompts], ["Ties"] * 4, [s for _, s, _ in prompts],
                            [c for _, _, c in prompts], samples=20)
    assert result["subsets"] == {"Ties": pytest.approx(round(expected, 4))}
    # Resampled by prompt, reference and tied entries together: prompt 1 alone scores 0.3 + 0.3 + 0.2 + 0.2 + 0.01 ·
    # tanh(2), prompt 2 alone 0.01 · tanh(-11); the interval spans what draws of the two prompts give, not a point.
    alone = [ties_score(prompts[:2]), ties_score(prompts[2:])]
    low, high = result["subset_intervals"]["Ties"]
    assert alone[1] - 1e-4 <= low < expected < high <= alone[0] + 1e-4
    assert result["score_interval"] == (low, high)  # the only subset: the leaderboard score is the Ties score


def test_best_of_k_scores_the_top_response_and_every_correct_incorrect_pair():
    result = best_of_k(["math", "math", "mmlu"],
                       [[0.9, 0.1, 0.5], [0.2, 0.2, 0.1], [0.3, 0.7, 0.1]],
                       [[True, False, False], [True, False, True], [False, False, False]], samples=50)
    # Prompt 1: top correct (1); prompt 2: tie at the top between a correct and an incorrect (0.5); prompt 3: 0.
    assert result["best_of_k"] == pytest.approx(0.5) and result["subsets"]["math"]["best_of_k"] == 0.75
    # Pairs: prompt 1: (0.9 > 0.1, 0.9 > 0.5) → 1; prompt 2: (0.2 vs 0.2 tie → wrong, 0.1 < 0.2 → wrong) → 0.
    # Prompt 3 has no correct response, so no pair.
    assert result["pairwise"] == pytest.approx(0.5) and result["prompts_with_pairs"] == 2


def test_every_subset_and_section_has_its_bootstrap_interval():
    rng = np.random.default_rng(0)
    subsets = ["math-prm"] * 200 + ["hep-go"] * 40 + ["alpacaeval-easy"] * 100
    chosen, rejected = rng.random(len(subsets)), rng.random(len(subsets))
    v1 = rewardbench_v1(chosen, rejected, subsets, samples=400)
    for name, value in v1["subsets"].items():
        low, high = v1["subset_intervals"][name]
        assert low <= value <= high
    # 40 pairs spread wider than 200 pairs of about the same accuracy.
    width = {name: high - low for name, (low, high) in v1["subset_intervals"].items()}
    assert width["hep-go"] > width["math-prm"]
    assert set(v1["section_intervals"]) == {"Reasoning", "Chat"}
    low, high = v1["section_intervals"]["Reasoning"]
    assert low <= v1["sections"]["Reasoning"] <= high
    rows = [[0.9, 0.1, 0.5]] * 30 + [[0.1, 0.9, 0.5]] * 10
    bok = best_of_k(["math"] * 40, rows, [[True, False, False]] * 40, samples=200)["subsets"]["math"]
    assert bok["best_of_k"] == 0.75 and bok["best_of_k_interval"][0] < 0.75 < bok["best_of_k_interval"][1]
    assert bok["pairwise_interval"][0] <= bok["pairwise"] <= bok["pairwise_interval"][1]
