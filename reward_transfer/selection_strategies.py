"""Active-learning selection strategies: one registry, name → function of the scanned pool → picks.

Each strategy gets a `PoolView` of the pairs scanned this round — their signed score gaps (chosen − rejected),
from the same scoring pass each side's reward-head input projected to a few dimensions, and what is known of the
pairs already selected — the number to pick and a seeded generator, and returns distinct indices into the view.
The paper's three:
- `margin`: sample with P ∝ exp(−|gap|/T) (Algorithm 1: uncertainty sampling, softmax over the pool);
- `argmin`: the n smallest |gap| (eq. 3's deterministic minimum);
- `random`: uniform (the baseline; scores nothing).
Beyond the paper:
- `fisher`: greedy D-optimal design (Shen, Sun and Ton, "Active Reward Modeling", ICML 2025): the pairs that most
  increase log det of the Bradley-Terry Fisher information Σ p(1−p) x xᵀ of a linear head on the features,
  x the chosen-minus-rejected feature difference, p = σ(gap); rank-one updates, O(pool × dim) per pick; the
  design starts from the information of the pairs already selected (as recorded when each was picked);
- `diversity`: uncertainty plus coverage of the prompt feature space (after BAL-PM, NeurIPS 2024): an
  uncertainty-weighted k-center, each pick the largest (uncertainty + 0.1) × distance to the nearest pick so far,
  a prompt's point the mean feature of every answer to it in the scan (pairs of one prompt share one point);
- `large_gap`: the largest upper confidence bound of the predicted |gap| (after ActiveUltraFeedback's DeltaUCB):
  an ensemble of ridge heads fitted on bootstrap resamples of the pool's own scores over the shared features
  gives each pair a mean and a spread; UCB = |mean| + β·spread.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from reward_transfer.errors import UserError

FEATURE_DIM = 64  # the projected head input a strategy sees (HeadFeatures)


@dataclass
class PoolView:
    """What a strategy sees of the scanned pairs (features: None when the strategy does not need them)."""

    gaps: np.ndarray  # [pairs] chosen − rejected score
    chosen_features: np.ndarray | None = None  # [pairs, dim]
    rejected_features: np.ndarray | None = None
    chosen_scores: np.ndarray | None = None
    rejected_scores: np.ndarray | None = None
    prompt_ids: np.ndarray | None = None  # [pairs] which prompt each pair answers (pairs of one prompt share it)
    # [pairs already selected, dim] their `information_vectors`, recorded in the state as each was picked (None: not
    # recorded, e.g. picked by a strategy that scores no features)
    selected_information: np.ndarray | None = None

    @property
    def margins(self) -> np.ndarray:
        return np.abs(self.gaps)


@dataclass
class StrategyOptions:
    temperature: float = 1.0  # margin
    ridge: float = 1.0  # fisher: the prior's weight (λI)
    ensemble: int = 8  # large_gap: heads in the ensemble
    ucb_beta: float = 1.0  # large_gap: weight of the ensemble's spread
    condition_on_selected: bool = True  # fisher: start the design from the pairs already selected


Strategy = Callable[[PoolView, int, np.random.Generator, StrategyOptions], np.ndarray]


def select_by_margin(margins: np.ndarray, n: int, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of `n` pairs drawn without replacement with P ∝ exp(−margin/T), in draw order.

    Gumbel-top-k: adding Gumbel noise to the log-weights −margin/T and keeping the n largest is exactly
    sequential sampling without replacement, and never forms exp(−margin/T) (no underflow to 0/0).
    """
    if temperature <= 0:
        raise UserError(f"selection.temperature must be positive, got {temperature}")
    keys = -np.asarray(margins, dtype=np.float64) / temperature + rng.gumbel(size=len(margins))
    return np.argsort(-keys, kind="stable")[:n]


def select_argmin(margins: np.ndarray, n: int) -> np.ndarray:
    """Indices of the `n` smallest margins (ties: earlier index first)."""
    return np.argsort(np.asarray(margins, dtype=np.float64), kind="stable")[:n]


