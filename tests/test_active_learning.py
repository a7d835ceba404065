"""Active-learning selection: the three strategies, the margin sampler's distribution and stability, pool
conservation over three rounds on a real tiny RM, and the bad inputs (one error line, exit 1, nothing written)."""

import importlib
import json
import subprocess
from itertools import permutations

import datasets
import numpy as np
import pytest
from scoring_helpers import OFFLINE_ENV, PYTHON, REPO_ROOT, compose_config, write_pair_dataset

from reward_transfer.active_learning import STATE_INFO as STATE_FILE
from reward_transfer.active_learning import select_pairs
from reward_transfer.errors import UserError
from reward_transfer.selection_strategies import select_argmin, select_by_margin, select_random


def inclusion_probabilities(weights: np.ndarray, n: int) -> np.ndarray:
    """Exact P(item is among n drawn without replacement, each draw ∝ weight), by enumerating draw orders."""
    probs = np.zeros(len(weights))
    for order in permutations(range(len(weights)), n):
        p, left = 1.0, weights.sum()
        for item in order:
            p *= weights[item] / left
            left -= weights[item]
        probs[list(order)] += p
    return probs


def test_margin_sampler_draws_small_margins_as_often_as_exp_minus_margin_over_t():
    margins = np.array([0.0, 0.5, 1.0, 2.0, 3.0])
    temperature, n, trials = 0.8, 2, 20000
    rng = np.random.default_rng(0)
    counts = np.zeros(len(margins))
    for _ in range(trials):
        picked = select_by_margin(margins, n, temperature, rng)
        assert len(set(picked.tolist())) == n
        counts[picked] += 1
    expected = inclusion_probabilities(np.exp(-margins / temperature), n)
    # Binomial standard error per item is at most 0.0036 here; 5 sigma.
    assert counts / trials == pytest.approx(expected, abs=0.018)


def test_margin_sampler_is_stable_with_huge_margins():
    rng = np.random.default_rng(1)
    huge = np.array([1e6, 1e6 + 1, 2e6, 5e5])
    for _ in range(50):
        assert select_by_margin(huge, 1, 1.0, rng).tolist() == [3]  # weights e^-5e5 vs e^-1e6: only one wins
    picked = select_by_margin(np.full(10, 1e9), 10, 1e-3, rng)
    assert sorted(picked.tolist()) == list(range(10))  # equal huge margins: all drawn, no NaN ordering


def test_argmin_and_random_strategies():
    margins = [0.3, 0.1, 0.2, 0.1, 5.0]
    assert select_argmin(margins, 3).tolist() == [1, 3, 2]
    first = select_random(100, 10, np.random.default_rng(7))
    assert len(set(first.tolist())) == 10 and first.max() < 100
    assert first.tolist() == select_random(100, 10, np.random.default_rng(7)).tolist()


def selection_config(model, source, target, *extra):
    return compose_config("active_data_selection", "demo_math_initial", [
        f"model.model_name_or_path={model}", f"dataset.dataset_name_or_path={source}",
        f"dataset.output_dataset_name_or_path={target}", "dataset.pairs_to_select=6", "dataset.max_to_look_at=15",
        "dataset.batch_size=4", *extra])


@pytest.mark.parametrize("strategies", [("margin", "argmin", "random"), ("fisher",) * 3, ("diversity",) * 3,
                                        ("large_gap",) * 3])
def test_three_rounds_conserve_the_pool_and_keep_unscanned_pairs(tiny_models, tmp_path, strategies):
    data = write_pair_dataset(tmp_path / "pref-data-math", train_problems=10, pairs_per_problem=4)
    pool_ids = set(datasets.load_from_disk(str(data))["train"]["pair_id"])
    state_dir = tmp_path / "state"
    chosen_so_far: list[str] = []
    for round_number, strategy in enumerate(strategies, start=1):
        source = data if round_number == 1 else state_dir
        select_pairs(selection_config(tiny_models["rm"], source, state_dir, f"selection.strategy={strategy}"))
        state = datasets.load_from_disk(str(state_dir))
        selected, rest, train = (list(state[split]["pair_id"]) for split in ("selected", "rest", "train"))
        assert len(train) == 6 and not set(train) & set(chosen_so_far)  # this round's new picks only
        chosen_so_far += train
        assert sorted(selected) == sorted(chosen_so_far)
        assert set(selected).isdisjoint(rest)
        assert set(selected) | set(rest) == pool_ids  # scanning 15 of the pool never drops the other pairs
        assert len(selected) + len(rest) == len(pool_ids) == 40
        info = json.loads((state_dir / "al_state.json").read_text())
        assert info["domain"] == "math" and len(info["rounds"]) == round_number
        assert info["rounds"][-1]["pair_ids"] == train
        record = state_dir / "selected_information.npy"  # fisher's record of what it selected, row per pair
        assert (np.load(record).shape == (len(selected), 64)) if strategy == "fisher" else not record.exists()
    summary = json.loads((state_dir / "selection_summary.json").read_text())
    assert summary["strategy"] == strategies[-1]
    assert summary["pair_kinds"]["selected"] == {"correct_vs_incorrect": 1.0}
    assert sum(info["rounds"][0]["margin"]["scanned"]["counts"]) == 15


