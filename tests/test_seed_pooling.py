"""Active learning with several seeds: the report pools each round's chains (mean, interval over seeds and pairs),
tests each strategy against random per round, and says how many labels each needs to reach R_truth."""

import json
from pathlib import Path

import numpy as np
import pytest
from test_report import table_row

from reward_transfer import run_layout as layout
from reward_transfer.reporting import write_report
from reward_transfer.run_results import load_run
from reward_transfer.seed_pooling import two_level_bootstrap, two_level_difference_p

PAIRS = 200
SEEDS = [1, 2, 3]


def _write_eval(run: Path, name: str, correct: np.ndarray) -> None:
    folder = layout.eval_dir(run, name)
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"pair_id": str(i), "chosen": 1.0 if ok else 0.0, "rejected": 0.5} for i, ok in enumerate(correct)]
    (folder / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "results.json").write_text(json.dumps({"accuracy": float(correct.mean()), "num_pairs": len(correct),
                                                     "ci95": [0.0, 1.0]}))


def _seeded_run(tmp_path: Path, margin_rates: dict[int, list[float]], random_rate: float) -> Path:
    """math: R_truth right on 80% of the pairs; margin's chains (one per seed) at `margin_rates[round]`; random's
    at `random_rate` every round. Named as the grid names several seeds' chains."""
    run, rng = tmp_path / "run", np.random.default_rng(0)
    cells = {}
    _write_eval(run, "math_scratch", rng.random(PAIRS) < 0.8)
    cells["math_scratch"] = {"domain": "math", "kind": "truth"}
    for strategy in ("margin", "random"):
        for k in (1, 2, 3):
            for index, seed in enumerate(SEEDS):
                rate = margin_rates[k][index] if strategy == "margin" else random_rate
                name = layout.active_learning_name("math", strategy, k, seed)
                _write_eval(run, name, rng.random(PAIRS) < rate)
                cells[name] = {"domain": "math", "kind": "al", "size": 10 * k, "strategy": strategy,
                               "round_index": k, "seed": seed}
    for name, cell in cells.items():
        cells[name] = {**cell, "mode": "pairs", "model": name, "results": f"eval/{name}/results.json"}
    layout.grid_file(run).write_text(json.dumps({
        "domains": ["math"], "sizes": [], "full_size": {"math": 40},
        "al": {"rounds": 3, "pairs_per_round": 10, "strategies": ["margin", "random"], "seeds": SEEDS},
        "results": cells}))
    return run


def test_table2_pools_seeds_and_counts_labels_to_reach_truth(tmp_path: Path) -> None:
    run = _seeded_run(tmp_path, {1: [0.6, 0.62, 0.58], 2: [0.9, 0.92, 0.95], 3: [0.95, 0.95, 0.96]}, 0.6)
    results = load_run(run)
    pooled = layout.active_learning_name("math", "margin", 2)
    chains = [layout.active_learning_name("math", "margin", 2, seed) for seed in SEEDS]
    assert results.accuracy[pooled]["seeds"] == SEEDS
    assert results.acc(pooled) == pytest.approx(np.mean([results.acc(n) for n in chains]))
    low, high = results.interval(pooled)
    assert low < results.acc(pooled) < high
    md = write_report(run).tables_md.read_text()
    margin = table_row(md, "math", "AL margin (3 seeds)")
    assert margin[5].startswith(f"{results.acc(pooled):.4f} (")
    assert margin[-1] == "20"  # round 2 (20 labels) is the first whose mean reaches R_truth's
    assert table_row(md, "math", "random (AL loop) (3 seeds)")[-1] == "not reached"
    round2 = table_row(md, "math", "AL margin vs random, round 2")
    assert round2[2] == str(PAIRS) and float(round2[-1]) < 0.01
    assert "AL margin, round 2, seed" not in md  # the chains are pooled, not rows of their own
    assert (run / "active_learning.png").read_bytes()[:4] == b"\x89PNG"


def test_a_round_some_seeds_have_not_reached_says_so(tmp_path: Path) -> None:
    run = _seeded_run(tmp_path, {k: [0.7] * 3 for k in (1, 2, 3)}, 0.7)
    for name in ("results.json", "scores.jsonl"):  # seed 3's chain stopped before its last round's evaluation
        (layout.eval_dir(run, layout.active_learning_name("math", "margin", 3, 3)) / name).unlink()
    results = load_run(run)
    assert results.accuracy[layout.active_learning_name("math", "margin", 3)]["seeds"] == [1, 2]
    table_row(write_report(run).tables_md.read_text(), "math", "AL margin (2–3 seeds)")


def test_seeds_that_disagree_widen_the_interval(tmp_path: Path) -> None:
    steady = load_run(_seeded_run(tmp_path / "steady", {k: [0.7] * 3 for k in (1, 2, 3)}, 0.7))
    scattered = load_run(_seeded_run(tmp_path / "scattered", {k: [0.45, 0.7, 0.95] for k in (1, 2, 3)}, 0.7))
    name = layout.active_learning_name("math", "margin", 2)

    def width(results) -> float:
        low, high = results.interval(name)
        return high - low

    assert width(scattered) > 2 * width(steady)


def test_two_level_bootstrap_of_one_seed_is_the_pair_bootstrap() -> None:
    outcomes = (np.random.default_rng(1).random((1, 400)) < 0.7).astype(float)
    low, high = two_level_bootstrap(outcomes)
    share, spread = outcomes.mean(), 1.96 * np.sqrt(outcomes.mean() * (1 - outcomes.mean()) / 400)
    assert low == pytest.approx(share - spread, abs=0.01) and high == pytest.approx(share + spread, abs=0.01)


def test_the_paired_test_of_seeded_chains_counts_their_disagreement() -> None:
    rng = np.random.default_rng(0)

    def chains(rates: list[float]) -> np.ndarray:
        return np.array([(rng.random(400) < rate).astype(float) for rate in rates])

    random = chains([0.55] * 3)
    steady, scattered = chains([0.7] * 3), chains([0.9, 0.5, 0.7])  # the same mean over the seeds
    assert two_level_difference_p(steady, random) < 0.01
    # Seeds that disagree this much leave the difference in doubt; a test on each pair's share of seeds (the seeds
    # taken as fixed) would call it as certain as the steady one.
    assert two_level_difference_p(scattered, random) > 0.03
    assert two_level_difference_p(random, random) == 1.0