def select_random(pool_size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` distinct indices drawn uniformly (the paper's random baseline)."""
    return rng.choice(pool_size, size=n, replace=False)


def information_vectors(view: PoolView) -> np.ndarray:
    """[pairs, dim] each pair's Fisher-weighted feature difference √(p(1−p))·(chosen − rejected), p = σ(gap)."""
    p = 1 / (1 + np.exp(-view.gaps.astype(np.float64)))
    return (view.chosen_features - view.rejected_features).astype(np.float64) * np.sqrt(p * (1 - p))[:, None]


def fisher_design(view: PoolView, n: int, ridge: float = 1.0, condition_on_selected: bool = True) -> np.ndarray:
    """Greedy D-optimal picks: each maximises log(1 + xᵀA⁻¹x) for the Fisher-weighted difference x, A = λI + Σ xxᵀ
    of the pairs already selected (when recorded and asked for) and the picks so far (Sherman-Morrison keeps every
    candidate's xᵀA⁻¹x current)."""
    x = information_vectors(view)
    known = view.selected_information if condition_on_selected else None
    information = ridge * np.eye(x.shape[1]) + (known.T @ known if known is not None and len(known) else 0)
    inverse = np.linalg.inv(information)
    quadratic = np.einsum("ij,jk,ik->i", x, inverse, x)
    picked, available = [], np.ones(len(x), dtype=bool)
    for _ in range(n):
        best = int(np.argmax(np.where(available, quadratic, -np.inf)))
        picked.append(best)
        available[best] = False
        direction = inverse @ x[best]
        scale = 1 + x[best] @ direction
        inverse -= np.outer(direction, direction) / scale
        quadratic -= (x @ direction) ** 2 / scale
    return np.asarray(picked, dtype=np.int64)


def log_det_information(view: PoolView, picks: np.ndarray, ridge: float = 1.0) -> float:
    """log det(λI + Σ_picks p(1−p) x xᵀ): what `fisher` maximises greedily."""
    x = information_vectors(view)[picks]
    return float(np.linalg.slogdet(ridge * np.eye(x.shape[1]) + x.T @ x)[1])


def _unit(values: np.ndarray) -> np.ndarray:
    span = values.max() - values.min()
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


def prompt_points(view: PoolView) -> np.ndarray:
    """[pairs, dim] each pair's prompt as the model sees it: the mean feature of every answer to that prompt in the
    view (each pair alone when prompts are not known)."""
    sides = ((view.chosen_features + view.rejected_features) / 2).astype(np.float64)
    if view.prompt_ids is None:
        return sides
    _, prompt_of = np.unique(view.prompt_ids, return_inverse=True)
    sums = np.zeros((prompt_of.max() + 1, sides.shape[1]))
    np.add.at(sums, prompt_of, sides)
    return (sums / np.bincount(prompt_of)[:, None])[prompt_of]


def diversity_design(view: PoolView, n: int, floor: float = 0.1) -> np.ndarray:
    """Uncertainty-weighted k-center over prompt points (`prompt_points`): the first pick is the most uncertain pair,
    each next one maximises (uncertainty + floor) × distance to the nearest pick so far, so another pair of a prompt
    already picked (distance 0) waits until every prompt is covered; uncertainty is 1 − the margin scaled to [0, 1]."""
    prompts = prompt_points(view)
    uncertainty = 1 - _unit(view.margins.astype(np.float64))
    nearest = np.full(len(prompts), np.inf)
    picked, available = [], np.ones(len(prompts), dtype=bool)
    for _ in range(n):
        value = uncertainty if not picked else (uncertainty + floor) * nearest
        best = int(np.argmax(np.where(available, value, -np.inf)))
        picked.append(best)
        available[best] = False
        nearest = np.minimum(nearest, np.linalg.norm(prompts - prompts[best], axis=1))
    return np.asarray(picked, dtype=np.int64)


def gap_ensemble(view: PoolView, heads: int, rng: np.random.Generator) -> np.ndarray:
    """[heads, pairs] predicted gaps of ridge heads fitted on bootstrap resamples of the scored sides."""
    features = np.concatenate([view.chosen_features, view.rejected_features]).astype(np.float64)
    scores = np.concatenate([view.chosen_scores, view.rejected_scores]).astype(np.float64)
    features = np.hstack([features, np.ones((len(features), 1))])
    difference = np.hstack([(view.chosen_features - view.rejected_features).astype(np.float64),
                            np.zeros((len(view.gaps), 1))])
    predictions = []
    for _ in range(heads):
        sample = rng.integers(0, len(features), size=len(features))
        x, y = features[sample], scores[sample]
        weights = np.linalg.solve(x.T @ x + np.eye(x.shape[1]), x.T @ y)
        predictions.append(difference @ weights)
    return np.asarray(predictions)


def large_gap_design(view: PoolView, n: int, rng: np.random.Generator, heads: int, beta: float) -> np.ndarray:
    """The n largest UCB of the predicted |gap|: |ensemble mean| + β · ensemble spread."""
    predictions = gap_ensemble(view, heads, rng)
    ucb = np.abs(predictions.mean(axis=0)) + beta * predictions.std(axis=0)
    return np.argsort(-ucb, kind="stable")[:n]


STRATEGIES: dict[str, Strategy] = {
    "margin": lambda view, n, rng, opt: select_by_margin(view.margins, n, opt.temperature, rng),
    "argmin": lambda view, n, rng, opt: select_argmin(view.margins, n),
    "random": lambda view, n, rng, opt: select_random(len(view.gaps), n, rng),
    "fisher": lambda view, n, rng, opt: fisher_design(view, n, opt.ridge, opt.condition_on_selected),
    "diversity": lambda view, n, rng, opt: diversity_design(view, n),
    "large_gap": lambda view, n, rng, opt: large_gap_design(view, n, rng, opt.ensemble, opt.ucb_beta),
}
SCORES_NOTHING = {"random"}
NEEDS_FEATURES = {"fisher", "diversity", "large_gap"}
RECORDS_INFORMATION = {"fisher"}  # its picks' information_vectors are kept in the state for the next rounds


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise UserError(f"selection.strategy: unknown strategy '{name}'; known: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]
