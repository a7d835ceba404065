"""Active learning run with several seeds (profile.active_learning.seeds): each round's chains pooled into one result.

The pooled result of round k of a strategy is its mean accuracy over the seeds' chains on the evaluation pairs they
share, with a 95% interval from a two-level bootstrap (seeds, then evaluation pairs: both sources of spread), and its
per-pair outcome is the share of seeds that judged the pair right, so S_T and the labels needed to reach R_truth read it
as they read a single chain; the paired test against random resamples its seeds (`two_level_difference_p`)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from reward_transfer import run_layout as layout

if TYPE_CHECKING:
    from reward_transfer.run_results import RunResults

BOOTSTRAP_SAMPLES = 2000
_CHUNK = 200  # bootstrap draws per matrix product (bounds the memory of the pair weights)


def two_level_bootstrap(matrix: np.ndarray, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> list[float]:
    """95% percentile interval of the mean of a (seeds × pairs) outcome matrix, resampling seeds and pairs."""
    rng = np.random.default_rng(seed)
    num_seeds, num_pairs = matrix.shape
    means = np.empty(samples)
    for start in range(0, samples, _CHUNK):
        count = min(_CHUNK, samples - start)
        pair_weights = rng.multinomial(num_pairs, np.full(num_pairs, 1 / num_pairs), size=count)
        per_seed = matrix @ pair_weights.T / num_pairs  # (seeds, draws): each seed's accuracy on the resampled pairs
        seeds = rng.integers(0, num_seeds, size=(count, num_seeds))
        means[start:start + count] = per_seed[seeds, np.arange(count)[:, None]].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return [float(low), float(high)]


def two_level_difference_p(first: np.ndarray, second: np.ndarray, samples: int = BOOTSTRAP_SAMPLES,
                           seed: int = 0) -> float:
    """Two-sided bootstrap p-value of mean(first) = mean(second) for two (seeds × pairs) outcome matrices on the same
    pairs: the pairs resampled once for both (paired), each model's seeds on their own (independent chains), so the
    spread over seeds counts as Table 2's intervals count it. p: twice the smaller share of draws on either side of 0."""
    rng = np.random.default_rng(seed)
    num_pairs = first.shape[1]
    at_or_below = at_or_above = 0
    for start in range(0, samples, _CHUNK):
        count = min(_CHUNK, samples - start)
        pair_weights = rng.multinomial(num_pairs, np.full(num_pairs, 1 / num_pairs), size=count).T / num_pairs
        means = []
        for matrix in (first, second):
            per_seed = matrix @ pair_weights  # (seeds, draws)
            seeds = rng.integers(0, matrix.shape[0], size=(count, matrix.shape[0]))
            means.append(per_seed[seeds, np.arange(count)[:, None]].mean(axis=1))
        difference = means[0] - means[1]
        at_or_below += int((difference <= 0).sum())
        at_or_above += int((difference >= 0).sum())
    return min(1.0, 2 * (1 + min(at_or_below, at_or_above)) / (1 + samples))


def pool_seeds(results: RunResults) -> None:
    """Add one result per active-learning round that several seeds ran, under the round's seedless name."""
    chains: dict[layout.Cell, list[str]] = {}
    for name, cell in results.cells.items():
        if cell.kind == "al" and cell.seed is not None and name in results.accuracy:
            chains.setdefault(dataclasses.replace(cell, seed=None), []).append(name)
    for cell, names in chains.items():
        pooled = layout.active_learning_name(cell.domain, cell.strategy, cell.round_index)
        if pooled in results.accuracy:
            continue  # a seedless chain of its own (made by hand) is not replaced
        names.sort(key=lambda n: results.cells[n].seed)
        results.cells[pooled] = cell
        results.accuracy[pooled] = _pooled_result(results, pooled, names)


def _pooled_result(results: RunResults, pooled: str, names: list[str]) -> dict[str, Any]:
    seeds = [results.cells[n].seed for n in names]
    accuracies = [results.acc(n) for n in names]
    outcomes = [results.outcomes(n) for n in names]
    shared = sorted(set.intersection(*(set(o) for o in outcomes))) if all(o is not None for o in outcomes) else []
    if shared:
        matrix = np.array([[o[pid] for pid in shared] for o in outcomes], dtype=np.float64)
        results.set_outcomes(pooled, dict(zip(shared, matrix.mean(axis=0).tolist(), strict=True)))
    else:  # no per-pair scores: the spread over seeds alone
        matrix = np.array([[a] for a in accuracies if a is not None], dtype=np.float64)
    if not matrix.size:
        return {"accuracy": float("nan"), "num_pairs": 0, "seeds": seeds}
    return {"accuracy": float(matrix.mean()), "ci95": two_level_bootstrap(matrix), "num_pairs": len(shared) or
            results.pairs(names[0]), "seeds": seeds, "seed_accuracies": accuracies, "chains": names}