def test_selection_is_seeded_and_independent_of_batch_size_and_train_on_all_keeps_everything(tiny_models,
                                                                                                tmp_path):
    data = write_pair_dataset(tmp_path / "pref-data-math", train_problems=6, pairs_per_problem=4)
    picks = []
    for batch_size in (1, 16):
        target = tmp_path / f"state-{batch_size}"
        select_pairs(selection_config(tiny_models["rm"], data, target, f"dataset.batch_size={batch_size}"))
        picks.append(list(datasets.load_from_disk(str(target))["train"]["pair_id"]))
    assert picks[0] == picks[1]
    select_pairs(selection_config(tiny_models["rm"], tmp_path / "state-1", tmp_path / "state-1",
                                  "selection.train_on=all", "selection.strategy=random"))
    state = datasets.load_from_disk(str(tmp_path / "state-1"))
    assert sorted(state["train"]["pair_id"]) == sorted(state["selected"]["pair_id"])
    assert len(state["selected"]) == 12


def test_bad_requests_are_refused_and_leave_the_state_untouched(tiny_models, tmp_path):
    data = write_pair_dataset(tmp_path / "pref-data-math", train_problems=3, pairs_per_problem=2)
    target = tmp_path / "state"
    with pytest.raises(UserError, match="only 6 pairs are left"):
        select_pairs(selection_config(tiny_models["rm"], data, target, "dataset.pairs_to_select=7"))
    assert not target.exists()
    select_pairs(selection_config(tiny_models["rm"], data, target, "dataset.pairs_to_select=6",
                                  "selection.strategy=random"))
    before = (target / "al_state.json").read_text()
    with pytest.raises(UserError, match="empty"):
        select_pairs(selection_config(tiny_models["rm"], target, target, "selection.strategy=random"))
    assert (target / "al_state.json").read_text() == before
    no_rejected = tmp_path / "no_rejected"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"problem": ["p"], "accepted": ["a"]})}).save_to_disk(
        str(no_rejected))
    with pytest.raises(UserError, match="missing column"):
        select_pairs(selection_config(tiny_models["rm"], no_rejected, tmp_path / "other"))


def test_command_line_refuses_a_state_of_another_domain(tiny_models, tmp_path):
    code = write_pair_dataset(tmp_path / "pref-data-code", train_problems=3, pairs_per_problem=4, domain="code")
    target = tmp_path / "state"
    select_pairs(selection_config(tiny_models["rm"], code, target, "domain=code", "selection.strategy=random"))
    before = (target / "al_state.json").read_text()
    done = subprocess.run(
        [PYTHON, "active_data_selection.py", "--config-name=demo_math", f"model.model_name_or_path={tiny_models['rm']}",
         f"dataset.dataset_name_or_path={target}", f"dataset.output_dataset_name_or_path={target}"],
        cwd=REPO_ROOT, env=OFFLINE_ENV, capture_output=True, text=True, timeout=240)
    assert done.returncode == 1, done.stderr[-2000:]
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and "domain 'code'" in last_line
    assert "Traceback" not in done.stderr
    assert (target / "al_state.json").read_text() == before


@pytest.mark.parametrize("script", ["eval", "active_data_selection", "active_learning_loop"])
def test_every_named_config_validates(script):
    from omegaconf import OmegaConf

    from reward_transfer.stages import get_stage

    importlib.import_module(get_stage(script).schema)
    names = sorted(p.stem for p in (REPO_ROOT / "configs" / script).glob("*.yaml"))
    assert names
    for name in names:
        cfg = compose_config(script, name, [])
        if OmegaConf.is_missing(cfg, "domain") or cfg.domain is None:  # a template over every domain
            cfg = compose_config(script, name, ["domain=math", *(["name=run"] if script == "eval" else [])])
        OmegaConf.to_container(cfg, resolve=True)


