"""Selection strategies beyond the paper: each picks distinct pairs deterministically for a seed, keeps the pool
whole in a real selection round (batch size free), and shows its defining property on a pool built for it."""

import datasets
import numpy as np
import pytest
from scoring_helpers import compose_config, write_pair_dataset

from reward_transfer.active_learning import select_pairs
from reward_transfer.errors import UserError
from reward_transfer.selection_strategies import (
    STRATEGIES,
    PoolView,
    StrategyOptions,
    gap_ensemble,
    get_strategy,
    log_det_information,
)


def pool(size: int = 400, dim: int = 8, seed: int = 0) -> PoolView:
    rng = np.random.default_rng(seed)
    chosen, rejected = rng.normal(size=(size, dim)), rng.normal(size=(size, dim))
    head = rng.normal(size=dim)
    chosen_scores, rejected_scores = chosen @ head, rejected @ head
    return PoolView(gaps=chosen_scores - rejected_scores, chosen_features=chosen, rejected_features=rejected,
                    chosen_scores=chosen_scores, rejected_scores=rejected_scores)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_picks_n_distinct_pairs_the_same_way_for_a_seed(name):
    view, options = pool(), StrategyOptions()
    picks = [get_strategy(name)(view, 25, np.random.default_rng(3), options) for _ in range(2)]
    assert len(set(picks[0].tolist())) == 25 and picks[0].max() < 400
    assert picks[0].tolist() == picks[1].tolist()


def test_an_unknown_strategy_is_one_line_naming_the_known_ones():
    with pytest.raises(UserError, match="unknown strategy 'fishr'; known: margin, argmin, random, fisher, diversity, "
                                        "large_gap"):
        get_strategy("fishr")


def test_fisher_picks_carry_more_information_than_random_or_smallest_margin_picks():
    view, options = pool(), StrategyOptions()
    fisher = log_det_information(view, get_strategy("fisher")(view, 20, np.random.default_rng(0), options))
    for seed in range(20):
        assert fisher > log_det_information(view, get_strategy("random")(view, 20, np.random.default_rng(seed),
                                                                         options))
    assert fisher > log_det_information(view, get_strategy("argmin")(view, 20, None, options))


def test_fisher_conditioned_on_the_pairs_already_selected_looks_where_they_did_not():
    """Pairs along e1 carry more information alone, but the selected set already covers e1: conditioned on it,
    fisher's first picks go along e2; unconditioned (or with nothing selected), along e1."""
    features = np.vstack([np.outer(np.full(20, 3.0), np.eye(4)[0]), np.outer(np.full(20, 1.0), np.eye(4)[1])])
    view = PoolView(gaps=np.zeros(40), chosen_features=features, rejected_features=np.zeros_like(features))
    view.selected_information = np.outer(np.full(50, 1.5), np.eye(4)[0])  # 50 pairs along e1 already
    along = [lambda picks: (features[picks, 1] > 0).all(), lambda picks: (features[picks, 0] > 0).all()]
    assert along[0](get_strategy("fisher")(view, 3, None, StrategyOptions()))
    assert along[1](get_strategy("fisher")(view, 3, None, StrategyOptions(condition_on_selected=False)))
    view.selected_information = np.zeros((0, 4))
    assert along[1](get_strategy("fisher")(view, 3, None, StrategyOptions()))


def test_diversity_spreads_its_picks_where_uncertainty_alone_piles_them_up():
    """The smallest margins all sit in one prompt cluster: argmin takes only that cluster, diversity reaches others."""
    rng = np.random.default_rng(1)
    centres = np.eye(8)[:4] * 10
    cluster = np.repeat(np.arange(4), 50)
    prompts = centres[cluster] + rng.normal(scale=0.1, size=(200, 8))
    gaps = np.where(cluster == 0, 0.01, 1.0) + rng.uniform(0, 0.01, size=200)
    view = PoolView(gaps=gaps, chosen_features=prompts + 0.01, rejected_features=prompts - 0.01)
    assert set(cluster[get_strategy("argmin")(view, 8, None, StrategyOptions())].tolist()) == {0}
    assert set(cluster[get_strategy("diversity")(view, 8, None, StrategyOptions())].tolist()) == {0, 1, 2, 3}


def test_diversity_covers_prompts_not_answers():
    """Answers to one prompt spread far apart (the most uncertain prompt's too): pairs are placed by their prompt, so
    the picks cover four prompts before any takes a second pair of one."""
    rng = np.random.default_rng(4)
    prompt = np.repeat(np.arange(4), 10)
    answers = np.eye(8)[:4][prompt] + rng.normal(scale=5.0, size=(40, 8))  # answers vary more than prompts do
    gaps = np.where(prompt == 0, 0.01, 1.0) + rng.uniform(0, 0.01, size=40)
    view = PoolView(gaps=gaps, chosen_features=answers, rejected_features=answers + 0.1)
    assert len(set(prompt[get_strategy("diversity")(view, 4, None, StrategyOptions())].tolist())) < 4  # by answers
    view.prompt_ids = np.asarray([f"problem {p}" for p in prompt])
    assert sorted(prompt[get_strategy("diversity")(view, 4, None, StrategyOptions())].tolist()) == [0, 1, 2, 3]


def test_large_gap_ranks_by_an_upper_bound_on_the_predicted_gap():
    view = pool(seed=2)
    predictions = gap_ensemble(view, 8, np.random.default_rng(0))
    assert np.corrcoef(predictions.mean(axis=0), view.gaps)[0, 1] > 0.99  # the heads learn the model's own scores
    picks = get_strategy("large_gap")(view, 40, np.random.default_rng(0), StrategyOptions())
    assert np.abs(view.gaps[picks]).mean() > 2 * np.abs(view.gaps).mean()


def selection_config(model, source, target, *extra):
    return compose_config("active_data_selection", "demo_math_initial", [
        f"model.model_name_or_path={model}", f"dataset.dataset_name_or_path={source}",
        f"dataset.output_dataset_name_or_path={target}", "dataset.pairs_to_select=6", "dataset.max_to_look_at=15",
        *extra])


@pytest.mark.parametrize("strategy", ["fisher", "diversity", "large_gap"])
def test_a_selection_round_keeps_the_pool_whole_and_does_not_depend_on_the_batch_size(strategy, tiny_models,
                                                                                    tmp_path):
    data = write_pair_dataset(tmp_path / "pref-data-math", train_problems=6, pairs_per_problem=4)
    pool_ids = set(datasets.load_from_disk(str(data))["train"]["pair_id"])
    picks = []
    for batch_size in (1, 16):
        target = tmp_path / f"state-{batch_size}"
        summary = select_pairs(selection_config(tiny_models["rm"], data, target, f"selection.strategy={strategy}",
                                                f"dataset.batch_size={batch_size}"))
        state = datasets.load_from_disk(str(target))
        assert set(state["selected"]["pair_id"]) | set(state["rest"]["pair_id"]) == pool_ids
        assert set(state["selected"]["pair_id"]).isdisjoint(state["rest"]["pair_id"])
        picks.append(list(state["train"]["pair_id"]))
    assert len(picks[0]) == 6 and picks[0] == picks[1]
    assert summary["strategy"] == strategy and summary["scanned"] == 15
