"""Evaluation: judgment accuracy and ties on hand-made scores, results.json from a real tiny run, best-of-n on a
small candidate set, and the command line's bad-input behaviour (one error line, exit 1, no results)."""

import json
import subprocess

import numpy as np
import pytest
from datasets import Dataset
from scoring_helpers import OFFLINE_ENV, PYTHON, REPO_ROOT, compose_config, write_pair_dataset

from reward_transfer.errors import UserError
from reward_transfer.evaluation import best_of_n_metrics, bootstrap_ci, evaluate, pair_kind, pair_metrics
from reward_transfer.scoring import load_reward_model, score_conversations


def test_accuracy_counts_strict_wins_and_reports_ties():
    chosen = [1.0, 2.0, 0.5, 0.3, 0.0]
    rejected = [0.0, 2.0, 0.7, 0.3, -1.0]
    kinds = ["pass_vs_fail", "pass_vs_fail", "partial_vs_partial", "partial_vs_partial", None]
    metrics = pair_metrics(chosen, rejected, kinds, bootstrap_samples=200, seed=0)
    assert metrics["num_pairs"] == 5
    assert metrics["correct"] == 2  # the two ties count as wrong
    assert metrics["ties"] == 2
    assert metrics["accuracy"] == pytest.approx(0.4)
    assert metrics["mean_margin"] == pytest.approx((1.0 + 0 - 0.2 + 0 + 1.0) / 5)
    assert metrics["accuracy_by_kind"]["pass_vs_fail"] == {"accuracy": 0.5, "num_pairs": 2, "correct": 1, "ties": 1}
    assert metrics["accuracy_by_kind"]["partial_vs_partial"]["accuracy"] == 0.0
    low, high = metrics["ci95"]
    assert 0.0 <= low <= 0.4 <= high <= 1.0


def test_bootstrap_interval_is_seeded_and_narrows_with_more_pairs():
    small = [True] * 30 + [False] * 20
    large = small * 40
    assert bootstrap_ci(small, 1000, seed=1) == bootstrap_ci(small, 1000, seed=1)
    low, high = bootstrap_ci(large, 1000, seed=1)
    assert low < 0.6 < high
    assert high - low < np.subtract(*bootstrap_ci(small, 1000, seed=1)[::-1])


def test_pair_kinds_follow_the_labels():
    assert pair_kind("math", 1.0, 0.0) == "correct_vs_incorrect"
    assert pair_kind("code", 1.0, 0.0) == "pass_vs_fail"
    assert pair_kind("code", 1.0, 0.4) == "pass_vs_partial"
    assert pair_kind("code", 0.6, 0.2) == "partial_vs_partial"
    assert pair_kind("code", 0.6, 0.0) == "partial_vs_fail"
    assert pair_kind("code", None, 0.0) is None


def test_a_pair_whose_prompt_exceeds_the_budget_is_judged_on_its_answers_and_counted(tiny_models, tmp_path):
    """Scoring once kept a prompt's first `max_length` tokens: both sides became the same prefix, a tie counted
    wrong. Now the prompt's start is cut, the answers are judged, and results.json says how many pairs were cut."""
    long_prompt = "Consider the following long statement and answer at the end. " * 40 + "What is 2+2?"
    rows = {"problem": [long_prompt, "What is 3+3?"], "accepted": ["\\boxed{4}", "\\boxed{6}"],
            "rejected": ["I think it is five, or maybe seven.", "7"], "pair_id": ["a", "b"]}
    Dataset.from_dict(rows).to_json(tmp_path / "pairs.jsonl")
    cfg = compose_config("eval", "demo_math", [f"model.model_name_or_path={tiny_models['rm']}",
                                               f"dataset.datasets=[{{name_or_path:{tmp_path / 'pairs.jsonl'}}}]",
                                               f"output_dir={tmp_path / 'eval'}", "model.max_length=96"])
    results = evaluate(cfg)
    assert results["ties"] == 0
    assert results["length_budget"] == 96 and results["pairs_cut"] == {"prompt_start": 1, "answer_start": 0}
    assert results["pairs_scored_on_identical_inputs"] == 0


