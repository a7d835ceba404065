"""The dry run's cost estimate: read from a throughput table whose every figure says where it comes from, priced
from each step's composed config, and answering to the settings and data that change the work."""

import json
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from reward_transfer.errors import UserError
from reward_transfer.grid import throughput
from reward_transfer.grid.cost import estimate_grid
from reward_transfer.grid.plan import plan_from_config
from reward_transfer.grid.profile import ExecutorConfig
from reward_transfer.grid.script import composed_configs
from reward_transfer.grid.throughput import load_throughput

REPO = Path(__file__).resolve().parent.parent


def paper_grid(run: Path, *overrides: str):
    """The paper profile's steps, their composed configs and the profile, as the dry run has them."""
    from omegaconf import OmegaConf

    import reward_transfer.grid.profile  # noqa: F401  (registers the schema)

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "configs" / "reproduce"), version_base="1.3"):
        cfg = compose("config", overrides=["profile=paper", f"output_dir={run}", *overrides])
    steps = plan_from_config(cfg).steps
    return steps, composed_configs(steps), OmegaConf.to_object(cfg.profile)


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    run = tmp_path_factory.mktemp("paper")
    return (run, *paper_grid(run))


def by_name(cost) -> dict:
    return {step.name: step for step in cost.steps}


def test_every_figure_of_the_committed_tables_says_where_it_comes_from():
    for path in sorted(throughput.THROUGHPUT_DIR.glob("*.json")):
        table = load_throughput(path.stem)
        for name, entry in table.entries.items():
            assert entry["source"] in ("measured", "estimated"), name
            assert entry.get("basis") or entry.get("measured_on"), name


def test_a_table_without_a_basis_or_an_unknown_device_is_refused_in_one_line(tmp_path, monkeypatch):
    table = json.loads((throughput.THROUGHPUT_DIR / "h200.json").read_text())
    del table["figures"]["merge_s"]["basis"]
    (tmp_path / "bad.json").write_text(json.dumps(table))
    monkeypatch.setattr(throughput, "THROUGHPUT_DIR", tmp_path)
    with pytest.raises(UserError, match=r"bad.json: merge_s: an estimated figure needs its basis"):
        load_throughput("bad")
    with pytest.raises(UserError, match=r"no throughput table for 'a100' \(known: bad\)"):
        load_throughput("a100")


def test_the_paper_grid_is_priced_step_by_step(paper):
    run, steps, configs, profile = paper
    cost = estimate_grid(steps, configs, profile, ExecutorConfig(name="subprocess"), run)
    steps_cost = by_name(cost)
    assert len(cost.steps) == len(steps) and cost.gpu_hours == pytest.approx(sum(c.gpu_s for c in cost.steps) / 3600)
    load = load_throughput("h200")("model_load_s")
    train = [steps_cost[f"train/math_{size}"].gpu_s - load for size in ("20k", "40k", "60k")]
    assert train[1] == pytest.approx(2 * train[0]) and train[2] == pytest.approx(3 * train[0])  # work, not guesses
    assert steps_cost["select/active_learning_math_random_r1"].gpu_s == 0  # random picks score nothing
    assert steps_cost["merge/math_scratch"].gpu_s == 0 < steps_cost["merge/math_scratch"].disk_gb
    # One step after another on one GPU: the wall-clock is at least the GPU time.
    assert cost.wall_hours >= cost.gpu_hours


def test_settings_that_change_the_work_change_the_estimate(paper, tmp_path):
    run, steps, configs, profile = paper
    before = by_name(estimate_grid(steps, configs, profile, ExecutorConfig(name="subprocess"), run))
    padded = ('+profile.overrides.truth=["train.padding_free=false","train.fit_to_memory=false",'
              '"train.gradient_checkpointing=true"]')
    steps2, configs2, profile2 = paper_grid(run, padded)
    after = by_name(estimate_grid(steps2, configs2, profile2, ExecutorConfig(name="subprocess"), run))
    table = load_throughput("h200")
    slower = table("checkpointing_slowdown") * table("padding_free_speedup")
    load = table("model_load_s")
    assert after["train/math_scratch"].gpu_s - load == pytest.approx(slower * (before["train/math_scratch"].gpu_s - load))
    assert after["train/math_60k"].gpu_s == before["train/math_60k"].gpu_s  # only the truth runs were changed


def test_the_runs_own_pairs_replace_the_tables_token_counts(paper, tmp_path):
    _, steps, configs, profile = paper
    long_pairs = [{"problem": "p" * 700, "accepted": "a" * 3500, "rejected": "r" * 3500}] * 10
    DatasetDict({"train": Dataset.from_list(long_pairs), "eval": Dataset.from_list(long_pairs)}).save_to_disk(
        str(tmp_path / "data" / "pref-data-math"))
    cost = by_name(estimate_grid(steps, configs, profile, ExecutorConfig(name="subprocess"), tmp_path))
    # Each side 4200 characters = 1200 tokens: training cuts it at max_length 1024, scoring keeps it whole.
    assert "2048 tokens (the run's own pairs)" in cost["train/math_20k"].work
    assert "2400" not in cost["train/math_20k"].work
    assert "(table)" in cost["train/code_20k"].work


def test_more_gpus_shorten_the_wall_clock_not_the_gpu_hours(paper):
    run, steps, configs, profile = paper
    one = estimate_grid(steps, configs, profile, ExecutorConfig(name="local", gpus=[0]), run)
    four = estimate_grid(steps, configs, profile, ExecutorConfig(name="local", gpus=[0, 1, 2, 3]), run)
    assert four.gpu_hours == pytest.approx(one.gpu_hours)
    assert four.wall_hours < one.wall_hours / 2