def test_loop_runs_the_grids_rounds_resumes_where_it_stopped_and_is_reported(tiny_models, tmp_path):
    from reward_transfer.active_learning_loop import run_active_learning
    from reward_transfer.reporting import write_report
    from reward_transfer.run_results import load_run

    data = write_pair_dataset(tmp_path / "pref-data-math", train_problems=6, pairs_per_problem=4)
    run = tmp_path / "loop"
    overrides = [f"start_model={tiny_models['rm']}", f"output_root={run}", "rounds=2", f"pool={data}",
                 "overrides.select=['dataset.pairs_to_select=6']"]
    rows = run_active_learning(compose_config("active_learning_loop", "demo_math", overrides))
    assert [row["pairs_selected"] for row in rows] == [6, 12]
    # The grid's names and layout (`_r<k>`), so the report reads the loop's folder like a reproduce run.
    name = "active_learning_math_margin_r1"
    stamps = {path: path.stat().st_mtime_ns for path in (
        run / "active_learning/math/margin/state_r1" / STATE_FILE, run / "models" / name / "log_history.json",
        run / "models" / f"{name}-merged" / "config.json")}
    (run / "eval/active_learning_math_margin_r2/results.json").unlink()
    resumed = run_active_learning(compose_config("active_learning_loop", "demo_math", overrides))
    assert [row["accuracy"] for row in resumed] == [row["accuracy"] for row in rows]
    assert all(path.stat().st_mtime_ns == stamp for path, stamp in stamps.items())

    report = write_report(run)
    results = load_run(run)
    assert {results.cell(n).round_index for n in results.accuracy} == {1, 2}
    table = report.tables_md.read_text()
    assert f"{rows[0]['accuracy']:.4f}" in table and f"{rows[1]['accuracy']:.4f}" in table


def test_round_one_pool_is_the_training_sample_of_the_same_size(tmp_path):
    """Table 2's AL draws from Table 1's 60k training set: the pool is the rows training reads for that size."""
    from reward_transfer.active_learning import load_pool
    from reward_transfer.config import DatasetSpec
    from reward_transfer.data import load_datasets

    data = write_pair_dataset(tmp_path / "pairs", train_problems=10, pairs_per_problem=4)
    trained = load_datasets([DatasetSpec(name_or_path=str(data), split="train")], max_examples=12, seed=42)
    pool = load_pool(str(data), "math", pool_size=12, seed=42)
    assert len(pool.rest) == 12 and pool.info["pool_size"] == 12
    assert sorted(pool.rest["pair_id"]) == sorted(trained["pair_id"])
    assert len(load_pool(str(data), "math").rest) == 40  # no pool_size: the whole train split
    out = tmp_path / "state"
    cfg = compose_config("active_data_selection", "demo_math_initial", [
        f"dataset.dataset_name_or_path={data}", f"dataset.output_dataset_name_or_path={out}",
        "dataset.pool_size=12", "dataset.pairs_to_select=5", "selection.strategy=random"])
    select_pairs(cfg)
    state = datasets.load_from_disk(str(out))
    assert set(state["selected"]["pair_id"]) | set(state["rest"]["pair_id"]) == set(trained["pair_id"])


def test_rerunning_round_one_on_a_state_holding_two_rounds_is_refused(tmp_path, capsys):
    """The original code's layout reads and writes one state directory; round 1 again must not rewrite rounds 1–2."""
    data = write_pair_dataset(tmp_path / "pairs", train_problems=6, pairs_per_problem=4)
    state = tmp_path / "state"
    common = [f"dataset.output_dataset_name_or_path={state}", "dataset.pairs_to_select=4", "selection.strategy=random"]
    round_one = compose_config("active_data_selection", "demo_math_initial",
                               [f"dataset.dataset_name_or_path={data}", *common])
    select_pairs(round_one)
    select_pairs(compose_config("active_data_selection", "demo_math", [f"dataset.dataset_name_or_path={state}",
                                                                       *common]))
    before = (state / STATE_FILE).read_text()
    with pytest.raises(UserError, match=r"holds rounds 1–2, but this selection makes round 1.*overwrite=true"):
        select_pairs(round_one)
    assert (state / STATE_FILE).read_text() == before

    other = tmp_path / "other"
    again = [f"dataset.dataset_name_or_path={data}", f"dataset.output_dataset_name_or_path={other}",
             "dataset.pairs_to_select=4", "selection.strategy=random"]
    first = select_pairs(compose_config("active_data_selection", "demo_math_initial", again))
    capsys.readouterr()
    assert select_pairs(compose_config("active_data_selection", "demo_math_initial", again)) == first
    assert "already holds round 1 with these settings" in capsys.readouterr().out
    with pytest.raises(UserError, match=r"other settings \(seed: 42 → 7\)"):
        select_pairs(compose_config("active_data_selection", "demo_math_initial", [*again, "seed=7"]))
    replaced = select_pairs(compose_config("active_data_selection", "demo_math_initial",
                                           [*again, "seed=7", "overwrite=true"]))
    assert replaced["seed"] == 7
