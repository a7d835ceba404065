"""The report's tables of the field's benchmarks: each final model of the grid on RewardBench v1, RewardBench 2 and
best-of-K correctness (`eval.py mode=<benchmark>`), overall and per section or subset, each score with its 95%
interval."""

from reward_transfer.benchmarks import RB1_SECTIONS

BENCHMARK_COLUMNS = {"rewardbench": ("RewardBench v1", "score"), "rewardbench2": ("RewardBench 2", "score"),
                     "best_of_k": ("best-of-K (PPE shape)", "best_of_k")}
NOTE = (
    "Each final model on the field's reward-model benchmarks, scored by their published rules "
    "(reward_transfer/benchmarks.py): RewardBench v1 — pairs, ties wrong, sections weighted by the official example "
    f"counts ({', '.join(RB1_SECTIONS)}), the mean of the sections present (no Prior Sets); RewardBench 2 — best-of-4, "
    "1/k credit for a tie at the top, the Ties subset by its own rule, the mean of the subsets; best-of-K — the "
    "top-scored response correct (PPE Correctness's shape), and in brackets the pairwise accuracy over "
    "(correct, incorrect) responses. 95% bootstrap intervals over pairs or prompts within subsets."
)


PARTS_NOTE = ("The same evaluations per RewardBench v1 section (count-weighted subsets), RewardBench 2 subset and "
              "best-of-K subset, each with its 95% bootstrap interval over the pairs or prompts of that part (the Ties "
              "subset: its prompts resampled, its rule recomputed).")
# benchmark → (column prefix, where its parts are, the figure of a part)
_PARTS = {"rewardbench": ("v1", "sections", None), "rewardbench2": ("v2", "subsets", None),
          "best_of_k": ("best-of-K", "subsets", "best_of_k")}


def _interval_text(value: float | None, interval) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" + (f" ({interval[0]:.2f}–{interval[1]:.2f})" if interval else "")


def _part_text(result: dict | None, benchmark: str, part: str) -> str:
    if result is None:
        return "—"
    _, where, key = _PARTS[benchmark]
    value = result.get(where, {}).get(part)
    if key is not None:  # best-of-K: {best_of_k, best_of_k_interval, pairwise, ...} per subset
        value = value or {}
        return _interval_text(value.get(key), value.get(f"{key}_interval"))
    intervals = result.get("section_intervals" if where == "sections" else "subset_intervals", {})
    return _interval_text(value, intervals.get(part))


def benchmark_part_rows(results: dict[str, dict[str, dict]], describe) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per model, one column per section/subset of each benchmark run."""
    columns = []  # (benchmark, part)
    for benchmark, (_, where, _) in _PARTS.items():
        parts = {part for by in results.values() for part in by.get(benchmark, {}).get(where, {})}
        columns += [(benchmark, part) for part in sorted(parts)]
    header = ["reward model", *(f"{_PARTS[b][0]} {part}" for b, part in columns)]
    rows = [[describe(model), *(_part_text(by.get(b), b, part) for b, part in columns)]
            for model, by in results.items()]
    return header, rows


def _cell(result: dict | None, key: str) -> str:
    if result is None:
        return "—"
    text = _interval_text(result.get(key), result.get(f"{key}_interval") or result.get("score_interval"))
    if key == "best_of_k" and result.get("pairwise") is not None:
        text += f" [pairwise {result['pairwise']:.3f}]"
    return text


def benchmark_rows(results: dict[str, dict[str, dict]], describe) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per model, in the order given (`describe(name)` labels it), one column per
    benchmark run."""
    present = [name for name in BENCHMARK_COLUMNS if any(name in by for by in results.values())]
    header = ["reward model", *(BENCHMARK_COLUMNS[name][0] for name in present)]
    rows = [[describe(model), *(_cell(by.get(name), BENCHMARK_COLUMNS[name][1]) for name in present)]
            for model, by in results.items()]
    return header, rows