def test_evaluate_writes_results_and_per_pair_scores(tiny_models, tmp_path):
    data = write_pair_dataset(tmp_path / "pref-data-code", domain="code")
    cfg = compose_config("eval", "demo_code", [f"model.model_name_or_path={tiny_models['rm']}",
                                               f"dataset.datasets.0.name_or_path={data}",
                                               f"output_dir={tmp_path / 'eval'}", "dataset.batch_size=4"])
    results = evaluate(cfg)
    written = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert written["accuracy"] == results["accuracy"]
    for key in ("accuracy", "num_pairs", "correct", "ties", "mean_margin", "ci95", "model", "data", "config"):
        assert key in written
    assert written["num_pairs"] == 16  # the eval split only
    assert set(written["accuracy_by_kind"]) == {"pass_vs_fail", "partial_vs_partial", "pass_vs_partial"}
    scores = [json.loads(line) for line in (tmp_path / "eval" / "scores.jsonl").read_text().splitlines()]
    assert len(scores) == 16 and all(s["pair_id"].startswith("e") for s in scores)
    wins = sum(s["chosen"] > s["rejected"] for s in scores)
    assert wins == written["correct"]


def write_candidates(path):
    rows = {"problem_id": [], "problem": [], "split": [], "domain": [], "candidate_index": [], "response": [],
            "score": [], "correct": []}
    for p in range(5):
        for i in range(4):
            rows["problem_id"].append(f"q{p}")
            rows["problem"].append(f"Question {p}: what is {p} squared?")
            rows["split"].append("eval" if p < 4 else "train")
            rows["domain"].append("math")
            rows["candidate_index"].append(i)
            rows["response"].append(f"The answer is {p * p + i}." + " Check." * i)
            rows["score"].append(float(i == p % 3))
            rows["correct"].append(i == p % 3)
    Dataset.from_dict(rows).save_to_disk(str(path))
    return rows


def test_best_of_n_metrics_on_hand_made_scores():
    problem_ids = ["a", "a", "a", "b", "b", "c", "c"]
    index = [0, 1, 2, 0, 1, 0, 1]
    scores = [0.1, 0.9, 0.5, 0.3, 0.3, 2.0, 1.0]
    correct = [False, True, False, True, False, False, False]
    metrics = best_of_n_metrics(problem_ids, index, scores, correct, bootstrap_samples=100)
    assert metrics["num_problems"] == 3
    assert metrics["best_of_n_accuracy"] == pytest.approx(2 / 3)  # a: index 1; b: tie → index 0; c: wrong
    assert metrics["oracle_accuracy"] == pytest.approx(2 / 3)
    assert metrics["first_sample_accuracy"] == pytest.approx(1 / 3)
    assert metrics["random_pick_accuracy"] == pytest.approx((1 / 3 + 1 / 2 + 0) / 3)


def test_best_of_n_reranks_the_eval_candidates(tiny_models, tmp_path):
    data = write_pair_dataset(tmp_path / "pref-data-math")
    rows = write_candidates(data / "candidates")
    cfg = compose_config("eval", "demo_math_best_of_n", [f"model.model_name_or_path={tiny_models['rm']}",
                                                         f"dataset.datasets.0.name_or_path={data}",
                                                         f"output_dir={tmp_path / 'bon'}"])
    results = evaluate(cfg)
    assert results["num_problems"] == 4 and results["num_candidates"] == 16  # train-split problem left out
    model, tokenizer = load_reward_model(str(tiny_models["rm"]), device="cpu")
    scores = score_conversations(model, tokenizer, rows["problem"][:16], rows["response"][:16]).scores
    expected = np.mean([rows["correct"][4 * p + int(np.argmax(scores[4 * p:4 * p + 4]))] for p in range(4)])
    assert results["best_of_n_accuracy"] == pytest.approx(expected)
    assert results["oracle_accuracy"] == 1.0
    assert results["first_sample_accuracy"] == pytest.approx(2 / 4)  # problems 0 and 3 have index 0 correct
    assert json.loads((tmp_path / "bon" / "results.json").read_text())["mode"] == "best_of_n"


