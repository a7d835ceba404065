"""Active learning run with several seeds (profile.active_learning.seeds): each round's chains pooled into one result.

The pooled result of round k of a strategy is its mean accuracy over the seeds' chains on the evaluation pairs they
share, with a 95% interval from a two-level bootstrap (seeds, then evaluation pairs: both sources of spread), and its
per-pair outcome is the share of seeds that judged the pair right, so the paired test against random, S_T and the
labels needed to reach R_truth read it as they read a single chain."""

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


def sign_flip_p(first: list[float], second: list[float], samples: int = 10000, seed: int = 0) -> float:
    """Two-sided paired randomisation test of mean(first − second) = 0: under the null each pair's difference is as
    likely to have either sign (for 0/1 outcomes of one seed this is McNemar's test)."""
    diff = np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64)
    diff = diff[diff != 0]
    if not len(diff):
        return 1.0
    observed, rng, extreme = abs(diff.sum()), np.random.default_rng(seed), 0
    for start in range(0, samples, _CHUNK):
        signs = rng.choice([-1.0, 1.0], size=(min(_CHUNK, samples - start), len(diff)))
        extreme += int((np.abs(signs @ diff) >= observed - 1e-9).sum())
    return (1 + extreme) / (1 + samples)


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
