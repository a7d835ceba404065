"""`eval.py mode=rewardbench | rewardbench2 | best_of_k` on the bundled samples, each written in its benchmark's
published column layout (allenai/reward-bench `filtered`, allenai/reward-bench-2 `test`, lmarena-ai/PPE-*-Best-of-K),
with the tiny RM through the one scoring engine."""

import json

import pytest
from scoring_helpers import REPO_ROOT, compose_config

from reward_transfer.errors import UserError
from reward_transfer.evaluation import evaluate

SAMPLES = REPO_ROOT / "data" / "benchmarks"
MODES = {"rewardbench": ("rewardbench_v1_sample.jsonl", "subset", "score"),
         "rewardbench2": ("rewardbench2_sample.jsonl", "subset", "score"),
         "best_of_k": ("ppe_best_of_k_sample.jsonl", "category", "best_of_k")}


def _config(model, data, out, mode: str):
    return compose_config("eval", "base", [
        f"mode={mode}", "domain=math", f"name={out.name}", f"model.model_name_or_path={model}",
        f"dataset.datasets=[{{name_or_path:{data},split:train}}]", f"output_dir={out}"])


@pytest.mark.parametrize("mode", list(MODES))
def test_each_benchmark_scores_its_sample_per_subset_with_intervals(tiny_models, tmp_path, mode):
    sample, subset_column, key = MODES[mode]
    rows = [json.loads(line) for line in (SAMPLES / sample).read_text().splitlines()]
    evaluate(_config(tiny_models["rm"], SAMPLES / sample, tmp_path / mode, mode))
    result = json.loads((tmp_path / mode / "results.json").read_text())
    assert result["benchmark"] == mode and set(result["subsets"]) == {r[subset_column] for r in rows}
    low, high = result[f"{key}_interval"]
    assert 0.0 <= low <= result[key] <= high <= 1.0
    if mode == "best_of_k":
        assert result["prompts"] == len(rows)
        assert all("best_of_k_interval" in part for part in result["subsets"].values())
    else:  # every subset with an interval, RewardBench 2's Ties (its rule spans prompts) too
        assert set(result["subset_intervals"]) == set(result["subsets"])


def test_a_file_missing_a_published_column_is_refused_naming_it(tiny_models, tmp_path):
    rows = [json.loads(line) for line in (SAMPLES / "rewardbench2_sample.jsonl").read_text().splitlines()]
    broken = tmp_path / "rb2.jsonl"
    broken.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "num_correct"}) + "\n" for r in rows))
    with pytest.raises(UserError, match="num_correct") as err:
        evaluate(_config(tiny_models["rm"], broken, tmp_path / "out", "rewardbench2"))
    assert str(broken) in str(err.value) and not (tmp_path / "out" / "results.json").exists()