def run_eval(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "eval.py", "--config-name=demo_math.yaml", *overrides], cwd=REPO_ROOT,
                          env=OFFLINE_ENV, capture_output=True, text=True, timeout=240)


def test_command_line_refuses_missing_columns_without_writing_results(tiny_models, tmp_path):
    Dataset.from_dict({"problem": ["p"], "accepted": ["a"]}).save_to_disk(str(tmp_path / "no_rejected"))
    out = tmp_path / "eval"
    done = run_eval(f"dataset.datasets.0.name_or_path={tmp_path / 'no_rejected'}", "dataset.datasets.0.split=train",
                    f"model.model_name_or_path={tiny_models['rm']}", f"output_dir={out}")
    assert done.returncode == 1, done.stderr[-2000:]
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and "rejected" in last_line
    assert "Traceback" not in done.stderr
    assert not (out / "results.json").exists()


def test_a_model_that_is_not_a_reward_model_is_refused(tiny_models, tmp_path):
    data = write_pair_dataset(tmp_path / "pref-data-math")
    cfg = compose_config("eval", "demo_math", [f"model.model_name_or_path={tiny_models['lm']}",
                                               f"dataset.datasets.0.name_or_path={data}",
                                               f"output_dir={tmp_path / 'eval'}"])
    with pytest.raises(UserError, match="not a reward model"):
        evaluate(cfg)
    assert not (tmp_path / "eval" / "results.json").exists()


def test_any_rewardbench_style_file_is_scored_with_per_subset_accuracy(tiny_models, tmp_path):
    rows = [{"prompt": f"What is {a} + {a}?", "chosen": f"The answer is \\boxed{{{2 * a}}}.",
             "rejected": f"It is {3 * a}.", "subset": "easy" if a < 5 else "hard"} for a in range(8)]
    data = tmp_path / "rewardbench.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    cfg = compose_config("eval", "demo_math", [f"model.model_name_or_path={tiny_models['rm']}",
                                               f"dataset.datasets=[{{name_or_path:{data},split:train}}]",
                                               f"output_dir={tmp_path / 'rb'}"])
    results = evaluate(cfg)
    assert results["num_pairs"] == 8
    by_subset = results["accuracy_by_subset"]
    assert {k: v["num_pairs"] for k, v in by_subset.items()} == {"easy": 5, "hard": 3}
    assert sum(v["correct"] for v in by_subset.values()) == results["correct"]


def test_a_rerun_keeps_the_same_results_and_refuses_other_settings(tiny_models, tmp_path, capsys):
    data = write_pair_dataset(tmp_path / "pref-data-math")
    base = [f"model.model_name_or_path={tiny_models['rm']}", f"dataset.datasets.0.name_or_path={data}",
            f"output_dir={tmp_path / 'eval'}"]
    first = evaluate(compose_config("eval", "demo_math", base))
    stamp = (tmp_path / "eval" / "results.json").stat().st_mtime_ns
    capsys.readouterr()
    assert evaluate(compose_config("eval", "demo_math", [*base, "dataset.batch_size=3"])) == json.loads(
        (tmp_path / "eval" / "results.json").read_text())  # a scoring batch size is not another result
    assert "already complete" in capsys.readouterr().out
    assert (tmp_path / "eval" / "results.json").stat().st_mtime_ns == stamp
    with pytest.raises(UserError, match=r"other settings \(dataset\.max_examples: None → 3\)"):
        evaluate(compose_config("eval", "demo_math", [*base, "dataset.max_examples=3"]))
    replaced = evaluate(compose_config("eval", "demo_math", [*base, "dataset.max_examples=3", "overwrite=true"]))
    assert replaced["num_pairs"] == 3 and first["num_pairs"] > 3
    with pytest.raises(UserError, match=r"dataset\.max_examples must be positive or null, got -5"):
        evaluate(compose_config("eval", "demo_math", [*base, "dataset.max_examples=-5"]))
